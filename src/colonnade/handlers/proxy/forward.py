"""The headers a reverse proxy changes: the request's on its way to the upstream,
the response's on its way back. Pure functions of their arguments.

Hop-by-hop fields (RFC 9110 7.6.1) belong to one connection and never cross the
proxy, nor does any field the ``Connection`` header names. ``X-Forwarded-*`` and
``Forwarded`` are rebuilt: what the client sent of them is passed on only when
the connection came from a proxy the server trusts (``[trusted_proxies]``
resolved the client to someone else than the peer), else a client could choose
the address the upstream believes.

The upstream pays for each field it gets: an application server parses every
one (uvicorn ~3k instructions a field, more than a tenth of what the proxy's own
side of a small request costs). So ``X-Forwarded-Host`` goes only where the
``Host`` sent differs from the public host (a unix socket upstream and
``preserve_host`` send the client's own, which it would repeat), and RFC 7239
``Forwarded``, which repeats ``X-Forwarded-*`` in another form, only where the
settings ask for it (``forwarded_rfc7239``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from colonnade.core.httputil import has_token, is_token, split_host
from colonnade.core.request import EMPTY_BODY, Request
from colonnade.handlers.proxy.wire import HOP_BY_HOP, join

Headers = list[tuple[bytes, bytes]]

#: Request fields the proxy writes itself.
_REBUILT: Final = frozenset({b"host", b"content-length", b"expect"})
#: The forwarding fields (rebuilt unless ``forwarded_headers`` is off).
FORWARDING: Final = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)


_NONE: Final[frozenset[bytes]] = frozenset()
#: (Compiled, an imported constant is a look-up in this module's globals at each
#: use; a Final one of its own is a static.)
_EMPTY_BODY: Final = EMPTY_BODY


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
# Dropped too, and noted: the handler decides by them.
_HOST: Final = 3
_LENGTH: Final = 4
_EXPECT: Final = 5
_UPGRADE: Final = 6
_CONNECTION: Final = 7
_REQUEST_FIELDS: Final[dict[bytes, int]] = {
    **{name: _DROP for name in HOP_BY_HOP | _REBUILT},
    **{name: _FORWARDING for name in FORWARDING},
    b"cookie": _COOKIE,
    b"host": _HOST,
    b"content-length": _LENGTH,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
    b"connection": _CONNECTION,
}
#: What ``_plain_head`` does with a client's field (absent: passes on as it came),
#: read from _REQUEST_FIELDS for a request without a body from no trusted proxy,
#: forwarding fields rebuilt. 0: dropped (hop-by-hop, rebuilt, the client's own
#: forwarding fields, and the body's framing fields, which a request without a
#: body does not send on); 1: a cookie (joined, after the others); 2: Connection,
#: dropped when it says only ``keep-alive`` (it names no field but one dropped
#: anyway); 3: any other (Upgrade): outgoing's full work.
_PLAIN_DROP: Final = 0
_PLAIN_COOKIE: Final = 1
_PLAIN_CONNECTION: Final = 2
_PLAIN_FULL: Final = 3
_PLAIN_OF: Final[dict[int, int]] = {
    _DROP: _PLAIN_DROP,
    _FORWARDING: _PLAIN_DROP,
    _HOST: _PLAIN_DROP,
    _LENGTH: _PLAIN_DROP,
    _EXPECT: _PLAIN_DROP,
    _COOKIE: _PLAIN_COOKIE,
    _CONNECTION: _PLAIN_CONNECTION,
}
_PLAIN_KINDS: Final[dict[bytes, int]] = {
    name: _PLAIN_OF.get(kind, _PLAIN_FULL) for name, kind in _REQUEST_FIELDS.items()
}


def _plain_head_py(
    kinds: dict[bytes, int],
    method: bytes,
    target: bytes,
    host: bytes,
    headers: Headers,
    tail: bytes,
) -> bytes | None:
    # _fields.c's request_head in Python (the pure build's; the same answers, see
    # tests/handlers/proxy/test_forward.py): the head of a request without a body
    # in one piece, None where a field needs outgoing's full work.
    parts = [method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    cookies: list[bytes] = []
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _PLAIN_COOKIE:
            cookies.append(value)
        elif kind == _PLAIN_CONNECTION:
            if value.strip(b" \t").lower() != b"keep-alive":
                return None
        elif kind != _PLAIN_DROP:
            return None
    if cookies:
        parts += (b"cookie: ", b"; ".join(cookies), b"\r\n")
    parts.append(tail)
    return b"".join(parts)


def _c_request_head() -> (
    Callable[[dict[bytes, int], bytes, bytes, bytes, Headers, bytes], bytes | None] | None
):
    # _fields.c's request_head where built, else None.
    try:
        from colonnade.handlers.proxy._fields import request_head
    except ImportError:
        return None
    return request_head


#: The head of a request without a body in one piece: _fields.c's where built
#: (one pass sizes it, one allocation, no list of parts), else _plain_head_py.
_plain_head: Final = _c_request_head() or _plain_head_py


#: The forwarding fields of a request from no trusted proxy, as they go out (with
#: the blank line that ends the head), by (client address, public host, scheme,
#: TLS, the Host sent, Forwarded wanted): the same for every request of a
#: connection, so built once (at most _OWN_HOP_MAX of them, for hosts of at most
#: _OWN_HOP_HOST bytes: a client cannot make it hold much).
_OWN_HOP: dict[tuple[str, str, str, bool, bytes, bool], bytes] = {}
_OWN_HOP_MAX: Final = 256
_OWN_HOP_HOST: Final = 300


class Outgoing:
    """A request as it goes to the upstream (made by :func:`outgoing`): ``head``,
    its bytes up to the body, and what the handler decides by: ``upgrade``, the
    ``Upgrade`` value passed on (a WebSocket handshake; None: no upgrade);
    ``chunked``, the body goes chunked (else by its ``Content-Length``);
    ``expect_continue``, the upstream is asked for ``100 Continue``."""

    __slots__ = (
        "_connection",
        "_cookies",
        "_expect",
        "_fwd",
        "_host",
        "_length",
        "_upgrade",
        "_xff",
        "chunked",
        "expect_continue",
        "head",
        "upgrade",
    )

    def __init__(self) -> None:
        self.head = b""
        self.upgrade: bytes | None = None
        self.chunked = False
        self.expect_continue = False
        # The first value of each of these fields, every Connection value joined.
        self._host: bytes | None = None
        self._length: bytes | None = None
        self._expect: bytes | None = None
        self._upgrade: bytes | None = None
        self._connection: bytes | None = None
        self._cookies: list[bytes] | None = None
        # What a trusted proxy sent of X-Forwarded-For and Forwarded (None: none;
        # made when there is, not for every request).
        self._xff: list[bytes] | None = None
        self._fwd: list[bytes] | None = None

    def _fields(
        self,
        headers: Headers,
        parts: list[bytes],
        listed: frozenset[bytes] | set[bytes],
        forwarded: bool,
        trusted_chain: bool,
    ) -> None:
        # The client's fields: those passed on written to ``parts``, the others
        # noted. One dictionary lookup per field in the common case (a field
        # passed on); ``listed``: the names the Connection header lists.
        special = _REQUEST_FIELDS
        for field in headers:
            name = field[0]
            kind = special.get(name)
            if kind is None:
                if not listed or name not in listed:
                    parts.append(name)
                    parts.append(b": ")
                    parts.append(field[1])
                    parts.append(b"\r\n")
            elif kind == _COOKIE:
                if name in listed:
                    continue
                if self._cookies is None:
                    self._cookies = [field[1]]
                else:
                    self._cookies.append(field[1])  # HTTP/2 sends one per cookie: joined for 1.1
            elif kind == _FORWARDING:
                if name in listed:
                    continue
                if not forwarded:
                    parts.append(name)  # not ours to touch
                    parts.append(b": ")
                    parts.append(field[1])
                    parts.append(b"\r\n")
                elif trusted_chain and name == b"x-forwarded-for":
                    if self._xff is None:
                        self._xff = [field[1]]
                    else:
                        self._xff.append(field[1])
                elif trusted_chain and name == b"forwarded":
                    if self._fwd is None:
                        self._fwd = [field[1]]
                    else:
                        self._fwd.append(field[1])
            elif kind == _HOST:
                if self._host is None:
                    self._host = field[1]
            elif kind == _CONNECTION:
                connection = self._connection
                self._connection = field[1] if connection is None else connection + b"," + field[1]
            elif kind == _LENGTH:
                if self._length is None:
                    self._length = field[1]
            elif kind == _EXPECT:
                if self._expect is None:
                    self._expect = field[1]
            elif kind == _UPGRADE and self._upgrade is None:
                self._upgrade = field[1]


#: The usual methods as they go on the wire (a look-up, not an encode per request).
_METHODS: Final[dict[str, bytes]] = {
    m: m.encode("ascii") for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
}


def outgoing(
    request: Request,
    target: bytes,
    host: bytes | None,
    *,
    forwarded: bool,
    rfc7239: bool = False,
    out: Outgoing | None = None,
    plain: bool = True,
) -> Outgoing:
    """The request as the upstream gets it (see :class:`Outgoing`): its fields
    with the hop-by-hop ones removed (and those the ``Connection`` header names),
    cookies joined in one field, the body's framing, and the forwarding fields
    added (``forwarded``: rebuilt, else passed on as they came; ``rfc7239``:
    with ``Forwarded``, else without it).

    ``target``: the request target to ask for. ``host``: the ``Host`` value to
    send (None: the client's own). ``out``: a new Outgoing of this request's own
    to fill (the proxy's exchange is one: no second object per request), else one
    is made. Made anew for every request: a memo of the last request's head paid
    only for a benchmark's identical requests (see docs/architecture.md on the
    HTTP/1.1 transport). ``plain``: a request without a body from no trusted
    proxy may have its head made in one piece (``_plain_head``; False: the tests'
    way to compare it with the full work).
    """
    client = request.client
    # (The same object unless a trusted proxy named another client: no comparison.)
    trusted_chain = forwarded and client is not request.peer and client != request.peer
    method = request.method
    # (A compare with the literal, the same object as the request's: no look-up.)
    known = b"GET" if method == "GET" else _METHODS.get(method)
    method_bytes = known if known is not None else method.encode("latin-1")
    if plain and forwarded and not trusted_chain and request.body is _EMPTY_BODY:
        # The usual request (no body, from no trusted proxy): its head in one
        # piece from its fields, unless one needs the work below (a Connection
        # that names fields, an Upgrade). The Host sent: the route's, else the
        # client's first (none, or an empty one: the work below).
        sent = host
        if sent is None:
            for field in request.headers:
                if field[0] == b"host":
                    sent = field[1]
                    break
        if sent:
            head = _plain_head(
                _PLAIN_KINDS,
                method_bytes,
                target,
                sent,
                request.headers,
                _own_hop(request, sent, rfc7239),
            )
            if head is not None:
                if out is None:
                    out = Outgoing()
                out.head = head
                return out
    # The client's fields go after the request line and Host (filled in below).
    parts = [
        method_bytes,
        b" ",
        target,
        b" HTTP/1.1\r\nhost: ",
        b"",
        b"\r\n",
    ]
    if out is None:
        out = Outgoing()
    out._fields(request.headers, parts, _NONE, forwarded, trusted_chain)
    connection = out._connection
    if connection is not None:
        listed = listed_names(connection)
        if listed:
            # Fields the Connection header names stay behind (rare): once more,
            # knowing them.
            del parts[6:]
            out._host = out._length = out._expect = out._upgrade = out._connection = None
            out._cookies = out._xff = out._fwd = None
            out._fields(request.headers, parts, listed, forwarded, trusted_chain)
    sent = parts[4] = host if host is not None else out._host or request.host.encode("latin-1")
    cookies = out._cookies
    if cookies is not None:
        parts.append(b"cookie: ")
        parts.append(cookies[0] if len(cookies) == 1 else b"; ".join(cookies))
        parts.append(b"\r\n")
    if request.body is not _EMPTY_BODY:
        if out._length is not None:
            parts.append(b"content-length: ")
            parts.append(out._length)
            parts.append(b"\r\n")
        else:
            parts.append(b"transfer-encoding: chunked\r\n")
            out.chunked = True
        expect = out._expect
        if expect is not None and expect.lower() == b"100-continue":
            parts.append(b"expect: 100-continue\r\n")
            out.expect_continue = True
    upgrade = out._upgrade
    if (
        upgrade is not None
        and request.version == "1.1"
        and connection is not None
        and has_token(connection, b"upgrade")
    ):
        parts.append(b"connection: upgrade\r\nupgrade: ")
        parts.append(upgrade)
        parts.append(b"\r\n")
        out.upgrade = upgrade
    if not forwarded:
        parts.append(b"\r\n")
    elif trusted_chain:
        xff, fwd = out._xff, out._fwd
        parts.append(_lines(_forwarding(request, xff or [], fwd or [], sent, rfc7239)))
    else:
        parts.append(_own_hop(request, sent, rfc7239))
    out.head = join(parts)  # (_fields.c's, compiled: see wire.join)
    return out


def _lines(headers: Headers) -> bytes:
    # Fields as they go out, and the blank line that ends the head.
    parts: list[bytes] = []
    for name, value in headers:
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class _LastHop:
    """The forwarding fields last built from _OWN_HOP's key (a connection's
    requests come one after another: no key tuple nor look-up for them)."""

    __slots__ = ("client", "host", "lines", "rfc7239", "scheme", "sent", "tls")

    def __init__(self) -> None:
        self.client = ""
        self.host = ""
        self.scheme = ""
        self.tls = False
        self.sent = b""
        self.rfc7239 = False
        self.lines = b""


_LAST_HOP: Final = _LastHop()


def _own_hop(request: Request, sent: bytes, rfc7239: bool) -> bytes:
    # The forwarding fields of a request from no trusted proxy (see _OWN_HOP);
    # ``sent``: the Host the upstream gets.
    client = request.client
    # ``is not None``, not the tuple's truth: compiled, that would box the
    # (unboxed) pair into a new tuple for each request.
    address = client[0] if client is not None else ""
    host = request.host
    scheme = request.scheme
    tls = request.tls is None
    last = _LAST_HOP
    if (
        last.lines
        and address == last.client
        and host == last.host
        and scheme == last.scheme
        and tls == last.tls
        and sent == last.sent
        and rfc7239 == last.rfc7239
    ):
        return last.lines
    key = (address, host, scheme, tls, sent, rfc7239)
    own = _OWN_HOP.get(key)
    if own is None:
        own = _lines(_forwarding(request, None, None, sent, rfc7239))
        if len(host) > _OWN_HOP_HOST or len(sent) > _OWN_HOP_HOST:
            return own  # neither kept nor remembered
        if len(_OWN_HOP) >= _OWN_HOP_MAX:
            _OWN_HOP.clear()
        _OWN_HOP[key] = own
    last.client, last.host, last.scheme, last.tls = address, host, scheme, tls
    last.sent, last.rfc7239, last.lines = sent, rfc7239, own
    return own


def _forwarding(
    request: Request,
    xff: list[bytes] | None,
    fwd: list[bytes] | None,
    sent: bytes | None = None,
    rfc7239: bool = True,
) -> Headers:
    # X-Forwarded-* and Forwarded: ``xff`` and ``fwd`` are what a trusted proxy
    # sent of them (None: the request came from no trusted proxy). ``sent``: the
    # Host the upstream gets (X-Forwarded-Host would repeat it: left out; None:
    # always added); ``rfc7239``: Forwarded too.
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
        hop = peer
    else:
        xff = [client.encode("latin-1")]
        fwd = []
        hop = client
    out: Headers = [(b"x-forwarded-for", b", ".join(xff)), (b"x-forwarded-proto", scheme)]
    if public_host and public_host != sent:
        out.append((b"x-forwarded-host", public_host))
    if rfc7239:
        element = b"for=" + _node(hop) + b";proto=" + own_proto
        if public_host:
            element += b";host=" + _quoted(public_host)
        fwd.append(element)
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
