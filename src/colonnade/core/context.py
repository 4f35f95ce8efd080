"""The request context every module shares: request, response, user, handler, items.

The response is buffered until it is flushed: at the latest when the walk reaches
SEND_RESPONSE, or earlier when a handler streams (``start_response``/``write``).
Flushing runs the SEND_RESPONSE hooks once, then hands the head to the writer.
When those hooks are all plain functions and the body is in memory, the flush
makes no coroutine (:meth:`Context.flush`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from colonnade.config.sections import Section, SectionSet
from colonnade.core.compileopts import mypyc_attr
from colonnade.core.httputil import method_not_allowed
from colonnade.core.principal import Principal
from colonnade.core.request import EMPTY_BODY, Headers, Request, is_local
from colonnade.core.response import FieldBlock, FileBody, Response
from colonnade.core.session import SESSION, Session

if TYPE_CHECKING:
    from colonnade.core.app import Application
    from colonnade.core.cachegrant import CacheGrant
    from colonnade.core.handler import Handler
    from colonnade.core.stages import Stage
    from colonnade.core.tracing import Trace

S = TypeVar("S", bound=Section)

log = logging.getLogger("colonnade.request")

#: The clock of ``Context.started``: a static of the compiled module, not a look-up
#: in its globals per request.
_MONOTONIC: Final = monotonic

#: Whether mypyc compiled this module: then a :class:`TransportWriter` is called
#: natively (Context.flush, SiteCounters.done); interpreted, no type test is made.
COMPILED: Final = not __file__.endswith(".py")

#: How the pure install makes its per-request objects (this context, its response,
#: the exchange, the ASGI cycle): ``NEW(cls)``, then ``cls.__init__``
#: called as the plain function it is (bound once, as a module constant). Calling
#: the class instead enters the interpreter a second time through C (CPython 3.11's
#: ``type_call`` and ``slot_tp_init``) and packs the arguments into a tuple: ~350
#: instructions more per object, where a plain function's call is run inline. The
#: compiled build calls the native constructor.
NEW: Final = object.__new__


class ResponseWriter(Protocol):
    """What the transport gives the pipeline to put a response on the wire."""

    bytes_sent: int

    def send_all(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> None:
        """Send a whole buffered response (the fast path: one write)."""

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        """Send the head of a streamed response."""

    async def write(self, data: bytes) -> None:
        """Send body bytes, waiting while the client is slow to read."""

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        """Send a byte range of a file (zero-copy where the platform can)."""

    async def end(self) -> None:
        """The streamed body is complete."""

    def abort(self) -> None:
        """Drop the connection: the response cannot be completed."""

    def upgrade(self) -> RawStream | None:
        """Take the connection over for another protocol (None where impossible)."""


class TransportWriter:
    """The base of the transport's own writer for HTTP/1 (``Exchange``), the
    ``ctx.writer`` of nearly every request: where the writer is one, the compiled
    build calls its ``send_all`` and reads its ``bytes_sent`` natively. Through the
    :class:`ResponseWriter` protocol each is a lookup by name (~330 instructions
    for the call, ~190 for the attribute). Any other ResponseWriter (HTTP/2's, a
    module's wrapper, a test's) works as before. The pure-Python build does not
    test for it (:data:`COMPILED`): interpreted, the test costs and gains nothing."""

    __slots__ = ("bytes_sent",)

    def __init__(self) -> None:
        self.bytes_sent = 0

    def send_all(
        self,
        status: int,
        reason: bytes | None,
        headers: Headers,
        body: bytes,
        block: FieldBlock | None = None,
        answer: bytes | None = None,
    ) -> None:
        """Send a whole buffered response (the subclass's); ``block``: its head as
        bytes already (see :class:`~colonnade.core.response.FieldBlock`), which
        says what ``status``, ``reason`` and ``headers`` say; ``answer`` (with a
        block): the whole answer of that head and ``body`` (see
        :class:`~colonnade.core.response.Response`), which the writer may send as
        it is."""
        raise NotImplementedError


class RawStream(Protocol):
    """A connection taken over after an HTTP upgrade (WebSocket): bytes both ways."""

    async def receive(self) -> bytes:
        """The next bytes from the client; ``b""`` once it closed its side."""

    async def send(self, data: bytes) -> None:
        """Send bytes, waiting while the client is slow to read."""

    def close(self) -> None:
        """Close the connection."""

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the server begins a graceful stop (at once if it
        has begun): the owner of the stream should close it soon, politely."""


#: The SEND_RESPONSE hooks (``Plan.run_send_response``), called as ``fn(ctx)``: a
#: plain function that ran them and returns None, or one returning the awaitable
#: that runs them.
SendHook = Callable[["Context"], Awaitable[None] | None]


class SendFailed:
    """What stands in for a response's SEND_RESPONSE hooks once they raised: the
    hooks run once per response, so a flush after that (the walk's, when a handler
    such as an ASGI application met the failure in its own send) raises the same
    exception again instead of running them a second time, and the walk turns it
    into the error page, which goes out without the hooks."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __call__(self, ctx: Context) -> None:
        raise self.exc


#: How many times one request may be remapped (IIS-like loop protection: a
#: rewrite rule that keeps matching its own output ends in a 500, not a hang).
MAX_REMAPS = 10


@mypyc_attr(allow_interpreted_subclasses=True)
class WriterAdapter:
    """Base of a :class:`ResponseWriter` that wraps ``ctx.writer``: what it does
    not change (the transport's byte count, an abort, an upgrade) goes to the
    writer it wraps, ``_inner``. The compression module's writer and the output
    cache's capture are ones; a subclass writes ``send_all``, ``start``,
    ``write``, ``sendfile`` and ``end``, and extends ``abort``/``upgrade`` where
    it keeps state. (The one class here that modules subclass: compiled, it says
    so to mypyc.)"""

    __slots__ = ("_inner",)

    def __init__(self, inner: ResponseWriter) -> None:
        self._inner = inner

    @property
    def bytes_sent(self) -> int:
        """Bytes on the wire: the transport's count."""
        return self._inner.bytes_sent

    @bytes_sent.setter
    def bytes_sent(self, value: int) -> None:
        self._inner.bytes_sent = value

    def abort(self) -> None:
        """Drop the connection."""
        self._inner.abort()

    def upgrade(self) -> RawStream | None:
        """Upgrades are the transport's business."""
        return self._inner.upgrade()


class Remapper(Protocol):
    """The handler mapping as a remap sees it (the engine's ``HandlerMap``)."""

    def select(self, path: str, method: str, physical: Context) -> Handler:
        """The handler for ``method path`` (``physical``: where to find the file)."""

    def handler(self, handler_id: str) -> Handler | None:
        """The application's handler ``handler_id`` (a handler module it enables,
        mapped to a path or not); None when it has no such handler."""


#: Request headers that describe a body: gone with it after a local redirect.
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"transfer-encoding", b"expect"})

