"""ASGI types and the parts of a scope that do not change between requests.

The ``http`` and ``websocket`` scopes follow the ASGI 3 specification (spec
version 2.4): ``path`` is the full, percent-decoded URL path and ``root_path``
the application's mount path (``""`` at ``/``), so ``path`` starts with
``root_path``; ``raw_path`` and ``query_string`` are the bytes as sent; header
names are lower case. ``scope["extensions"]["colonnade"]`` carries what the
server's modules decided: ``user`` (a :class:`~colonnade.Principal` or None),
``items`` (the request's shared items) and ``context`` (the request
:class:`~colonnade.Context`, e.g. ``context.correlation_id`` for the trace id).
Over TLS, ``scope["extensions"]["tls"]`` is asgiref's TLS extension
(:func:`tls_extension`): the server's certificate, the client's certificate and
its name, the TLS version and cipher suite.

Where a server module decided who the user is (``ctx.user`` is set: a scheme,
or the anonymous user of ``auth.anonymous``), ``scope["user"]`` is that
:class:`~colonnade.Principal` and ``scope["auth"]`` a :class:`Credentials` with
the user's roles as ``scopes``: what Starlette's ``AuthenticationMiddleware``
sets, so ``request.user.is_authenticated``, ``request.user.display_name`` and
``@requires("role")`` work without it. With no authentication module, neither
key is set (an application's own authentication middleware sets them).

Where ``state.session`` gives the request a session, ``scope["session"]`` is
that :class:`~colonnade.core.session.Session`: a mutable mapping, as
Starlette's ``SessionMiddleware`` sets (``request.session`` works without it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from colonnade.core.httputil import has_token
from colonnade.core.session import SESSION
from colonnade.core.urlpath import quote

if TYPE_CHECKING:
    from colonnade.core.context import Context
    from colonnade.core.request import TlsInfo

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``scope["asgi"]`` of http and websocket scopes (shared: applications read it).
ASGI_VERSION: dict[str, str] = {"version": "3.0", "spec_version": "2.4"}
#: The (empty) options of the extensions a scope announces (shared, never changed).
#: Final: a static of the compiled module, not a look-up in its globals per request.
NO_OPTIONS: Final[dict[str, Any]] = {}
#: ``scope["asgi"]`` of the lifespan scope.
ASGI_LIFESPAN: dict[str, str] = {"version": "3.0", "spec_version": "2.0"}


class Credentials:
    """``scope["auth"]``: the user's roles as ``scopes`` (Starlette's ``AuthCredentials``)."""

    __slots__ = ("scopes",)

    def __init__(self, scopes: list[str]) -> None:
        self.scopes = scopes


def add_user(scope: Scope, ctx: Context) -> None:
    """``scope["user"]`` and ``scope["auth"]`` from ``ctx.user``, where it is set."""
    user = ctx.user
    if user is not None:
        scope["user"] = user
        scope["auth"] = Credentials(sorted(user.roles))


def add_session(scope: Scope, ctx: Context) -> None:
    """``scope["session"]``: the request's session, where ``state.session`` gave one."""
    # The item itself, not the ctx.session property: a property read is a Python
    # call on every request, most of which have no session.
    session = ctx.items.get(SESSION)
    if session is not None:
        scope["session"] = session


def mount_path(app_path: str, proxy_prefix: str = "") -> str:
    """The ASGI ``root_path`` of an application at ``app_path``, behind a proxy that
    strips ``proxy_prefix`` (``[asgi] root_path``) before it forwards a request."""
    return proxy_prefix + ("" if app_path == "/" else app_path.rstrip("/"))


def add_proxy_prefix(scope: Scope, prefix: str) -> None:
    """Put ``prefix`` (``[asgi] root_path``, which the proxy stripped) back before the
    scope's ``path`` and ``raw_path``: they start with ``root_path``, as the ASGI
    specification (and uvicorn's ``--root-path``) has it."""
    scope["path"] = prefix + scope["path"]
    scope["raw_path"] = quote(prefix).encode("ascii") + scope["raw_path"]


def websocket_request(headers: list[tuple[bytes, bytes]]) -> bool:
    """True if the request asks to switch to WebSocket (``Upgrade`` + ``Connection``)."""
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or has_token(value, b"websocket")
        elif name == b"connection":
            connection = connection or has_token(value, b"upgrade")
    return upgrade and connection


