"""Trusted proxies through the real pipeline: who the client is, from which headers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade import CONTINUE, Context, Module, Outcome, Priority, Stage, hook
from colonnade.errors import ConfigError
from colonnade.modules.trusted_proxies.module import split_outside_quotes
from colonnade.testing import Client, build_engine

PROXY = ("10.0.0.1", 40000)
STRANGER = ("198.51.100.9", 40000)


class Observe(Module):
    """Records what the modules after the proxy module see (listed before it)."""

    id = "test.observe"
    seen: list[tuple[Any, Any, str, str, str | None]] = []

    @hook(Stage.BEGIN_REQUEST, priority=Priority.FIRST)
    def begin_request(self, ctx: Context) -> Outcome:
        request = ctx.request
        host_header = request.header(b"host")
        Observe.seen.append(
            (
                request.client,
                request.peer,
                request.scheme,
                request.host,
                host_header.decode() if host_header else None,
            )
        )
        return CONTINUE


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    Observe.seen.clear()
    yield
    Observe.seen.clear()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("a")
    return tmp_path


def config(root: Path, **settings: Any) -> dict[str, Any]:
    return {
        # Listed first on purpose: the proxy module leads whatever the order.
        "server": {
            "modules": [
                "test.observe",
                "security.request_filtering",
                "security.trusted_proxies",
                "handler.static",
            ]
        },
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "trusted_proxies": {"proxies": ["10.0.0.0/24", "2001:db8:1::/48"], **settings},
    }


def seen(
    root: Path,
    sent: dict[str, str] | list[tuple[bytes, bytes]],
    peer: tuple[str, int] = PROXY,
    **settings: Any,
) -> tuple[Any, Any, str, str, str | None]:
    engine = build_engine(config(root, **settings), modules=[Observe])
    with Client(engine, client_addr=peer) as client:
        response = client.get("/a.txt", headers=sent)
    assert response.status == 200, response.text
    return Observe.seen[-1]


def test_the_module_leads_its_priority_whatever_the_order(root: Path) -> None:
    engine = build_engine(config(root), modules=[Observe])
    (app,) = engine.describe()
    plan = dict(app["plan"])
    assert plan[Stage.BEGIN_REQUEST] == [
        "security.trusted_proxies (first)",
        "test.observe (first)",
        "security.request_filtering (first)",
    ]


def test_a_trusted_peer_names_the_client(root: Path) -> None:
    client, peer, scheme, host, _ = seen(
        root, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    )
    assert client == ("203.0.113.7", 0)
    assert peer == PROXY
    assert scheme == "https"
    assert host == "localhost"  # X-Forwarded-Host is off by default


def test_an_untrusted_peer_is_not_believed(root: Path) -> None:
    client, peer, scheme, _, _ = seen(
        root,
        {
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "Forwarded": "for=1.2.3.4",
        },
        peer=STRANGER,
        headers=["forwarded", "x-forwarded-for", "x-forwarded-proto"],
    )
    assert client == peer == STRANGER
    assert scheme == "http"


def test_no_proxies_configured_changes_nothing(root: Path) -> None:
    client, *_ = seen(root, {"X-Forwarded-For": "203.0.113.7"}, proxies=[])
    assert client == PROXY


@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        # right-most untrusted: the proxies' own addresses are skipped
        ("203.0.113.7, 10.0.0.2, 10.0.0.3", "203.0.113.7"),
        # a client's forged entries are left of the one our proxy appended
        ("1.1.1.1, 203.0.113.7", "203.0.113.7"),
        ("garbage, ;;, 203.0.113.7", "203.0.113.7"),
        ("unknown, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        # all trusted: the left-most
        ("10.0.0.5, 10.0.0.6", "10.0.0.5"),
        # IPv6, bracketed with a port, IPv4 with a port, IPv4-mapped
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]:4711", "2001:db8::7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        # a proxy in the trusted IPv6 network is skipped too
        ("203.0.113.7, 2001:db8:1::5", "203.0.113.7"),
        # empty list elements name no hop
        ("203.0.113.7,, ", "203.0.113.7"),
    ],
)
def test_the_walk_from_the_right(root: Path, xff: str, expected: str) -> None:
    client, *_ = seen(root, {"X-Forwarded-For": xff})
    assert client[0] == expected


def test_several_header_lines_are_one_list(root: Path) -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.4")]
    client, *_ = seen(root, headers)
    assert client == ("203.0.113.7", 0)


def test_the_port_given_is_kept(root: Path) -> None:
    client, *_ = seen(root, {"X-Forwarded-For": "[2001:db8::7]:4711"})
    assert client == ("2001:db8::7", 4711)


def test_max_hops_bounds_the_walk(root: Path) -> None:
    chain = "203.0.113.7, " + ", ".join(f"10.0.0.{i}" for i in range(2, 8))  # 6 proxies
    assert seen(root, {"X-Forwarded-For": chain}, max_hops=10)[0][0] == "203.0.113.7"
    # Three entries read at most: all proxies, the furthest one read is the client.
    assert seen(root, {"X-Forwarded-For": chain}, max_hops=3)[0][0] == "10.0.0.5"


def test_a_long_header_is_read_from_its_right_end(root: Path) -> None:
    # A client pads the header; what our proxy appended is still found, and the
    # padding is never parsed.
    padding = ", ".join(["6.6.6.6"] * 2000)
    client, *_ = seen(root, {"X-Forwarded-For": f"{padding}, 203.0.113.7"}, max_header_length=64)
    assert client[0] == "203.0.113.7"


@pytest.mark.parametrize(
    "xff",
    [
        "unknown",
        "_hidden",
        "203.0.113.7:99999",
        "[2001:db8::7",
        "not-an-address",
        "1.2.3.4 5.6.7.8",
    ],
)
def test_an_unusable_entry_where_the_client_should_be_is_ignored(
    root: Path, xff: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="colonnade.security")
    client, *_ = seen(root, {"X-Forwarded-For": xff, "X-Forwarded-Proto": "https"})
    assert client == PROXY
    assert Observe.seen[-1][2] == "http"  # nothing applied from a header we could not read
    assert "a forwarding header was ignored" in caplog.text


def test_a_malformed_header_is_logged_once(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="colonnade.security")
    engine = build_engine(config(root), modules=[Observe])
    with Client(engine, client_addr=PROXY) as client:
        for _ in range(3):
            assert client.get("/a.txt", headers={"X-Forwarded-For": "junk"}).status == 200
    assert caplog.text.count("a forwarding header was ignored") == 1


# -- Forwarded (RFC 7239) --------------------------------------------------------------


def forwarded(root: Path, value: str, **settings: Any) -> tuple[Any, Any, str, str, str | None]:
    settings.setdefault("headers", ["forwarded"])
    return seen(root, {"Forwarded": value}, **settings)


def test_forwarded_for_proto_and_host(root: Path) -> None:
    client, peer, scheme, host, host_header = forwarded(
        root, 'for="[2001:db8::7]:4711";proto=https;host=www.example.com'
    )
    assert client == ("2001:db8::7", 4711)
    assert peer == PROXY
    assert (scheme, host, host_header) == ("https", "www.example.com", "www.example.com")


def test_forwarded_takes_proto_and_host_from_the_client_element(root: Path) -> None:
    value = (
        "for=6.6.6.6;proto=http;host=evil.example, "
        "for=203.0.113.7;proto=https;host=shop.example, "
        'for=10.0.0.3;proto=http;host="inner:8080"'
    )
    client, _, scheme, host, _ = forwarded(root, value)
    assert (client[0], scheme, host) == ("203.0.113.7", "https", "shop.example")


@pytest.mark.parametrize(
    "value",
    [
        "for=unknown",
        'for="_hidden"',
        "proto=https",  # no for=
        "for=203.0.113.7;for=203.0.113.8",
        'for="203.0.113.7',
        "for",
    ],
)
def test_a_malformed_forwarded_element_is_ignored(root: Path, value: str) -> None:
    client, _, scheme, host, _ = forwarded(root, value)
    assert (client, scheme, host) == (PROXY, "http", "localhost")


@pytest.mark.parametrize(
    "value",
    [
        "for=203.0.113.7;proto=gopher",
        'for=203.0.113.7;host="bad/host"',
        # nginx's $host lets an underscore through: what a client's Host header says
        "for=203.0.113.7;host=bad_host;proto=https",
    ],
)
def test_an_unusable_proto_or_host_is_dropped_alone(root: Path, value: str) -> None:
    # Dropping the client with it would make the client the proxy: an address IP
    # restrictions often allow (loopback), whatever the client's own address.
    client, _, scheme, host, _ = forwarded(root, value)
    assert client[0] == "203.0.113.7"
    assert host == "localhost"
    assert scheme == ("https" if "proto=https" in value else "http")


def test_forwarded_garbage_left_of_our_proxy_is_never_read(root: Path) -> None:
    client, *_ = forwarded(root, 'for="unterminated;, junk===, for=203.0.113.7')
    assert client[0] == "203.0.113.7"


def test_forwarded_wins_over_x_forwarded_when_both_are_enabled(root: Path) -> None:
    both = ["forwarded", "x-forwarded-for", "x-forwarded-proto"]
    headers = {"Forwarded": "for=203.0.113.7", "X-Forwarded-For": "192.0.2.1"}
    client, _, scheme, _, _ = seen(root, headers, headers=both)
    assert client[0] == "203.0.113.7"
    assert scheme == "http"  # X-Forwarded-Proto is not read beside Forwarded
    # Without Forwarded, the X- headers are read.
    assert seen(root, {"X-Forwarded-For": "192.0.2.1"}, headers=both)[0][0] == "192.0.2.1"


def test_forwarded_is_ignored_unless_enabled(root: Path) -> None:
    client, *_ = seen(root, {"Forwarded": "for=203.0.113.7"})  # default: X-Forwarded-* only
    assert client == PROXY


# -- X-Forwarded-Proto / -Host -----------------------------------------------------------


def test_x_forwarded_host_when_enabled(root: Path) -> None:
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Host": "www.example.com:8443"}
    on = ["x-forwarded-for", "x-forwarded-host"]
    _, _, _, host, host_header = seen(root, headers, headers=on)
    assert host == host_header == "www.example.com:8443"
    _, _, _, host, host_header = seen(root, headers)  # off by default
    assert host == host_header == "localhost"


def test_proto_and_host_lists_aligned_with_the_for_list(root: Path) -> None:
    headers = {
        "X-Forwarded-For": "203.0.113.7, 10.0.0.2",
        "X-Forwarded-Proto": "https, http",
        "X-Forwarded-Host": "shop.example, inner.local",
    }
    on = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
    _, _, scheme, host, _ = seen(root, headers, headers=on)
    assert (scheme, host) == ("https", "shop.example")


def test_misaligned_or_bad_proto_is_ignored(root: Path) -> None:
    # The proto is dropped, not the client: a client that sends a list of its own
    # (passed on by a proxy that appends) must not become the proxy's address.
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https, http, https"}
    client, _, scheme, _, _ = seen(root, headers)
    assert (client[0], scheme) == ("203.0.113.7", "http")
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Host": "bad_host"}
    client, _, _, host, _ = seen(root, headers, headers=["x-forwarded-for", "x-forwarded-host"])
    assert (client[0], host) == ("203.0.113.7", "localhost")
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "javascript"}
    assert seen(root, headers)[2] == "http"


def test_proto_alone(root: Path) -> None:
    client, _, scheme, _, _ = seen(root, {"X-Forwarded-Proto": "HTTPS"})
    assert (client, scheme) == (PROXY, "https")


# -- configuration -----------------------------------------------------------------------


def test_a_bad_proxy_address_fails_at_load(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"proxies\[1\].*did you mean '10.0.0.0/8'"):
        build_engine(config(root, proxies=["127.0.0.1", "10.0.0.1/8"]), modules=[Observe]).start()
    with pytest.raises(ConfigError, match="x-forwarded-port"):
        build_engine(config(root, headers=["x-forwarded-port"]), modules=[Observe]).start()


def test_the_section_is_locked_for_web_toml(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A web.toml that could trust every peer would let any client choose its
    # address: refused (500.19 below it, named in the log), unless [lock] allows it.
    (root / "sub").mkdir()
    (root / "sub" / "a.txt").write_text("a")
    (root / "sub" / "web.toml").write_text('[trusted_proxies]\nproxies = ["0.0.0.0/0"]\n')
    headers = {"X-Forwarded-For": "203.0.113.7"}
    with Client(build_engine(config(root), modules=[Observe]), client_addr=STRANGER) as client:
        response = client.get("/sub/a.txt", headers=headers)
        assert (response.status, response.context.response.substatus) == (500, 19)
        assert client.get("/a.txt", headers=headers).status == 200
    assert "trusted_proxies" in caplog.text
    opened = {**config(root), "lock": {"trusted_proxies": "allow"}}
    with Client(build_engine(opened, modules=[Observe]), client_addr=STRANGER) as client:
        assert client.get("/sub/a.txt", headers=headers).status == 200
    assert Observe.seen[-1][0] == ("203.0.113.7", 0)


def test_a_quoted_comma_in_the_clients_element_keeps_the_client(root: Path) -> None:
    client, _, _, host, _ = forwarded(root, 'for=203.0.113.7;host="a,b;c"')
    assert client[0] == "203.0.113.7"
    assert host == "localhost"  # "a,b;c" is no host: dropped alone


def test_quoted_separators_are_split_outside_quotes_from_the_right() -> None:
    assert split_outside_quotes('for=1.2.3.4;host="a,b", for=5.6.7.8', ",") == [
        'for=1.2.3.4;host="a,b"',
        " for=5.6.7.8",
    ]
    # An escaped quote inside a quoted string does not end it.
    assert split_outside_quotes(r'host="a\",b";for=1.2.3.4', ";") == [
        r'host="a\",b"',
        "for=1.2.3.4",
    ]
    # A header cut inside a quoted string: the pieces on the right are still whole.
    assert split_outside_quotes('b,c", for=9.9.9.9', ",")[-1] == " for=9.9.9.9"
