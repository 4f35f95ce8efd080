"""``[ip_security]``: allow and deny by client address, network or host name.

The rules are read in order, the first match deciding (IIS's order). Compiled
once per effective section object into :class:`Rules`: the address rules as a
:class:`~colonnade.core.ipnet.RangeTable` (one ``bisect`` per request, however
many rules), the domain rules as dicts of exact names and of wildcard suffixes,
and the reverse-DNS cache.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from functools import cached_property
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section
from colonnade.core.ipnet import RangeTable, parse_address, parse_network

DenyAction = Literal["Unauthorized", "Forbidden", "NotFound", "AbortRequest"]

#: The status of each deny action (AbortRequest sends none; 403 is what the log shows).
DENY_STATUS: dict[str, int] = {
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "AbortRequest": 403,
}
#: IIS 8+ substatuses: the address is denied / the host name is denied.
ADDRESS_DENIED = 503
NAME_DENIED = 504

#: A host-name entry: ``name.example``, ``*.example`` (any name below it) or ``*``.
_DOMAIN = re.compile(
    r"\*|(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)

#: ``reverse_lookup(address)``: the host name of ``address`` that resolves back to
#: it, or None. Blocking: it runs on a thread, never on the event loop.
ReverseLookup = Callable[[str], "str | None"]


def forward_confirmed_name(
    address: str,
    reverse: Callable[[str], tuple[str, list[str], list[str]]] = socket.gethostbyaddr,
    forward: Callable[[str], list[str]] | None = None,
) -> str | None:
    """The name the PTR record of ``address`` gives, if that name resolves back to
    ``address`` (forward-confirmed reverse DNS); else None.

    Without the forward check, whoever controls the reverse zone of their own
    addresses (anyone with a block of them) could name them ``www.trusted.example``.
    ``reverse`` (``socket.gethostbyaddr``) and ``forward`` (name → addresses, by
    ``socket.getaddrinfo``) are the system resolver unless given.
    """
    try:
        primary, aliases, _ = reverse(address)
    except (OSError, UnicodeError):
        return None
    wanted = parse_address(address)
    for candidate in (primary, *aliases):
        name = candidate.rstrip(".").lower()
        try:
            found = (forward or _addresses_of)(name)
        except (OSError, UnicodeError):
            continue
        if any(parse_address(text) == wanted for text in found):
            return name
    return None


def _addresses_of(name: str) -> list[str]:
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


class IpRule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One ``ip_security.rules`` entry (IIS ``<add ipAddress | domainName allowed>``)."""

    address: str | None = None
    """An address, a CIDR network, or an IPv4 network with its subnet mask."""
    domain: str | None = None
    """A host name: `host.example.com`, `*.example.com` (any name below it) or `*`."""
    allowed: bool = False
    """True lets the client in, false (the default, as in IIS) refuses it."""

    def __post_init__(self) -> None:
        if (self.address is None) == (self.domain is None):
            raise ValueError("a rule has an address or a domain: one of the two")
        if self.address is not None:
            try:
                parse_network(self.address)
            except ValueError as exc:
                hint = (
                    " (a host name goes in domain)"
                    if _is_host_name(_host_name(self.address))
                    else ""
                )
                raise ValueError(f"address: {exc}{hint}") from None
        elif not _is_host_name(_host_name(self.domain or "")):
            raise ValueError(
                f"domain: {self.domain!r} is not a host name such as 'host.example.com', "
                "'*.example.com' or '*'"
            )

    def describe(self) -> str:
        """The rule as an administrator wrote it, for the detail page and the log."""
        if self.address is not None:
            return f"{{ address = {self.address!r}, allowed = {str(self.allowed).lower()} }}"
        return f"{{ domain = {self.domain!r}, allowed = {str(self.allowed).lower()} }}"


class Entry(NamedTuple):
    """A rule compiled: its decision and its place in the merged list."""

    allowed: bool
    order: int  # its index in the merged list
    by_name: bool  # a domain rule (substatus .504)
    detail: str


#: The index of "no rule": after every rule.
NO_RULE = sys.maxsize


