"""The WSGI handler: a PEP 3333 application answers the requests mapped to it.

How this works, per request: the environ is built on the loop (a copy of the
application's constant part, then the request's own entries), then the
application runs where its ``[wsgi] blocking`` setting says:

- ``blocking = true`` (the default; WSGI applications block): on the
  application's bounded :class:`~colonnade.handlers.wsgi.bridge.ThreadPool`,
  talking to the loop through a :class:`~colonnade.handlers.wsgi.bridge.Bridge`;
- ``blocking = false`` (the application declares it never blocks): called
  inline on the event loop's thread, with no hand-off. The request body is
  read whole before it runs (``wsgi.input`` never waits for the client), and
  what the ``write`` callable is given goes out once the application hands
  control back (returns, or yields its next chunk). An application that does
  block stalls every request of the worker meanwhile: a call that holds the
  loop :data:`BLOCKED_WARNING` seconds or more is logged.

What the application returns decides the path back, the same in both modes:

- a list or tuple (or any iterable of length 1): the buffered response
  (``Content-Length``, one write). On the pool it is joined in the thread and
  handed to the loop whole: one hop to the thread and one back; inline, the
  handler makes no coroutine at all;
- a :class:`~colonnade.handlers.wsgi.environ.FileWrapper` around a regular file:
  the file's range becomes ``ctx.response.file`` and goes out with ``sendfile``;
- anything else: iterated (in the thread, or on the loop between writes), each
  non-empty chunk written by the loop before the next is asked for
  (back-pressure from the client reaches the application); the head leaves
  with the first non-empty chunk, as PEP 3333 asks. The ``write`` callable of
  ``start_response`` streams the same way.

The iterable's ``close()`` is always called, whatever happened. An exception
from the application propagates to the pipeline: a 500 with a correlation id
(the traceback only in the log) or, once streaming, a dropped connection.
``start_response`` follows PEP 3333's ``exc_info`` rules.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from threading import get_ident
from time import monotonic
from typing import Any, Final, cast

from colonnade import __version__
from colonnade.core import cgihead
from colonnade.core.app import Application
from colonnade.core.cgienv import HeaderVariables, latin1_path
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import split_host
from colonnade.core.pyapp import load_app
from colonnade.core.request import EMPTY_BODY, Body, Headers
from colonnade.core.response import FileBody, Response
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
    Command,
    Outbox,
    Posted,
    ThreadPool,
)
from colonnade.handlers.wsgi.config import WsgiSection
from colonnade.handlers.wsgi.environ import (
    EMPTY_INPUT,
    WSGI_HEADERS,
    ErrorStream,
    FileWrapper,
    InputStream,
)

log = logging.getLogger("colonnade.wsgi")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


#: Bodies up to this size (declared, no ``Expect``) are read on the loop before the
#: application runs: cheaper than fetching them from the thread.
_PREFETCH: Final = 65536

#: An inline (``blocking = false``) application's call holding the event loop this
#: many seconds or more is logged (at most once a minute per application).
BLOCKED_WARNING: Final = 0.25
_WARN_EVERY: Final = 60.0

_PROTOCOLS: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}

# "200 OK" → (200, None): the reason is only passed on when it is not the standard one.
_STATUS: Final[dict[str, tuple[int, bytes | None]]] = {}

# Response header name → lower-case bytes.
_NAMES: Final[dict[str, bytes]] = {}
_CACHE_MAX: Final = 1024


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
    # A comprehension over the list: compiled, the result is made at its final
    # length and filled in place (no append per header).
    names = _NAMES
    return [(_header_name(names, name), value.encode("latin-1")) for name, value in headers]


def _header_name(names: dict[str, bytes], name: str) -> bytes:
    key = names.get(name)
    if key is None:
        key = name.lower().encode("latin-1")
        if len(names) < _CACHE_MAX:
            names[name] = key
    return key


#: An exchange's headers before start_response (never changed: see Exchange).
_NO_HEADERS: Final[list[tuple[str, str]]] = []
#: An exchange's response headers until complete() (never given to a response).
_NO_OUT_HEADERS: Final[Headers] = []


class Exchange:
    """The application's side of one request: ``start_response``, ``write``, the
    iterable's outcome (on the pool, also the thread's job: see :class:`_Answer`).

    With a bridge, ``write`` hands each chunk to the loop and waits until it is
    written (the application's thread). Without one (inline on the loop), the
    head goes to ``response`` at once and the chunks queue in ``pending`` for the
    handler to write when the application hands control back.
    """

    __slots__ = (
        "body",
        "bridge",
        "code",
        "head_sent",
        "headers",
        "out_headers",
        "pending",
        "reason",
        "response",
        "status",
        "whole",
    )

    def __init__(self, bridge: Bridge | None, response: Response | None = None) -> None:
        self.bridge = bridge
        self.response = response
        self.status: str | None = None
        # One shared empty list until start_response gives the application's (it is
        # replaced, never changed): no list made and freed per request.
        self.headers: list[tuple[str, str]] = _NO_HEADERS
        self.head_sent = False
        self.pending: list[bytes] | None = None  # inline: written, not yet sent
        self.whole: bytes | None = None  # the body, where it was one declared chunk
        # The whole response once complete() set it (kept here, not in a tuple made
        # per request): status, reason (None: the standard one), headers, body or file.
        self.code = 0
        self.reason: bytes | None = None
        self.out_headers: Headers = _NO_OUT_HEADERS
        self.body: bytes | FileBody = b""

    def __call__(
        self,
        status: str | bytes,
        response_headers: list[tuple[str, str]] | None = None,
        exc_info: Any = None,
    ) -> Exchange | None:
        """PEP 3333 ``start_response(status, response_headers, exc_info=None)`` (its
        parameters' names, for an application that passes them by keyword), and the
        ``write(data)`` callable it returns: the exchange itself is both, told
        apart by their arguments (``write`` takes one). Compiled, a bound method
        (of ``write``, or one made per request to give the application) is a
        generic attribute lookup (~300 instructions), and an object of its own
        per request another allocation, for a callable most applications never
        call."""
        headers = response_headers
        if headers is None and exc_info is None:
            if type(status) is str:
                raise TypeError(
                    "one str given: WSGI write() takes bytes, "
                    "start_response() the status and the response headers"
                )
            self.write(cast("bytes", status))
            return None
        if type(status) is not str:
            raise TypeError(f"WSGI status must be a str, not {type(status).__name__}")
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
        return self  # the write callable

    def head(self) -> tuple[int, bytes | None, Headers]:
        """Status code, reason and headers as the response wants them."""
        if self.status is None:
            raise RuntimeError("the WSGI application did not call start_response()")
        code, reason = parse_status(self.status)
        return code, reason, convert_headers(self.headers)

    def write(self, data: bytes) -> None:
        """Send ``data`` (the head first, if it has not gone out yet)."""
        if type(data) is not bytes:
            raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
        bridge = self.bridge
        pending = self.pending
        if self.head_sent:
            if not data:
                return
            if bridge is not None:
                bridge.call(WRITE, data)
            elif pending is not None:
                pending.append(data)
            else:
                self.pending = [data]
            return
        code, reason, headers = self.head()
        self.head_sent = True
        # A chunk _pieces holds as the whole body while it asks for the next (the
        # application's code running): yielded before this write, it goes first.
        held = self.whole
        if bridge is not None:
            if held is None:
                bridge.call(START, (code, reason, headers, data))
            else:
                self.whole = None
                bridge.call(START, (code, reason, headers, held))
                if data:
                    bridge.call(WRITE, data)
            return
        response = self.response
        assert response is not None  # inline exchanges are made with theirs
        _set_head(response, code, reason, headers)
        if held is None:
            self.pending = [data]  # even b"": the handler's write of it sends the head
        else:
            self.whole = None
            self.pending = [held, data]

    def complete(self, body: bytes | FileBody) -> None:
        """The response is whole, with ``body``: its head made from start_response's."""
        self.code, self.reason, self.out_headers = self.head()
        self.body = body

    def declared_length(self) -> int | None:
        """The ``Content-Length`` the application set, if any."""
        for name, value in self.headers:
            if len(name) == 14 and name.lower() == "content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None


def _set_head(response: Response, code: int, reason: bytes | None, headers: Headers) -> None:
    response.status = code
    response.reason = reason
    response.headers = headers
    # The application's own error pages are kept (custom errors replace them only
    # with existing_response = "replace").
    response.skip_custom_errors = True


def _set_whole(response: Response, exchange: Exchange) -> None:
    # The whole response complete() set on the exchange.
    _set_head(response, exchange.code, exchange.reason, exchange.out_headers)
    body = exchange.body
    if type(body) is bytes:
        response.body = body
    else:
        response.file = body  # type: ignore[assignment]


def _settle(exchange: Exchange, result: Iterable[bytes]) -> bool:
    # The response complete (set on the exchange) where the application's result
    # gives it at once (a list, a tuple, one item, a file to send); False: it streams.
    if exchange.head_sent:  # the application used write(): stream the rest
        return False
    kind = type(result)
    if kind is list or kind is tuple:
        # As a list (items unchecked: _check_bytes says what is wrong): compiled
        # code indexes it directly. A tuple, rarer, is copied into one.
        chunks = cast("list[Any]", result) if kind is list else list(result)
        content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        exchange.complete(_check_bytes(content))
        return True
    if kind is FileWrapper:
        found = _sendable(result, exchange)  # type: ignore[arg-type]
        if found is not None:
            exchange.complete(found)
            return True
    elif getattr(kind, "__len__", None) is not None and len(result) == 1:  # type: ignore[arg-type]
        exchange.complete(_check_bytes(next(iter(result))))
        return True
    return False


def _pieces(exchange: Exchange, result: Iterable[bytes]) -> Iterator[bytes]:
    # The non-empty chunks of the result, for the caller to write one by one (the
    # application's code runs as each is asked for). A body that is one chunk of
    # the declared Content-Length is kept in exchange.whole instead: it goes out
    # buffered, unless more follows.
    declared = None if exchange.head_sent else exchange.declared_length()
    chunks = iter(result)
    for chunk in chunks:
        if not chunk:
            continue
        if declared is not None and not exchange.head_sent and len(chunk) >= declared:
            # Held while the next is asked for: the application's code runs, and a
            # write() it makes meanwhile sends the held chunk first (see write).
            exchange.whole = _check_bytes(chunk)
            following = next((c for c in chunks if c), None)
            if following is None:
                return  # the whole body, unless a write() sent it
            if exchange.whole is None:
                chunk = following  # a write() sent it
            else:
                exchange.whole = None
                yield chunk
                chunk = following
        yield chunk


def _finish(exchange: Exchange) -> bool:
    # After the result was iterated: the response complete (set on the exchange),
    # or False where it streamed.
    content = exchange.whole
    if content is None:
        if exchange.head_sent:
            return False
        content = b""
    exchange.complete(content)
    return True


def _close(result: Iterable[bytes]) -> None:
    kind = type(result)
    if kind is list or kind is tuple:
        return  # nothing to close (and a failed getattr costs an exception)
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _next_chunk(pieces: Iterator[bytes], exchange: Exchange) -> bytes | None:
    # Inline: the application's next chunk (its code runs on the loop's thread),
    # handed to write(); None at the end.
    try:
        chunk = next(pieces, None)
        if chunk is not None:
            exchange.write(chunk)
        return chunk
    except Exception:
        raise
    except BaseException as exc:
        raise _app_error(exc) from None


def _close_inline(result: Iterable[bytes]) -> None:
    # Inline: the result's close() (the application's code, on the loop's thread).
    try:
        _close(result)
    except Exception:
        raise
    except BaseException as exc:
        raise _app_error(exc) from None


def _app_error(exc: BaseException) -> RuntimeError:
    # SystemExit (sys.exit()) or KeyboardInterrupt from an application must not
    # stop the server: it is an error of the request.
    error = RuntimeError(f"the WSGI application raised {type(exc).__name__}: {exc}")
    return error.with_traceback(exc.__traceback__)


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


class _LastPort:
    """The port of the last address seen, as text: addresses repeat (a
    connection's on each of its requests)."""

    __slots__ = ("address", "text")

    def __init__(self) -> None:
        self.address: object = None
        self.text = ""

    def of(self, address: object) -> str:
        """``address``'s port as text."""
        # An object, not a typed tuple: mypyc would unbox that and box it again as
        # a new tuple, never the one remembered.
        if address is not self.address:
            self.text = str(cast("tuple[str, int]", address)[1])
            self.address = address
        return self.text


class WsgiHost:
    """One application's WSGI hosting: its environ template, where its callable
    runs (the pool, or inline on the loop) and each request's way there and back.

    A compiled class of its own (the handler itself is a Module subclass, which
    stays interpreted): the per-request calls between its methods are direct.
    """

    def __init__(self, app: WsgiApp, application: Application, settings: WsgiSection) -> None:
        self.app = app
        self.settings = settings
        self.inline = not settings.blocking
        mount = "" if application.path == "/" else application.path.rstrip("/")
        # Behind a proxy that strips settings.root_path, requests arrive without it:
        # SCRIPT_NAME has it, PATH_INFO is what follows the mount path as received.
        self.script_name = latin1_path(settings.root_path + mount)
        self.prefix_length = len(mount)
        # The template every request's environ is a copy of: the constant entries,
        # and the per-request ones each request overwrites (their slots exist in
        # the copy, so filling them never grows it).
        self.base: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "",
            "QUERY_STRING": "",
            "RAW_URI": "",
            "REQUEST_URI": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "",
            "SERVER_PORT": "",
            "REMOTE_ADDR": "",
            "REMOTE_PORT": "",
            "wsgi.url_scheme": "http",
            "wsgi.input": EMPTY_INPUT,
            "colonnade.context": None,
            "colonnade.items": None,
            "SCRIPT_NAME": self.script_name,
            "SERVER_SOFTWARE": f"colonnade/{__version__}",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "wsgi.version": (1, 0),
            "wsgi.errors": ErrorStream(application.log),
            # Inline, only the loop's thread ever calls the application.
            "wsgi.multithread": not self.inline,
            # Pools may run several workers, and a recycle overlaps old and new.
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }
        self.pool: ThreadPool | None = (
            None
            if self.inline
            else ThreadPool(settings.threads, f"wsgi{mount or '/'}", _run, settings.batch_threads)
        )
        self.name = application.id
        self._outbox: Outbox | None = None  # the serving loop's, once known
        # The Host and server address the template's SERVER_NAME and SERVER_PORT
        # are for (none yet: the first request sets them), and the last client
        # address's port as text.
        self._host: str | None = None
        self._server: object = None
        self._client_port = _LastPort()
        # Names of other modules read per request, as attributes: compiled code looks
        # an imported global up in the module's dictionary on every use.
        self._headers: HeaderVariables = WSGI_HEADERS
        self._session_key = SESSION
        self._empty_body: Body = EMPTY_BODY
        self._clock: Callable[[], float] = monotonic
        # (not "_thread": mypyc names the C field "__thread", a C keyword)
        self._ident: Callable[[], int] = get_ident
        self._warned = -_WARN_EVERY  # when an inline call holding the loop was last logged
        #: Inline calls that held the loop BLOCKED_WARNING seconds or more.
        self.blocked_calls = 0

    def close(self) -> None:
        """Let the pool's threads exit once their current request is done."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    # -- the loop side ----------------------------------------------------------------

    def environ(self, ctx: Context) -> dict[str, Any]:
        """The environ of ``ctx``'s request (``wsgi.input`` is the caller's to set
        where the request has a body)."""
        request = ctx.request
        # SERVER_NAME and SERVER_PORT repeat from one request to the next (the
        # site's Host, the binding's address): they are the template's, rewritten
        # only when they change (the template is only used on the loop's thread).
        host = request.host
        server: object = request.server
        if host != self._host or (server is not self._server and server != self._server):
            self._server_entries(host, server)
        environ = self.base.copy()
        # The template holds the common values (GET, HTTP/1.1, http, no query):
        # only what differs is stored.
        method = request.method
        if method != "GET":
            environ["REQUEST_METHOD"] = method
        path = request.path
        if self.prefix_length:
            path = path[self.prefix_length :]
        environ["PATH_INFO"] = latin1_path(path)
        query = request.query
        if query:
            environ["QUERY_STRING"] = query.decode("latin-1")
        environ["RAW_URI"] = environ["REQUEST_URI"] = request.target.decode("latin-1")
        version = request.version
        if version != "1.1":
            environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version
        scheme = request.scheme
        if scheme != "http":
            environ["wsgi.url_scheme"] = scheme
        tls = request.tls
        if tls is not None:
            # HTTPS, SSL_PROTOCOL, ... and the client certificate's SSL_CLIENT_*:
            # made once per connection.
            environ.update(tls.ssl_variables())
        elif scheme == "https":  # a trusted proxy's word
            environ["HTTPS"] = "on"
        # The client's port repeats for each request of a connection: its text
        # form is remembered.
        client: object = request.client
        if client is not None:
            environ["REMOTE_ADDR"] = cast("tuple[str, int]", client)[0]
            environ["REMOTE_PORT"] = self._client_port.of(client)
        else:  # a unix socket's peer has no address
            del environ["REMOTE_ADDR"], environ["REMOTE_PORT"]
        self._headers.add(environ, request.headers)
        user = ctx.user
        if user is not None and user.name:
            environ["REMOTE_USER"] = user.name
            environ["AUTH_TYPE"] = user.auth_type
        environ["colonnade.context"] = ctx
        items = ctx.items
        environ["colonnade.items"] = items
        # The item itself, not the ctx.session property (a Python call per request).
        session = items.get(self._session_key)
        if session is not None:
            environ["colonnade.session"] = session
        return environ

    def _server_entries(self, host: str, server: object) -> None:
        # The template's SERVER_NAME (the Host's name, else the binding's address)
        # and SERVER_PORT (the binding's port), for requests with this Host and
        # server address.
        base = self.base
        if host:
            name = split_host(host)
        elif server is not None:
            name = cast("tuple[str, int]", server)[0]
        else:
            name = ""
        base["SERVER_NAME"] = name
        base["SERVER_PORT"] = "" if server is None else str(cast("tuple[str, int]", server)[1])
        self._host = host
        self._server = server

    def execute(self, ctx: Context) -> Awaitable[None] | None:
        """Run the application for ``ctx``: on the pool, or inline (no coroutine
        where the response is whole when the application returns)."""
        environ = self.environ(ctx)
        body = ctx.request.body
        if body is self._empty_body or (
            "CONTENT_LENGTH" not in environ and "HTTP_TRANSFER_ENCODING" not in environ
        ):
            if self.inline:
                return self._inline(ctx, environ)
            answer = _Answer(self, ctx, self._bridge(), environ)
            self._submit(answer)
            return answer
        if self.inline:
            return self._inline_with_body(ctx, environ, body)
        return self._pooled(ctx, environ, body)

    async def _prefetch(self, environ: dict[str, Any], body: Body, buffer: bool) -> Any:
        # A small declared body, or any body when buffering, is read here on the
        # loop; otherwise None: the application streams it through the bridge,
        # holding one of the pool's threads for as long as the client takes.
        length_text = environ.get("CONTENT_LENGTH")
        length = int(length_text) if length_text and length_text.isdigit() else -1
        if 0 <= length <= _PREFETCH and "HTTP_EXPECT" not in environ:
            return io.BytesIO(await body.read(-1))
        if buffer:
            # tempfile (with shutil, random, bz2 and lzma: ~0.8 MiB of an idle WSGI
            # worker's RSS) is imported by the first body that is spooled.
            import tempfile

            # Closed by the caller once the application is done with it.
            spool = tempfile.SpooledTemporaryFile(max_size=self.settings.max_body_buffer)  # noqa: SIM115
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

    # -- inline, on the loop's thread ----------------------------------------------------

    def _inline(self, ctx: Context, environ: dict[str, Any]) -> Awaitable[None] | None:
        # The application called here and now; None where its response is whole in
        # ctx.response, else the coroutine streaming the rest (it closes the result).
        app = self.app
        response = ctx.response
        exchange = Exchange(None, response)
        clock = self._clock
        started = clock()
        try:
            result = app(environ, exchange)
            try:
                whole = _settle(exchange, result)
            except BaseException:
                _close(result)
                raise
            if not whole:
                return self._inline_stream(ctx, exchange, result)
            _close(result)
        except Exception:
            raise
        except BaseException as exc:
            raise _app_error(exc) from None
        finally:
            self._held(ctx, started)
        _set_whole(response, exchange)
        return None

    async def _inline_stream(
        self, ctx: Context, exchange: Exchange, result: Iterable[bytes]
    ) -> None:
        # Each chunk asked of the application (its code runs on the loop), then
        # written with what write() queued: the next is asked for once the client
        # took it (back-pressure).
        try:
            pieces = _pieces(exchange, result)
            while True:
                started = self._clock()
                try:
                    chunk = _next_chunk(pieces, exchange)
                finally:
                    self._held(ctx, started)
                pending = exchange.pending
                if pending:
                    exchange.pending = None
                    for data in pending:
                        await ctx.write(data)
                if chunk is None:
                    break
            if _finish(exchange):
                _set_whole(ctx.response, exchange)
        finally:
            _close_inline(result)

    async def _inline_with_body(self, ctx: Context, environ: dict[str, Any], body: Body) -> None:
        # Inline, wsgi.input must never wait for the client: the body is read whole
        # first, whatever buffer_request_body says.
        spool = await self._prefetch(environ, body, True)
        environ["wsgi.input"] = spool
        try:
            pending = self._inline(ctx, environ)
            if pending is not None:
                await pending
        finally:
            spool.close()

    def _held(self, ctx: Context, started: float) -> None:
        # After the application's code ran on the loop since ``started``.
        held = self._clock() - started
        if held >= BLOCKED_WARNING:
            self._blocked(ctx, held)

    def _blocked(self, ctx: Context, held: float) -> None:
        self.blocked_calls += 1
        now = monotonic()
        if now - self._warned < _WARN_EVERY:
            return
        self._warned = now
        request = ctx.request
        log.warning(
            "the WSGI application of %s (declared non-blocking: [wsgi] blocking = false) "
            "held the event loop %.2f s on %s %s: every other request of this worker "
            "waited meanwhile; if the application can block, set blocking = true "
            "(logged at most once a minute)",
            self.name,
            held,
            request.method,
            request.path,
        )

    # -- on the pool ----------------------------------------------------------------------

    def _outbox_here(self) -> Outbox:
        # The running loop's outbox. asyncio.get_running_loop() costs a getpid()
        # system call on every call (its fork check): asked once per loop instead.
        outbox = self._outbox
        if outbox is None or outbox.thread != self._ident() or not outbox.is_running():
            if outbox is not None:
                outbox.close()
            outbox = self._outbox = Outbox(asyncio.get_running_loop())
        return outbox

    def _bridge(self) -> Bridge:
        # A request's way back from the pool (the pool must still be there).
        if self.pool is None:
            raise RuntimeError("the WSGI thread pool is shut down")
        return Bridge(self._outbox_here())

    def _submit(self, job: _Answer) -> None:
        # The answer is the thread's job too (its application, environ and bridge):
        # its bridge carries it to the thread (no tuple made per request).
        pool = self.pool
        if pool is None:
            raise RuntimeError("the WSGI thread pool is shut down")
        pool.submit(job.pool_bridge, job)

    async def _pooled(self, ctx: Context, environ: dict[str, Any], body: Body) -> None:
        # A request with a body on the pool: the body read first where it is small
        # or buffered, then the application runs.
        bridge = self._bridge()
        spool = await self._prefetch(environ, body, self.settings.buffer_request_body)
        environ["wsgi.input"] = InputStream(bridge) if spool is None else spool
        answer = _Answer(self, ctx, bridge, environ)
        try:
            self._submit(answer)
        except BaseException:
            if spool is not None:
                spool.close()
            raise
        await self._serve(answer, None, body, spool)

    async def _serve(
        self, answer: _Answer, command: Command | None, body: Body, spool: Any
    ) -> None:
        # Serve the application thread's commands, from ``command`` (None: the
        # first is still to come) until its response is complete.
        ctx = answer.ctx
        bridge = answer.pool_bridge
        waiting = False  # the thread waits for an answer
        op = -1
        # A request body the server refused while the application read it (413.1
        # over the size limit, 400 for bad chunking): the application saw an
        # exception from wsgi.input and made a response of its own (often a 500
        # with its own traceback page); the client gets the server's answer.
        refused: HttpError | None = None
        try:
            while True:
                if command is None:
                    command = await bridge
                op, arg = command
                command = None
                if refused is not None and op != READ and op != READ_ALL:
                    waiting = op == START or op == WRITE  # the thread awaits an answer
                    raise refused
                if op == DONE:
                    _set_whole(ctx.response, answer)
                    return
                if op == STREAMED:
                    return
                if op == FAILED:
                    raise arg
                # The thread posts again only once answered (the bridge waits for
                # its next command already: the last one was taken).
                waiting = True
                try:
                    if op == WRITE:
                        await ctx.write(arg)
                        reply: Any = None
                    elif op == START:
                        status, reason, headers, chunk = arg
                        _set_head(ctx.response, status, reason, headers)
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
                bridge.abandon(waiting)
            raise
        finally:
            if spool is not None and not bridge.gone:
                spool.close()


class _Answer(Exchange):
    """A request on the pool, one object for both sides: the job its
    application thread runs (the application's environ, and the exchange the
    application is given as ``start_response``: the thread alone uses those
    fields), and what a request without a body waits for on the loop: the
    thread's first command. Most answers are whole (a single hop back), set
    here; the rest is :meth:`WsgiHost._serve`'s. Awaiting it yields the bridge
    to the task itself: one generator, where a coroutine awaiting the bridge
    would make two and pass every step through both."""

    __slots__ = ("ctx", "environ", "host", "pool_bridge")

    def __init__(
        self, host: WsgiHost, ctx: Context, bridge: Bridge, environ: dict[str, Any]
    ) -> None:
        super().__init__(bridge)
        self.host = host
        self.ctx = ctx
        #: The thread's, which takes it (see _run).
        self.environ: dict[str, Any] | None = environ
        # The exchange's bridge, typed: never None here.
        self.pool_bridge = bridge

    def __await__(self) -> Generator[Any, None, None]:
        bridge = self.pool_bridge
        try:
            if bridge.command is None:
                yield bridge.wait()  # to the task, which adds its wake-up
            command = bridge.take()
        except BaseException:  # cancelled: the request is gone for the thread too
            bridge.abandon(False)
            raise
        if command[0] == DONE:
            _set_whole(self.ctx.response, self)
            return
        yield from self.host._serve(self, command, EMPTY_BODY, None).__await__()


# -- the application thread --------------------------------------------------------------


#: The thread's final commands that carry nothing (a whole response is the answer's
#: fields, set by Exchange.complete() before DONE is posted): made once, not a tuple
#: per request (objects: see bridge.Posted).
_DONE: Final[Posted] = (DONE, None)
_STREAMED: Final[Posted] = (STREAMED, None)


def _run(job: _Answer) -> None:
    # The environ taken from the answer: freed on this thread once the application
    # is done with it, not on the loop's with the answer at the request's end.
    environ = job.environ
    job.environ = None
    try:
        assert environ is not None  # each answer's job runs once
        command: Posted = _respond(job.host.app, environ, job)
    except Exception as exc:
        command = FAILED, exc
    except BaseException as exc:
        command = FAILED, _app_error(exc)
    job.pool_bridge.post(command)


def _respond(app: WsgiApp, environ: dict[str, Any], answer: _Answer) -> Posted:
    result = app(environ, answer)
    try:
        if not _settle(answer, result):
            for chunk in _pieces(answer, result):
                answer.write(chunk)
            if not _finish(answer):
                return _STREAMED
        return _DONE
    finally:
        _close(result)


class WsgiHandler(Handler):
    """Runs the application's WSGI callable on a bounded thread pool, or inline on
    the event loop where ``[wsgi] blocking = false`` says it never blocks."""

    id = "handler.wsgi"
    section = WsgiSection

    def __init__(self) -> None:
        self.host: WsgiHost | None = None

    def provision(self, app: Application) -> None:
        """Import the application and start (lazily) its thread pool."""
        python = app.python
        if python is None:
            raise ModuleError(self.id, f"application {app.id} names no Python app to host")
        loaded = load_app(python.target, app_dir=python.app_dir, factory=python.factory)
        self.host = WsgiHost(loaded, app, app.section(WsgiSection))

    def cleanup(self) -> None:
        """Let the pool's threads exit once their current request is done."""
        if self.host is not None:
            self.host.close()
            self.host = None

    def execute(self, ctx: Context) -> Awaitable[None] | None:
        """Run the application for ``ctx`` (see :meth:`WsgiHost.execute`)."""
        host = self.host
        if host is None:
            raise ModuleError(self.id, "execute() before provision()")
        return host.execute(ctx)
