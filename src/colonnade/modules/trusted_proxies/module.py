"""Trusted proxies: the client a reverse proxy forwards for, seen by every module.

The hook runs at BEGIN_REQUEST with priority FIRST, and the module ``leads``
(see :class:`~colonnade.core.module.Module`): it runs before every other module
whatever the configuration order, so request filtering, IP restrictions, the
access log, WSGI ``REMOTE_ADDR`` and the ASGI scope all read the address it sets.

Only the part of a header that trusted proxies wrote is ever parsed: the walk
goes from the right end (the entry the nearest proxy appended) and stops at the
first address that is not a trusted proxy, so whatever a client put further
left (garbage, a forged address, a very long list) is never looked at. An entry
the walk has to read and cannot (``unknown``, an obfuscated name, a typing
error in a proxy's configuration) makes the header ignored: the client stays the
peer, and the reason is logged once per worker at debug level.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from colonnade.core.context import Context
from colonnade.core.httputil import TCHARS
from colonnade.core.ipnet import Address, parse_address
from colonnade.core.module import CONTINUE, Module, Outcome, Priority, hook
from colonnade.core.request import Request
from colonnade.core.stages import Stage
from colonnade.modules.trusted_proxies.config import Policy, TrustedProxiesSection

log = logging.getLogger("colonnade.security")

_TOKEN = "[" + re.escape(TCHARS.decode("ascii")) + "]+"
#: One ``name=value`` of a Forwarded element (RFC 7239 section 4).
_PAIR = re.compile(rf'\s*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")\s*')
_ESCAPE = re.compile(r"\\(.)")
#: A node's port (RFC 7239 section 6): digits; obfuscated ports are not used.
_PORT = re.compile(r"[0-9]{1,5}")
#: A forwarded host: a name, an IPv4 address or a bracketed IPv6 one, and a port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)
_SCHEMES = {"http": "http", "https": "https"}

Node = tuple[Address, int]
Element = dict[str, str]


class MalformedHeaderError(ValueError):
    """A forwarding header the walk cannot use (the reason is the message)."""


def header_elements(request: Request, name: bytes, limit: int) -> tuple[list[str], bool]:
    """The comma-separated elements of header ``name`` (all its field lines), in
    order, read from the last ``limit`` bytes only; and whether it was cut."""
    values = request.header_values(name)
    if not values:
        return [], False
    joined = values[0] if len(values) == 1 else b",".join(values)
    if b"," not in joined and len(joined) <= limit:  # one proxy, one entry: the usual
        text = joined.decode("latin-1").strip(" \t")
        return ([text] if text else []), False
    cut = len(joined) > limit
    if cut:
        joined = joined[-limit:]
    text = joined.decode("latin-1")
    # A quoted string (Forwarded's host="...") may hold commas: split outside quotes.
    parts = split_outside_quotes(text, ",") if '"' in text else text.split(",")
    if cut:
        parts = parts[1:]  # the first piece may have been cut in half
    # RFC 9110 lists may hold empty elements; they name no hop.
    return [p for p in (part.strip(" \t") for part in parts) if p], cut


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` that is not inside a quoted string (RFC 9110
    5.6.4), scanned from the right end: the end of a header is whole, its start may
    have been cut inside a quoted string, and only the right-most pieces are read."""
    pieces: list[str] = []
    end = len(text)
    quoted = False
    for i in range(len(text) - 1, -1, -1):
        char = text[i]
        if char == '"':
            slashes = 0
            while i - slashes > 0 and text[i - slashes - 1] == "\\":
                slashes += 1
            if slashes % 2 == 0:  # not a quoted-pair's escaped quote
                quoted = not quoted
        elif char == sep and not quoted:
            pieces.append(text[i + 1 : end])
            end = i
    pieces.append(text[:end])
    pieces.reverse()
    return pieces


def parse_node(text: str) -> Node:
    """An address with an optional port, as ``for=`` and ``X-Forwarded-For`` give
    it: ``192.0.2.1``, ``192.0.2.1:4711``, ``[2001:db8::1]:4711`` or a bare IPv6
    address. ``unknown`` and obfuscated names (``_hidden``) are :class:`MalformedHeaderError`:
    no address to decide by."""
    host, port = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise MalformedHeaderError(f"unbalanced brackets in {text[:64]!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise MalformedHeaderError(f"junk after the address in {text[:64]!r}")
            port = rest[1:]
    elif text.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has several)
        host, _, port = text.partition(":")
    address = parse_address(host)
    if address is None:
        raise MalformedHeaderError(f"not an IP address: {text[:64]!r}")
    number = 0
    if port:
        if _PORT.fullmatch(port) is None or int(port) > 65535:
            raise MalformedHeaderError(f"not a port: {text[:64]!r}")
        number = int(port)
    return address, number


def parse_forwarded_element(text: str) -> Element:
    """The parameters of one ``Forwarded`` element, names in lower case."""
    params: Element = {}
    for pair in split_outside_quotes(text, ";") if '"' in text else text.split(";"):
        match = _PAIR.fullmatch(pair)
        if match is None:
            raise MalformedHeaderError(f"not a name=value pair: {pair[:64]!r}")
        name = match.group(1).lower()
        if name in params:
            raise MalformedHeaderError(f"{name}= given twice in one element")
        value = match.group(2)
        if value.startswith('"'):
            value = _ESCAPE.sub(r"\1", value[1:-1])
        params[name] = value
    return params


