"""ASGI middleware as an application module: it wraps every handler of the application.

An application declares ASGI middleware in the ``web.toml`` at its root::

    [application_modules]
    "shop.sessions" = { asgi_middleware = "starlette.middleware.sessions:SessionMiddleware",
                        options = { secret_key = "..." } }

The builder imports each declared factory and hands it to this module
(``asgi.middleware``, one instance per application) innermost first with
:meth:`AsgiMiddleware.wrap`: ``factory(app, **options)`` around the chain built so
far, so the first declaration is the outermost layer, as in Starlette's
``middleware=[...]``. The chain is built once; its innermost app is
:func:`_dispatch`, which runs what the request was mapped to.

How this works, per request:

- PRE_EXECUTE_REQUEST_HANDLER (last): the chosen handler is replaced by a
  :class:`_Wrapped` handler, one per inner handler (the mapped handler is put back
  as ``ctx.handler`` as soon as it runs, so logs and later stages see it).
- Its ``execute`` builds the ``http`` scope from the request (as the ASGI handler
  does; ``root_path`` is the application's path, ``state`` the hosted ASGI app's
  lifespan state where there is one) and awaits the chain with the ``receive`` and
  ``send`` of an :class:`HttpCycle`: ``receive`` hands out the request body, ``send``
  turns the messages the outermost middleware sends into the response exactly as
  the ASGI handler does (one complete body is buffered and sent with its length,
  ``more_body`` streams, ``http.response.pathsend`` goes out with ``sendfile``);
  the server's SEND_RESPONSE modules then see that final response.
- The innermost app finds the request's :class:`_Exchange` (a context variable:
  a middleware may copy the scope or run the inner app in a task of its own) and
  runs either the hosted ASGI application itself, with the scope the middleware
  passed (so ``scope["session"]``, ``scope["user"]`` reach the app), or any other
  handler (static files, default documents, directory listings, WSGI) through an
  adapter: a child :class:`~colonnade.core.context.Context` whose writer,
  :class:`_InnerWriter`, turns ``send_all``/``start``/``write``/``sendfile``/``end``
  into ``http.response.start``/``body`` messages for the middleware's ``send``.
  The child request takes the headers, query string, scheme and client of the
  scope the middleware passed and its body from the middleware's ``receive``;
  the path, method and mapped file stay what the pipeline decided. A whole file
  goes on as ``http.response.pathsend`` (zero-copy) while the scope announces
  that extension, else (ranges, or a middleware that withdrew the extension) in
  64 KiB chunks: never buffered whole. An ``HttpError`` of the handler becomes
  its error page, sent through the middleware like any response.
- WebSocket requests to a hosted ASGI app go through the chain too (a
  ``websocket`` scope, see ``websocket.py``).
- ``scope["user"]`` set by an authentication middleware (an object with
  ``is_authenticated`` and ``display_name``, as Starlette's) becomes ``ctx.user``
  (``REMOTE_USER`` for a WSGI app, the access log's user); the scope the
  middleware passed is in ``ctx.items["asgi.scope"]`` for server handlers.

Requests a server module finished before the handler (a redirect, a 401 of an
authentication module, 404.4 when nothing is mapped) do not reach the middleware.
The middleware receives no ``lifespan`` scope: the hosted app's lifespan runs as
without middleware.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import method_not_allowed
from colonnade.core.module import Module, Priority, hook
from colonnade.core.principal import Principal
from colonnade.core.request import Headers, Request, read_chunks
from colonnade.core.stages import Stage
from colonnade.errors import ClientDisconnectedError, HttpError, ModuleError
from colonnade.handlers.asgi.config import AsgiSection
from colonnade.handlers.asgi.handler import AsgiHandler, HttpCycle
from colonnade.handlers.asgi.scope import (
    App,
    Message,
    Receive,
    Scope,
    Send,
    add_proxy_prefix,
    http_scope,
    mount_path,
    websocket_request,
)

log = logging.getLogger("colonnade.asgi")

#: Request body bytes per ``http.request`` message; file bytes per body message.
_CHUNK = 65536
#: The extensions announced to the middleware (``colonnade`` is added per request).
_PATHSEND = "http.response.pathsend"


class _Exchange:
    """One request through the chain: what the innermost app is to run."""

    __slots__ = ("app", "ctx", "handler", "outer")

    def __init__(self, ctx: Context, handler: Handler, outer: HttpCycle, app: App | None) -> None:
        self.ctx = ctx
        self.handler = handler
        self.outer = outer
        self.app = app  # the hosted ASGI app, or None: run ``handler`` through the adapter


_CURRENT: contextvars.ContextVar[_Exchange] = contextvars.ContextVar("colonnade_asgi_exchange")


async def _dispatch(scope: Scope, receive: Receive, send: Send) -> None:
    """The innermost app of every chain: the mapped handler of the current request."""
    exchange = _CURRENT.get(None)
    if exchange is None:
        raise RuntimeError("an ASGI middleware called its application outside a request")
    principal = _principal(scope)
    if principal is not None:
        exchange.ctx.user = principal
    app = exchange.app
    if app is not None:
        await app(scope, receive, send)
        return
    if scope.get("type") != "http":
        raise RuntimeError(f"a {scope.get('type')!r} scope cannot reach {exchange.handler.id}")
    await _run_handler(exchange, scope, receive, send)


async def _run_handler(exchange: _Exchange, scope: Scope, receive: Receive, send: Send) -> None:
    """Run a server handler for ``scope``; its response becomes ASGI messages."""
    ctx = exchange.ctx
    handler = exchange.handler
    pathsend = _PATHSEND in (scope.get("extensions") or ())
    writer = _InnerWriter(send, pathsend)
    inner = Context(
        _inner_request(ctx.request, scope, receive, exchange.outer), ctx.app, writer, _no_hooks
    )
    inner.user = ctx.user
    inner.handler = handler
    inner.items = ctx.items
    inner.physical_path = ctx.physical_path
    ctx.items["asgi.scope"] = scope
    # Passed on by the middleware with its status, the response keeps its details.
    exchange.outer.inner_response = inner.response
    try:
        pending = handler.execute(inner)
        if pending is not None:
            await pending
    except HttpError as exc:
        if inner.response.headers_sent:
            raise
        inner.error_response(exc.status, exc.substatus, exc.message, exc.detail)
        inner.response.headers.extend(exc.headers)
    await inner.finish_response()
    await writer.close()


async def _no_hooks(ctx: Context) -> None:
    # The child context's SEND_RESPONSE point: the server's SEND_RESPONSE modules
    # run once, on the final response of the outer context.
    return None


def _inner_request(request: Request, scope: Scope, receive: Receive, outer: HttpCycle) -> Request:
    """The request a server handler sees: the scope's headers, query and client."""
    headers = scope.get("headers")
    # The compiled build passes the cycle itself as receive (HttpCycle.__call__).
    own_receive = receive is outer or receive == outer.receive
    if (
        headers is request.headers
        and own_receive
        and scope.get("query_string") == request.query
        and scope.get("scheme") == request.scheme
        and scope.get("client") == request.client
    ):
        return request
    client = scope.get("client")
    server = scope.get("server")
    inner = Request(
        request.method,
        request.path,
        raw_path=request.raw_path,
        query=bytes(scope.get("query_string", request.query)),
        target=request.target,
        version=request.version,
        headers=[(bytes(k), bytes(v)) for k, v in headers] if headers is not None else [],
        host=request.host,
        scheme=str(scope.get("scheme", request.scheme)),
        client=(str(client[0]), int(client[1])) if client else None,
        server=(str(server[0]), int(server[1])) if server else None,
        body=request.body if own_receive else _ReceiveBody(receive),
        keep_alive=request.keep_alive,
        tls=request.tls,
    )
    inner.peer = request.peer  # the connection's, whoever the middleware says the client is
    return inner