class IpSecuritySection(Section, frozen=True, dict=True):
    """IP address and domain restrictions (IIS ``ipSecurity``), checked at
    BEGIN_REQUEST against the client address (the one `security.trusted_proxies`
    set, when a trusted proxy forwarded the request).

    The `rules` are read **top to bottom and the first one that matches
    decides**, as IIS (and nginx's `allow`/`deny`) read them; `allow_unlisted`
    decides when none does (also for a client without an IP address, such as a
    Unix socket peer). Put an exception before the wider rule it carves out of:
    `[{ address = "10.1.2.3", allowed = true }, { address = "10.0.0.0/8" }]`.
    Domain rules match only with `enable_reverse_dns`, and the client's name is
    looked up only when a domain rule comes before the first address rule that
    holds the client.

    Refused requests get the `deny_action`: 403.504 when a domain rule
    refused the client, 403.503 otherwise (an address rule, or unlisted),
    401.503/.504 or 404.503/.504 likewise (IIS 8's codes), or no answer at all
    (AbortRequest: the connection is closed; the access log shows 403.5xx).

    Per location and in `web.toml`, `rules = { add = [...] }` puts rules after
    the inherited ones (IIS's `<add>`: a parent's rules are read first),
    `prepend` before them, `remove = [{ address = "10.0.0.0/8" }]` (or
    `{ domain = ... }`) drops the inherited rule written so (IIS's `<remove>`),
    and a plain list replaces them all (IIS's `<clear/>`). The section is locked
    (as in IIS): open it for `web.toml` files with `[lock] ip_security = "allow"`.
    """

    key = "ip_security"
    locked = True

    allow_unlisted: bool = True
    """Whether a client that no rule matches gets in. With false, list every
    client that may, loopback (`127.0.0.1`, `::1`) included."""
    rules: list[IpRule] = []
    """The rules in order, the first match deciding: tables with `address` (an
    address, a CIDR network such as `10.0.0.0/8` or `2001:db8::/32`, or an IPv4
    network with a subnet mask such as `192.168.0.0/255.255.0.0`) or `domain` (a
    host name: `host.example.com`, `*.example.com` for any name below it, `*` for
    any name; needs `enable_reverse_dns`), and `allowed` (default false: the
    rule refuses). Example: `[{ address = "192.0.2.7", allowed = true },
    { address = "192.0.2.0/24" }]` refuses 192.0.2.0/24 but for 192.0.2.7."""
    deny_action: DenyAction = "Forbidden"
    """The answer to a refused client: `Unauthorized` (401; browsers then show a
    logon box), `Forbidden` (403, IIS's default), `NotFound` (404: the site does
    not admit it exists) or `AbortRequest` (the connection is closed without an
    answer)."""
    enable_reverse_dns: bool = False
    """Look up the client's host name (PTR, then forward-confirmed: the name must
    resolve back to the address) for the domain rules. Costly: each new
    address waits for DNS, up to `dns_timeout`."""
    dns_timeout: Annotated[float, Meta(gt=0, le=30)] = 2.0
    """Seconds one lookup may take; a lookup that takes longer counts as no name
    (no domain rule matches: the next rule in order, or `allow_unlisted`, decides)."""
    dns_cache_ttl: Annotated[float, Meta(ge=0, le=86400)] = 300.0
    """Seconds a looked-up name (or the lack of one) is remembered per address."""
    dns_cache_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    """Addresses whose names are remembered, at most (least recently used go)."""

    def __post_init__(self) -> None:
        if not self.enable_reverse_dns:
            for i, rule in enumerate(self.rules):
                if rule.domain is not None:
                    raise ValueError(
                        f"rules[{i}]: the domain rule {rule.domain!r} needs "
                        "enable_reverse_dns = true"
                    )
        _ = self.compiled  # anything else wrong fails when the configuration loads

    @cached_property
    def compiled(self) -> Rules:
        """The compiled form, built on first use and kept with this section."""
        return Rules(self)


