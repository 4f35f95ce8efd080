"""The ASGI ``websocket`` scope over wsproto.

How this works: the request stays an ordinary HTTP request until the application
decides. ``receive`` first hands it ``websocket.connect``. On ``websocket.accept``
the handler takes the connection over (``Context.upgrade``), writes the ``101``
itself (accept token, chosen subprotocol, permessage-deflate parameters when the
client offered the extension, the application's headers) and from then on
frames go through a wsproto ``Connection`` (sans-IO) and the raw stream. On
``websocket.close`` before accepting, the request is answered ``403`` through the
pipeline like any other response (logged, error pages apply); with the
``websocket.http.response`` extension the application writes that denial
response itself.

Once accepted, a reader task owns the receiving side: it answers pings and
echoes the client's close whether or not the application is receiving (an
application that only sends still keeps its connection healthy), and queues
whole messages for ``receive`` (at most ``_QUEUE`` of them: a client that sends
faster than the application reads is no longer read from). A close from the
client becomes ``websocket.disconnect`` with its code, a vanished client 1006,
a message over ``ws_max_message_size`` a close with 1009. When the application
returns, an open connection is closed (1000, or 1011 if it raised) and the
client's close frame is awaited for ``ws_close_timeout`` seconds before the
socket closes. When the server stops (SIGTERM, a worker's drain for a recycle)
it closes with 1001 at once, and the socket closes after the client's answer or
``ws_close_timeout``, whether or not the application returned.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import ProtocolError, generate_accept_token, split_comma_header

from colonnade.core.context import Context, RawStream
from colonnade.errors import HttpError
from colonnade.handlers.asgi.config import AsgiSection
from colonnade.handlers.asgi.scope import (
    ASGI_VERSION,
    NO_OPTIONS,
    App,
    Message,
    add_proxy_prefix,
    add_session,
    add_user,
    tls_extension,
)

if TYPE_CHECKING:
    from colonnade.core.request import Headers

log = logging.getLogger("colonnade.asgi")

# Where the session is in its life.
_CONNECTING = 0  # the application has not answered the handshake yet
_RESPONDING = 1  # it is sending a denial response (websocket.http.response.*)
_DENIED = 2  # answered with an HTTP response; no WebSocket
_OPEN = 3  # accepted: frames flow
_CLOSING = 4  # the server sent its close frame, the client's is due
_CLOSED = 5  # both closes exchanged, or the connection is gone

_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\n"
#: Received messages waiting for the application before reading pauses.
_QUEUE = 16


class WebSocketSession:
    """One WebSocket request: the ``receive``/``send`` pair its application uses."""

    def __init__(
        self,
        app: App,
        ctx: Context,
        root_path: str,
        state: dict[str, Any],
        settings: AsgiSection,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.settings = settings
        request = ctx.request
        self.subprotocols = [
            p for v in request.header_values(b"sec-websocket-protocol") for p in _split(v)
        ]
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": ASGI_VERSION,
            "http_version": request.version,
            "scheme": "wss" if request.scheme == "https" else "ws",
            "path": request.path,
            "raw_path": request.raw_path,
            "query_string": request.query,
            "root_path": root_path,
            "headers": request.headers,
            "client": request.client,
            "server": request.server,
            "subprotocols": self.subprotocols,
            "state": state.copy(),
            "extensions": {
                "websocket.http.response": NO_OPTIONS,
                "colonnade": {"user": ctx.user, "items": ctx.items, "context": ctx},
            },
        }
        if settings.root_path:
            add_proxy_prefix(self.scope, settings.root_path)
        add_user(self.scope, ctx)
        add_session(self.scope, ctx)
        if request.tls is not None:
            self.scope["extensions"]["tls"] = tls_extension(request.tls)
        self.phase = _CONNECTING
        self.connect_sent = False
        #: Set once the handshake is answered (accepted or denied).
        self.answered = asyncio.Event()
        self.stream: RawStream | None = None
        self.conn: Connection | None = None
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.room = asyncio.Event()  # set while the queue has room (reader may go on)
        self.reader: asyncio.Task[None] | None = None
        self.disconnect: Message | None = None  # the one handed to the application
        self.closer: asyncio.Task[None] | None = None  # the close a server stop started
        self.denial: list[bytes] = []

    # -- the request ------------------------------------------------------------------

    async def run(self) -> None:
        """Check the handshake, run the application, close what is left open."""
        request = self.ctx.request
        if request.header(b"sec-websocket-version") != b"13":
            raise HttpError(
                426,
                0,
                "only WebSocket version 13 is supported",
                headers=[(b"sec-websocket-version", b"13")],
            )
        key = request.header(b"sec-websocket-key") or b""
        try:
            valid = len(base64.b64decode(key, validate=True)) == 16
        except binascii.Error:
            valid = False
        if not valid:
            raise HttpError(400, 0, "missing or malformed Sec-WebSocket-Key")
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception:
            if self.phase < _OPEN:
                raise  # nothing went out yet: the pipeline answers 500
            log.exception(
                "correlation_id=%s WebSocket %s: the ASGI application raised",
                self.ctx.correlation_id,
                request.path,
            )
            if self.phase == _OPEN:
                await self._close(1011, "")
        else:
            if self.phase == _CONNECTING:
                self._deny()
            elif self.phase == _RESPONDING:
                raise RuntimeError("the ASGI application returned in the middle of its response")
            elif self.phase == _OPEN:
                await self._close(1000, "")
        finally:
            if self.stream is not None:
                await self._linger()
                self.stream.close()

    def _deny(self) -> None:
        self.ctx.error_response(403, 0, "the application refused the WebSocket connection")
        self.phase = _DENIED
        self.answered.set()

    # -- what the application calls --------------------------------------------------

    async def receive(self) -> Message:
        """``websocket.connect`` first, then messages, then ``websocket.disconnect``."""
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        if self.disconnect is not None:
            return self.disconnect
        if self.phase < _OPEN:
            # Before the handshake is answered, wait for the answer, as uvicorn and
            # hypercorn do: Quart's message reader calls receive() again at once,
            # concurrently with the handler that accepts.
            await self.answered.wait()
            if self.phase == _DENIED:
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        message = await self.messages.get()
        self.room.set()
        if message["type"] == "websocket.disconnect":
            self.disconnect = message
        return message

    async def _read(self) -> None:
        # The reader task: its last message is always the disconnect.
        try:
            code, reason = await self._frames()
        except (ConnectionError, ProtocolError):
            code, reason = 1006, ""
            self.phase = _CLOSED
        self.messages.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

    async def _frames(self) -> tuple[int, str]:
        # Frames in, answers out, whole messages to the queue; returns the close.
        conn, stream = self.conn, self.stream
        assert conn is not None and stream is not None
        put = self.messages.put_nowait
        room = self.room
        limit = self.settings.ws_max_message_size
        parts: list[Any] = []
        size = 0
        while True:
            data = await stream.receive()
            conn.receive_data(data or None)
            for event in conn.events():
                if isinstance(event, TextMessage | BytesMessage):
                    parts.append(event.data)
                    size += len(event.data)
                    if size > limit:
                        await self._close(1009, "message too big")
                        return 1009, "message too big"
                    if not event.message_finished:
                        continue
                    if isinstance(event, TextMessage):
                        put({"type": "websocket.receive", "text": "".join(parts)})
                    else:
                        put({"type": "websocket.receive", "bytes": b"".join(parts)})
                    parts, size = [], 0
                    if self.messages.qsize() >= _QUEUE:
                        room.clear()
                        await room.wait()
                elif isinstance(event, Ping):
                    await self._write(conn.send(event.response()), quiet=True)
                elif isinstance(event, CloseConnection):
                    code = int(event.code)
                    if conn.state is ConnectionState.REMOTE_CLOSING:
                        await self._write(conn.send(event.response()), quiet=True)
                    elif conn.state is ConnectionState.OPEN:
                        # wsproto reports a protocol violation as a close it did not send.
                        await self._write(conn.send(CloseConnection(code)), quiet=True)
                    self.phase = _CLOSED
                    return code, event.reason or ""

    async def send(self, message: Message) -> None:
        """Take one message from the application."""
        kind = message["type"]
        phase = self.phase
        if kind == "websocket.send":
            if phase != _OPEN:
                if phase > _OPEN:
                    raise ConnectionError("the WebSocket is closed")
                raise RuntimeError("ASGI 'websocket.send' before 'websocket.accept'")
            conn = self.conn
            assert conn is not None
            data = message.get("bytes")
            if data is not None:
                frames = conn.send(BytesMessage(data=bytes(data)))
            else:
                text = message.get("text")
                if text is None:
                    raise RuntimeError("ASGI 'websocket.send' without 'bytes' or 'text'")
                frames = conn.send(TextMessage(data=text))
            await self._write(frames)
        elif kind == "websocket.accept":
            if phase != _CONNECTING:
                raise RuntimeError("ASGI 'websocket.accept' sent twice or after a close")
            await self._accept(message)
        elif kind == "websocket.close":
            if phase == _CONNECTING:
                self._deny()
            elif phase == _OPEN:
                await self._close(int(message.get("code") or 1000), message.get("reason") or "")
            elif phase == _RESPONDING:
                raise RuntimeError("ASGI 'websocket.close' in the middle of a denial response")
            # closing or closed already: nothing more to say
        elif kind == "websocket.http.response.start":
            if phase != _CONNECTING:
                raise RuntimeError(f"ASGI {kind!r} after the handshake was answered")
            response = self.ctx.response
            response.status = int(message["status"])
            response.headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())]
            response.skip_custom_errors = True
            self.phase = _RESPONDING
        elif kind == "websocket.http.response.body":
            if phase != _RESPONDING:
                raise RuntimeError(f"ASGI {kind!r} without 'websocket.http.response.start'")
            self.denial.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self.ctx.response.body = b"".join(self.denial)
                self.phase = _DENIED
                self.answered.set()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a websocket scope")

    # -- the handshake and the close -------------------------------------------------------

    async def _accept(self, message: Message) -> None:
        ctx = self.ctx
        request = ctx.request
        key = request.header(b"sec-websocket-key") or b""
        head: Headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", generate_accept_token(key)),
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if subprotocol not in self.subprotocols:
                raise RuntimeError(f"subprotocol {subprotocol!r} was not offered by the client")
            head.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        extensions: list[Extension] = []
        if self.settings.ws_per_message_deflate:
            accepted = _negotiate_deflate(request.header_values(b"sec-websocket-extensions"))
            if accepted is not None:
                deflate, value = accepted
                extensions.append(deflate)
                head.append((b"sec-websocket-extensions", value))
        for name, value in message.get("headers", ()):
            name, value = bytes(name), bytes(value)
            if any(c in part for part in (name, value) for c in (10, 13, 0)) or b":" in name:
                raise ValueError(f"invalid WebSocket response header {name!r}")
            head.append((name.lower(), value))
        stream = ctx.upgrade()
        if stream is None:
            raise HttpError(501, 0, "this connection cannot switch to the WebSocket protocol")
        self.stream = stream
        ctx.response.headers = head
        lines = [_SWITCHING]
        lines += [b"%s: %s\r\n" % field for field in head]
        lines.append(b"\r\n")
        self.conn = Connection(ConnectionType.SERVER, extensions)
        self.phase = _OPEN
        self.answered.set()
        await self._write(b"".join(lines))
        loop = asyncio.get_running_loop()
        self.reader = loop.create_task(self._read())
        stream.on_shutdown(lambda: self._going_away(loop))

    def _going_away(self, loop: asyncio.AbstractEventLoop) -> None:
        # The server stops: close with 1001 (RFC 6455 7.4.1, "going away"); the
        # client's answer ends the reader, and the application gets its disconnect.
        if self.phase == _OPEN:
            self.closer = loop.create_task(self._go_away())

    async def _go_away(self) -> None:
        await self._close(1001, "the server is shutting down")
        # Bounded like the close after the application returns, but without waiting
        # for it: one that never returns (waiting on something else than ``receive``)
        # must not hold the stop until its deadline. Closing the socket ends the
        # request, and so the application, once the client answered or the bound passed.
        reader = self.reader
        if reader is not None:
            self.room.set()  # the application may not be reading the queue any more
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), self.settings.ws_close_timeout)
        if self.stream is not None:
            self.stream.close()

    async def _close(self, code: int, reason: str) -> None:
        conn = self.conn
        if conn is None or conn.state is not ConnectionState.OPEN:
            return
        await self._write(conn.send(CloseConnection(code, reason)), quiet=True)
        self.phase = _CLOSING if self.phase != _CLOSED else _CLOSED

    async def _linger(self) -> None:
        # After the server's close frame, give the reader a little time to see the
        # client's; then stop it.
        reader = self.reader
        if reader is None:
            return
        conn = self.conn
        if conn is not None and conn.state is ConnectionState.LOCAL_CLOSING:
            self.room.set()  # nobody reads the queue any more: let the reader go on
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), self.settings.ws_close_timeout)
        if not reader.done():
            reader.cancel()
        await asyncio.wait((reader,))
        if not reader.cancelled():
            reader.exception()  # seen: the reader ends on connection errors by design
        self.phase = _CLOSED

    async def _write(self, data: bytes, *, quiet: bool = False) -> None:
        stream = self.stream
        if stream is None or not data:
            return
        try:
            await stream.send(data)
        except ConnectionError:
            self.phase = _CLOSED
            if not quiet:
                raise


def _split(value: bytes) -> list[str]:
    return [part.strip() for part in value.decode("latin-1").split(",") if part.strip()]


def _negotiate_deflate(offers: list[bytes]) -> tuple[PerMessageDeflate, bytes] | None:
    """The first acceptable ``permessage-deflate`` offer: the extension and its answer."""
    for header in offers:
        for offer in split_comma_header(header):
            if offer.split(";", 1)[0].strip() != PerMessageDeflate.name:
                continue
            deflate = PerMessageDeflate()
            params = deflate.accept(offer)
            if params is None or params is False:
                continue
            value = b"permessage-deflate"
            if isinstance(params, str) and params:
                value += b"; " + params.encode("ascii")
            return deflate, value
    return None