_FINAL = (
    "remap after POST_MAP_REQUEST_HANDLER or of a finished request: the handler mapping is final"
)


class _MappingClosed:
    """``Context.remapper`` once the handler mapping is final."""

    def select(self, path: str, method: str, physical: Context) -> Handler:
        raise RuntimeError(_FINAL)

    def handler(self, handler_id: str) -> Handler | None:
        raise RuntimeError(_FINAL)


#: The value of ``Context.remapper`` after POST_MAP_REQUEST_HANDLER: remap refused.
MAPPING_CLOSED: Remapper = _MappingClosed()


class Context:
    """Everything about one request that modules share.

    - ``request``/``response``: the exchange.
    - ``user``: the :class:`Principal` set by authentication (None until then).
    - ``handler``: the handler chosen in MAP_REQUEST_HANDLER.
    - ``items``: per-request values modules pass to each other (and to apps).
    - ``sections``: the effective settings for this URL; read with :meth:`section`.
    - ``trace``: the request's :class:`~colonnade.core.tracing.Trace` when a trace
      rule selected it, else None: a module emits events with ``if (trace :=
      ctx.trace) is not None: trace.event(kind, **fields)``.
    - ``remapper``: where the handler mapping is, for :meth:`remap` (the engine's
      to set): None before it ran, the mapping while a remap re-runs it,
      ``MAPPING_CLOSED`` once it is final.
    """

    #: The request monitor's links, set by ``engine.Executing`` (the compiled
    #: build's table) when it lists the request, and read only after: the walk
    #: running it and its neighbours among the executing requests. Not set in
    #: ``__init__``: a request the monitor does not list pays nothing for them.
    monitor_walk: Any
    monitor_prev: Context | None
    monitor_next: Context | None

    __slots__ = (
        "_correlation_id",
        "_physical_path",
        "_remaps",
        "_send_response",
        "app",
        "cache_grant",
        "ended_at",
        "error",
        "file_stat",
        "finished",
        "handler",
        "items",
        "monitor_next",
        "monitor_prev",
        "monitor_walk",
        "remapper",
        "request",
        "response",
        "sections",
        "started",
        "state_acquired",
        "trace",
        "user",
        "waiting",
        "writer",
    )

    def __init__(
        self,
        request: Request,
        app: Application,
        writer: ResponseWriter,
        send_response: SendHook | None,
        sections: SectionSet | None = None,
    ) -> None:
        self.request = request
        if COMPILED:
            self.response = Response()
        else:
            # Interpreted, Response.__init__'s stores made here (as the transport
            # makes its RequestHead): its call is one more Python frame, reached
            # through the type's slots, per request. The same values as
            # Response.__init__ (tests/core/test_context.py compares them).
            self.response = response = NEW(Response)
            response.status = 200
            response.substatus = 0
            response.reason = None
            response.headers = []
            response.block = None
            response.answer = None
            response.answer_body = b""
            response.body = b""
            response.file = None
            response.source = None
            response.headers_sent = False
            response.bytes_sent = 0
            response.skip_custom_errors = False
            response.streaming = False
        self.app = app
        self.writer = writer
        self.user: Principal | None = None
        self.handler: Handler | None = None
        self.items: dict[str, Any] = {}
        if sections is None:
            # A dict read for a path seen before (no method call into the
            # application). The engine looks it up itself (``sections``), in the
            # same dict held by its runtime: compiled, a native attribute read
            # where the application's is a generic lookup (~190 instructions).
            sections = app.path_sections.get(request.path)
            if sections is None:
                sections = app.sections_for(request.path)
        self.sections: SectionSet = sections
        self.finished = False
        self.state_acquired = False
        self.error: BaseException | None = None
        self.started = _MONOTONIC()
        #: The monotonic clock at the request's end, read once by whichever of its
        #: access log line and its site's counters (``SiteCounters.done``) comes
        #: first (:func:`end_clock`) and reused by the other; 0.0 before.
        self.ended_at = 0.0
        self._correlation_id: str | None = None
        self._physical_path: str | None = None
        #: ``(path, stat)``: the stat of a physical path of this request, taken
        #: with ``Application.lstat_inside`` (no symlink below the root: the file
        #: is inside the application) by whoever looked first, the handler mapping
        #: for a rule with a resource type. A handler reuses it for the same path
        #: instead of a second walk; None: nobody looked.
        self.file_stat: tuple[str, os.stat_result] | None = None
        self._send_response = send_response
        self.remapper: Remapper | None = None
        self._remaps = 0
        self.trace: Trace | None = None
        #: Where the request waits, for the request monitor: ``(stage, owner)`` of
        #: the hook the compiled walk (and the traced one) last awaited; None before.
        self.waiting: tuple[Stage, str] | None = None
        #: A module's leave for the response cache to keep this answer
        #: (:mod:`colonnade.core.cachegrant`); None: the engine's own rule alone.
        self.cache_grant: CacheGrant | None = None

    def section(self, cls: type[S]) -> S:
        """The effective settings of section ``cls`` for this request's URL.

        Compiled: a section decoded already (every request of a URL but its first)
        is a dict look-up here, with no call into the interpreted ``SectionSet``."""
        sections = self.sections
        found: S | None = sections.decoded.get(cls)
        return found if found is not None else sections.get(cls)

    @property
    def session(self) -> Session | None:
        """The request's session from ACQUIRE_REQUEST_STATE on, where the
        session state module gives one (``ctx.items[core.session.SESSION]``);
        else None."""
        found = self.items.get(SESSION)
        return found if isinstance(found, Session) else None

    @property
    def correlation_id(self) -> str:
        """A short id naming this request in error pages, logs and traces."""
        if self._correlation_id is None:
            # secrets.token_hex(6), without importing secrets (hmac, OpenSSL's libcrypto)
            self._correlation_id = os.urandom(6).hex()
        return self._correlation_id

    @property
    def physical_path(self) -> str:
        """The file path the request's URL maps to: the application's mapping
        (``Application.map_path``), then the MAP_PATH hooks, which may change it.

        Computed when first read and kept in ``_physical_path`` (setting the
        property replaces it; the slot set back to None maps again). Every module
        and handler that needs the file reads it here, so the hooks run once.
        The path is not confined here: whoever opens it checks that its real path
        lies under the application's roots (``Application.contains``).
        """
        # Written for the common case, no MAP_PATH hooks: one attribute read more
        # than the plain mapping (no locals, no call).
        if self._physical_path is None:
            self._physical_path = self.app.map_path(self.request.path)
            if self.app.map_path_hooks is not None:
                self._physical_path = self.app.map_path_hooks(
                    self, self.request.path, self._physical_path
                )
        return self._physical_path

    @physical_path.setter
    def physical_path(self, value: str) -> None:
        self._physical_path = value

    def remap(self, path: str) -> None:
        """Serve this request as a request for URL ``path`` from here on.

        What IIS does with a child request (the default document) or a URL
        rewrite: ``request.path``, the effective settings (``sections``) and the
        physical path follow ``path``; ``request.original_path``, ``raw_path`` and
        ``target`` stay what the client sent (the access log, ``REQUEST_URI``,
        ASGI ``raw_path``).

        - Before the handler mapping (BEGIN_REQUEST up to MAP_REQUEST_HANDLER,
          ahead of the engine's mapping step) it is simply a new path: the
          mapping later maps it. A handler a module already chose stays chosen.
        - At MAP_REQUEST_HANDLER after the mapping and at POST_MAP_REQUEST_HANDLER
          the mapping runs again at once and replaces ``ctx.handler`` (404.4 or
          405 when nothing is mapped for the new path and method).
        - Later, and in a request a module finished (the stages that run after
          FINISH), it raises ``RuntimeError``: the handler is final, and the
          modules after POST_MAP_REQUEST_HANDLER may rely on it (a middleware
          that wrapped it must not be bypassed).

        Unlike IIS's child request, a remap does not run the stages before it
        again: what authentication, authorization or request filtering decided
        for the original path stands. A module that judges paths (URL
        authorization) must therefore run where it sees the final path, or
        judge the path again itself.

        ``path`` must be a normalized URL path (as the server decodes one: no
        dot or empty segments, no NUL) inside this application, else
        ``ValueError``. It is served by this application's mapping and settings
        even where a nested application would serve that URL to a client. More
        than ``MAX_REMAPS`` remaps of one request raise ``RuntimeError`` (a 500:
        a rewrite loop).
        """
        remapper = self.remapper
        if remapper is MAPPING_CLOSED or self.finished:
            raise RuntimeError(_FINAL)
        self._move_to(path)
        if remapper is not None:
            self.handler = remapper.select(path, self.request.method, self)

    def hand_to(self, handler_id: str) -> Handler:
        """Serve this request with the handler ``handler_id`` of this application,
        whatever the handler mapping says; return it.

        What URL Rewrite's route to a farm does (``handler.proxy``, with a
        ``core.handler.ROUTE`` item saying where): the module picks the handler
        by id, never importing it. Before the handler mapping (BEGIN_REQUEST up
        to MAP_REQUEST_HANDLER) the mapping keeps the choice; up to the end of
        POST_MAP_REQUEST_HANDLER it replaces the mapped handler. Later, and in a
        finished request, ``RuntimeError`` (the handler is final, as for
        :meth:`remap`). ``LookupError`` when the application does not enable
        that handler module. The path and its settings stay what they are.
        """
        if self.remapper is MAPPING_CLOSED or self.finished:
            raise RuntimeError(_FINAL)
        handler_map = self.app.handler_map
        handler = handler_map.handler(handler_id) if handler_map is not None else None
        if handler is None:
            raise LookupError(f"the application does not enable the handler {handler_id!r}")
        self.handler = handler
        return handler

    def redirect_locally(self, path: str, query: bytes = b"") -> Handler:
        """Serve this request as a ``GET`` for URL ``path?query`` of this
        application, from within a handler, and return the handler to run now.

        What a web server does with a CGI script's local redirect (RFC 3875
        6.2.2: ``Location: /path`` without ``Status``): the handler mapping runs
        again for the new path, as for :meth:`remap`, but after the mapping was
        final. The method becomes ``GET`` (``HEAD`` stays), the request body and
        its headers are gone (the script read it), the query is ``query``; the
        response is cleared. ``request.original_path`` and ``target`` keep what
        the client sent. The caller runs the returned handler's ``execute``.

        As with a remap, the stages before the handler do not run again (what
        authentication and authorization decided stands): the script already
        runs with the rights to read what it names. ``ValueError`` for a path
        that is not normalized or lies outside the application, ``RuntimeError``
        once the response head went out or after ``MAX_REMAPS`` remaps, the
        mapping's 404.4/405 ``HttpError`` when nothing serves the new path.
        """
        handler_map = self.app.handler_map
        if handler_map is None or self.response.headers_sent:
            raise RuntimeError("a local redirect needs a handler mapping and an unsent response")
        self._move_to(path)
        request = self.request
        if request.method != "HEAD":
            request.method = "GET"
        request.body = EMPTY_BODY
        request.headers = [(n, v) for n, v in request.headers if n not in _BODY_HEADERS]
        request.query = query
        self.response.clear()
        handler = handler_map.select(path, request.method, self)
        verbs = handler.verbs
        if verbs is not None and request.method not in verbs:
            raise method_not_allowed(verbs)
        self.handler = handler
        return handler

    def _move_to(self, path: str) -> None:
        # What a remap and a local redirect change: the path, its settings, its file.
        sections = self.app.remap_sections(path)  # ValueError for a bad path
        self._remaps += 1
        if self._remaps > MAX_REMAPS:
            raise RuntimeError(
                f"request for {self.request.original_path!r} remapped more than "
                f"{MAX_REMAPS} times (last to {path!r}): a rewrite or redirect loop?"
            )
        self.request.path = path
        self.sections = sections
        self._physical_path = None  # computed again for the new path when asked

    def error_response(
        self, status: int, substatus: int = 0, message: str = "", detail: str = ""
    ) -> None:
        """Replace the response with a short error page for ``status.substatus``.

        ``message`` is for every client. ``detail`` is for the administrator: what
        to change (the setting that refused the request, the configuration file
        and line at fault). It is logged, kept in ``items`` for error-page modules
        (``errorpage.ERROR_DETAIL``) and shown in the page to local clients only.
        """
        from colonnade.core.errorpage import ERROR_DETAIL, render  # kept out of the hot import

        response = self.response
        response.clear()
        response.status = status
        response.substatus = substatus
        cid = self.correlation_id if status >= 500 else None
        response.headers.append((b"content-type", b"text/html; charset=utf-8"))
        shown = ""
        if detail:
            self.items[ERROR_DETAIL] = detail
            _log_detail(self, message, detail)
            shown = detail if is_local(self.request) else ""
        elif self.items:
            self.items.pop(ERROR_DETAIL, None)
        response.body = render(status, substatus, message, cid, shown)

    async def start_response(self) -> None:
        """Flush the response head now (SEND_RESPONSE runs) to stream the body."""
        response = self.response
        if response.headers_sent:
            return
        response.streaming = True
        send = self._send_response
        if send is not None:
            try:
                if (pending := send(self)) is not None:
                    await pending
            except Exception as exc:
                self._send_failed(exc)
                raise
        response.headers_sent = True
        length = response.header(b"content-length")
        self.writer.start(
            response.status,
            response.reason,
            response.headers,
            int(length) if length is not None else None,
        )

    async def write(self, data: bytes) -> None:
        """Stream ``data`` to the client, flushing the head first if needed."""
        if not self.response.headers_sent:
            await self.start_response()
        if data:
            await self.writer.write(data)

    def upgrade(self) -> RawStream | None:
        """Switch protocols: the caller now owns the connection's bytes.

        Only for a request that asked to upgrade (``Connection: upgrade``); the
        caller writes the ``101`` response itself. Returns None where the
        transport cannot upgrade. The pipeline treats the response as sent.
        """
        stream = self.writer.upgrade()
        if stream is not None:
            self.response.status = 101
            self.response.headers_sent = True
        return stream

    def flush(self) -> Awaitable[None] | None:
        """The walk's SEND_RESPONSE point: run the SEND_RESPONSE hooks once and send
        what is buffered, or end the stream.

        Made no coroutine for the common case, a body in memory and SEND_RESPONSE
        hooks that are all plain functions (or none): it is sent here and now.
        Otherwise returns the awaitable to wait for (a hook that is a coroutine,
        a file body, the end of a stream). A hook that raises makes this raise,
        here or in the awaitable, before the head is sent.
        """
        response = self.response
        if response.headers_sent:
            # Streamed: end it. Sent whole already (e.g. by an ASGI application):
            # nothing left to end.
            return self.writer.end() if response.streaming else None
        send = self._send_response
        if send is not None:
            try:
                pending = send(self)
            except Exception as exc:
                self._send_failed(exc)
                raise
            if pending is not None:
                return self._send_after(pending)
        # Inlined rather than shared with _send_after: a call more per request.
        response.headers_sent = True
        if response.file is not None:
            return self._send_file(response.file)
        writer = self.writer
        block = response.block
        if block is not None and isinstance(writer, TransportWriter) and block.holds(response):
            # The head as bytes already (the proxy's), as it was made: no module
            # changed it and no module wraps the writer. (Called natively, as below:
            # through the protocol it is a look-up by name and a parse of its
            # arguments, ~350 instructions per proxied answer.) The whole answer
            # with it, while the body is still the one it ends with.
            held: TransportWriter = writer
            body = response.body
            answer = response.answer
            if answer is not None and body is not response.answer_body:
                answer = None
            held.send_all(response.status, response.reason, response.headers, body, block, answer)
        elif COMPILED and isinstance(writer, TransportWriter):
            native: TransportWriter = writer  # compiled: a native call
            native.send_all(response.status, response.reason, response.headers, response.body)
        else:
            writer.send_all(response.status, response.reason, response.headers, response.body)
        return None

    async def finish_response(self) -> None:
        """Send what is buffered, or end the stream (:meth:`flush`, awaited).

        A handler calls it to complete its response before it returns (an ASGI
        application's last body message, with work of its own after it): the
        client has it all at once, and the walk's SEND_RESPONSE step then has
        nothing left to do, as for a response sent whole."""
        response = self.response
        if response.headers_sent:
            await self.writer.end()
            response.streaming = False  # ended: nothing more streams
            return
        pending = self.flush()
        if pending is not None:
            await pending

    async def _send_after(self, hooks: Awaitable[None]) -> None:
        # The buffered response, once SEND_RESPONSE hooks that had to wait are done.
        try:
            await hooks
        except Exception as exc:
            self._send_failed(exc)
            raise
        response = self.response
        response.headers_sent = True
        body_file = response.file
        if body_file is not None:
            await self._send_file(body_file)
            return
        self.writer.send_all(response.status, response.reason, response.headers, response.body)

    def _send_failed(self, exc: Exception) -> None:
        # The SEND_RESPONSE hooks raised: they are not run again for this response.
        if not isinstance(self._send_response, SendFailed):
            self._send_response = SendFailed(exc)

    def send_failed(self, exc: BaseException | None = None) -> bool:
        """The SEND_RESPONSE hooks raised for this response (``exc``, where given:
        raised that exception), which was not sent: the walk's flush raises that
        again and sends the error page without them."""
        failed = self._send_response
        return isinstance(failed, SendFailed) and (exc is None or failed.exc is exc)

    async def _send_file(self, body_file: FileBody) -> None:
        # A file body (which a SEND_RESPONSE hook may have swapped in): the head,
        # then the bytes with sendfile.
        response = self.response
        self.writer.start(response.status, response.reason, response.headers, body_file.length)
        if self.request.method != "HEAD" and body_file.length:
            await self.writer.sendfile(body_file.path, body_file.offset, body_file.length)
        await self.writer.end()