class TrustedProxies(Module):
    """``security.trusted_proxies``: take the client from a trusted proxy's headers."""

    id = "security.trusted_proxies"
    section = TrustedProxiesSection
    leads = True

    def __init__(self) -> None:
        self._logged: set[str] = set()

    @hook(Stage.BEGIN_REQUEST, priority=Priority.FIRST)
    def begin_request(self, ctx: Context) -> Outcome:
        """Replace the request's client, scheme and host when a trusted proxy sent it."""
        policy = ctx.sections.get(TrustedProxiesSection).policy
        if policy is None:
            return CONTINUE
        request = ctx.request
        peer = request.peer
        if peer is None:  # a unix socket's peer
            if not policy.unix:
                return CONTINUE
        else:
            address = parse_address(peer[0])
            if address is None or address not in policy.proxies:
                return CONTINUE  # not from a proxy we trust: its headers are the client's
        try:
            if policy.forwarded and request.header(b"forwarded") is not None:
                self._apply_forwarded(request, policy)
            else:
                self._apply_x_forwarded(request, policy)
        except MalformedHeaderError as exc:
            self._note(str(exc))
        return CONTINUE

    def _apply_forwarded(self, request: Request, policy: Policy) -> None:
        elements, _ = header_elements(request, b"forwarded", policy.max_header_length)
        if not elements:
            return
        chosen: Element | None = None
        node: Node | None = None
        for hops, text in enumerate(reversed(elements)):
            if hops >= policy.max_hops:
                break
            params = parse_forwarded_element(text)
            given = params.get("for")
            if given is None:
                raise MalformedHeaderError("a Forwarded element without for=")
            chosen, node = params, parse_node(given)
            if node[0] not in policy.proxies:
                break
        if chosen is None or node is None:
            return
        # A proxy copies proto and host from what the client sent (nginx's $host):
        # one that cannot be used is dropped alone. Dropping the client address
        # with it would make the client the proxy, an address rules often allow.
        scheme = self._usable(_scheme, lambda: chosen.get("proto"))
        host = self._usable(_host, lambda: chosen.get("host"))
        _set(request, node, scheme, host)

    def _apply_x_forwarded(self, request: Request, policy: Policy) -> None:
        limit = policy.max_header_length
        node: Node | None = None
        index = 0
        count = 0
        whole = False
        if policy.x_for:
            elements, cut = header_elements(request, b"x-forwarded-for", limit)
            count, whole = len(elements), not cut
            for hops, text in enumerate(reversed(elements)):
                if hops >= policy.max_hops:
                    break
                node, index = parse_node(text), hops
                if node[0] not in policy.proxies:
                    break
        scheme = host = None
        # As for Forwarded: a proto or host that cannot be used (a client's value
        # passed on, lists that do not line up) is dropped alone, the client kept.
        if policy.x_proto:
            scheme = self._usable(
                _scheme, lambda: _aligned(request, b"x-forwarded-proto", limit, index, count, whole)
            )
        if policy.x_host:
            host = self._usable(
                _host, lambda: _aligned(request, b"x-forwarded-host", limit, index, count, whole)
            )
        _set(request, node, scheme, host)

    def _usable(self, check: Callable[[str], str], read: Callable[[], str | None]) -> str | None:
        """``check`` of the value ``read`` gives; None when there is none or it
        cannot be used (noted, as a header ignored)."""
        try:
            value = read()
            return check(value) if value is not None else None
        except MalformedHeaderError as exc:
            self._note(str(exc))
            return None

    def _note(self, reason: str) -> None:
        # Once per kind of problem and worker: a misconfigured proxy sends the
        # same header with every request.
        kind = reason.partition(":")[0]
        if kind not in self._logged and len(self._logged) < 64:
            self._logged.add(kind)
            log.debug("trusted_proxies: a forwarding header was ignored: %s", reason)


def _aligned(
    request: Request, name: bytes, limit: int, index: int, count: int, whole: bool
) -> str | None:
    """The value of ``X-Forwarded-Proto``/``-Host`` that goes with the client
    entry ``index`` (from the right) of an ``X-Forwarded-For`` of ``count``
    entries: the one value a proxy set, or the entry at the same position when
    every proxy appended to both lists."""
    values, cut = header_elements(request, name, limit)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if whole and not cut and len(values) == count:
        return values[-1 - index]
    raise MalformedHeaderError(
        f"{name.decode()} has {len(values)} values for {count} X-Forwarded-For entries"
    )


def _scheme(value: str) -> str:
    scheme = _SCHEMES.get(value.strip().lower())
    if scheme is None:
        raise MalformedHeaderError(f"not a scheme: {value[:32]!r}")
    return scheme


def _host(value: str) -> str:
    value = value.strip()
    if len(value) > 261 or _HOST.fullmatch(value) is None:
        raise MalformedHeaderError(f"not a host: {value[:64]!r}")
    return value


def _set(request: Request, node: Node | None, scheme: str | None, host: str | None) -> None:
    # Everything was parsed before anything is changed: a malformed part leaves
    # the request as it came.
    if node is not None:
        request.client = (str(node[0]), node[1])
    if scheme is not None:
        request.scheme = scheme
    if host is not None:
        request.host = host
        headers = request.headers
        encoded = host.encode("latin-1")
        for i, (name, _) in enumerate(headers):
            if name == b"host":
                headers[i] = (b"host", encoded)
                break
        else:
            headers.append((b"host", encoded))
