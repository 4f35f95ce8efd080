"""Addresses, networks and the range table the address-based modules share."""

from __future__ import annotations

import ipaddress
import random

import pytest

from colonnade.core.ipnet import RangeTable, parse_address, parse_network


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # a dual-stack socket's IPv4 client
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("unknown", None),
        ("_hidden", None),
        ("192.0.2.1:80", None),
        ("", None),
        ("/run/colonnade.sock", None),
    ],
)
def test_parse_address(text: str, expected: str | None) -> None:
    address = parse_address(text)
    assert (None if address is None else str(address)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("192.168.0.0/255.255.0.0", "192.168.0.0/16"),  # IIS's ipAddress + subnetMask
        ("2001:db8::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        (" 10.1.0.0/16 ", "10.1.0.0/16"),
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),  # written as IPv4-mapped
    ],
)
def test_parse_network(text: str, expected: str) -> None:
    assert str(parse_network(text)) == expected


def test_parse_network_refuses_with_a_reason() -> None:
    with pytest.raises(ValueError, match=r"did you mean '10\.0\.0\.0/8'"):
        parse_network("10.0.0.1/8")
    for bad in ("10.0.0.0/33", "example.com", "10.0.0", "10.0.0.0/255.0.255.0", ""):
        with pytest.raises(ValueError, match="is not an IPv4 or IPv6 address"):
            parse_network(bad)


def table(*rows: tuple[str, str]) -> RangeTable[str]:
    return RangeTable((parse_network(net), value) for net, value in rows)


def test_the_first_network_listed_decides() -> None:
    rows = [
        ("10.1.2.3", "host"),
        ("10.1.0.0/16", "mid"),
        ("10.0.0.0/8", "wide"),
        ("10.255.255.255", "shadowed"),  # inside 10.0.0.0/8, listed after it
        ("0.0.0.0/0", "all"),
    ]
    t = table(*rows)
    look = {a: t.get(ipaddress.ip_address(a)) for a in ("10.1.2.3", "10.1.2.4", "10.2.0.0")}
    assert look == {"10.1.2.3": "host", "10.1.2.4": "mid", "10.2.0.0": "wide"}
    assert t.get(ipaddress.ip_address("10.255.255.255")) == "wide"
    assert t.get(ipaddress.ip_address("11.0.0.0")) == "all"
    assert t.get(ipaddress.ip_address("9.255.255.255")) == "all"
    assert t.get(ipaddress.ip_address("2001:db8::1")) is None  # the other family
    # The reverse order: the whole internet listed first hides everything else.
    t = table(*rows[::-1])
    assert {t.get(ipaddress.ip_address(a)) for a in ("10.1.2.3", "10.1.2.4", "11.0.0.0")} == {"all"}


def test_equal_networks_the_first_one_wins() -> None:
    t = table(("192.0.2.0/24", "first"), ("192.0.2.0/24", "second"))
    assert t.get(ipaddress.ip_address("192.0.2.9")) == "first"


def test_shadowed_networks_add_no_ranges() -> None:
    # Everything inside a network listed earlier is one range: the table does not
    # grow with entries that can never decide.
    rows = [("10.0.0.0/8", "wide")] + [(f"10.{i}.0.0/16", f"n{i}") for i in range(200)]
    t = table(*rows)
    assert t.get(ipaddress.ip_address("10.7.0.1")) == "wide"
    assert len(t._v4.starts) == 1


def test_families_are_separate_and_v4_mapped_clients_match_v4_entries() -> None:
    t = table(("192.0.2.0/24", "v4"), ("2001:db8::/32", "v6"), ("::/0", "any6"))
    assert t.get(parse_address("::ffff:192.0.2.5")) == "v4"  # type: ignore[arg-type]
    assert t.get(ipaddress.ip_address("2001:db8:1::")) == "v6"
    assert t.get(ipaddress.ip_address("2001:db9::")) == "any6"
    assert t.get(ipaddress.ip_address("198.51.100.1")) is None
    assert ipaddress.ip_address("2001:db8::5") in t
    assert not table()
    assert table(("::1", "x")).size == 1


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_a_first_match_scan(seed: int) -> None:
    # The flattened ranges answer what a scan of the list top to bottom answers,
    # on random nested, equal and disjoint networks and on addresses at their
    # edges; a few rounds with many networks, a few with a handful.
    rng = random.Random(seed)
    count = rng.choice([5, 40, 300])
    nets = []
    for _ in range(count):
        prefix = rng.randint(4, 32)
        base = rng.getrandbits(32) & 0x0FFFFFFF | 0x0A000000
        net = ipaddress.IPv4Network((base, prefix), strict=False)
        nets.append(net)
        if rng.random() < 0.1:
            nets.append(net)  # the same network twice: the first one counts
    rows = [(n, i) for i, n in enumerate(nets)]
    t: RangeTable[int] = RangeTable(rows)
    probes = [rng.getrandbits(32) & 0x0FFFFFFF | 0x0A000000 for _ in range(2000)]
    for n in nets:
        probes += [int(n.network_address), int(n.broadcast_address)]
        probes += [int(n.network_address) - 1, int(n.broadcast_address) + 1]
    for number in probes:
        if not 0 <= number < 2**32:
            continue
        address = ipaddress.IPv4Address(number)
        expected = next((i for i, n in enumerate(nets) if address in n), None)
        assert t.get(address) == expected, address
    starts = t._v4.starts
    assert starts == sorted(starts) and all(
        t._v4.ends[i] < starts[i + 1] for i in range(len(starts) - 1)
    )
