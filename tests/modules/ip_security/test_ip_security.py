"""IP and domain restrictions through the real pipeline (in-process clients)."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import threading
import tomllib
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


def deny(address: str) -> dict[str, Any]:
    return {"address": address}  # allowed = false is the default, as in IIS


def allow(address: str) -> dict[str, Any]:
    return {"address": address, "allowed": True}


def deny_name(domain: str) -> dict[str, Any]:
    return {"domain": domain, "allowed": False}


def allow_name(domain: str) -> dict[str, Any]:
    return {"domain": domain, "allowed": True}


def test_nothing_configured_lets_everyone_in(root: Path) -> None:
    engine = build_engine(config(root))
    assert set(statuses(engine, ["127.0.0.1", "::1", "203.0.113.7"]).values()) == {"200.0"}


def test_an_allow_before_a_wider_deny_makes_an_exception(root: Path) -> None:
    engine = build_engine(config(root, rules=[allow("10.1.2.3"), deny("10.0.0.0/8")]))
    assert statuses(engine, ["10.1.2.3", "10.1.2.4", "192.0.2.1"]) == {
        "10.1.2.3": "200.0",
        "10.1.2.4": "403.503",
        "192.0.2.1": "200.0",  # unlisted
    }


def test_a_wider_deny_before_an_allow_hides_it(root: Path) -> None:
    # First match, not longest prefix: the allow after the deny never decides.
    engine = build_engine(config(root, rules=[deny("10.0.0.0/8"), allow("10.1.2.3")]))
    assert statuses(engine, ["10.1.2.3", "10.1.2.4"]) == {
        "10.1.2.3": "403.503",
        "10.1.2.4": "403.503",
    }
    # And the reverse: a deny of one host after an allow of its network.
    engine = build_engine(
        config(root, allow_unlisted=False, rules=[allow("192.0.2.0/24"), deny("192.0.2.7")])
    )
    assert statuses(engine, ["192.0.2.7", "192.0.2.8"]) == {
        "192.0.2.7": "200.0",
        "192.0.2.8": "200.0",
    }


def test_the_first_matching_rule_decides_in_both_families(root: Path) -> None:
    rules = [
        deny("10.1.2.3"),
        allow("10.1.0.0/16"),
        deny("10.0.0.0/8"),
        allow("2001:db8:1::/48"),
        deny("2001:db8::/32"),
        allow("10.1.2.0/255.255.255.0"),  # after 10.1.0.0/16: never decides
    ]
    engine = build_engine(config(root, rules=rules))
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


def test_the_same_network_twice_the_first_one_decides(root: Path) -> None:
    engine = build_engine(config(root, rules=[allow("192.0.2.0/24"), deny("192.0.2.0/24")]))
    assert statuses(engine, ["192.0.2.5"]) == {"192.0.2.5": "200.0"}
    engine = build_engine(config(root, rules=[deny("192.0.2.0/24"), allow("192.0.2.0/24")]))
    assert statuses(engine, ["192.0.2.5"]) == {"192.0.2.5": "403.503"}


def test_allow_unlisted_false(root: Path) -> None:
    engine = build_engine(
        config(root, allow_unlisted=False, rules=[allow("127.0.0.1"), allow("::1")])
    )
    assert statuses(engine, ["127.0.0.1", "::1", "127.0.0.2", "203.0.113.7"]) == {
        "127.0.0.1": "200.0",
        "::1": "200.0",
        "127.0.0.2": "403.503",
        "203.0.113.7": "403.503",
    }


def test_a_client_without_an_address_counts_as_unlisted(root: Path) -> None:
    # A Unix socket peer, or anything else that is not an IP address.
    everyone = [allow("0.0.0.0/0"), allow("::/0")]
    engine = build_engine(config(root, allow_unlisted=False, rules=everyone))
    assert statuses(engine, ["/run/sock"]) == {"/run/sock": "403.503"}
    engine = build_engine(config(root, rules=[deny("0.0.0.0/0"), deny("::/0")]))
    assert statuses(engine, ["/run/sock"]) == {"/run/sock": "200.0"}


@pytest.mark.parametrize(
    ("action", "expected"),
    [("Unauthorized", "401.503"), ("Forbidden", "403.503"), ("NotFound", "404.503")],
)
def test_deny_actions(root: Path, action: str, expected: str) -> None:
    engine = build_engine(config(root, rules=[deny("203.0.113.0/24")], deny_action=action))
    with Client(engine, client_addr=("203.0.113.7", 5000)) as client:
        response = client.get("/a.txt")
        assert f"{response.status}.{response.context.response.substatus}" == expected
        assert b"not allowed" in response.body
        assert b"203.0.113" not in response.body  # the detail is for local clients only


def test_the_detail_names_the_rule_for_local_clients(root: Path) -> None:
    engine = build_engine(config(root, rules=[allow("10.0.0.0/8"), deny("127.0.0.0/8")]))
    with Client(engine) as client:
        response = client.get("/a.txt")
    assert response.status == 403
    text = response.text.replace("&#x27;", "'")
    assert "the ip_security rule { address = '127.0.0.0/8', allowed = false }" in text


def test_abort_request_sends_nothing(root: Path) -> None:
    engine = build_engine(config(root, rules=[deny("203.0.113.7")], deny_action="AbortRequest"))
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


def test_a_parents_rules_come_before_a_childs_added_ones(root: Path) -> None:
    # IIS's <add> in a child: after the inherited rules, so an exception added
    # below a parent's wider deny never decides; prepend puts it first.
    locations = [
        {"path": "/open", "ip_security": {"rules": {"add": [allow("10.1.2.3")]}}},
        {"path": "/closed", "ip_security": {"rules": {"prepend": [allow("10.1.2.3")]}}},
    ]
    engine = build_engine(config(root, locations, rules=[deny("10.0.0.0/8")]))
    clients = ["10.1.2.3", "10.1.2.4", "192.0.2.1"]
    assert statuses(engine, clients, "/open/a.txt") == {
        "10.1.2.3": "403.503",
        "10.1.2.4": "403.503",
        "192.0.2.1": "200.0",
    }
    assert statuses(engine, clients, "/closed/a.txt") == {
        "10.1.2.3": "200.0",
        "10.1.2.4": "403.503",
        "192.0.2.1": "200.0",
    }
    # A child's added deny, after the parent's allow of the same network's host.
    locations = [{"path": "/open", "ip_security": {"rules": {"add": [deny("192.0.2.0/24")]}}}]
    engine = build_engine(config(root, locations, rules=[allow("192.0.2.7")]))
    assert statuses(engine, ["192.0.2.7", "192.0.2.8"], "/open/a.txt") == {
        "192.0.2.7": "200.0",
        "192.0.2.8": "403.503",
    }


def test_three_levels_read_root_first(root: Path) -> None:
    locations = [
        {"path": "/open", "ip_security": {"rules": {"add": [allow("10.0.0.0/8")]}}},
        {
            "path": "/open/deeper",
            "ip_security": {"rules": {"add": [deny("10.1.0.0/16"), deny("192.0.2.0/24")]}},
        },
    ]
    engine = build_engine(config(root, locations, rules=[deny("10.9.0.0/16")]))
    clients = ["10.9.0.1", "10.1.0.1", "192.0.2.1"]
    assert statuses(engine, clients, "/open/deeper/a.txt") == {
        "10.9.0.1": "403.503",  # the server's rule, first
        "10.1.0.1": "200.0",  # /open's allow, before /open/deeper's deny
        "192.0.2.1": "403.503",
    }


def test_remove_and_clear(root: Path) -> None:
    locations = [
        # the server's rule removed below /open (by its address, as written)
        {"path": "/open", "ip_security": {"rules": {"remove": [{"address": "10.0.0.0/8"}]}}},
        # a plain list replaces the inherited rules (IIS's <clear/>, then <add>)
        {
            "path": "/closed",
            "ip_security": {"rules": [allow("192.0.2.0/24")], "allow_unlisted": False},
        },
        # the clear operation, then one rule
        {
            "path": "/open/deeper",
            "ip_security": {"rules": {"clear": True, "add": [deny("192.0.2.0/24")]}},
        },
    ]
    server_rules = [deny("10.0.0.0/8"), deny("198.51.100.0/24")]
    engine = build_engine(config(root, locations, rules=server_rules))
    clients = ["10.1.2.3", "198.51.100.1", "192.0.2.1"]
    assert statuses(engine, clients, "/a.txt") == {
        "10.1.2.3": "403.503",
        "198.51.100.1": "403.503",
        "192.0.2.1": "200.0",
    }
    assert statuses(engine, clients, "/open/a.txt") == {
        "10.1.2.3": "200.0",
        "198.51.100.1": "403.503",  # not removed
        "192.0.2.1": "200.0",
    }
    assert statuses(engine, clients, "/closed/a.txt") == {
        "10.1.2.3": "403.503",  # unlisted now
        "198.51.100.1": "403.503",
        "192.0.2.1": "200.0",
    }
    assert statuses(engine, clients, "/open/deeper/a.txt") == {
        "10.1.2.3": "200.0",
        "198.51.100.1": "200.0",
        "192.0.2.1": "403.503",
    }


def test_a_child_adding_the_same_address_replaces_the_parents_rule(root: Path) -> None:
    # One rule per address (IIS refuses a duplicate <add>): the child's takes the
    # parent's place at the end of the list.
    locations = [{"path": "/open", "ip_security": {"rules": {"add": [allow("10.1.2.3")]}}}]
    engine = build_engine(config(root, locations, rules=[deny("10.1.2.3")]))
    assert statuses(engine, ["10.1.2.3"], "/a.txt") == {"10.1.2.3": "403.503"}
    assert statuses(engine, ["10.1.2.3"], "/open/a.txt") == {"10.1.2.3": "200.0"}


def test_web_toml_is_locked_unless_the_server_allows_it(root: Path) -> None:
    (root / "open" / "web.toml").write_text(
        '[ip_security]\nrules = { add = [{ address = "192.0.2.0/24" }] }\n'
    )
    locked = build_engine(config(root, rules=[deny("10.0.0.0/8")]))
    assert statuses(locked, ["192.0.2.1"], "/open/a.txt") == {"192.0.2.1": "500.19"}
    opened = {**config(root, rules=[deny("10.0.0.0/8")]), "lock": {"ip_security": "allow"}}
    engine = build_engine(opened)
    assert statuses(engine, ["192.0.2.1", "10.0.0.1", "198.51.100.1"], "/open/a.txt") == {
        "192.0.2.1": "403.503",
        "10.0.0.1": "403.503",  # the server's rule is still there
        "198.51.100.1": "200.0",
    }
    assert statuses(engine, ["192.0.2.1"], "/a.txt") == {"192.0.2.1": "200.0"}


def test_web_toml_rules_in_order_with_a_domain_rule(root: Path) -> None:
    (root / "open" / "web.toml").write_text(
        "[ip_security]\n"
        "enable_reverse_dns = true\n"
        "rules = [\n"
        '  { address = "192.0.2.7", allowed = true },\n'
        '  { domain = "*.evil.example" },\n'
        '  { address = "192.0.2.0/24", allowed = true },\n'
        "]\n"
    )
    engine = build_engine({**config(root), "lock": {"ip_security": "allow"}})
    resolver = Resolver({"192.0.2.7": "a.evil.example", "192.0.2.8": "b.evil.example"})
    with Client(engine) as c:
        rules_of(engine, "/open/a.txt").reverse_lookup = resolver
        got = {}
        for address in ("192.0.2.7", "192.0.2.8", "192.0.2.9"):
            c.client_addr = (address, 1)
            got[address] = status(c, "/open/a.txt")
    assert got == {"192.0.2.7": "200.0", "192.0.2.8": "403.504", "192.0.2.9": "200.0"}
    assert resolver.calls == ["192.0.2.8", "192.0.2.9"]  # .7 matched a rule before the name


def test_a_single_key_can_be_locked(root: Path) -> None:
    (root / "open" / "web.toml").write_text("[ip_security]\nallow_unlisted = true\n")
    cfg = {
        **config(root, allow_unlisted=False, rules=[allow("127.0.0.1")]),
        "lock": {"ip_security": "allow", "ip_security.allow_unlisted": "deny"},
    }
    engine = build_engine(cfg)
    assert statuses(engine, ["192.0.2.1"], "/open/a.txt") == {"192.0.2.1": "500.19"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rules": [deny("10.0.0.1/8")]}, r"rules\[0\].*did you mean '10.0.0.0/8'"),
        ({"rules": [deny("1.2.3.4"), deny("1.2.3.4/40")]}, r"rules\[1\]"),
        ({"rules": [deny("www.example.com")]}, r"rules\[0\].*a host name goes in domain"),
        ({"rules": [deny_name("*.example.com")]}, r"rules\[0\].*needs enable_reverse_dns"),
        (
            {"rules": [deny_name("bad name!")], "enable_reverse_dns": True},
            r"rules\[0\].*not a host name",
        ),
        (
            {"rules": [{"address": "10.0.0.0/8", "domain": "x.example"}]},
            r"rules\[0\].*an address or a domain: one of the two",
        ),
        ({"rules": [{"allowed": True}]}, r"rules\[0\].*an address or a domain: one of the two"),
        ({"rules": [{"address": "10.0.0.0/8", "allow": True}]}, r"rules\[0\]\.allow"),
        ({"deny": ["10.0.0.0/8"]}, r"ip_security\.deny"),  # the old lists are gone
        ({"rules": ["10.0.0.0/8"]}, r"rules\[0\]"),
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
    return runtime.app.sections_for(path).get(IpSecuritySection).compiled


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


def test_domain_rules(root: Path) -> None:
    engine = dns_engine(
        root,
        allow_unlisted=False,
        rules=[
            allow("10.0.0.0/8"),
            deny_name("bad.example.com"),
            deny_name("*.evil.example.com"),
            allow_name("*.example.com"),
            allow_name("exact.example.org"),
        ],
    )
    names = {
        "192.0.2.1": "www.example.com",
        "192.0.2.2": "bad.example.com",
        "192.0.2.3": "x.evil.example.com",
        "192.0.2.4": "exact.example.org",
        "192.0.2.5": "other.example.org",
        "192.0.2.6": "example.com",  # "*.example.com" wants a name below it
        "10.0.0.7": "bad.example.com",  # an address rule listed first decides
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


def test_domain_rules_take_their_turn_in_the_order(root: Path) -> None:
    # address, name, address, name: each client meets the first rule that holds
    # it, and its name is looked up only when a domain rule comes before the
    # first address rule holding it.
    engine = dns_engine(
        root,
        rules=[
            allow("192.0.2.1"),
            deny_name("*.evil.example"),
            allow("192.0.2.0/28"),
            allow_name("good.example"),
            deny("192.0.2.0/24"),
        ],
    )
    names = {
        "192.0.2.1": "a.evil.example",  # allowed by the first rule, no lookup
        "192.0.2.2": "b.evil.example",  # the name rule before 192.0.2.0/28
        "192.0.2.3": "good.example",  # allowed by 192.0.2.0/28, before its name rule
        "192.0.2.100": "good.example",  # its name rule before 192.0.2.0/24
        "192.0.2.101": "c.evil.example",
        "192.0.2.102": "other.example",  # no name rule: 192.0.2.0/24 refuses
        "198.51.100.1": "x.evil.example",  # no address rule: names, then unlisted
        "198.51.100.2": "other.example",
    }
    resolver = Resolver(names)
    with Client(engine) as c:
        rules_of(engine).reverse_lookup = resolver
        got = {}
        for address in names:
            c.client_addr = (address, 5000)
            got[address] = status(c)
    assert got == {
        "192.0.2.1": "200.0",
        "192.0.2.2": "403.504",
        "192.0.2.3": "200.0",
        "192.0.2.100": "200.0",
        "192.0.2.101": "403.504",
        "192.0.2.102": "403.503",
        "198.51.100.1": "403.504",
        "198.51.100.2": "200.0",
    }
    assert "192.0.2.1" not in resolver.calls
    assert set(resolver.calls) == set(names) - {"192.0.2.1"}


_DOMAINS = ["*", "*.a.example", "*.b.a.example", "x.a.example", "y.b.a.example", "z.example"]
_NAMES = [None, "x.a.example", "y.b.a.example", "q.b.a.example", "z.example", "a.example"]


def _random_rules(rng: random.Random) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for _ in range(rng.choice([1, 3, 8, 20])):
        allowed = rng.random() < 0.5
        if rng.random() < 0.3:
            rules.append({"domain": rng.choice(_DOMAINS), "allowed": allowed})
        elif rng.random() < 0.15:
            prefix = rng.randint(120, 128)
            net = ipaddress.ip_network((0x20010DB8 << 96 | rng.getrandbits(8), prefix), False)
            rules.append({"address": str(net), "allowed": allowed})
        else:
            # Networks in 10.0.0.0/24 and around it: nested, equal and disjoint.
            prefix = rng.choice([16, 22, 24, 25, 26, 28, 30, 31, 32, 32])
            net = ipaddress.ip_network((0x0A000000 | rng.getrandbits(10), prefix), False)
            rules.append({"address": str(net), "allowed": allowed})
    return rules


def _scan(
    rules: list[dict[str, Any]], address: str, name: str | None, unlisted: bool
) -> tuple[str, bool]:
    """The answer of reading ``rules`` top to bottom, and whether the name was needed."""
    client = ipaddress.ip_address(address)
    needed = False
    for rule in rules:
        if "address" in rule:
            hit = client in ipaddress.ip_network(rule["address"])
        else:
            needed = True
            domain = rule["domain"]
            if name is None:
                hit = False
            elif domain == "*":
                hit = True
            elif domain.startswith("*."):
                hit = name.endswith(domain[1:])
            else:
                hit = name == domain
        if hit:
            if rule["allowed"]:
                return "200.0", needed
            return ("403.503" if "address" in rule else "403.504"), needed
    return ("200.0" if unlisted else "403.503"), needed


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_a_first_match_scan(root: Path, seed: int) -> None:
    # Random ordered lists of address and domain rules, through the pipeline:
    # every client gets what a scan of the list top to bottom gives, and its
    # name is looked up exactly when a domain rule comes before the first
    # address rule that holds it.
    rng = random.Random(seed)
    for _ in range(8):
        rules = _random_rules(rng)
        unlisted = rng.random() < 0.5
        engine = dns_engine(root, rules=rules, allow_unlisted=unlisted)
        clients = {str(ipaddress.IPv4Address(0x0A000000 | rng.getrandbits(10))): None}
        for rule in rules:  # the edges of every network, and just past them
            if "address" in rule:
                net = ipaddress.ip_network(rule["address"])
                for number in (-1, 0, net.num_addresses - 1, net.num_addresses):
                    clients[str(net.network_address + number)] = None
        names = {address: rng.choice(_NAMES) for address in clients}
        resolver = Resolver({a: n for a, n in names.items() if n is not None})
        expected = {}
        needed = set()
        for address, name in names.items():
            expected[address], lookup = _scan(rules, address, name, unlisted)
            if lookup:
                needed.add(address)
        with Client(engine) as c:
            rules_of(engine).reverse_lookup = resolver
            got = {}
            for address in names:
                c.client_addr = (address, 1)
                got[address] = status(c)
        assert got == expected, rules
        assert set(resolver.calls) == needed, rules


def test_no_lookup_when_every_address_rule_comes_first(root: Path) -> None:
    engine = dns_engine(root, rules=[deny("0.0.0.0/0"), deny("::/0"), allow_name("*")])
    resolver = Resolver({"192.0.2.1": "host.example"})
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = resolver
        assert status(c) == "403.503"
        c.client_addr = ("2001:db8::1", 1)
        assert status(c) == "403.503"
    assert resolver.calls == []


def test_star_matches_any_confirmed_name(root: Path) -> None:
    engine = dns_engine(root, rules=[deny_name("*")])
    resolver = Resolver({"192.0.2.1": "host.example"})
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = resolver
        assert status(c) == "403.504"
        c.client_addr = ("192.0.2.2", 1)
        assert status(c) == "200.0"  # no name: unlisted


def test_lookups_are_cached(root: Path) -> None:
    engine = dns_engine(root, rules=[deny_name("*.evil.example")])
    resolver = Resolver({"192.0.2.1": "a.evil.example"})
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = resolver
        assert [status(c) for _ in range(5)] == ["403.504"] * 5
        c.client_addr = ("192.0.2.2", 1)
        assert [status(c) for _ in range(3)] == ["200.0"] * 3  # no name: cached too
    assert resolver.calls == ["192.0.2.1", "192.0.2.2"]


def test_the_cache_is_bounded_and_expires(root: Path) -> None:
    engine = dns_engine(root, rules=[deny_name("*.evil.example")], dns_cache_size=2)
    resolver = Resolver({})
    with Client(engine) as c:
        rules = rules_of(engine)
        rules.reverse_lookup = resolver
        for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"):
            c.client_addr = (address, 1)
            status(c)
        assert resolver.calls == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"]
    engine = dns_engine(root, rules=[deny_name("*.evil.example")], dns_cache_ttl=0)
    resolver = Resolver({})
    with Client(engine, client_addr=("192.0.2.1", 1)) as c:
        rules_of(engine).reverse_lookup = resolver
        status(c)
        status(c)
    assert resolver.calls == ["192.0.2.1", "192.0.2.1"]  # ttl 0: nothing kept


def test_a_slow_lookup_is_bounded_and_shared(root: Path) -> None:
    engine = dns_engine(root, rules=[deny_name("*.evil.example")], dns_timeout=0.2)
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
    engine = dns_engine(root, allow_unlisted=False, rules=[allow_name("*.example.com")])

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
    engine = dns_engine(root, allow_unlisted=False, rules=[allow_name("localhost")])
    with Client(engine, client_addr=("127.0.0.1", 1)) as c:
        assert status(c) == "200.0"
    engine = dns_engine(root, rules=[deny_name("localhost")])
    with Client(engine, client_addr=("127.0.0.1", 1)) as c:
        assert status(c) == "403.504"


def test_the_recipe_in_the_docs(root: Path) -> None:
    # The admin-area recipe of docs/security.md, as written there.
    text = (Path(__file__).parents[3] / "docs" / "security.md").read_text()
    recipe = text[text.index("an admin area for the office only") :]
    recipe = recipe[recipe.index("```toml") + len("```toml") : recipe.index("```\n")]
    cfg = tomllib.loads(recipe)
    cfg["server"]["modules"].remove("log.http")
    cfg["sites"] = config(root)["sites"]
    for name in ("admin", "admin/health"):
        (root / name).mkdir(parents=True)
        (root / name / "a.txt").write_text("a")
    engine = build_engine(cfg)
    clients = ["192.0.2.1", "192.0.2.66", "203.0.113.5", "198.51.100.1", "127.0.0.1"]
    assert statuses(engine, clients, "/a.txt") == {
        "192.0.2.1": "200.0",
        "192.0.2.66": "200.0",
        "203.0.113.5": "403.503",
        "198.51.100.1": "200.0",
        "127.0.0.1": "200.0",
    }
    assert statuses(engine, clients, "/admin/a.txt") == {
        "192.0.2.1": "200.0",
        "192.0.2.66": "200.0",
        "203.0.113.5": "403.503",
        "198.51.100.1": "403.503",
        "127.0.0.1": "200.0",
    }
    assert statuses(engine, clients, "/admin/health/a.txt") == {
        "192.0.2.1": "200.0",
        "192.0.2.66": "403.503",
        "203.0.113.5": "403.503",
        "198.51.100.1": "403.503",
        "127.0.0.1": "200.0",
    }


def test_remove_a_domain_rule(root: Path) -> None:
    locations = [
        {"path": "/open", "ip_security": {"rules": {"remove": [{"domain": "*.evil.example"}]}}}
    ]
    rules = [deny_name("*.evil.example"), deny_name("*.other.example")]
    engine = build_engine(config(root, locations, enable_reverse_dns=True, rules=rules))
    names = {"192.0.2.1": "a.evil.example", "192.0.2.2": "a.other.example"}
    got = {}
    with Client(engine) as c:
        for path in ("/a.txt", "/open/a.txt"):
            rules_of(engine, path).reverse_lookup = Resolver(names)
            for address in names:
                c.client_addr = (address, 1)
                got[path, address] = status(c, path)
    assert got == {
        ("/a.txt", "192.0.2.1"): "403.504",
        ("/a.txt", "192.0.2.2"): "403.504",
        ("/open/a.txt", "192.0.2.1"): "200.0",
        ("/open/a.txt", "192.0.2.2"): "403.504",
    }
