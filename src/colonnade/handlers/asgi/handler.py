"""The ASGI handler: an ASGI 3 application answers the requests mapped to it.

How this works, per HTTP request: the scope is built directly from the request
(nothing is copied but the lifespan ``state``), and the application is awaited
inline on the connection's task with the bound ``receive``/``send`` of one small
slotted object, :class:`HttpCycle`.

- ``receive`` hands out the body as it arrives (``more_body`` until the declared
  length is reached or the stream ends), then ``http.disconnect`` once the
  response is complete. A client that goes away cancels the request's task; a
  ``receive`` pending in another task then returns ``http.disconnect`` too (also
  one waiting for the rest of the body, as under uvicorn).
- In the compiled build the application gets the cycle itself as both
  ``receive`` and ``send`` (``__call__``: no argument receives, a message is
  sent), no bound method made per request; the pure install passes the bound
  methods.
- ``send`` is a plain function returning what the application awaits: for a
  message taken whole, one shared awaitable that ends at once (``sent.py``), so
  the two messages of a request make no coroutine each.
- ``http.response.start`` only records status and headers. A single
  ``http.response.body`` (``more_body`` false) becomes the buffered response and
  is sent at once with a ``Content-Length`` (the fast path); a body with
  ``more_body`` streams through ``Context.write`` (the head goes out with the
  first chunk, chunked framing). Either way the response leaves when the
  application completes it, as under uvicorn: work the application does after
  that (Starlette background tasks) does not hold the client up, nor the next
  request on the connection (see ``HttpConnection._let_go``).
- An exception before the response went out propagates: the pipeline answers 500
  with a correlation id and logs the traceback (never in the body). After the
  response started streaming it propagates too, and the pipeline drops the
  connection. After the response is complete it is only logged.

WebSocket requests (``Upgrade: websocket``) get a ``websocket`` scope, see
``websocket.py``; the lifespan protocol is in ``lifespan.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import Any, Final

from colonnade.core.app import Application
from colonnade.core.context import NEW, Context
from colonnade.core.handler import Handler
from colonnade.core.pyapp import load_app
from colonnade.core.request import EMPTY_BODY, Body
from colonnade.core.response import FileBody, Response
from colonnade.errors import ClientDisconnectedError, ModuleError
from colonnade.handlers.asgi.config import AsgiSection
from colonnade.handlers.asgi.lifespan import Lifespan
from colonnade.handlers.asgi.scope import (
    App,
    Message,
    Scope,
    add_proxy_prefix,
    http_scope,
    mount_path,
    websocket_request,
)
from colonnade.handlers.asgi.sent import SENT

log = logging.getLogger("colonnade.asgi")

#: Request body bytes handed to the application per ``http.request`` message.
_CHUNK: Final = 65536


#: What ``send`` returns for a message it took whole: awaiting it ends at once.
_SENT: Final = SENT


# Where an HttpCycle's response is.
_IDLE: Final = 0  # nothing sent yet
_STARTED: Final = 1  # http.response.start recorded (nothing on the wire yet)
_STREAMING: Final = 2  # body chunks are going out
_COMPLETE: Final = 3  # the whole response was handed over


class HttpCycle:
    """``receive`` and ``send`` of one HTTP request."""

    __slots__ = ("body", "ctx", "inner_response", "left", "phase", "waiter")

    def __init__(self, ctx: Context, body: Body) -> None:
        self.ctx = ctx
        self.body: Body | None = body  # None once the whole body was handed out
        self.left = -1  # request body bytes still due (-1: not looked up; -2: unknown)
        self.phase = _IDLE
        self.waiter: asyncio.Future[None] | None = None  # a receive waiting for the end
        # The response of a server handler run behind ASGI middleware (middleware.py):
        # passed on with its status, it keeps what the handler said about itself.
        self.inner_response: Response | None = None

    async def receive(self) -> Message:
        """The next ``http.request`` message, then ``http.disconnect``."""
        body = self.body
        if body is not None:
            if body is EMPTY_BODY:
                self.body = None
                return {"type": "http.request", "body": b"", "more_body": False}
            left = self.left
            if left == -1:
                length = self.ctx.request.header(b"content-length")
                self.left = left = int(length) if length is not None else -2
            try:
                data = await body.read(_CHUNK) if left != 0 else b""
            except ClientDisconnectedError:
                # The client left (or reset the stream) before its body arrived
                # whole: the ASGI spec's http.disconnect (as uvicorn says it), not an
                # exception, here and to every receive after it.
                self.body = None
                self._disconnected()
                return {"type": "http.disconnect"}
            if left >= 0:
                left -= len(data)
                self.left = left
                more = left > 0 and bool(data)
            else:
                more = bool(data)
            if not more:
                self.body = None
            return {"type": "http.request", "body": data, "more_body": more}
        if self.phase != _COMPLETE:
            if self.waiter is None:
                self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return {"type": "http.disconnect"}

    def send(self, message: Message) -> Awaitable[None]:
        """Take one response message from the application; what it returns is what
        the application awaits.

        A plain function, not a coroutine function: a message taken whole (the
        start, a whole body sent at once) returns :data:`_SENT`, an awaitable that
        ends at once, so the two messages of every request make no coroutine each
        (granian's ``send`` returns such an awaitable too); where there is
        something to wait for (a slow client, a streamed body, a file) it returns
        the coroutine that waits. A message out of turn raises here, at the call.
        """
        # Written for the two messages of every request, start then one whole body:
        # their work is inline (a method call is the dearest step of the pure
        # install's interpreter, and a call still in the compiled build).
        # Typed: compiled, a str comparison instead of a generic rich comparison.
        kind: str = message["type"]
        if kind == "http.response.body":
            phase = self.phase
            if phase == _STARTED:
                body = message.get("body", b"")
                if type(body) is not bytes:
                    body = bytes(body)
                ctx = self.ctx
                if message.get("more_body", False):
                    self.phase = _STREAMING
                    return ctx.write(body)  # the head goes out, even with no bytes yet
                # The whole body at once: buffered, sent now with its length.
                response = ctx.response
                response.body = body
                self.phase = _COMPLETE
                if self.waiter is not None:
                    self._wake()
                if (
                    not body
                    and ctx.request.method == "HEAD"
                    and response.header(b"content-length") is not None
                ):
                    # The head of a body not sent: keep the length it declares.
                    return self._head_only()
                pending = ctx.flush()  # sent now unless something must wait
                return pending if pending is not None else _SENT
            if phase == _STREAMING:
                body = message.get("body", b"")
                if type(body) is not bytes:
                    body = bytes(body)
                return self._stream(body, bool(message.get("more_body", False)))
            raise RuntimeError(_out_of_turn(kind, phase))
        if kind == "http.response.start":
            if self.phase != _IDLE:
                raise RuntimeError("ASGI message 'http.response.start' sent twice")
            self.phase = _STARTED
            # Recorded in the response; nothing is sent yet.
            response = self.ctx.response
            response.status = message["status"]
            # The application's own error pages are kept (custom errors replace
            # them only with existing_response = "replace").
            response.skip_custom_errors = True
            headers = message.get("headers")
            if headers:
                if _COMPILED:
                    response.headers = _lowered(headers)
                else:
                    # A list of pairs met before (see _PAIRS) is copied as it is, its
                    # pairs checked by the set in C: here, not in _lowered, a call less
                    # per request for what frameworks send.
                    try:
                        known = type(headers) is list and _PAIRS.issuperset(headers)
                    except TypeError:  # a pair that does not hash (a list): the loop decides
                        known = False
                    response.headers = list(headers) if known else _lowered(headers)
            if self.inner_response is not None:
                self._inherit(response)
            return _SENT
        if kind == "http.response.pathsend":
            if self.phase != _STARTED:
                raise RuntimeError(_out_of_turn(kind, self.phase))
            path = os.fspath(message["path"])
            self.ctx.response.file = FileBody(path, 0, os.stat(path).st_size)
            self._complete()
            return self.ctx.finish_response()
        raise RuntimeError(f"unexpected ASGI message {kind!r} in an http scope")

    def __call__(self, message: Message | None = None) -> Awaitable[Any]:
        """``receive()`` and ``send(message)`` in one callable: what the compiled
        build hands the application as both. The bound methods ``self.receive`` and
        ``self.send`` are two objects to make and free per request (~800
        instructions of the ASGI hello request); the cycle is there already, and a
        call of it is a vectorcall of its native ``__call__``. The pure install
        passes the bound methods: there a call of an instance is dearer than a
        bound method."""
        if message is None:
            return self.receive()
        return self.send(message)

    async def _head_only(self) -> None:
        # A HEAD's answer with its declared length: the head out, and the response
        # ended with it (as a whole body's is), so that work the application does
        # after it holds up no next request on the connection.
        ctx = self.ctx
        await ctx.start_response()
        await ctx.finish_response()

    async def _stream(self, body: bytes, more: bool) -> None:
        # A chunk of a streamed body: out, then, after the last, the stream ended
        # now, not when the application returns: work it does after its response
        # (a background task) holds nobody up.
        if body:
            await self.ctx.write(body)
        if not more:
            await self.ctx.finish_response()
            self._complete()

    async def run(self, app: App, scope: Scope, name: str) -> None:
        """Call ``app`` (``name`` for messages) with this cycle's ``receive``/``send``.

        An exception before the response is complete propagates (the pipeline makes
        it a 500 or drops the connection); one after it can only be logged. Returning
        without a complete response is an error.
        """
        ctx = self.ctx
        try:
            if _COMPILED:
                # The cycle itself as both (``__call__``): no bound method made.
                await app(scope, self, self)
            else:
                await app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            # The request's task was cancelled (its client went away, a stop's
            # deadline): a receive pending in another task (a framework's listener
            # for the disconnect), or made later, hears http.disconnect.
            self._disconnected()
            raise
        except Exception:
            if ctx.send_failed():
                # The SEND_RESPONSE hooks raised in the application's send: its
                # response never went out. The walk's flush reports that failure
                # (at SEND_RESPONSE) and sends the error page, the hooks not rerun.
                return
            if self.phase != _COMPLETE:
                raise
            # The client has its whole response; what failed afterwards (a
            # background task) can only be reported.
            request = ctx.request
            log.exception(
                "correlation_id=%s %s %s: %s raised after its response",
                ctx.correlation_id,
                request.method,
                request.target.decode("latin-1"),
                name,
            )
            return
        if self.phase != _COMPLETE:
            raise RuntimeError(
                f"{name} returned without "
                + ("completing its response" if self.phase != _IDLE else "sending a response")
            )

    def _inherit(self, response: Response) -> None:
        # Behind ASGI middleware (middleware.py): a server handler's response passed
        # on with its status keeps what the handler said about itself.
        inner = self.inner_response
        if inner is not None and inner.status == response.status:
            response.substatus = inner.substatus
            response.reason = inner.reason
            response.skip_custom_errors = inner.skip_custom_errors

    def _complete(self) -> None:
        self.phase = _COMPLETE
        if self.waiter is not None:
            self._wake()

    def _disconnected(self) -> None:
        # The client is gone: every receive, pending or later, says http.disconnect.
        if self.waiter is None:
            self.waiter = asyncio.get_running_loop().create_future()
        self._wake()

    def _wake(self) -> None:
        # A receive waiting for http.disconnect: the response is complete.
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


#: Header names in lower case, by the name an application sends: it sends the
#: same few again and again. A hit is a dict lookup instead of a method call,
#: and gives the same lowered object each time (whose hash is then kept).
_LOWER: Final[dict[bytes, bytes]] = {}
_LOWER_MAX: Final = 1024


#: The names of ``_LOWER`` that are lower case already: a set's test is cheaper
#: than the dict's look-up and identity test.
_LOWERCASE: Final[set[bytes]] = set()


def _lower(name: Any) -> Any:
    if type(name) is not bytes:
        return name.lower()  # what the protocol layer then refuses, as ever
    lowered = _LOWER.get(name)
    if lowered is None:
        lowered = name.lower()
        if lowered == name:
            lowered = name  # the same object: _lowered keeps such a pair as it is
        if len(_LOWER) < _LOWER_MAX:
            _LOWER[name] = lowered
            if lowered is name:
                _LOWERCASE.add(name)
    return lowered


#: ``(name, value)`` pairs seen with a lower-case ``bytes`` name and a ``bytes``
#: value: what an application sends again and again (``content-type``, a fixed
#: ``content-length``). In the pure install, a list made of known pairs only is
#: copied as it is, its pairs checked by the set in C: the interpreter pays per
#: Python step, and a loop over the pairs is many. Bounded: values that vary
#: (cookies, dates) fill it up to the bound and then stay out of it; they take
#: the loop. The compiled build always loops: there the set's temporary copy of
#: the list and the hashing of every pair cost more than the loop's few set tests.
_PAIRS: Final[set[Any]] = set()
_PAIRS_MAX: Final = 512
#: Whether mypyc compiled this module (as pipeline.runner's NATIVE tells its walker's).
_COMPILED: Final = not __file__.endswith(".py")


def _lowered(headers: Any) -> list[tuple[bytes, bytes]]:
    """The application's header list with lower-case names, in a list of our own
    (modules add to the response's). A ``(name, value)`` tuple whose name is lower
    case already is kept as it is: no new tuple, no unpacking (what frameworks send).
    (The pure install's ``send`` copies a list of known pairs without calling this.)"""
    if type(headers) is list:
        # Items of no declared type, and the length read apart from the test: a
        # pair narrowed to two items is held unboxed by the compiled build, which
        # would then box it again (a new tuple) to append it.
        out: list[Any] = []
        for pair in headers:
            if type(pair) is tuple:
                size = len(pair)
                if size == 2:
                    name = pair[0]
                    if type(name) is bytes and name in _LOWERCASE:
                        out.append(pair)
                        if not _COMPILED and type(pair[1]) is bytes and len(_PAIRS) < _PAIRS_MAX:
                            _PAIRS.add(pair)
                        continue
            name, value = pair
            out.append((_lower(name), value))
        return out
    out = []
    for name, value in headers:
        out.append((_lower(name), value))
    return out


def _out_of_turn(kind: str, phase: int) -> str:
    if phase == _IDLE:
        return f"ASGI message {kind!r} sent before 'http.response.start'"
    return f"ASGI message {kind!r} sent after the response was complete"


class AsgiHandler(Handler):
    """Runs the application's ASGI 3 callable for every request mapped to it."""

    id = "handler.asgi"
    section = AsgiSection

    def __init__(self) -> None:
        self.app: App | None = None
        self.target = ""
        self.name = "the ASGI application"
        self.root_path = ""
        self.prefix = ""
        self.state: dict[str, Any] = {}
        self.settings = AsgiSection()
        self.lifespan: Lifespan | None = None

    def provision(self, app: Application) -> None:
        """Import the application (a ``ConfigError`` naming the module if that fails)."""
        python = app.python
        if python is None:
            raise ModuleError(self.id, f"application {app.id} names no Python app to host")
        self.target = python.target
        self.name = f"the ASGI application {python.target}"  # for error messages
        self.app = load_app(python.target, app_dir=python.app_dir, factory=python.factory)
        self.settings = settings = app.section(AsgiSection)
        self.prefix = settings.root_path  # what a proxy stripped ([asgi] root_path)
        self.root_path = mount_path(app.path, self.prefix)
        self.lifespan = Lifespan(
            self.app,
            mode=settings.lifespan,
            timeout=settings.lifespan_timeout,
            state=self.state,
            name=python.target,
        )

    async def startup(self) -> None:
        """Run the application's lifespan startup before the first request."""
        if self.lifespan is not None:
            await self.lifespan.startup()

    async def shutdown(self) -> None:
        """Run the application's lifespan shutdown."""
        if self.lifespan is not None:
            await self.lifespan.shutdown()

    def execute(self, ctx: Context) -> Awaitable[None]:
        """Run the application for ``ctx``: an ``http`` or a ``websocket`` scope.

        A plain function returning the coroutine that runs it, which the walk
        awaits: a coroutine of its own around it would be one more frame per
        request to create and resume, for nothing.
        """
        request = ctx.request
        headers = request.headers
        # A GET that may carry Upgrade (the HTTP/1 parse saw one of the fields
        # that need a closer look, Upgrade among them): its fields are scanned for
        # it. Most requests have none, and no scan (~250 instructions a field).
        if request.may_upgrade and request.method == "GET":
            for name, _ in headers:
                if name == b"upgrade":
                    if websocket_request(headers):
                        return self._websocket(ctx)
                    break
        app = self.app
        if app is None:
            raise ModuleError(self.id, "execute() before provision()")
        if _COMPILED:
            cycle = HttpCycle(ctx, request.body)
        else:
            # Interpreted, HttpCycle.__init__'s stores made here (see core.context's
            # Response): its call is one more Python frame per request. The same
            # values (tests/handlers/asgi compares them).
            cycle = NEW(HttpCycle)
            cycle.ctx = ctx
            cycle.body = request.body
            cycle.left = -1
            cycle.phase = _IDLE
            cycle.waiter = None
            cycle.inner_response = None
        scope = http_scope(ctx, self.root_path, self.state)
        if self.prefix:
            add_proxy_prefix(scope, self.prefix)
        return cycle.run(app, scope, self.name)

    async def _websocket(self, ctx: Context) -> None:
        app = self.app
        if app is None:
            raise ModuleError(self.id, "execute() before provision()")
        # Imported on first use: wsproto (and h11) stay unloaded for HTTP-only apps.
        from colonnade.handlers.asgi.websocket import WebSocketSession

        await WebSocketSession(app, ctx, self.root_path, self.state, self.settings).run()
