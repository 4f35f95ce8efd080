"""``[trusted_proxies]``: which peers may say who the client is, and how.

The section is compiled once per effective section object into a
:class:`Policy` (the proxies as a :class:`~colonnade.core.ipnet.RangeTable`,
the headers to read as flags), so the per-request work for a peer that is not a
trusted proxy is one address parse and one table lookup.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section
from colonnade.core.ipnet import RangeTable, parse_network

HeaderName = Literal["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]


class TrustedProxiesSection(Section, frozen=True, dict=True):
    """Trusted reverse proxies (no IIS counterpart: IIS 8's ``enableProxyMode`` on
    IP restrictions comes closest). When the connection comes from one of
    `proxies`, the client address, scheme and host are read from the proxy's
    `Forwarded` (RFC 7239) or `X-Forwarded-For` / `-Proto` / `-Host` headers;
    from any other peer those headers are ignored (a client can send them too).

    The `Forwarded` or `X-Forwarded-For` list is walked from the right (the
    entry the nearest proxy added) past every address that is itself a trusted
    proxy; the first one that is not is the client (all trusted: the left-most).
    Every module and application then sees that client: WSGI `REMOTE_ADDR`, the
    ASGI scope's `client` and `scheme`, the access log's `c-ip`, IP
    restrictions. The connection's own address stays in `request.peer`.

    The section is locked: a `web.toml` could otherwise make any peer trusted and
    so choose its own client address (open it with `[lock] trusted_proxies =
    "allow"`).
    """

    key = "trusted_proxies"
    locked = True

    proxies: list[str] = []
    """Addresses and networks of the proxies in front of this server: IPv4 or
    IPv6 addresses, CIDR networks (`10.0.0.0/8`, `fd00::/8`) or an IPv4 network
    with its mask (`192.168.0.0/255.255.0.0`), or `unix`: every peer of a unix
    socket binding (a proxy on this machine; the socket file's mode decides who
    can connect). Empty (the default): no peer is trusted and the headers are
    never read."""
    headers: list[HeaderName] = msgspec.field(
        default_factory=lambda: ["x-forwarded-for", "x-forwarded-proto"]
    )
    """Which headers to honour: `forwarded` (RFC 7239: `for`, `proto` and `host`
    together), `x-forwarded-for` (the client), `x-forwarded-proto` (the scheme:
    `http` or `https`), `x-forwarded-host` (the host: `request.host` and the
    `Host` header the application sees; the site that answers was chosen from
    the connection's own `Host` already). Name only headers your proxy sets or
    replaces: a header it passes through unchanged is the client's to forge.
    When a request carries `Forwarded` and `forwarded` is listed, the
    `X-Forwarded-*` headers are not read for it."""
    max_hops: Annotated[int, Meta(ge=1, le=64)] = 10
    """How many entries of the list are examined, from the right, at most: the
    client is never looked for further away than this many proxies."""
    max_header_length: Annotated[int, Meta(ge=64, le=65536)] = 4096
    """Bytes of a forwarding header that are read, from its right end (where the
    trusted proxies wrote): a longer header's left part is ignored."""

    def __post_init__(self) -> None:
        _ = self.policy  # a bad address fails when the configuration loads

    @cached_property
    def policy(self) -> Policy | None:
        """The compiled form (None when no proxy is configured: nothing to do)."""
        if not self.proxies:
            return None
        return Policy(self)


class Policy:
    """A section compiled for the per-request work (read-only)."""

    __slots__ = (
        "forwarded",
        "max_header_length",
        "max_hops",
        "proxies",
        "unix",
        "x_for",
        "x_host",
        "x_proto",
    )

    def __init__(self, section: TrustedProxiesSection) -> None:
        entries = []
        #: Peers of unix sockets are trusted (they have no address to look up).
        self.unix = False
        for i, text in enumerate(section.proxies):
            if text == "unix":
                self.unix = True
                continue
            try:
                entries.append((parse_network(text), True))
            except ValueError as exc:
                raise ValueError(f"proxies[{i}]: {exc}") from None
        self.proxies: RangeTable[bool] = RangeTable(entries)
        chosen = set(section.headers)
        self.forwarded = "forwarded" in chosen
        self.x_for = "x-forwarded-for" in chosen
        self.x_proto = "x-forwarded-proto" in chosen
        self.x_host = "x-forwarded-host" in chosen
        self.max_hops = section.max_hops
        self.max_header_length = section.max_header_length
