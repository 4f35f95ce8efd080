"""The WSGI handler: a PEP 3333 application answers the requests mapped to it.

How this works, per request: the environ is built on the loop (a copy of the
constant part, then the request's own entries) and the application runs on the
application's bounded :class:`~colonnade.handlers.wsgi.bridge.ThreadPool`. What
it returns decides the path back:

- a list or tuple (or any iterable of length 1): joined in the thread and handed
  to the loop whole, as the buffered response (``Content-Length``, one write):
  one hop to the thread and one back;
- a :class:`~colonnade.handlers.wsgi.environ.FileWrapper` around a regular file:
  the file's range becomes ``ctx.response.file`` and goes out with ``sendfile``;
- anything else: iterated in the thread, each non-empty chunk written by the
  loop while the thread waits (back-pressure from the client reaches the
  application); the head leaves with the first non-empty chunk, as PEP 3333
  asks. The ``write`` callable of ``start_response`` streams the same way.

The iterable's ``close()`` is always called, in the thread, whatever happened.
An exception from the application propagates to the pipeline: a 500 with a
correlation id (the traceback only in the log) or, once streaming, a dropped
connection. ``start_response`` follows PEP 3333's ``exc_info`` rules.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from colonnade import __version__
from colonnade.core import cgihead
from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import split_host
from colonnade.core.pyapp import load_app
from colonnade.core.request import EMPTY_BODY, Body, Headers
from colonnade.core.response import FileBody
from colonnade.core.session import SESSION
from colonnade.errors import HttpError, ModuleError
from colonnade.handlers.wsgi.bridge import (
    DONE,
    FAILED,
    READ,
    READ_ALL,
    START,
    STREAMED,
    WRITE,
    Bridge,
    ThreadPool,
)
from colonnade.handlers.wsgi.config import WsgiSection
from colonnade.handlers.wsgi.environ import (
    EMPTY_INPUT,
    ErrorStream,
    FileWrapper,
    InputStream,
    add_headers,
    wsgi_path,
)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Bodies up to this size (declared, no ``Expect``) are read on the loop before the
#: application runs: cheaper than fetching them from the thread.
_PREFETCH = 65536

_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}

# "200 OK" → (200, None): the reason is only passed on when it is not the standard one.
_STATUS: dict[str, tuple[int, bytes | None]] = {}

# Response header name → lower-case bytes.
_NAMES: dict[str, bytes] = {}
_CACHE_MAX = 1024


def parse_status(status: str) -> tuple[int, bytes | None]:
    """``"404 Not Found"`` → ``(404, None)``; a non-standard reason is kept
    (:func:`colonnade.core.cgihead.parse_status`, remembered per string)."""
    found = _STATUS.get(status)
    if found is not None:
        return found
    if type(status) is not str:
        raise TypeError(f"WSGI status must be a str, not {type(status).__name__}")
    found = cgihead.parse_status(status)
    if len(_STATUS) < _CACHE_MAX:
        _STATUS[status] = found
    return found


def convert_headers(headers: list[tuple[str, str]]) -> Headers:
    """WSGI ``(name, value)`` strings → lower-case name bytes and value bytes."""
    out: Headers = []
    names = _NAMES
    for name, value in headers:
        key = names.get(name)
        if key is None:
            key = name.lower().encode("latin-1")
            if len(names) < _CACHE_MAX:
                names[name] = key
        out.append((key, value.encode("latin-1")))
    return out


class Exchange:
    """The thread's side of one request: ``start_response``, ``write``, the iterable."""

    __slots__ = ("bridge", "head_sent", "headers", "status")

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        if type(headers) is not list:
            raise TypeError("WSGI response headers must be a list of (name, value) tuples")
        self.status = status
        self.headers = headers
        return self.write

    def head(self) -> tuple[int, bytes | None, Headers]:
        """Status code, reason and headers as the response wants them."""
        if self.status is None:
            raise RuntimeError("the WSGI application did not call start_response()")
        code, reason = parse_status(self.status)
        return code, reason, convert_headers(self.headers)

    def write(self, data: bytes) -> None:
        """Send ``data`` now (the head first, if it has not gone out yet)."""
        if type(data) is not bytes:
            raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
        if self.head_sent:
            if data:
                self.bridge.call(WRITE, data)
            return
        code, reason, headers = self.head()
        self.head_sent = True
        self.bridge.call(START, (code, reason, headers, data))

    def declared_length(self) -> int | None:
        """The ``Content-Length`` the application set, if any."""
        for name, value in self.headers:
            if len(name) == 14 and name.lower() == "content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None


