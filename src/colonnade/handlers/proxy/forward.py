"""The headers a reverse proxy changes: the request's on its way to the upstream,
the response's on its way back. Pure functions of their arguments.

Hop-by-hop fields (RFC 9110 7.6.1) belong to one connection and never cross the
proxy, nor does any field the ``Connection`` header names. ``X-Forwarded-*`` and
``Forwarded`` are rebuilt: what the client sent of them is passed on only when
the connection came from a proxy the server trusts (``[trusted_proxies]``
resolved the client to someone else than the peer), else a client could choose
the address the upstream believes.
"""

from __future__ import annotations

from typing import Final

from colonnade.core.httputil import is_token, split_host
from colonnade.core.request import Request
from colonnade.handlers.proxy.wire import HOP_BY_HOP

Headers = list[tuple[bytes, bytes]]

#: Request fields the proxy writes itself.
_REBUILT: Final = frozenset({b"host", b"content-length", b"expect"})
#: The forwarding fields (rebuilt unless ``forwarded_headers`` is off).
FORWARDING: Final = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)


_NONE: Final[frozenset[bytes]] = frozenset()
#: The request fields the handler decides by (see :func:`noted_fields`).
_NOTED: Final = frozenset({b"host", b"upgrade", b"expect", b"content-length", b"connection"})


def noted_fields(headers: Headers) -> dict[bytes, bytes]:
    """The first value of each of ``host``, ``upgrade``, ``expect``,
    ``content-length``, and every ``connection`` value joined by commas: one pass
    over the fields instead of one lookup each."""
    noted: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _NOTED:
            if name not in noted:
                noted[name] = value
            elif name == b"connection":
                noted[name] += b"," + value
    return noted


def listed_names(connection: bytes) -> set[bytes]:
    """The field names a ``Connection`` value lists (lower case)."""
    listed = {t.strip(b" \t").lower() for t in connection.split(b",")}
    listed.discard(b"")
    return listed


def connection_listed(headers: Headers) -> set[bytes]:
    """The field names the ``Connection`` header lists (lower case)."""
    values = [value for name, value in headers if name == b"connection"]
    return listed_names(b",".join(values)) if values else set()


def _node(address: str) -> bytes:
    # A Forwarded node (RFC 7239 6): IPv6 in brackets, and quoted then.
    if ":" in address:
        return b'"[' + address.encode("latin-1") + b']"'
    return address.encode("latin-1")


def _quoted(value: bytes) -> bytes:
    if is_token(value):
        return value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


#: What the request loop does with a field (absent: passed on as it is).
_DROP: Final = 0  # hop-by-hop, or written by the proxy itself
_FORWARDING: Final = 1  # X-Forwarded-*, Forwarded
_COOKIE: Final = 2
_REQUEST_FIELDS: Final[dict[bytes, int]] = {
    **{name: _DROP for name in HOP_BY_HOP | _REBUILT},
    **{name: _FORWARDING for name in FORWARDING},
    b"cookie": _COOKIE,
}
#: The forwarding fields of a request from no trusted proxy, by (client address,
#: Host, scheme, TLS): the same for every request of a connection, so built once
#: (at most _OWN_HOP_MAX of them, for a Host of at most _OWN_HOP_HOST bytes: a
#: client cannot make it hold much).
_OWN_HOP: dict[tuple[str, str, str, bool], Headers] = {}
_OWN_HOP_MAX: Final = 256
_OWN_HOP_HOST: Final = 300


def request_headers(
    request: Request,
    host: bytes,
    *,
    forwarded: bool,
    framing: tuple[bytes, bytes] | None,
    expect_continue: bool,
    upgrade: bytes | None,
    connection: bytes | None = None,
) -> Headers:
    """The header section sent upstream.

    ``host``: the ``Host`` value to send. ``framing``: the body's
    ``content-length`` or ``transfer-encoding`` field (None: no body).
    ``expect_continue``: ask the upstream for ``100 Continue``. ``upgrade``: the
    ``Upgrade`` value to pass on (a WebSocket handshake), else None.
    ``connection``: the request's ``Connection`` values, joined (None: it has none).
    """
    listed = listed_names(connection) if connection else _NONE
    out: Headers = [(b"host", host)]
    cookies: list[bytes] | None = None
    trusted_chain = forwarded and request.client != request.peer
    xff: list[bytes] = []
    fwd: list[bytes] = []
    special = _REQUEST_FIELDS
    # One dictionary lookup per field in the common case (a field passed on).
    for field in request.headers:
        name = field[0]
        kind = special.get(name)
        if kind is None:
            if not listed or name not in listed:
                out.append(field)
        elif kind == _COOKIE:
            if cookies is None:
                cookies = [field[1]]
            else:
                cookies.append(field[1])  # HTTP/2 sends one field per cookie: joined for 1.1
        elif kind == _FORWARDING and name not in listed:
            if not forwarded:
                out.append(field)  # not ours to touch
            elif trusted_chain and name == b"x-forwarded-for":
                xff.append(field[1])
            elif trusted_chain and name == b"forwarded":
                fwd.append(field[1])
    if cookies is not None and b"cookie" not in listed:
        out.append((b"cookie", cookies[0] if len(cookies) == 1 else b"; ".join(cookies)))
    if framing is not None:
        out.append(framing)
    if expect_continue:
        out.append((b"expect", b"100-continue"))
    if upgrade is not None:
        out.append((b"connection", b"upgrade"))
        out.append((b"upgrade", upgrade))
    if forwarded:
        if trusted_chain:
            out += _forwarding(request, xff, fwd)
        else:
            out += _own_hop(request)
    return out


