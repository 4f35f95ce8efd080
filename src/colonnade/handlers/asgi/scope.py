"""ASGI types and the parts of a scope that do not change between requests.

The ``http`` and ``websocket`` scopes follow the ASGI 3 specification (spec
version 2.4): ``path`` is the full, percent-decoded URL path and ``root_path``
the application's mount path (``""`` at ``/``), so ``path`` starts with
``root_path``; ``raw_path`` and ``query_string`` are the bytes as sent; header
names are lower case. ``scope["extensions"]["colonnade"]`` carries what the
server's modules decided: ``user`` (a :class:`~colonnade.Principal` or None),
``items`` (the request's shared items) and ``context`` (the request
:class:`~colonnade.Context`, e.g. ``context.correlation_id`` for the trace id).

Where a server module decided who the user is (``ctx.user`` is set: a scheme,
or the anonymous user of ``auth.anonymous``), ``scope["user"]`` is that
:class:`~colonnade.Principal` and ``scope["auth"]`` a :class:`Credentials` with
the user's roles as ``scopes``: what Starlette's ``AuthenticationMiddleware``
sets, so ``request.user.is_authenticated``, ``request.user.display_name`` and
``@requires("role")`` work without it. With no authentication module, neither
key is set (an application's own authentication middleware sets them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from colonnade.core.httputil import has_token

if TYPE_CHECKING:
    from colonnade.core.context import Context

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: ``scope["asgi"]`` of http and websocket scopes (shared: applications read it).
ASGI_VERSION: dict[str, str] = {"version": "3.0", "spec_version": "2.4"}
#: The (empty) options of the extensions a scope announces (shared, never changed).
NO_OPTIONS: dict[str, Any] = {}
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


def mount_path(app_path: str) -> str:
    """The ASGI ``root_path`` (WSGI ``SCRIPT_NAME``) of an application at ``app_path``."""
    return "" if app_path == "/" else app_path.rstrip("/")


def websocket_request(headers: list[tuple[bytes, bytes]]) -> bool:
    """True if the request asks to switch to WebSocket (``Upgrade`` + ``Connection``)."""
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or has_token(value, b"websocket")
        elif name == b"connection":
            connection = connection or has_token(value, b"upgrade")
    return upgrade and connection


def http_scope(ctx: Context, root_path: str, state: dict[str, Any] | None) -> Scope:
    """The ``http`` scope of ``ctx``'s request (``state``: the lifespan state, if any)."""
    request = ctx.request
    scope: Scope = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": request.version,
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query,
        "root_path": root_path,
        "headers": request.headers,
        "client": request.client,
        "server": request.server,
        "extensions": {
            "http.response.pathsend": NO_OPTIONS,
            "colonnade": {"user": ctx.user, "items": ctx.items, "context": ctx},
        },
    }
    if state is not None:
        scope["state"] = state.copy()
    if ctx.user is not None:
        add_user(scope, ctx)
    return scope
