"""Small ASGI middleware and applications for the middleware-as-module tests.

Declared by import path (``tests.handlers.asgi.mw_kit:AddHeader``): the
installed-package branch of the loader. What they observe goes to ``LOG``.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]

#: What the middleware and applications observed, for the tests to inspect.
LOG: list[Any] = []


class AddHeader:
    """Adds a response header (to every response, whoever made it)."""

    def __init__(self, app: Any, name: str, value: str) -> None:
        self.app = app
        self.header = (name.encode(), value.encode())

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            await send(message)

        await self.app(scope, receive, send_wrapper)


class Deny:
    """Answers 401 itself for paths under ``prefix`` unless ``Authorization: let-me-in``."""

    def __init__(self, app: Any, prefix: str = "/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers", ()))
        if scope["path"].startswith(self.prefix) and headers.get(b"authorization") != b"let-me-in":
            LOG.append(("denied", scope["path"]))
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"www-authenticate", b"Let-Me-In"), (b"content-length", b"6")],
                }
            )
            await send({"type": "http.response.body", "body": b"denied"})
            return
        await self.app(scope, receive, send)


class User:
    """A signed-in user as Starlette's authentication middleware describes one."""

    is_authenticated = True

    def __init__(self, name: str) -> None:
        self.display_name = name


class Auth:
    """Puts ``scope["user"]``, ``scope["auth"]`` and a ``tag`` in the scope."""

    def __init__(self, app: Any, user: str = "ann", tag: str = "") -> None:
        self.app = app
        self.user = user
        self.tag = tag

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        scope["user"] = User(self.user)
        scope["auth"] = type("Credentials", (), {"scopes": ["staff"]})()
        scope["tag"] = self.tag
        await self.app(scope, receive, send)


class Recorder:
    """Records the response messages that pass (type and body size)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        async def send_wrapper(message: dict[str, Any]) -> None:
            kind = message["type"]
            LOG.append((kind, len(message.get("body", b"")), message.get("more_body", False)))
            await send(message)

        await self.app(scope, receive, send_wrapper)


class NoPathsend:
    """Withdraws the ``http.response.pathsend`` extension from the inner scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        extensions = {
            k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"
        }
        await self.app({**scope, "extensions": extensions}, receive, send)


class Upper:
    """Upper-cases the request body on its way in."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        async def receive_wrapper() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                message = {**message, "body": message.get("body", b"").upper()}
            return message

        await self.app(scope, receive_wrapper, send)


class DropHeader:
    """Removes a request header before the inner handler sees the request."""

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.name = name.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k != self.name]
        await self.app({**scope, "headers": headers}, receive, send)


class Boom:
    """Raises before any response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        raise RuntimeError("the middleware broke")


class Silent:
    """Returns without calling the inner app or answering."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        return


class Picky:
    """Refuses options out of range, as real middleware validates its settings."""

    def __init__(self, app: Any, *, level: int) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"level must be 0-9, not {level}")
        self.app = app


NOT_CALLABLE = 42


def make_add_header(app: Any, value: str) -> Any:
    """A factory (not a class): ``factory(app, **options)`` returns the middleware."""
    return AddHeader(app, "x-factory", value)


# -- applications -----------------------------------------------------------------------


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with what the scope says (lifespan puts ``started`` in the state)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    LOG.append(("app", scope["path"]))
    user = scope.get("user")
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    data = {
        "path": scope["path"],
        "root_path": scope["root_path"],
        "user": user.display_name if user is not None else None,
        "tag": scope.get("tag"),
        "state": dict(scope.get("state", {})),
        "server_user": getattr(scope["extensions"]["colonnade"]["user"], "name", None),
        "body": body.decode(),
    }
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


def wsgi_echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A WSGI app: who the server says the user is, the body, the middleware's scope."""
    LOG.append(("wsgi", environ["PATH_INFO"]))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    scope = environ["colonnade.items"].get("asgi.scope", {})
    data = {
        "remote_user": environ.get("REMOTE_USER"),
        "auth_type": environ.get("AUTH_TYPE"),
        "body": environ["wsgi.input"].read(length).decode(),
        "tag": scope.get("tag"),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(data).encode()]


def dispatch_stamp(app: Any) -> Any:
    """Starlette's ``BaseHTTPMiddleware`` (it runs the inner app in a task of its own)."""
    from starlette.middleware.base import BaseHTTPMiddleware

    class Stamp(BaseHTTPMiddleware):
        async def dispatch(self, request: Any, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-dispatch"] = request.url.path
            return response

    return Stamp(app)
