"""The request context every module shares: request, response, user, handler, items.

The response is buffered until it is flushed: at the latest when the walk reaches
SEND_RESPONSE, or earlier when a handler streams (``start_response``/``write``).
Flushing runs the SEND_RESPONSE hooks once, then hands the head to the writer.
When those hooks are all plain functions and the body is in memory, the flush
makes no coroutine (:meth:`Context.flush`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from colonnade.config.sections import Section, SectionSet
from colonnade.core.principal import Principal
from colonnade.core.request import Headers, Request
from colonnade.core.response import FileBody, Response

if TYPE_CHECKING:
    from colonnade.core.app import Application
    from colonnade.core.handler import Handler

S = TypeVar("S", bound=Section)


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


class Context:
    """Everything about one request that modules share.

    - ``request``/``response``: the exchange.
    - ``user``: the :class:`Principal` set by authentication (None until then).
    - ``handler``: the handler chosen in MAP_REQUEST_HANDLER.
    - ``items``: per-request values modules pass to each other (and to apps).
    - ``sections``: the effective settings for this URL; read with :meth:`section`.
    """

    __slots__ = (
        "_correlation_id",
        "_physical_path",
        "_send_response",
        "app",
        "error",
        "finished",
        "handler",
        "items",
        "request",
        "response",
        "sections",
        "started",
        "state_acquired",
        "user",
        "writer",
    )

    def __init__(
        self,
        request: Request,
        app: Application,
        writer: ResponseWriter,
        send_response: SendHook | None,
    ) -> None:
        self.request = request
        self.response = Response()
        self.app = app
        self.writer = writer
        self.user: Principal | None = None
        self.handler: Handler | None = None
        self.items: dict[str, Any] = {}
        self.sections: SectionSet = app.sections_for(request.path)
        self.finished = False
        self.state_acquired = False
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self._correlation_id: str | None = None
        self._physical_path: str | None = None
        self._send_response = send_response

    def section(self, cls: type[S]) -> S:
        """The effective settings of section ``cls`` for this request's URL."""
        return self.sections.get(cls)

    @property
    def correlation_id(self) -> str:
        """A short id naming this request in error pages, logs and traces."""
        if self._correlation_id is None:
            self._correlation_id = secrets.token_hex(6)
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

    def error_response(self, status: int, substatus: int = 0, message: str = "") -> None:
        """Replace the response with a short error page for ``status.substatus``."""
        from colonnade.core.errorpage import render  # cheap; kept out of the hot import

        response = self.response
        response.clear()
        response.status = status
        response.substatus = substatus
        cid = self.correlation_id if status >= 500 else None
        response.headers.append((b"content-type", b"text/html; charset=utf-8"))
        response.body = render(status, substatus, message, cid)

    async def start_response(self) -> None:
        """Flush the response head now (SEND_RESPONSE runs) to stream the body."""
        response = self.response
        if response.headers_sent:
            return
        response.streaming = True
        send = self._send_response
        if send is not None and (pending := send(self)) is not None:
            await pending
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
        if self._send_response is not None and (pending := self._send_response(self)) is not None:
            return self._send_after(pending)
        # Inlined rather than shared with _send_after: a call more per request.
        response.headers_sent = True
        if response.file is not None:
            return self._send_file(response.file)
        self.writer.send_all(response.status, response.reason, response.headers, response.body)
        return None

    async def finish_response(self) -> None:
        """Send what is buffered, or end the stream (:meth:`flush`, awaited)."""
        if self.response.headers_sent:
            await self.writer.end()
            return
        pending = self.flush()
        if pending is not None:
            await pending

    async def _send_after(self, hooks: Awaitable[None]) -> None:
        # The buffered response, once SEND_RESPONSE hooks that had to wait are done.
        await hooks
        response = self.response
        response.headers_sent = True
        body_file = response.file
        if body_file is not None:
            await self._send_file(body_file)
            return
        self.writer.send_all(response.status, response.reason, response.headers, response.body)

    async def _send_file(self, body_file: FileBody) -> None:
        # A file body (which a SEND_RESPONSE hook may have swapped in): the head,
        # then the bytes with sendfile.
        response = self.response
        self.writer.start(response.status, response.reason, response.headers, body_file.length)
        if self.request.method != "HEAD" and body_file.length:
            await self.writer.sendfile(body_file.path, body_file.offset, body_file.length)
        await self.writer.end()
