"""IP and domain restrictions through the real pipeline (in-process clients)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from colonnade.engine import Engine
from colonnade.errors import ConfigError
from colonnade.modules.ip_security.config import (
    IpSecuritySection,
    Rules,
    forward_confirmed_name,
)
from colonnade.testing import Client, build_engine


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a.txt", "open/a.txt", "open/deeper/a.txt", "closed/a.txt"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a")
    return tmp_path


def config(
    root: Path, locations: list[dict[str, Any]] | None = None, **settings: Any
) -> dict[str, Any]:
    return {
        "server": {
            "modules": ["security.request_filtering", "security.ip", "handler.static"],
        },
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "ip_security": settings,
        "locations": locations or [],
    }


def status(client: Client, target: str = "/a.txt") -> str:
    response = client.get(target)
    if response.aborted:
        return "aborted"
    return f"{response.status}.{response.context.response.substatus}"


def statuses(engine: Engine, addresses: list[str], target: str = "/a.txt") -> dict[str, str]:
    out = {}
    for address in addresses:
        with Client(engine, client_addr=(address, 5000)) as client:
            out[address] = status(client, target)
    return out


def test_nothing_configured_lets_everyone_in(root: Path) -> None:
    engine = build_engine(config(root))
    assert set(statuses(engine, ["127.0.0.1", "::1", "203.0.113.7"]).values()) == {"200.0"}


def test_the_most_specific_entry_decides(root: Path) -> None:
    settings = {
        "deny": ["10.0.0.0/8", "2001:db8::/32", "10.1.2.3"],
        "allow": ["10.1.0.0/16", "2001:db8:1::/48", "10.1.2.0/255.255.255.0"],
    }
    engine = build_engine(config(root, **settings))
    assert statuses(
        engine,
        [
            "10.9.9.9",
            "10.1.9.9",
            "10.1.2.9",
            "10.1.2.3",
            "2001:db8::1",
            "2001:db8:1::1",
            "::ffff:10.9.9.9",
            "192.0.2.1",
        ],
    ) == {
        "10.9.9.9": "403.503",
        "10.1.9.9": "200.0",
        "10.1.2.9": "200.0",
        "10.1.2.3": "403.503",
        "2001:db8::1": "403.503",
        "2001:db8:1::1": "200.0",
        "::ffff:10.9.9.9": "403.503",  # the IPv4 client of a dual-stack socket
        "192.0.2.1": "200.0",  # unlisted
    }


def test_the_same_network_in_both_lists_is_denied(root: Path) -> None:
    engine = build_engine(config(root, allow=["192.0.2.0/24"], deny=["192.0.2.0/24"]))
    assert statuses(engine, ["192.0.2.5"]) == {"192.0.2.5": "403.503"}


def test_allow_unlisted_false(root: Path) -> None:
    engine = build_engine(config(root, allow_unlisted=False, allow=["127.0.0.1", "::1"]))
    assert statuses(engine, ["127.0.0.1", "::1", "127.0.0.2", "203.0.113.7"]) == {
        "127.0.0.1": "200.0",
        "::1": "200.0",
        "127.0.0.2": "403.503",
        "203.0.113.7": "403.503",
    }


def test_a_client_without_an_address_counts_as_unlisted(root: Path) -> None:
    # A Unix socket peer, or anything else that is not an IP address.
    engine = build_engine(config(root, allow_unlisted=False, allow=["0.0.0.0/0", "::/0"]))
    assert statuses(engine, ["/run/sock"]) == {"/run/sock": "403.503"}
    engine = build_engine(config(root, deny=["0.0.0.0/0", "::/0"]))
    assert statuses(engine, ["/run/sock"]) == {"/run/sock": "200.0"}


@pytest.mark.parametrize(
    ("action", "expected"),
    [("Unauthorized", "401.503"), ("Forbidden", "403.503"), ("NotFound", "404.503")],
)
def test_deny_actions(root: Path, action: str, expected: str) -> None:
    engine = build_engine(config(root, deny=["203.0.113.0/24"], deny_action=action))
    with Client(engine, client_addr=("203.0.113.7", 5000)) as client:
        response = client.get("/a.txt")
        assert f"{response.status}.{response.context.response.substatus}" == expected
        assert b"not allowed" in response.body
        assert b"203.0.113" not in response.body  # the detail is for local clients only


def test_the_detail_names_the_entry_for_local_clients(root: Path) -> None:
    engine = build_engine(config(root, deny=["127.0.0.0/8"]))
    with Client(engine) as client:
        response = client.get("/a.txt")
    assert response.status == 403
    assert "ip_security.deny entry &#x27;127.0.0.0/8&#x27;" in response.text or (
        "ip_security.deny entry '127.0.0.0/8'" in response.text
    )


def test_abort_request_sends_nothing(root: Path) -> None:
    engine = build_engine(config(root, deny=["203.0.113.7"], deny_action="AbortRequest"))
    with Client(engine, client_addr=("203.0.113.7", 5000)) as client:
        response = client.get("/a.txt")
        assert response.aborted
        assert response.status == 0 and response.body == b""
        # What the access log sees.
        assert (response.context.response.status, response.context.response.substatus) == (
            403,
            503,
        )
    with Client(engine, client_addr=("203.0.113.8", 5000)) as client:
        assert client.get("/a.txt").status == 200


# -- levels: locations and web.toml --------------------------------------------------------


def test_locations_merge_with_add_remove_clear(root: Path) -> None:
    locations = [
        # an exception carved out of the server's deny: the most specific wins
        {"path": "/open", "ip_security": {"allow": {"add": ["10.1.2.3"]}}},
        # the server's entry removed below /open/deeper
        {"path": "/open/deeper", "ip_security": {"deny": {"remove": ["10.0.0.0/8"]}}},
        # everything cleared and replaced in /closed
        {
            "path": "/closed",
            "ip_security": {
                "deny": {"clear": True},
                "allow": ["192.0.2.0/24"],
                "allow_unlisted": False,
            },
        },
    ]
    engine = build_engine(config(root, locations, deny=["10.0.0.0/8"]))
    clients = ["10.1.2.3", "10.1.2.4", "192.0.2.1"]
    assert statuses(engine, clients, "/a.txt") == {
        "10.1.2.3": "403.503",
        "10.1.2.4": "403.503",
        "192.0.2.1": "200.0",
    }
    assert statuses(engine, clients, "/open/a.txt") == {
        "10.1.2.3": "200.0",
        "10.1.2.4": "403.503",
        "192.0.2.1": "200.0",
    }
    assert statuses(engine, clients, "/open/deeper/a.txt") == {
        "10.1.2.3": "200.0",
        "10.1.2.4": "200.0",
        "192.0.2.1": "200.0",
    }
    assert statuses(engine, clients, "/closed/a.txt") == {
        "10.1.2.3": "403.503",
        "10.1.2.4": "403.503",
        "192.0.2.1": "200.0",
    }


def test_web_toml_is_locked_unless_the_server_allows_it(root: Path) -> None:
    (root / "open" / "web.toml").write_text('[ip_security]\ndeny = { add = ["192.0.2.0/24"] }\n')
    locked = build_engine(config(root, deny=["10.0.0.0/8"]))
    assert statuses(locked, ["192.0.2.1"], "/open/a.txt") == {"192.0.2.1": "500.19"}
    opened = {**config(root, deny=["10.0.0.0/8"]), "lock": {"ip_security": "allow"}}
    engine = build_engine(opened)
    assert statuses(engine, ["192.0.2.1", "10.0.0.1", "198.51.100.1"], "/open/a.txt") == {
        "192.0.2.1": "403.503",
        "10.0.0.1": "403.503",  # the server's entry is still there
        "198.51.100.1": "200.0",
    }
    assert statuses(engine, ["192.0.2.1"], "/a.txt") == {"192.0.2.1": "200.0"}


def test_a_single_key_can_be_locked(root: Path) -> None:
    (root / "open" / "web.toml").write_text("[ip_security]\nallow_unlisted = true\n")
    cfg = {
        **config(root, allow_unlisted=False, allow=["127.0.0.1"]),
        "lock": {"ip_security": "allow", "ip_security.allow_unlisted": "deny"},
    }
    engine = build_engine(cfg)
    assert statuses(engine, ["192.0.2.1"], "/open/a.txt") == {"192.0.2.1": "500.19"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"deny": ["10.0.0.1/8"]}, r"deny\[0\].*did you mean '10.0.0.0/8'"),
        ({"allow": ["1.2.3.4", "1.2.3.4/40"]}, r"allow\[1\]"),
        ({"deny": ["*.example.com"]}, "needs enable_reverse_dns = true"),
        ({"deny": ["bad name!"]}, r"deny\[0\]"),
        ({"deny_action": "Teapot"}, "deny_action"),
        ({"dns_timeout": 0}, "dns_timeout"),
    ],
)
def test_bad_settings_fail_at_load(root: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_engine(config(root, **settings)).start()


# -- host names (reverse DNS) ------------------------------------------------------------


def rules_of(engine: Engine, path: str = "/a.txt") -> Rules:
    (runtime,) = engine.runtimes
    return runtime.app.sections_for(path).get(IpSecuritySection).rules


class Resolver:
    """A reverse lookup the test controls: address → name, counting calls."""

    def __init__(self, names: dict[str, str], gate: threading.Event | None = None) -> None:
        self.names = names
        self.calls: list[str] = []
        self.gate = gate
        self.threads: set[str] = set()

    def __call__(self, address: str) -> str | None:
        self.calls.append(address)
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(30)
        return self.names.get(address)


def dns_engine(root: Path, **settings: Any) -> Engine:
    return build_engine(config(root, enable_reverse_dns=True, **settings))


def test_host_name_entries(root: Path) -> None:
    engine = dns_engine(
        root,
        allow_unlisted=False,
        allow=["*.example.com", "exact.example.org", "10.0.0.0/8"],
        deny=["bad.example.com", "*.evil.example.com"],
    )
    names = {
        "192.0.2.1": "www.example.com",
        "192.0.2.2": "bad.example.com",
        "192.0.2.3": "x.evil.example.com",
        "192.0.2.4": "exact.example.org",
        "192.0.2.5": "other.example.org",
        "192.0.2.6": "example.com",  # "*.example.com" wants a name below it
        "10.0.0.7": "bad.example.com",  # an address entry decides before any name
    }
    resolver = Resolver(names)
    with Client(engine) as c:
        rules_of(engine).reverse_lookup = resolver
        got = {}
        for address in [*names, "192.0.2.99"]:
            c.client_addr = (address, 5000)
            got[address] = status(c)
    assert got == {
        "192.0.2.1": "200.0",
        "192.0.2.2": "403.504",
        "192.0.2.3": "403.504",
        "192.0.2.4": "200.0",
        "192.0.2.5": "403.503",  # unlisted
        "192.0.2.6": "403.503",
        "10.0.0.7": "200.0",
        "192.0.2.99": "403.503",  # no name at all
    }
    assert "10.0.0.7" not in resolver.calls
    assert all(name.startswith("colonnade-rdns") for name in resolver.threads)


def test_star_matches_any_confirmed_name(root: Path) -> None:
    engine = dns_engine(root, deny=["*"])
    resolver = Resolver({"192.0.2.1": "host.example"})
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = resolver
        assert status(c) == "403.504"
        c.client_addr = ("192.0.2.2", 1)
        assert status(c) == "200.0"  # no name: unlisted


def test_lookups_are_cached(root: Path) -> None:
    engine = dns_engine(root, deny=["*.evil.example"])
    resolver = Resolver({"192.0.2.1": "a.evil.example"})
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = resolver
        assert [status(c) for _ in range(5)] == ["403.504"] * 5
        c.client_addr = ("192.0.2.2", 1)
        assert [status(c) for _ in range(3)] == ["200.0"] * 3  # no name: cached too
    assert resolver.calls == ["192.0.2.1", "192.0.2.2"]


def test_the_cache_is_bounded_and_expires(root: Path) -> None:
    engine = dns_engine(root, deny=["*.evil.example"], dns_cache_size=2)
    resolver = Resolver({})
    with Client(engine) as c:
        rules = rules_of(engine)
        rules.reverse_lookup = resolver
        for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"):
            c.client_addr = (address, 1)
            status(c)
        assert resolver.calls == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"]
    engine = dns_engine(root, deny=["*.evil.example"], dns_cache_ttl=0)
    resolver = Resolver({})
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = resolver
        status(c)
        status(c)
    assert resolver.calls == ["192.0.2.1", "192.0.2.1"]  # ttl 0: nothing kept


def test_a_slow_lookup_is_bounded_and_shared(root: Path) -> None:
    engine = dns_engine(root, deny=["*.evil.example"], dns_timeout=0.2)
    gate = threading.Event()
    resolver = Resolver({"192.0.2.1": "a.evil.example"}, gate)
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules = rules_of(engine)
        rules.reverse_lookup = resolver

        async def three() -> list[int]:
            responses = await asyncio.gather(*(c.arequest("GET", "/a.txt") for _ in range(3)))
            return [r.status for r in responses]

        # No answer within dns_timeout: no name, so the deny entry does not match.
        assert c.loop.run_until_complete(three()) == [200, 200, 200]
        assert resolver.calls == ["192.0.2.1"]  # one lookup for the three requests
        gate.set()
        # The late answer is kept for the next requests.
        wait = c.loop.run_until_complete
        wait(_until(lambda: rules.cached_name("192.0.2.1") == (True, "a.evil.example")))
        assert status(c) == "403.504"
    assert resolver.calls == ["192.0.2.1"]


async def _until(check: Callable[[], bool]) -> None:
    from tests.support.wait import PATIENCE, wait_for_async

    await wait_for_async(check, PATIENCE, "the late lookup result cached")


def test_a_failing_lookup_counts_as_no_name(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = dns_engine(root, allow_unlisted=False, allow=["*.example.com"])

    def broken(address: str) -> str | None:
        raise RuntimeError("resolver exploded")

    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = broken
        assert status(c) == "403.503"
    assert "resolver exploded" in caplog.text


def test_forward_confirmation_refuses_a_spoofed_ptr() -> None:
    # The PTR of an attacker's own address claims a name; the name's real
    # addresses (the system resolver's, /etc/hosts here) do not include it.
    def spoofed(address: str) -> tuple[str, list[str], list[str]]:
        return "localhost", [], [address]

    if "127.0.0.1" not in _addresses("localhost"):
        pytest.skip("localhost does not resolve to 127.0.0.1 on this machine")
    assert forward_confirmed_name("127.0.0.1", reverse=spoofed) == "localhost"
    assert forward_confirmed_name("127.0.0.77", reverse=spoofed) is None
    assert forward_confirmed_name("192.0.2.1", reverse=spoofed) is None
    # An alias that does resolve back is accepted.

    def aliased(address: str) -> tuple[str, list[str], list[str]]:
        return "no-such-name.invalid", ["LOCALHOST."], [address]

    assert forward_confirmed_name("127.0.0.1", reverse=aliased) == "localhost"


def _addresses(name: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except OSError:
        return set()


def test_a_real_lookup_of_the_loopback_address(root: Path) -> None:
    try:
        name = socket.gethostbyaddr("127.0.0.1")[0]
    except OSError:
        pytest.skip("127.0.0.1 has no name on this machine (no /etc/hosts entry)")
    if name != "localhost":
        pytest.skip(f"127.0.0.1 is named {name!r} here, not localhost")
    engine = dns_engine(root, allow_unlisted=False, allow=["localhost"])
    with Client(engine, client_addr=("127.0.0.1", 1)) as c:
        assert status(c) == "200.0"
    engine = dns_engine(root, deny=["localhost"])
    with Client(engine, client_addr=("127.0.0.1", 1)) as c:
        assert status(c) == "403.504"