def _own_hop(request: Request) -> Headers:
    # The forwarding fields of a request from no trusted proxy (see _OWN_HOP).
    client = request.client
    key = (client[0] if client else "", request.host, request.scheme, request.tls is None)
    own = _OWN_HOP.get(key)
    if own is None:
        own = _forwarding(request, None, None)
        if len(request.host) <= _OWN_HOP_HOST:
            if len(_OWN_HOP) >= _OWN_HOP_MAX:
                _OWN_HOP.clear()
            _OWN_HOP[key] = own
    return own


def _forwarding(request: Request, xff: list[bytes] | None, fwd: list[bytes] | None) -> Headers:
    # X-Forwarded-* and Forwarded: ``xff`` and ``fwd`` are what a trusted proxy
    # sent of them (None: the request came from no trusted proxy).
    peer = request.peer[0] if request.peer else ""
    client = request.client[0] if request.client else peer
    public_host = request.host.encode("latin-1")
    scheme = request.scheme.encode("latin-1")
    # The hop we saw: who connected to us, over what, asking for which host.
    own_proto = b"https" if request.tls is not None else b"http"
    if xff is not None and fwd is not None:
        # A trusted proxy that sent only one of the two headers: the other
        # starts from the client it named.
        if not xff:
            xff.append(client.encode("latin-1"))
        if not fwd:
            fwd.append(b"for=" + _node(client))
        xff.append(peer.encode("latin-1"))
        element = b"for=" + _node(peer)
    else:
        xff = [client.encode("latin-1")]
        fwd = []
        element = b"for=" + _node(client)
    element += b";proto=" + own_proto
    if public_host:
        element += b";host=" + _quoted(public_host)
    fwd.append(element)
    out: Headers = [(b"x-forwarded-for", b", ".join(xff)), (b"x-forwarded-proto", scheme)]
    if public_host:
        out.append((b"x-forwarded-host", public_host))
    out.append((b"forwarded", b", ".join(fwd)))
    return out


class HostRewrite:
    """The upstream's authority in response URLs and cookie domains, and the
    public one that replaces it (ARR ``reverseRewriteHostInResponseHeaders``)."""

    __slots__ = ("_prefixes", "_public", "private_host", "public_host")

    def __init__(self, private: bytes, public_scheme: str, public: str) -> None:
        # ``private``: the Host value sent upstream (HOST:PORT); ``public``: the
        # client's Host value.
        public_b = public.encode("latin-1")
        self._public = public_scheme.encode("latin-1") + b"://" + public_b
        lowered = private.lower()
        prefixes = [b"http://" + lowered, b"https://" + lowered]
        if lowered.endswith(b":80"):
            prefixes.append(b"http://" + lowered[:-3])
        self._prefixes = tuple(prefixes)
        self.private_host = split_host(private.decode("latin-1")).lower().encode("latin-1")
        self.public_host = split_host(public).encode("latin-1")

    def url(self, value: bytes) -> bytes:
        """``value`` with the upstream's ``scheme://authority`` replaced (only an
        absolute URL that names the upstream exactly)."""
        lowered = value[:300].lower()
        for prefix in self._prefixes:
            if lowered.startswith(prefix):
                rest = value[len(prefix) :]
                if not rest or rest[:1] in (b"/", b"?", b"#"):
                    return self._public + rest
        return value

    def cookie(self, value: bytes) -> bytes:
        """A ``Set-Cookie`` value with ``Domain=<upstream host>`` made the public host."""
        if b"omain" not in value and b"OMAIN" not in value:
            return value
        parts = value.split(b";")
        for i, part in enumerate(parts):
            name, eq, domain = part.partition(b"=")
            if i and eq and name.strip(b" \t").lower() == b"domain":
                bare = domain.strip(b" \t")
                if bare.lower().lstrip(b".") == self.private_host:
                    parts[i] = b" Domain=" + self.public_host
        return b";".join(parts)


def response_headers(headers: Headers, rewrite: HostRewrite | None) -> Headers:
    """The upstream's response headers, hop-by-hop ones removed, hosts rewritten."""
    listed = connection_listed(headers)
    out: Headers = []
    for name, value in headers:
        if name in HOP_BY_HOP or name in listed:
            continue
        if rewrite is not None:
            if name == b"location" or name == b"content-location":
                value = rewrite.url(value)
            elif name == b"set-cookie":
                value = rewrite.cookie(value)
        out.append((name, value))
    return out
