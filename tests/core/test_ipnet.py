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


def test_the_longest_prefix_decides_whatever_the_order() -> None:
    rows = [
        ("10.0.0.0/8", "wide"),
        ("10.1.0.0/16", "mid"),
        ("10.1.2.3", "host"),
        ("10.255.255.255", "last"),
        ("0.0.0.0/0", "all"),
    ]
    for order in (rows, rows[::-1]):
        t = table(*order)
        look = {a: t.get(ipaddress.ip_address(a)) for a in ("10.1.2.3", "10.1.2.4", "10.2.0.0")}
        assert look == {"10.1.2.3": "host", "10.1.2.4": "mid", "10.2.0.0": "wide"}
        assert t.get(ipaddress.ip_address("10.255.255.255")) == "last"
        assert t.get(ipaddress.ip_address("10.255.255.254")) == "wide"
        assert t.get(ipaddress.ip_address("11.0.0.0")) == "all"
        assert t.get(ipaddress.ip_address("2001:db8::1")) is None  # the other family


def test_equal_networks_the_last_one_wins() -> None:
    t = table(("192.0.2.0/24", "first"), ("192.0.2.0/24", "second"))
    assert t.get(ipaddress.ip_address("192.0.2.9")) == "second"


def test_families_are_separate_and_v4_mapped_clients_match_v4_entries() -> None:
    t = table(("192.0.2.0/24", "v4"), ("2001:db8::/32", "v6"), ("::/0", "any6"))
    assert t.get(parse_address("::ffff:192.0.2.5")) == "v4"  # type: ignore[arg-type]
    assert t.get(ipaddress.ip_address("2001:db8:1::")) == "v6"
    assert t.get(ipaddress.ip_address("2001:db9::")) == "any6"
    assert t.get(ipaddress.ip_address("198.51.100.1")) is None
    assert ipaddress.ip_address("2001:db8::5") in t
    assert not table()
    assert table(("::1", "x")).size == 1


def test_agrees_with_a_scan_of_every_network() -> None:
    # The flattened ranges answer what a longest-prefix scan answers, on random
    # nested and disjoint networks and addresses at their edges.
    rng = random.Random(16)
    nets = []
    for _ in range(300):
        prefix = rng.randint(4, 32)
        base = rng.getrandbits(32) & ~((1 << (32 - prefix)) - 1)
        nets.append(ipaddress.IPv4Network((base & 0x0FFFFFFF | 0x0A000000, prefix), strict=False))
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
        holding = [(n.prefixlen, i) for i, n in enumerate(nets) if address in n]
        expected = max(holding)[1] if holding else None
        assert t.get(address) == expected, address