def _principal(scope: Scope) -> Principal | None:
    """The user an authentication middleware put in ``scope["user"]``, if signed in."""
    user = scope.get("user")
    if isinstance(user, Principal):
        # The server's own user, passed on (or another Principal): kept as it is.
        return user if user.name else None
    if user is None or getattr(user, "is_authenticated", False) is not True:
        return None
    name = getattr(user, "display_name", None)
    if not isinstance(name, str) or not name:
        return None
    scopes = getattr(scope.get("auth"), "scopes", ())
    roles = frozenset(s for s in scopes if isinstance(s, str)) if scopes else frozenset()
    return Principal(name, "asgi", roles)


class _ReceiveBody:
    """A request body read from an ASGI ``receive`` (one a middleware wrapped)."""

    __slots__ = ("buffer", "done", "receive")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.buffer = b""
        self.done = False

    async def _more(self) -> None:
        message = await self.receive()
        kind = message.get("type")
        if kind == "http.disconnect":
            raise ClientDisconnectedError("the client went away")
        if kind != "http.request":
            raise RuntimeError(f"unexpected ASGI message {kind!r} from receive()")
        self.buffer += bytes(message.get("body", b""))
        self.done = not message.get("more_body", False)

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if -1); ``b""`` at the end."""
        if size < 0:
            while not self.done:
                await self._more()
            data, self.buffer = self.buffer, b""
            return data
        while not self.buffer and not self.done:
            await self._more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return read_chunks(self, _CHUNK)


class _InnerWriter:
    """The child context's writer: a handler's response as ASGI messages to ``send``."""

    __slots__ = ("bytes_sent", "complete", "head", "pathsend", "send", "whole")

    def __init__(self, send: Send, pathsend: bool) -> None:
        self.send = send
        self.pathsend = pathsend  # the scope announces http.response.pathsend
        self.bytes_sent = 0
        self.head: Message | None = None  # http.response.start, not sent yet
        self.whole: bytes | None = None  # the body of send_all, not sent yet
        self.complete = False

    @staticmethod
    def _start(status: int, headers: Headers, length: int | None) -> Message:
        if (
            length is not None
            and status >= 200
            and status not in (204, 304)
            and not any(name == b"content-length" for name, _ in headers)
        ):
            headers = [*headers, (b"content-length", b"%d" % length)]
        return {"type": "http.response.start", "status": status, "headers": headers}

    def send_all(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> None:
        """A whole response: sent by :meth:`close` (``send`` is a coroutine)."""
        self.head = self._start(status, headers, len(body))
        self.whole = body

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        """The head of a streamed response: sent with the first body message."""
        self.head = self._start(status, headers, content_length)

    async def _flush_head(self) -> None:
        head = self.head
        if head is not None:
            self.head = None
            await self.send(head)

    async def write(self, data: bytes) -> None:
        """Body bytes as one ``http.response.body`` with ``more_body``."""
        await self._flush_head()
        if data:
            self.bytes_sent += len(data)
            await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        """A whole file as ``pathsend`` where announced, else read in chunks."""
        await self._flush_head()
        # Opening a local file is not worth a thread; reads use pread, as the transport.
        with open(path, "rb") as f:  # noqa: ASYNC230
            fd = f.fileno()
            if self.pathsend and offset == 0 and os.fstat(fd).st_size == count:
                self.complete = True
                self.bytes_sent += count
                await self.send({"type": _PATHSEND, "path": path})
                return
            while count > 0:
                data = os.pread(fd, min(count, _CHUNK), offset)
                if not data:
                    raise ConnectionError("the file shrank while it was being sent")
                offset += len(data)
                count -= len(data)
                await self.write(data)

    async def end(self) -> None:
        """The end of a streamed body."""
        await self._flush_head()
        if not self.complete:
            self.complete = True
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def close(self) -> None:
        """Send what ``send_all`` left (the handler's response is complete)."""
        whole = self.whole
        if whole is not None:
            self.whole = None
            await self._flush_head()
            self.complete = True
            self.bytes_sent += len(whole)
            await self.send({"type": "http.response.body", "body": whole, "more_body": False})

    def abort(self) -> None:
        """The handler cannot complete its response: fail the request."""
        raise ConnectionError("the handler aborted its response")

    def upgrade(self) -> None:
        """A handler behind ASGI middleware cannot take the connection over."""
        return


class _Wrapped(Handler):
    """Stands in for one handler while the request passes the middleware chain."""

    id = "asgi.middleware"

    def __init__(self, host: AsgiMiddleware, inner: Handler) -> None:
        self.host = host
        self.inner = inner

    def execute(self, ctx: Context) -> Awaitable[None]:
        """Run the chain around the inner handler."""
        return self.host.run(ctx, self.inner)


class AsgiMiddleware(Module):
    """``asgi.middleware``: the ASGI middleware an application declares, around
    every handler of that application.

    Not listed in ``server.modules``: the engine adds it to an application whose
    root ``web.toml`` declares middleware (``asgi_middleware`` entries of
    ``[application_modules]``), then calls :meth:`wrap` for each, innermost first,
    and :meth:`bind` with the application's modules.
    """

    id = "asgi.middleware"

    def __init__(self) -> None:
        self.chain: App = _dispatch
        self.names: list[str] = []  # declared ids, outermost first
        self.app_handler: AsgiHandler | None = None
        self.root_path = ""
        self.prefix = ""  # [asgi] root_path: what a proxy stripped
        self._wrapped: dict[Handler, _Wrapped] = {}

    # -- what the builder calls ----------------------------------------------------------

    def wrap(self, name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
        """Put ``factory(chain, **options)`` around the chain built so far.

        Raises what the factory raises (options it refuses); ``TypeError`` if it
        returns something that is not callable.
        """
        layer = factory(self.chain, **options)
        if not callable(layer):
            raise TypeError(f"it returned {type(layer).__name__}, not an ASGI application")
        self.chain = layer
        self.names.insert(0, name)

    def bind(self, modules: Sequence[Module]) -> None:
        """The application's modules: its hosted ASGI app, if any, is wrapped directly."""
        self.app_handler = next((m for m in modules if isinstance(m, AsgiHandler)), None)

    # -- the module lifecycle ------------------------------------------------------------

    def provision(self, app: Application) -> None:
        """Refuse to run without middleware (the module is not for server.modules)."""
        if not self.names:
            raise ModuleError(
                self.id,
                "declare ASGI middleware in an application's web.toml "
                "([application_modules] id = { asgi_middleware = ... }); "
                "the module is not listed in server.modules",
            )
        self.prefix = app.section(AsgiSection).root_path
        self.root_path = mount_path(app.path, self.prefix)

    def cleanup(self) -> None:
        """Forget the per-handler wrappers."""
        self._wrapped.clear()

    # -- per request ---------------------------------------------------------------------

    @hook(Stage.PRE_EXECUTE_REQUEST_HANDLER, priority=Priority.LAST)
    def pre_execute_request_handler(self, ctx: Context) -> None:
        """Make the chosen handler run inside the middleware chain."""
        handler = ctx.handler
        if handler is None or isinstance(handler, _Wrapped):
            return
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            wrapped = self._wrapped[handler] = _Wrapped(self, handler)
        ctx.handler = wrapped

    async def run(self, ctx: Context, handler: Handler) -> None:
        """Answer ``ctx`` through the chain, ``handler`` innermost."""
        ctx.handler = handler  # what the pipeline mapped, for everything after
        request = ctx.request
        verbs = handler.verbs
        if verbs is not None and request.method not in verbs:
            raise method_not_allowed(verbs)
        app_handler = handler if isinstance(handler, AsgiHandler) else None
        app = app_handler.app if app_handler is not None else None
        if app_handler is not None and app is None:
            raise ModuleError(app_handler.id, "execute() before provision()")
        outer = HttpCycle(ctx, ctx.request.body)
        exchange = _Exchange(ctx, handler, outer, app)
        token = _CURRENT.set(exchange)
        try:
            if (
                app_handler is not None
                and request.method == "GET"
                and websocket_request(request.headers)
            ):
                await self._websocket(ctx, app_handler)
                return
            await self._http(ctx, outer, app_handler)
        finally:
            _CURRENT.reset(token)

    async def _http(self, ctx: Context, outer: HttpCycle, app_handler: AsgiHandler | None) -> None:
        hosted = app_handler if app_handler is not None else self.app_handler
        scope = http_scope(ctx, self.root_path, hosted.state if hosted is not None else None)
        if self.prefix:
            add_proxy_prefix(scope, self.prefix)
        await outer.run(self.chain, scope, f"the ASGI middleware ({', '.join(self.names)})")

    async def _websocket(self, ctx: Context, app_handler: AsgiHandler) -> None:
        # Imported on first use: wsproto (and h11) stay unloaded for HTTP-only apps.
        from colonnade.handlers.asgi.websocket import WebSocketSession

        session = WebSocketSession(
            self.chain, ctx, self.root_path, app_handler.state, app_handler.settings
        )
        await session.run()