#: ``tls_version`` of the ASGI TLS extension, by ``ssl``'s version name.
_TLS_VERSIONS = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303, "TLSv1.1": 0x0302, "TLSv1": 0x0301}
_CIPHER_IDS: dict[str, int] = {}


def _cipher_id(name: str) -> int | None:
    # IANA's number of an OpenSSL cipher name (ASGI wants the number).
    if not _CIPHER_IDS:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        for cipher in ctx.get_ciphers():
            _CIPHER_IDS[cipher["name"]] = cipher["id"] & 0xFFFF
    return _CIPHER_IDS.get(name)


def tls_extension(tls: TlsInfo) -> dict[str, Any]:
    """The ASGI ``tls`` extension (asgiref's TLS extension) of a TLS connection:
    made once per connection, and made again per request only where a client
    certificate is, whose ``client_cert_error`` depends on the moment."""
    found = tls.asgi
    if found is None:
        cert = tls.client
        found = tls.asgi = {
            "server_cert": tls.server_pem,
            # Python's ssl (before 3.13) gives the client's own certificate, not
            # the chain it sent.
            "client_cert_chain": [cert.pem] if cert is not None else [],
            "client_cert_name": cert.subject if cert is not None else None,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(tls.version),
            "cipher_suite": _cipher_id(tls.cipher),
        }
    if tls.client_der is not None:
        cert = tls.client
        error = "certificate does not parse" if cert is None else cert.problem()
        if error is not None:
            return {**found, "client_cert_error": error}
    return found


#: The session's item key, read as a static of the compiled module.
_SESSION: Final = SESSION

#: The keys of an ``http`` scope in their order, and the values every request
#: shares. A scope is a copy of it with the request's values put in: copying a
#: dict of this size is one allocation, where building it key by key grows it
#: twice on the way (what a compiled dict display does; 8,000 instructions of the
#: ASGI hello request went into building the scope that way).
_HTTP_SCOPE: Final[Scope] = {
    "type": "http",
    "asgi": ASGI_VERSION,
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": None,
    "client": None,
    "server": None,
    "extensions": None,
}


#: ``scope["extensions"]`` and its ``colonnade`` entry, as templates (see above).
_EXTENSIONS: Final[dict[str, Any]] = {"http.response.pathsend": NO_OPTIONS, "colonnade": None}
_COLONNADE: Final[dict[str, Any]] = {"user": None, "items": None, "context": None}


def http_scope(ctx: Context, root_path: str, state: dict[str, Any] | None) -> Scope:
    """The ``http`` scope of ``ctx``'s request (``state``: the lifespan state, if any)."""
    request = ctx.request
    scope = _HTTP_SCOPE.copy()
    # What the template holds already is not stored again (a store is a hash and a
    # probe; most requests are GET over HTTP/1.1 without a query, at the root).
    version = request.version
    if version != "1.1":
        scope["http_version"] = version
    method = request.method
    if method != "GET":
        scope["method"] = method
    scheme = request.scheme
    if scheme != "http":
        scope["scheme"] = scheme
    scope["path"] = request.path
    scope["raw_path"] = request.raw_path
    query = request.query
    if query:
        scope["query_string"] = query
    if root_path:
        scope["root_path"] = root_path
    scope["headers"] = request.headers
    scope["client"] = request.client
    scope["server"] = request.server
    # Each attribute of the (interpreted) context and request read once: a read
    # from compiled code is a generic attribute lookup.
    user = ctx.user
    items = ctx.items
    # Copies of templates too, their per-request values put in (a copy is cheaper
    # than a dict built key by key, as for the scope).
    colonnade = _COLONNADE.copy()
    if user is not None:
        colonnade["user"] = user
    colonnade["items"] = items
    colonnade["context"] = ctx
    extensions = _EXTENSIONS.copy()
    extensions["colonnade"] = colonnade
    scope["extensions"] = extensions
    if state is not None:
        scope["state"] = state.copy()
    if user is not None:
        add_user(scope, ctx)
    if items:  # add_session, inline: every request passes here, most with no items
        session = items.get(_SESSION)
        if session is not None:
            scope["session"] = session
    tls = request.tls
    if tls is not None:
        extensions["tls"] = tls_extension(tls)
    return scope