class WsgiHandler(Handler):
    """Runs the application's WSGI callable on a bounded thread pool."""

    id = "handler.wsgi"
    section = WsgiSection

    def __init__(self) -> None:
        self.app: WsgiApp | None = None
        self.pool: ThreadPool | None = None
        self.script_name = ""
        self.prefix_length = 0
        self.base: dict[str, Any] = {}
        self.settings = WsgiSection()

    def provision(self, app: Application) -> None:
        """Import the application and start (lazily) its thread pool."""
        python = app.python
        if python is None:
            raise ModuleError(self.id, f"application {app.id} names no Python app to host")
        self.app = load_app(python.target, app_dir=python.app_dir, factory=python.factory)
        self.settings = settings = app.section(WsgiSection)
        mount = "" if app.path == "/" else app.path.rstrip("/")
        # Behind a proxy that strips settings.root_path, requests arrive without it:
        # SCRIPT_NAME has it, PATH_INFO is what follows the mount path as received.
        self.script_name = wsgi_path(settings.root_path + mount)
        self.prefix_length = len(mount)
        self.base = {
            "SCRIPT_NAME": self.script_name,
            "SERVER_SOFTWARE": f"colonnade/{__version__}",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "wsgi.version": (1, 0),
            "wsgi.errors": ErrorStream(app.log),
            "wsgi.multithread": True,
            # Pools may run several workers, and a recycle overlaps old and new.
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }
        self.pool = ThreadPool(settings.threads, f"wsgi{mount or '/'}")

    def cleanup(self) -> None:
        """Let the pool's threads exit once their current request is done."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    # -- the loop side ----------------------------------------------------------------

    def environ(self, ctx: Context) -> dict[str, Any]:
        """The environ of ``ctx``'s request (``wsgi.input`` is set by the caller)."""
        request = ctx.request
        environ = self.base.copy()
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = wsgi_path(request.path[self.prefix_length :])
        environ["QUERY_STRING"] = request.query.decode("latin-1")
        environ["RAW_URI"] = environ["REQUEST_URI"] = request.target.decode("latin-1")
        environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(request.version) or "HTTP/" + request.version
        environ["wsgi.url_scheme"] = request.scheme
        tls = request.tls
        if tls is not None:
            # HTTPS, SSL_PROTOCOL, ... and the client certificate's SSL_CLIENT_*:
            # made once per connection.
            environ.update(tls.ssl_variables())
        elif request.scheme == "https":  # a trusted proxy's word
            environ["HTTPS"] = "on"
        server = request.server
        host = request.host
        environ["SERVER_NAME"] = split_host(host) if host else (server[0] if server else "")
        environ["SERVER_PORT"] = str(server[1]) if server else ""
        client = request.client
        if client is not None:
            environ["REMOTE_ADDR"] = client[0]
            environ["REMOTE_PORT"] = str(client[1])
        add_headers(environ, request.headers)
        user = ctx.user
        if user is not None and user.name:
            environ["REMOTE_USER"] = user.name
            environ["AUTH_TYPE"] = user.auth_type
        environ["colonnade.context"] = ctx
        environ["colonnade.items"] = ctx.items
        # The item itself, not the ctx.session property (a Python call per request).
        session = ctx.items.get(SESSION)
        if session is not None:
            environ["colonnade.session"] = session
        return environ

    async def execute(self, ctx: Context) -> None:
        """Run the application for ``ctx`` on the pool; carry out what it asks."""
        pool = self.pool
        if pool is None:
            raise ModuleError(self.id, "execute() before provision()")
        environ = self.environ(ctx)
        body = ctx.request.body
        bridge = Bridge(asyncio.get_running_loop())
        spool = None
        if body is EMPTY_BODY or (
            "CONTENT_LENGTH" not in environ and "HTTP_TRANSFER_ENCODING" not in environ
        ):
            environ["wsgi.input"] = EMPTY_INPUT
        else:
            spool = await self._prefetch(environ, body)
            environ["wsgi.input"] = InputStream(bridge) if spool is None else spool
        pool.submit(self._run, environ, bridge)
        try:
            await self._carry_out(ctx, bridge, body)
        finally:
            if spool is not None and not bridge.cancelled:
                spool.close()

    @staticmethod
    async def _carry_out(ctx: Context, bridge: Bridge, body: Body) -> None:
        # Serve the application thread's commands until its response is complete.
        waiting = False  # the thread waits for an answer
        op = -1
        # A request body the server refused while the application read it (413.1
        # over the size limit, 400 for bad chunking): the application saw an
        # exception from wsgi.input and made a response of its own (often a 500
        # with its own traceback page); the client gets the server's answer.
        refused: HttpError | None = None
        try:
            while True:
                op, arg = await bridge.next()
                if refused is not None and op != READ and op != READ_ALL:
                    waiting = op == START or op == WRITE  # the thread awaits an answer
                    raise refused
                if op == DONE:
                    status, reason, headers, content = arg
                    response = ctx.response
                    response.status = status
                    response.reason = reason
                    response.headers = headers
                    # The application's own error pages are kept (custom errors
                    # replace them only with existing_response = "replace").
                    response.skip_custom_errors = True
                    if type(content) is bytes:
                        response.body = content
                    else:
                        response.file = content
                    return
                if op == STREAMED:
                    return
                if op == FAILED:
                    raise arg
                waiting = True
                try:
                    if op == WRITE:
                        await ctx.write(arg)
                        reply: Any = None
                    elif op == START:
                        status, reason, headers, chunk = arg
                        response = ctx.response
                        response.status = status
                        response.reason = reason
                        response.headers = headers
                        response.skip_custom_errors = True
                        await ctx.write(chunk)
                        reply = None
                    elif op == READ:
                        reply = await body.read(arg)
                    else:  # READ_ALL
                        reply = await body.read(-1)
                except Exception as exc:
                    waiting = False
                    bridge.answer(exc)
                    if op in (READ, READ_ALL):
                        if isinstance(exc, HttpError):
                            refused = exc
                        continue  # the application decides what else a broken body means
                    raise
                waiting = False
                bridge.answer(reply)
        except BaseException:
            if op != FAILED:
                bridge.cancel(waiting)
            raise

    async def _prefetch(self, environ: dict[str, Any], body: Body) -> Any:
        # A small declared body, or any body when buffering (the default), is read
        # here on the loop; otherwise None: the application streams it through the
        # bridge, holding one of the pool's threads for as long as the client takes.
        length_text = environ.get("CONTENT_LENGTH")
        length = int(length_text) if length_text and length_text.isdigit() else -1
        if 0 <= length <= _PREFETCH and "HTTP_EXPECT" not in environ:
            return io.BytesIO(await body.read(-1))
        settings = self.settings
        if settings.buffer_request_body:
            # Closed by execute() once the application is done with it.
            spool = tempfile.SpooledTemporaryFile(max_size=settings.max_body_buffer)  # noqa: SIM115
            try:
                async for chunk in body:
                    spool.write(chunk)
            except BaseException:
                # over the limit (413), the client gone, a timeout: no application
                # runs, so nobody else would close it (a temporary file, past the
                # memory part)
                spool.close()
                raise
            spool.seek(0)
            return spool
        return None

    # -- the application thread ----------------------------------------------------------

    def _run(self, environ: dict[str, Any], bridge: Bridge) -> None:
        try:
            bridge.post(*self._respond(environ, bridge))
        except Exception as exc:
            bridge.post(FAILED, exc)
        except BaseException as exc:  # SystemExit from an application must not stop the server
            error = RuntimeError(f"the WSGI application raised {type(exc).__name__}: {exc}")
            bridge.post(FAILED, error.with_traceback(exc.__traceback__))

    def _respond(self, environ: dict[str, Any], bridge: Bridge) -> tuple[int, Any]:
        app = self.app
        assert app is not None
        exchange = Exchange(bridge)
        result = app(environ, exchange.start_response)
        try:
            if exchange.head_sent:  # the application used write(): stream the rest
                return self._stream(exchange, iter(result), None)
            kind = type(result)
            if kind is list or kind is tuple:
                items: Any = result
                content = items[0] if len(items) == 1 else b"".join(items)
                return DONE, (*exchange.head(), _check_bytes(content))
            if kind is FileWrapper:
                found = self._sendable(result, exchange)  # type: ignore[arg-type]
                if found is not None:
                    return DONE, (*exchange.head(), found)
            elif getattr(kind, "__len__", None) is not None and len(result) == 1:  # type: ignore[arg-type]
                content = next(iter(result))
                return DONE, (*exchange.head(), _check_bytes(content))
            return self._stream(exchange, iter(result), exchange.declared_length())
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _stream(self, exchange: Exchange, chunks: Any, declared: int | None) -> tuple[int, Any]:
        for chunk in chunks:
            if not chunk:
                continue
            if not exchange.head_sent and declared is not None and len(chunk) >= declared:
                # The whole declared body in one chunk: buffered, unless more follows.
                following = next((c for c in chunks if c), None)
                if following is None:
                    return DONE, (*exchange.head(), _check_bytes(chunk))
                exchange.write(chunk)
                chunk = following
            exchange.write(chunk)
        if not exchange.head_sent:
            return DONE, (*exchange.head(), b"")
        return STREAMED, None

    @staticmethod
    def _sendable(wrapper: FileWrapper, exchange: Exchange) -> FileBody | None:
        # A regular file still reachable by its name: send its rest with sendfile.
        filelike = wrapper.filelike
        name = getattr(filelike, "name", None)
        if not isinstance(name, str):
            return None
        try:
            st = os.fstat(filelike.fileno())
            by_name = os.stat(name)
            offset = filelike.tell()
        except (OSError, AttributeError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode) or (st.st_ino, st.st_dev) != (
            by_name.st_ino,
            by_name.st_dev,
        ):
            return None
        length = max(st.st_size - offset, 0)
        declared = exchange.declared_length()
        if declared is not None:
            if declared > length:
                return None  # the application promises more than the file holds
            length = declared
        return FileBody(name, offset, length)


def _check_bytes(data: Any) -> bytes:
    if type(data) is not bytes:
        raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
    return data
