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

Headers = list[tuple[bytes, bytes]]

#: Never forwarded, either way.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
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
    headers = request.headers
    listed = listed_names(connection) if connection else _NONE
    out: Headers = [(b"host", host)]
    cookies: list[bytes] = []
    trusted_chain = forwarded and request.client != request.peer
    xff: list[bytes] = []
    fwd: list[bytes] = []
    for name, value in headers:
        if name in HOP_BY_HOP or name in _REBUILT or name in listed:
            continue
        if name in FORWARDING:
            if not forwarded:
                out.append((name, value))  # not ours to touch
            elif trusted_chain and name == b"x-forwarded-for":
                xff.append(value)
            elif trusted_chain and name == b"forwarded":
                fwd.append(value)
            continue
        if name == b"cookie":
            cookies.append(value)  # HTTP/2 sends one field per cookie: joined for 1.1
            continue
        out.append((name, value))
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    if framing is not None:
        out.append(framing)
    if expect_continue:
        out.append((b"expect", b"100-continue"))
    if upgrade is not None:
        out.append((b"connection", b"upgrade"))
        out.append((b"upgrade", upgrade))
    if forwarded:
        peer = request.peer[0] if request.peer else ""
        client = request.client[0] if request.client else peer
        public_host = request.host.encode("latin-1")
        scheme = request.scheme.encode("latin-1")
        # The hop we saw: who connected to us, over what, asking for which host.
        own_proto = b"https" if request.tls is not None else b"http"
        if trusted_chain:
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
        out.append((b"x-forwarded-for", b", ".join(xff)))
        out.append((b"x-forwarded-proto", scheme))
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