def end_clock(ctx: Context) -> float:
    """The monotonic clock at the end of the request of ``ctx``: read by the first
    to ask (its access log line, which the walk and a response cache hit both write
    before they count the request in its site's counters), kept in
    ``ctx.ended_at`` for the others. One clock read per request where there were
    two (~180 instructions each, compiled); the callers of the hot paths
    (``DefaultW3cLine.write``, ``SiteCounters.done``) do the same inline."""
    ended = ctx.ended_at
    if not ended:
        ended = ctx.ended_at = _MONOTONIC()
    return ended


def _log_detail(ctx: Context, message: str, detail: str) -> None:
    # An administrator's answer to "why did it refuse?". A server error is logged
    # every time (with the correlation id its page shows); a client error once per
    # application and distinct detail, so that a scanner cannot fill the log.
    response = ctx.response
    request = ctx.request
    status, substatus = response.status, response.substatus
    server_error = status >= 500
    if not server_error and not ctx.app.first_report(f"{status}.{substatus} {detail}"):
        return
    log.log(
        logging.ERROR if server_error else logging.INFO,
        "%s%s %s: %d.%d %s: %s",
        f"correlation_id={ctx.correlation_id} " if server_error else "",
        request.method,
        request.target.decode("latin-1"),
        status,
        substatus,
        message,
        detail,
    )