class Rules:
    """A section compiled for the per-request check.

    The address rules go into one :class:`~colonnade.core.ipnet.RangeTable` whose
    ranges carry the first address rule in order that holds them; the domain
    rules into dicts by exact name and by wildcard suffix, each name keeping its
    first rule. For a client, the table gives the first address rule ``A`` (one
    ``bisect``); only if a domain rule comes before ``A`` (or ``A`` is none)
    is the client's name needed, and the first domain rule before ``A`` that
    matches it decides instead. That is exactly the first match of a scan of
    the whole list, with DNS left out for every client whose address rule comes
    first.

    Read-only after construction but for the reverse-DNS cache and the
    ``reverse_lookup`` seam: the function that finds a forward-confirmed name
    (:func:`forward_confirmed_name`), which a test may replace with its own.
    """

    def __init__(self, section: IpSecuritySection) -> None:
        networks = []
        exact: dict[str, Entry] = {}
        suffixes: dict[str, Entry] = {}
        first_name = NO_RULE
        for i, rule in enumerate(section.rules):
            entry = Entry(rule.allowed, i, rule.domain is not None, rule.describe())
            if rule.address is not None:
                networks.append((parse_network(rule.address), entry))
                continue
            first_name = min(first_name, i)
            name = _host_name(rule.domain or "")
            if name == "*" or name.startswith("*."):
                # "" for "*", ".example.com" for "*.example.com"
                suffixes.setdefault(name[1:], entry)
            else:
                exact.setdefault(name, entry)
        self.allow_unlisted = section.allow_unlisted
        self.table: RangeTable[Entry] = RangeTable(networks)
        #: The index of the first domain rule (NO_RULE: none).
        self.first_name = first_name
        self.exact = exact
        self.suffixes = suffixes
        self.status = DENY_STATUS[section.deny_action]
        self.abort = section.deny_action == "AbortRequest"
        self.dns_timeout = section.dns_timeout
        self.reverse_lookup: ReverseLookup = forward_confirmed_name
        self._ttl = section.dns_cache_ttl
        self._size = section.dns_cache_size
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, Future[str | None]] = {}
        self._lock = threading.Lock()

    def match_name(self, name: str | None, before: int = NO_RULE) -> Entry | None:
        """The first domain rule matching ``name`` (None: no name) listed before
        the rule at index ``before``, if any."""
        if name is None:
            return None
        best = self.exact.get(name)
        if best is not None:
            if best.order >= before:
                best = None
            else:
                before = best.order
        suffixes = self.suffixes
        dot = name.find(".", 1)  # a name never starts with a dot; a suffix does
        while True:
            # ".b.example" then ".example", and "" (the rule "*") last.
            found = suffixes.get(name[dot:] if dot >= 0 else "")
            if found is not None and found.order < before:
                best = found
                before = found.order
            if dot < 0:
                return best
            dot = name.find(".", dot + 1)

    # -- reverse DNS cache ---------------------------------------------------------

    def cached_name(self, address: str) -> tuple[bool, str | None]:
        """``(True, name)`` if the name of ``address`` is known and fresh."""
        with self._lock:
            found = self._cache.get(address)
            if found is None:
                return False, None
            expires, name = found
            if expires < time.monotonic():
                del self._cache[address]
                return False, None
            self._cache.move_to_end(address)
            return True, name

    def remember(self, address: str, name: str | None) -> None:
        """Keep the lookup's result for ``dns_cache_ttl`` seconds."""
        if self._ttl <= 0:
            return
        with self._lock:
            self._cache[address] = (time.monotonic() + self._ttl, name)
            self._cache.move_to_end(address)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)

    def pending(self) -> dict[str, Future[str | None]]:
        """Lookups under way, by address (one per address, shared by its requests)."""
        return self._pending


def _host_name(text: str) -> str:
    """A domain rule's name as compared: lower case, without a final dot."""
    return text.strip().rstrip(".").lower()


def _is_host_name(name: str) -> bool:
    # "10.0.0.1" fits the host-name pattern too; a last label of digits is an
    # address (a TLD is never all digits).
    return _DOMAIN.fullmatch(name) is not None and not name.rsplit(".", 1)[-1].isdigit()
