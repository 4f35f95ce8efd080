"""``[ip_security]``: allow and deny by client address, network or host name.

Compiled once per effective section object into :class:`Rules`: the address
entries as a :class:`~colonnade.core.ipnet.RangeTable` (one ``bisect`` per
request, however many entries), the host-name entries as a dict of exact names
and a list of wildcard suffixes, and the reverse-DNS cache.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from functools import cached_property
from typing import Annotated, Literal, NamedTuple

from msgspec import Meta

from colonnade.config.sections import Section
from colonnade.core.ipnet import Address, RangeTable, parse_address, parse_network

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


class Entry(NamedTuple):
    """One allow or deny entry as configured (for the log and the detail page)."""

    allowed: bool
    text: str
    key: str  # "allow" or "deny"


class IpSecuritySection(Section, frozen=True, dict=True):
    """IP address and domain restrictions (IIS ``ipSecurity``), checked at
    BEGIN_REQUEST against the client address (the one `security.trusted_proxies`
    set, when a trusted proxy forwarded the request).

    - An address entry that holds the client decides: the most specific one
      (longest prefix) when several do; an address in both lists at the same
      prefix is denied. IIS instead reads its list top to bottom and takes the
      first match: here the order of entries and of configuration levels does
      not matter, so a location or `web.toml` can carve an exception out of a
      network the server denies (or allows).
    - Host-name entries are read only when no address entry holds the client,
      and only with `enable_reverse_dns`: the exact name first, then the
      longest matching `*.` suffix, then `*`.
    - Nothing matched: `allow_unlisted` decides (also for a client without an
      IP address, such as a Unix socket peer).

    Refused requests get the `deny_action`: 403.504 when a host-name entry
    refused the client, 403.503 otherwise (an address entry, or unlisted),
    401.503/.504 or 404.503/.504 likewise (IIS 8's codes), or no answer at all
    (AbortRequest: the connection is closed; the access log shows 403.5xx).
    Per location and in `web.toml`, `allow` and `deny` take the collection
    operations (`deny = { add = ["192.0.2.7"] }`, `remove`, `clear`); a plain
    list replaces the parent's. The section is locked (as in IIS): open it for
    `web.toml` files with `[lock] ip_security = "allow"`.
    """

    key = "ip_security"
    locked = True

    allow_unlisted: bool = True
    """Whether a client that no entry matches gets in. With false, list every
    client that may, loopback (`127.0.0.1`, `::1`) included."""
    allow: list[str] = []
    """Clients let in: addresses, CIDR networks (`10.0.0.0/8`, `2001:db8::/32`),
    IPv4 networks with a subnet mask (`192.168.0.0/255.255.0.0`), or host names
    (`host.example.com`, `*.example.com`, `*`; need `enable_reverse_dns`)."""
    deny: list[str] = []
    """Clients refused, in the same forms as `allow`."""
    deny_action: DenyAction = "Forbidden"
    """The answer to a refused client: `Unauthorized` (401; browsers then show a
    logon box), `Forbidden` (403, IIS's default), `NotFound` (404: the site does
    not admit it exists) or `AbortRequest` (the connection is closed without an
    answer)."""
    enable_reverse_dns: bool = False
    """Look up the client's host name (PTR, then forward-confirmed: the name must
    resolve back to the address) for the host-name entries. Costly: each new
    address waits for DNS, up to `dns_timeout`."""
    dns_timeout: Annotated[float, Meta(gt=0, le=30)] = 2.0
    """Seconds one lookup may take; a lookup that takes longer counts as no name
    (so a host-name `deny` lets the client in, a host-name `allow` does not)."""
    dns_cache_ttl: Annotated[float, Meta(ge=0, le=86400)] = 300.0
    """Seconds a looked-up name (or the lack of one) is remembered per address."""
    dns_cache_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    """Addresses whose names are remembered, at most (least recently used go)."""

    def __post_init__(self) -> None:
        _ = self.rules  # a bad entry fails when the configuration loads

    @cached_property
    def rules(self) -> Rules:
        """The compiled form, built on first use and kept with this section."""
        return Rules(self)


class Rules:
    """A section compiled for the per-request check.

    Read-only after construction but for the reverse-DNS cache and the
    ``reverse_lookup`` seam: the function that finds a forward-confirmed name
    (:func:`forward_confirmed_name`), which a test may replace with its own.
    """

    def __init__(self, section: IpSecuritySection) -> None:
        networks = []
        exact: dict[str, Entry] = {}
        suffixes: dict[str, Entry] = {}
        # Deny after allow: of two equal networks or names, the later one wins.
        for key, items, allowed in (("allow", section.allow, True), ("deny", section.deny, False)):
            for i, text in enumerate(items):
                entry = Entry(allowed, text, key)
                name = text.strip().rstrip(".").lower()
                if _DOMAIN.fullmatch(name) and not _looks_numeric(name):
                    if not section.enable_reverse_dns:
                        raise ValueError(
                            f"{key}[{i}]: the host name {text!r} needs enable_reverse_dns = true"
                        )
                    if name == "*" or name.startswith("*."):
                        suffixes[name[1:]] = entry  # "" for "*", ".example.com" otherwise
                    else:
                        exact[name] = entry
                    continue
                try:
                    networks.append((parse_network(text), entry))
                except ValueError as exc:
                    raise ValueError(f"{key}[{i}]: {exc} (or a host name)") from None
        self.allow_unlisted = section.allow_unlisted
        self.networks: RangeTable[Entry] = RangeTable(networks)
        self.exact = exact
        #: Wildcard suffixes, longest first: the most specific match is found first.
        self.suffixes = sorted(suffixes.items(), key=lambda item: -len(item[0]))
        self.names = bool(exact or suffixes)
        self.status = DENY_STATUS[section.deny_action]
        self.abort = section.deny_action == "AbortRequest"
        self.dns_timeout = section.dns_timeout
        self.reverse_lookup: ReverseLookup = forward_confirmed_name
        self._ttl = section.dns_cache_ttl
        self._size = section.dns_cache_size
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, Future[str | None]] = {}
        self._lock = threading.Lock()

    def match_address(self, address: Address) -> Entry | None:
        """The address entry that decides for ``address``, if any."""
        return self.networks.get(address)

    def match_name(self, name: str | None) -> Entry | None:
        """The host-name entry that decides for ``name`` (None: no name), if any."""
        if name is None:
            return None
        found = self.exact.get(name)
        if found is not None:
            return found
        for suffix, entry in self.suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return entry
        return None

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


def _looks_numeric(name: str) -> bool:
    # "10.0.0.1" fits the host-name pattern too; a last label of digits is an
    # address (a TLD is never all digits).
    return name.rsplit(".", 1)[-1].isdigit()
