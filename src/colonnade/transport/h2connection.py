"""One HTTP/2 connection (RFC 9113): streams → the engine, responses → frames.

How this works: ``H2Connection`` is an ``asyncio.Protocol`` around the sans-IO
``h2`` library. Received bytes go first through :class:`~colonnade.http.h2.FrameWatch`
(floods refused before any parsing), then to ``h2``, whose events drive the
streams. Each request (a stream whose header block arrived) becomes a
``core.Request`` with ``version`` ``"2"`` and runs in a task of its own through
``state.engine.handle(request, stream)``: the :class:`H2Stream` is the response
writer the pipeline calls, with the interface the HTTP/1.1 ``Exchange`` offers
(``send_all``/``start``/``write``/``sendfile``/``end``/``abort``), and the source of
its request body (a ``StreamBody``, as HTTP/1.1's).

Flow control, both ways:

- Out: a stream's body bytes wait in the stream (one write's worth, or a body
  handed over whole) and leave as DATA frames as far as the stream's and the
  connection's windows allow (:meth:`H2Connection.pump`); ``write`` returns once
  they left and the socket is not backed up. A file is read in pieces no larger
  than the window open at the time, so a stream the client does not read holds
  at most one piece and never blocks another stream.
- In: the connection's window is reopened as DATA arrives (a stalled stream must
  not stall the others); a stream's window only as the application reads its
  body, so a stream buffers at most ``initial_window_size`` bytes.

Errors: a protocol error ``h2`` detects, or a flood the watch detects, ends the
connection with GOAWAY and the right error code; it is counted in
``ServerState.http2_errors`` and logged once, then the connection lingers briefly
(reads and drops) so that the GOAWAY reaches the client before the close.
Graceful stop (``shutdown``): GOAWAY NO_ERROR naming the last stream taken, the
streams in flight finish, newer ones are refused, then the connection closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Final, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hpack.exceptions
from h2.connection import ConnectionInputs, ConnectionState
from h2.errors import ErrorCodes
from h2.stream import H2Stream as StreamRecord
from h2.stream import H2StreamStateMachine, StreamClosedBy, StreamInputs, StreamState
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from colonnade.core.request import EMPTY_BODY, Body, Request, TlsInfo
from colonnade.core.timers import timer_by
from colonnade.core.urlpath import decode_path
from colonnade.errors import ClientDisconnectedError, HttpError
from colonnade.http.h1 import body_left, error_response
from colonnade.http.h2 import (
    PREFACE,
    FieldDecoder,
    FieldEncoder,
    FrameError,
    FrameWatch,
    RequestFields,
    check_trailers,
    data_frame_head,
    headers_frames,
    request_fields,
    response_headers,
)
from colonnade.transport.connection import RateWindow, StreamBody, addresses

if TYPE_CHECKING:
    from colonnade.core.context import RawStream
    from colonnade.core.request import Headers
    from colonnade.transport.server import ServerState

log = logging.getLogger("colonnade.transport")

# A file goes out in reads of at most this much (and no more than the window open).
_FILE_CHUNK: Final = 256 * 1024
# The connection's receive window: large, and reopened as data arrives, so that
# the per-stream windows are what bounds a client.
_CONNECTION_WINDOW: Final = 16 * 1024 * 1024
# Body bytes made into frames above which they are written at once, not at the end
# of the loop's turn.
_FLUSH_NOW: Final = 64 * 1024
# A response with this status (or to HEAD) has no body.
_NO_BODY: Final = frozenset({204, 304})
# The frame the receiving fast path takes (H2Connection._receive_fast): HEADERS
# (RFC 9113 6.2) with END_STREAM and END_HEADERS and no other flag (no padding, no
# priority), a whole request without a body in one frame.
_HEADERS: Final = 0x1
_END_STREAM_END_HEADERS: Final = 0x5
# h2's enum members the per-request paths compare with, read once: on CPython 3.11 an
# Enum class's attribute goes through its metaclass's __getattr__ hook (~1k
# instructions a read).
_SERVER_OPEN: Final = ConnectionState.SERVER_OPEN
_CONN_SEND_HEADERS: Final = ConnectionInputs.SEND_HEADERS
_CONN_SEND_DATA: Final = ConnectionInputs.SEND_DATA
_CONN_RECV_HEADERS: Final = ConnectionInputs.RECV_HEADERS
_SEND_HEADERS: Final = StreamInputs.SEND_HEADERS
_SEND_DATA: Final = StreamInputs.SEND_DATA
_SEND_END_STREAM: Final = StreamInputs.SEND_END_STREAM
_HALF_CLOSED_REMOTE: Final = StreamState.HALF_CLOSED_REMOTE
_STREAM_CLOSED: Final = StreamState.CLOSED
_CLOSED_BY_US: Final = StreamClosedBy.SEND_END_STREAM
_RESET_BY_US: Final = StreamClosedBy.SEND_RST_STREAM
_sleep: Final = asyncio.sleep
# The dict method under h2's record of closed streams (a SizeLimitDict, whose own
# interpreted __setitem__ costs some 4k instructions to add a size check; see
# closed_stream).
_ORDERED_SET: Final = collections.OrderedDict.__setitem__
# H2Stream.unrecorded: h2 keeps a record of the stream; it does not yet, and the
# response head has not been sent; it does not yet, and the head has been sent.
_RECORDED: Final = 0
_UNRECORDED: Final = 1
_UNRECORDED_HEAD_SENT: Final = 2


class ServerH2(h2.connection.H2Connection):
    """``h2``'s connection, ignoring DATA and HEADERS (trailers) on a stream it reset
    (RFC 9113 5.1: "An endpoint MUST ignore frames that it receives on closed streams
    after it has sent a RST_STREAM frame"). ``h2`` answers each such frame with
    RST_STREAM STREAM_CLOSED; a client has DATA and trailers in flight whenever the
    server answers before the body arrived whole and resets the stream with NO_ERROR
    (RFC 9113 8.1), or cuts a slow body: it got a second reset of that stream for
    every frame in flight. The connection's window is given back for the DATA all
    the same, and a trailers block is decoded all the same (the HPACK table must
    stay in step)."""

    def _receive_headers_frame(
        self, frame: HeadersFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        if self._stream_closed_by(frame.stream_id) is not _RESET_BY_US:
            return super()._receive_headers_frame(frame)
        # What h2 does before it looks at the stream: the block decoded (its errors
        # are the connection's), the connection's state machine told; then nothing.
        h2.connection._decode_headers(self.decoder, frame.data)
        events = self.state_machine.process_input(_CONN_RECV_HEADERS)
        return [], events

    def _handle_data_on_closed_stream(
        self,
        events: list[h2.events.Event],
        exc: h2.exceptions.StreamClosedError,
        frame: DataFrame,
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        frames, events = super()._handle_data_on_closed_stream(events, exc, frame)
        # A frame that closes the stream itself (DATA after the client's END_STREAM)
        # comes with the reset's event, and its RST_STREAM STREAM_CLOSED is due.
        if not exc._events and self._stream_closed_by(exc.stream_id) is _RESET_BY_US:
            # A WINDOW_UPDATE for the connection may come before h2's RST_STREAM.
            frames = [f for f in frames if not isinstance(f, RstStreamFrame)]
        return frames, events


class H2Stream:
    """One request and its response: the writer the pipeline calls
    (``core.context.ResponseWriter``) and the source of its body (``BodySource``)."""

    __slots__ = (
        "_ended",
        "_left",
        "_no_body",
        "_offset",
        "_pending",
        "_waiter",
        "acked",
        "body",
        "bytes_sent",
        "closed",
        "conn",
        "end_pending",
        "head_sent",
        "id",
        "received",
        "remote_ended",
        "request",
        "task",
        "unrecorded",
        "window_out",
    )

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.request: Request | None = None
        self.body: StreamBody | None = None
        self.task: asyncio.Task[None] | None = None
        self.bytes_sent = 0
        self.head_sent = False
        self.closed = False  # reset (by either side), or the connection is gone
        self.end_pending = False  # the body's end is due once _pending has left
        self.remote_ended = False  # the client's END_STREAM arrived
        self.received = 0  # flow-controlled bytes of the request body received
        self.acked = 0  # ... and given back to the client's window
        self._pending = b""  # body bytes waiting for window
        self._offset = 0
        self._ended = False  # END_STREAM sent
        self._no_body = False
        self._left = -1  # declared body bytes not yet queued; -1: no Content-Length
        self._waiter: asyncio.Future[None] | None = None
        # _UNRECORDED or _UNRECORDED_HEAD_SENT: h2 has no record of the stream yet (the
        # receiving fast path's streams, H2Connection.record), and window_out is its
        # send window meanwhile.
        self.unrecorded = _RECORDED
        self.window_out = 0

    # -- BodySource ---------------------------------------------------------------------

    @property
    def state(self) -> ServerState:
        """The server's shared state."""
        return self.conn.state

    def pause_reading_for_body(self) -> None:
        """Nothing to do: the stream's window bounds what the client may send."""

    def resume_reading_for_body(self) -> None:
        """The application waits for more: give the client back the window it read."""
        if self.received > self.acked and not self.closed:
            self.conn.open_window(self, self.received - self.acked)
            self.acked = self.received

    def send_continue(self) -> None:
        """``100 Continue`` for an ``Expect: 100-continue`` request."""
        if not self.head_sent and not self.closed:
            self.conn.send_headers(self, [(b":status", b"100")], end=False)
            self.conn.watch_body(self)  # from now on the body is the client's to send

    # -- ResponseWriter -----------------------------------------------------------------

    def send_all(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> None:
        """The whole response: the head now, the body as the windows allow. The
        stream ends with the head's frame or the body's last, not an empty frame."""
        self._head(status, headers, None if status == 304 else len(body), not body)
        if body and not self._no_body:
            self._queue(body)
        self._finish()

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        """The head of the response (HTTP/2 carries no reason phrase)."""
        self._head(status, headers, content_length, False)

    def _head(self, status: int, headers: Headers, content_length: int | None, last: bool) -> None:
        # ``last``: no body follows, whatever the status says (send_all's empty body).
        if self.closed:
            return
        request = self.request
        interim = status < 200
        fields = response_headers(status, headers, content_length, self.conn.state.server_header)
        if not interim:
            self.head_sent = True
            self._no_body = status in _NO_BODY or (request is not None and request.method == "HEAD")
            if content_length is not None and not self._no_body:
                self._left = content_length
        end = not interim and (self._no_body or last or self._left == 0)
        self.bytes_sent += sum(len(n) + len(v) + 4 for n, v in fields)
        self.conn.send_headers(self, fields, end=end)
        if end:
            self._ended = True

    async def write(self, data: bytes) -> None:
        """Body bytes; returns once they left (the client's window and the socket
        permitting), raising ``ClientDisconnectedError`` if the stream was reset."""
        if self.closed:
            raise ClientDisconnectedError("the client reset the stream")
        if self._no_body or not data:
            # Nothing goes out (a HEAD's body): no wait for the window or the
            # socket, so the loop gets its turn here, or a stream that never waits
            # would hold the worker and outlive its reset (as Exchange.write, HTTP/1).
            await _sleep(0)
            return
        self._queue(data)
        conn = self.conn
        if self.waiting or conn.write_paused:
            await self._sent()
        elif not conn._unflushed:
            # All of it left, and this write flushed the connection's frames (at
            # least _FLUSH_NOW of body since the last flush): the loop gets its
            # turn here. A stream the windows and the socket never hold back would
            # otherwise hold the worker, and never read the client's RST_STREAM
            # waiting in the socket (a cancelled request went on to its end).
            await _sleep(0)

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        """A file range, read in pieces no larger than the window open at the time."""
        if self._no_body:
            return
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        conn = self.conn
        try:
            while count > 0:
                window = conn.window(self)
                while window <= 0:
                    await self._progress()
                    window = conn.window(self)
                data = os.pread(fd, min(count, window, _FILE_CHUNK), offset)
                if not data:
                    raise ConnectionError("the file shrank while it was being sent")
                await self.write(data)
                offset += len(data)
                count -= len(data)
        finally:
            os.close(fd)

    async def end(self) -> None:
        """End of a streamed body."""
        self._finish()

    def abort(self) -> None:
        """The response failed half-way: reset the stream (INTERNAL_ERROR)."""
        self.conn.reset(self, ErrorCodes.INTERNAL_ERROR)

    def upgrade(self) -> RawStream | None:
        """No upgrade within HTTP/2 (WebSocket over HTTP/2, RFC 8441, is not offered)."""
        return None

    # -- sending ------------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        self._left = body_left(self._left, len(data))
        if not self._left:
            # The body's declared end goes out with its last bytes (END_STREAM on
            # that DATA frame), not in an empty frame when the writer says end().
            self.end_pending = True
        if self._offset < len(self._pending):
            self._pending = self._pending[self._offset :] + data
        else:
            self._pending = data
        self._offset = 0
        self.bytes_sent += len(data)
        self.conn.pump(self)

    def _finish(self) -> None:
        if not self._ended and not self.closed:
            self.end_pending = True
            self.conn.pump(self)

    @property
    def waiting(self) -> int:
        """Body bytes still to send."""
        return len(self._pending) - self._offset

    def take(self, size: int) -> bytes:
        """Up to ``size`` of the bytes waiting to be sent."""
        end = self._offset + size
        piece = self._pending[self._offset : end]
        self._offset = min(end, len(self._pending))
        if self._offset == len(self._pending):
            self._pending = b""
            self._offset = 0
        return piece

    def ended(self) -> None:
        """END_STREAM went out."""
        self._ended = True
        self.end_pending = False

    @property
    def done(self) -> bool:
        """Nothing more will be sent on this stream."""
        return self._ended or self.closed

    def wake(self) -> None:
        """Something changed (data left, a window opened, the stream closed)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _progress(self) -> None:
        # Until something changes for this stream, within the body timeout: a
        # client that neither reads nor resets ties up a stream no longer.
        if self.closed:
            raise ClientDisconnectedError("the client reset the stream")
        loop = self.conn.loop
        self._waiter = loop.create_future()
        timer = loop.call_later(self.conn.state.timeouts.body, self._stalled)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.closed:
            raise ClientDisconnectedError("the client reset the stream")

    def _stalled(self) -> None:
        if not self.closed:
            self.conn.reset(self, ErrorCodes.CANCEL, dropped=True)
            log.info("HTTP/2 stream %d: the client stopped reading; reset", self.id)

    async def _sent(self) -> None:
        conn = self.conn
        while self.waiting:
            await self._progress()
        if conn.write_paused:
            await conn.drain()


class H2Connection(asyncio.Protocol):
    """The asyncio protocol for one HTTP/2 connection (see the module docstring)."""

    def __init__(
        self,
        state: ServerState,
        initial: bytes = b"",
        *,
        scheme: str = "http",
        tls: TlsInfo | None = None,
    ) -> None:
        """``initial``: bytes already read (the preface, when an HTTP/1.1 connection
        saw it). ``scheme``: the connection's (``https`` over TLS), which requests
        take whatever their ``:scheme`` says. ``tls``: what the handshake settled
        (ALPN chose ``h2``), given to every request."""
        self.state = state
        self.scheme = "https" if tls is not None else scheme
        self.tls = tls
        self._initial = initial
        settings = state.http2
        self.settings = settings
        # Fields are checked here, not by h2: inbound ones by request_fields and
        # check_trailers (RFC 9113 8.1.1, 8.2, 8.3: one pass, where h2's chain of
        # generators was a tenth of a request's cost), outbound ones by
        # response_headers. h2's normalizing is off too.
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        # Typed as h2's class: mypyc then reads and writes its attributes as an
        # interpreted object's, as before (ServerH2 only overrides a method).
        h2conn: h2.connection.H2Connection = ServerH2(config)
        self.h2 = h2conn
        h2conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        # Response heads are encoded without HPACK's dynamic table, from a cache
        # (http/h2.py FieldEncoder): h2 only calls its encode and sets its size.
        self._encoder = FieldEncoder()
        h2conn.encoder = cast("hpack.Encoder", self._encoder)
        h2conn.max_inbound_frame_size = settings.max_frame_size
        # hpack's decoder, remembering repeated blocks that change no table (FieldDecoder).
        h2conn.decoder = FieldDecoder(settings.max_header_list_size)
        self.watch = FrameWatch(
            max_header_block=settings.max_header_list_size,
            max_resets=settings.max_resets,
            max_pings=settings.max_pings,
            max_settings=settings.max_settings,
            max_empty=settings.max_empty_frames,
            window=settings.flood_window,
        )
        self._preface_left = len(PREFACE)
        self.streams: dict[int, H2Stream] = {}
        # Streams h2 has no record of yet (the receiving fast path's): see record().
        self.unrecorded: dict[int, H2Stream] = {}
        # The last field list checked and what it gave (see _on_request).
        self._checked: list[tuple[bytes, bytes]] = []
        self._checked_fields: RequestFields | None = None
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.loop = asyncio.get_running_loop()
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._unacked = 0  # connection-window bytes received and not yet given back
        self._unflushed = 0  # body bytes in h2's output buffer, not yet written
        self._flush_handle: asyncio.Handle | None = None
        self.last_stream = 0  # GOAWAY sent: streams above this are refused
        self.stopping = False  # GOAWAY sent (graceful stop) or received
        self.failed = False  # ended for an error: reading and dropping until closed
        # Ended by the server's own decision (drop, _fail): its requests in flight are
        # logged as the server's abort (Win32 1236), not the client's leaving (64).
        self.dropped = False
        self.closing = False
        # The minimum data rate (limits.min_bytes_per_second): bytes written so far,
        # the measure of each stream's body that is measured (by stream id) and of
        # the connection's sending; the timer looking at them, made only while
        # something is measured.
        self._written = 0
        self._body_rates: dict[int, RateWindow] = {}
        self._send_rate = RateWindow()
        self._rate_timer: asyncio.TimerHandle | None = None

    # -- what the server keeps of a connection --------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is in flight."""
        return bool(self.streams)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.client, self.server = addresses(transport)
        if not self.state.admit(self, self.client):
            self.closing = True
            transport.close()
            return
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_CONNECTION_WINDOW - 65_535)
        self._flush()
        self._arm(self.state.timeouts.header)
        if self._initial:
            data, self._initial = self._initial, b""
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.state.forget(self)
        self._disarm()
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None
        for stream in list(self.streams.values()):
            self._close_stream(stream, cancel=True)
        self.streams.clear()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool | None:
        # The client closed its side: what is in flight cannot be read by anyone.
        return None

    def pause_writing(self) -> None:
        # The client does not read what it is sent: read nothing more from it either,
        # so that frames the server must answer (PING, SETTINGS, frames on closed
        # streams) cannot pile answers up in memory.
        self.write_paused = True
        transport = self.transport
        if transport is not None and not transport.is_closing() and not self.failed:
            transport.pause_reading()
        self._watch_sending()

    def resume_writing(self) -> None:
        self.write_paused = False
        transport = self.transport
        if transport is not None and not transport.is_closing() and not self.failed:
            transport.resume_reading()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.state.counts.received += len(data)
        if self.failed or self.closing:
            return
        try:
            self._watch(data)
            data = self._receive_fast(data)
            if data and self.unrecorded:
                # Any frame h2 reads may concern them (RST_STREAM, WINDOW_UPDATE,
                # SETTINGS changing their windows, a new stream counted against them).
                self._record_all()
            events = self.h2.receive_data(data) if data else []
        except FrameError as exc:
            self._fail(exc.code, exc.kind, exc.reason)
            return
        except h2.exceptions.DenialOfServiceError as dos:
            # (Each except clause its own name: mypyc types a name once.)
            self._fail(ErrorCodes.ENHANCE_YOUR_CALM, "header_list", str(dos), said=True)
            return
        except h2.exceptions.ProtocolError as err:
            code = err.error_code
            said = self.h2.state_machine.state is ConnectionState.CLOSED
            if isinstance(err.__cause__, hpack.exceptions.HPACKError):
                # RFC 9113 4.3: a field block that cannot be decoded is a
                # COMPRESSION_ERROR (h2 says PROTOCOL_ERROR).
                code, said = ErrorCodes.COMPRESSION_ERROR, False
                self.h2.data_to_send()  # h2's own GOAWAY: replaced
            # Without h2's GOAWAY (a bad preface), one is sent all the same.
            self._fail(code, _code_name(code), str(err) or type(err).__name__, said=said)
            return
        try:
            for event in events:
                self._on_event(event)
        except FrameError as bad:  # a malformed request or trailers
            self._fail(bad.code, bad.kind, bad.reason)
            return
        if self._unacked >= _CONNECTION_WINDOW // 2:
            self.h2.increment_flow_control_window(self._unacked)
            self._unacked = 0
        self._flush_soon()

    def _watch(self, data: bytes) -> None:
        left = self._preface_left
        if left:
            # The preface is h2's to check; the watch reads the frames after it.
            self._preface_left = max(0, left - len(data))
            data = data[left:]
        if data:
            self.watch.feed(data)

    def _receive_fast(self, data: bytes) -> bytes:
        """Take the plain new requests at the start of ``data`` past ``h2``'s frame
        parser, dispatch and events; return the rest, from the first frame that is
        anything else, for ``h2``.

        A plain new request is a HEADERS frame with END_STREAM and END_HEADERS only,
        on a stream the client may open now (odd, above every stream it opened, within
        the concurrent streams allowed), while the connection is open and ``h2`` holds
        no partial frame or header block. It is what a client repeating GETs sends, and
        ``h2`` would parse it into frame and event objects and walk its state machines
        to arrive where this arrives directly: the block decoded by the connection's
        one HPACK decoder (its dynamic table stays right), ``h2``'s record of the
        stream made and put in the state that HEADERS with END_STREAM leads to
        (half-closed remote), the stream counted as the highest opened. Its errors are
        ``h2``'s, raised as ``h2`` raises them (a block that does not decode, an
        informational ``:status``, a bad ``content-length``: GOAWAY queued, then
        ``ProtocolError``). Everything else (DATA, SETTINGS, WINDOW_UPDATE, RST_STREAM,
        PRIORITY, padding, CONTINUATION, a stream over the limit or reused) goes
        through ``h2`` unchanged.
        """
        h2conn = self.h2
        incoming = h2conn.incoming_buffer
        if incoming._preamble_len or incoming._data or incoming._headers_buffer or self.stopping:
            return data
        size = len(data)
        pos = 0
        largest = h2conn.max_inbound_frame_size
        # What the settings say, read when a first frame is taken (no frame taken
        # here changes them).
        most = -1
        inbound = outbound = 0
        while size - pos >= 9:
            length = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
            end = pos + 9 + length
            if (
                data[pos + 3] != _HEADERS
                or data[pos + 4] != _END_STREAM_END_HEADERS
                or end > size
                or length > largest
                or h2conn.state_machine.state is not _SERVER_OPEN
            ):
                break
            stream_id = (
                (data[pos + 5] & 0x7F) << 24
                | data[pos + 6] << 16
                | data[pos + 7] << 8
                | data[pos + 8]
            )
            if not stream_id & 1 or stream_id <= h2conn.highest_inbound_stream_id:
                break
            if most < 0:
                most = h2conn.local_settings.max_concurrent_streams
                inbound, outbound = stream_windows(h2conn)
            # h2 keeps closed streams until it counts the open ones (which forgets
            # them): counted only when all it keeps might be open. The streams it
            # has no record of yet are open.
            unrecorded = len(self.unrecorded)
            if (
                len(h2conn.streams) + unrecorded >= most
                and h2conn.open_inbound_streams + unrecorded >= most
            ):
                break
            try:
                headers = decode_block(h2conn, data[pos + 9 : end])
                if _h2_request_checks(headers):
                    # A content-length: h2 keeps it in its record, made now.
                    record = open_request_record(h2conn, stream_id, inbound, outbound)
                    record._initialize_content_length(headers)
                    window = -1
                else:
                    h2conn.highest_inbound_stream_id = stream_id
                    window = outbound
            except h2.exceptions.ProtocolError as exc:
                h2conn._terminate_connection(exc.error_code)
                raise
            pos = end
            self._on_request(stream_id, headers, True, window)
            if self.failed or self.closing:
                return b""
        return data[pos:] if pos else data

    # -- events from h2 -------------------------------------------------------------------

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            length = event.flow_controlled_length
            self._unacked += length
            if stream is not None and stream.body is not None and not stream.closed:
                stream.received += length
                if event.data:
                    stream.body.feed(event.data)
                # Padding counts against the window but never reaches the app.
                padding = length - len(event.data)
                if padding:
                    stream.acked += padding
                    self.open_window(stream, padding)
            # DATA nobody reads (a refused stream, one answered and reset): only
            # the connection's window is given back (above).
        elif isinstance(event, h2.events.RequestReceived):
            self._on_request(event.stream_id, event.headers, event.stream_ended is not None)
        elif isinstance(event, h2.events.TrailersReceived):
            check_trailers(event.headers)  # and they are dropped
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.remote_ended = True
                if stream.body is not None:
                    stream.body.finish()
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    self.pump(stream)
            else:
                self._pump_all()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._pump_all()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._close_stream(stream, cancel=True)
        elif isinstance(event, h2.events.ConnectionTerminated):
            # The client is leaving (h2 sends nothing more after a GOAWAY).
            self.close()

    def _on_request(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], ended: bool, window: int = -1
    ) -> None:
        # ``window``: h2 has no record of the stream (the receiving fast path), whose
        # send window this is; -1: it has.
        checked = self._checked_fields
        if headers is self._checked and checked is not None:
            # The decoder's list of a block it remembered (http/h2.py FieldDecoder:
            # the same bytes, the same list, never changed), as a client repeating
            # a request sends it: checked and split already.
            fields = checked.copy()
        else:
            fields = request_fields(headers)  # raises FrameError: malformed
            self._checked = headers
            self._checked_fields = fields.copy()
        stream = H2Stream(self, stream_id)
        stream.remote_ended = ended
        if window >= 0:
            stream.unrecorded = _UNRECORDED
            stream.window_out = window
            self.unrecorded[stream_id] = stream
        if self.stopping and stream_id > self.last_stream:
            # Opened after our GOAWAY: never processed, safe to retry (RFC 9113 8.7).
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self.streams[stream_id] = stream
        self._disarm()
        limits = self.state.limits
        if fields.method == b"CONNECT":
            self._refuse(stream, 501, "CONNECT is not supported")
            return
        target = fields.path
        if len(target) > limits.max_request_target:
            self._refuse(stream, 414, "request target too long")
            return
        if len(fields.headers) > limits.max_headers:
            self._refuse(stream, 431, "too many header fields")
            return
        raw_path, _, query = target.partition(b"?")
        try:
            path = decode_path(raw_path)
        except HttpError as exc:
            self._refuse(stream, exc.status, exc.message)
            return
        body: Body = EMPTY_BODY
        if not stream.remote_ended:
            expect = any(n == b"expect" and v.lower() == b"100-continue" for n, v in fields.headers)
            body = stream.body = StreamBody(stream, expect)
            if not expect:
                self.watch_body(stream)
        request = stream.request = Request(
            fields.method.decode("ascii"),
            path,
            raw_path,
            query,
            target,
            "2",
            fields.headers,
            fields.authority.decode("latin-1"),
            self.scheme,
            self.client,
            self.server,
            body,
            True,
            self.tls,
            False,  # may_upgrade: HTTP/2 refuses the field (http.h2.CONNECTION_SPECIFIC)
        )
        router = self.state.router
        if router is not None and not router.admits(self, request):
            # Another pool serves this request, and an HTTP/2 connection cannot be
            # handed over per request: the client may retry on a new connection.
            self._refuse(stream, 421, "this connection cannot serve that request")
            return
        stream.task = self.loop.create_task(self._answer(stream, request))

    def _refuse(self, stream: H2Stream, status: int, reason: str) -> None:
        # Answered here, before the pipeline (as HTTP/1.1 answers a malformed head).
        self.state.log_protocol_error(self.client, status, reason)
        raw = error_response(status, reason, server=None)
        body = raw.partition(b"\r\n\r\n")[2]
        stream.send_all(status, None, [(b"content-type", b"text/plain; charset=utf-8")], body)

    async def _answer(self, stream: H2Stream, request: Request) -> None:
        try:
            ctx = await self.state.engine.handle(request, stream)
            if not ctx.response.headers_sent:
                stream.send_all(500, None, [], b"")  # an always-stage failed
            self.state.count_request()
        except asyncio.CancelledError:
            # The walk let a cancellation through (not the connection's: the
            # application's own): the request is over unanswered, so the stream is
            # reset (a closed one is left as it is), as the connection is dropped
            # on HTTP/1.1.
            stream.abort()
        except Exception:
            log.exception("unhandled error answering %r", request)
            stream.abort()
        stream.task = None
        self._stream_done(stream)

    # -- sending --------------------------------------------------------------------------

    def send_headers(self, stream: H2Stream, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        """A HEADERS frame (not flow-controlled: it leaves at once)."""
        if stream.closed:
            return
        h2conn = self.h2
        try:
            interim = fields[0][1][:1] == b"1"
            if stream.unrecorded == _UNRECORDED and not interim:
                # The final head of a stream h2 has no record of: the steps h2's
                # stream machine would take from half-closed (remote) are sent()'s.
                _connection_step(h2conn, _CONN_SEND_HEADERS)
                if end:
                    self._ended_unrecorded(stream)
                else:
                    stream.unrecorded = _UNRECORDED_HEAD_SENT
            else:
                self.record(stream)
                if interim:  # (1xx): rare, h2's own way
                    h2conn.send_headers(stream.id, fields, end_stream=end)
                    self._flush_soon()
                    return
                # A final head: the frames written here beside h2's, whose state
                # machines take the same steps its send_headers would (a third of
                # the cost: no frame objects, no header list copies and checks;
                # response_headers checked the fields already).
                record = h2conn.streams.get(stream.id)
                if record is None:  # closed, and forgotten by h2
                    self._close_stream(stream, cancel=False)
                    return
                _connection_step(h2conn, _CONN_SEND_HEADERS)
                sent(record.state_machine, _SEND_HEADERS, end)
        except h2.exceptions.StreamClosedError:
            self._close_stream(stream, cancel=False)
            return
        except h2.exceptions.ProtocolError as exc:
            if self.h2.state_machine.state is ConnectionState.CLOSED:
                self._close_stream(stream, cancel=False)
                return
            # A head h2 will not send: the application's fault, a 500 as over HTTP/1.1.
            raise ValueError(f"response head not sendable over HTTP/2: {exc}") from exc
        block = self._encoder.encode(fields)
        h2conn._data_to_send += headers_frames(
            stream.id, block, end, h2conn.max_outbound_frame_size
        )
        self._flush_soon()

    def window(self, stream: H2Stream) -> int:
        """Body bytes ``stream`` may send now (0 when closed: the caller then waits and
        learns it)."""
        if stream.closed:
            return 0
        if stream.unrecorded:
            return min(stream.window_out, self.h2.outbound_flow_control_window)
        try:
            return self.h2.local_flow_control_window(stream.id)
        except h2.exceptions.ProtocolError:
            return 0

    def pump(self, stream: H2Stream) -> None:
        """Send what ``stream`` has waiting, as far as the windows allow."""
        if stream.closed or stream.done:
            return
        h2conn = self.h2
        frame = h2conn.max_outbound_frame_size
        try:
            # No record: a stream h2 has no record of yet, or one closed and
            # forgotten by h2.
            record = None if stream.unrecorded else h2conn.streams.get(stream.id)
            while stream.waiting:
                if record is not None:
                    window = record.outbound_flow_control_window
                elif stream.unrecorded:
                    window = stream.window_out
                else:
                    raise h2.exceptions.StreamClosedError(stream.id)
                open_window = h2conn.outbound_flow_control_window
                size = min(open_window, window, frame, stream.waiting)
                if size <= 0:
                    break
                piece = stream.take(size)
                end = stream.end_pending and not stream.waiting
                # h2's send_data, without its frame objects: the same state
                # machine steps and window accounting, the frame written beside
                # h2's.
                _connection_step(h2conn, _CONN_SEND_DATA)
                if record is not None:
                    sent(record.state_machine, _SEND_DATA, end)
                    record.outbound_flow_control_window -= size
                else:
                    stream.window_out -= size
                h2conn.outbound_flow_control_window = open_window - size
                # Extended in place (h2 swaps it only in data_to_send): no write of
                # the attribute back on h2's connection, an interpreted object's.
                out = h2conn._data_to_send
                out += data_frame_head(stream.id, size, end)
                out += piece
                self._unflushed += size
                if end:
                    stream.ended()
                    if record is None:
                        self._ended_unrecorded(stream)
            if stream.end_pending and not stream.waiting:
                if stream.unrecorded:
                    # An empty DATA frame with END_STREAM, as h2's end_stream sends.
                    _connection_step(h2conn, _CONN_SEND_DATA)
                    h2conn._data_to_send += data_frame_head(stream.id, 0, True)
                    self._ended_unrecorded(stream)
                else:
                    h2conn.end_stream(stream.id)
                stream.ended()
        except h2.exceptions.ProtocolError:
            self._close_stream(stream, cancel=False)
            return
        self._flush_soon()
        stream.wake()
        if stream.done and stream.task is None:
            self._stream_done(stream)

    def _pump_all(self) -> None:
        # Every stream: those with bytes waiting send them, the others (a file
        # waiting for window before it reads) are woken.
        for stream in list(self.streams.values()):
            self.pump(stream)

    def open_window(self, stream: H2Stream, size: int) -> None:
        """Give the client ``size`` more bytes of ``stream``'s window."""
        self.record(stream)
        try:
            self.h2.increment_flow_control_window(size, stream.id)
        except h2.exceptions.ProtocolError:
            return
        self._flush_soon()

    def reset(self, stream: H2Stream, code: ErrorCodes, *, dropped: bool = False) -> None:
        """Reset ``stream`` (RST_STREAM ``code``); ``dropped``: on the server's own
        decision (a timer), its request ends as the server's abort (Win32 1236)."""
        if stream.closed:
            return
        self.record(stream)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream.id, code)
        self._flush_soon()
        self._close_stream(stream, cancel=dropped, dropped=dropped)

    def _stream_done(self, stream: H2Stream) -> None:
        # The response is complete (or the stream reset) and its task is over.
        if stream.task is not None or not stream.done:
            return
        if not stream.closed and not stream.remote_ended:
            # Answered before the body arrived whole: ask the client to stop sending
            # it, without error (RFC 9113 8.1).
            self.reset(stream, ErrorCodes.NO_ERROR)
        self._forget(stream)

    def _forget(self, stream: H2Stream) -> None:
        # The stream is over for good. The last one closes a stopping connection, or
        # starts the idle timer.
        streams = self.streams
        if stream.id in streams:  # (dict.pop with a default is a generic method call)
            del streams[stream.id]
        if stream.unrecorded:
            self.record(stream)  # not ended: h2 must know it is still open
        forget_record(self.h2, stream.id)
        if self.streams or self.failed or self.closing:
            return
        if self.stopping:
            self.close()
        else:
            self._arm(self.state.timeouts.keep_alive)

    def record(self, stream: H2Stream) -> None:
        """Make ``h2``'s record of ``stream`` if it has none yet (the receiving fast
        path leaves a stream without one, as most are answered and closed before
        ``h2`` is asked anything about them): the record ``h2`` would keep, with the
        send window left and the response head marked sent if it was."""
        unrecorded = stream.unrecorded
        if not unrecorded:
            return
        stream.unrecorded = _RECORDED
        del self.unrecorded[stream.id]  # there while stream.unrecorded says so
        h2conn = self.h2
        inbound = h2conn.local_settings.initial_window_size
        record = request_record(h2conn, stream.id, inbound, stream.window_out)
        if unrecorded == _UNRECORDED_HEAD_SENT:
            record.state_machine.headers_sent = True

    def _record_all(self) -> None:
        for stream in list(self.unrecorded.values()):
            self.record(stream)

    def _ended_unrecorded(self, stream: H2Stream) -> None:
        # END_STREAM sent on a stream h2 has no record of: closed (remote ended
        # first), so h2 will only ever need to know how, as it keeps of the records
        # it forgets.
        stream.unrecorded = _RECORDED
        del self.unrecorded[stream.id]
        closed_stream(self.h2, stream.id, _CLOSED_BY_US)

    def _close_stream(self, stream: H2Stream, *, cancel: bool, dropped: bool = False) -> None:
        stream.closed = True
        stream.wake()
        body = stream.body
        if body is not None and not body.complete:
            body.fail(ClientDisconnectedError("the client reset the stream"))
        task = stream.task
        if cancel and task is not None and not task.done():
            # The client reset the stream, or the connection is gone: the request's
            # own waits are interrupted and the walk ends it as a client's leaving
            # (CLIENT_GONE: its always-run stages run, logged with Win32 status 64;
            # SERVER_ABORTED when the server reset the stream or ended the
            # connection on its own decision, see drop, or after a stop's deadline:
            # 1236), then the task ends.
            self.state.cancel_request(task, dropped or self.dropped)
        if task is None:
            self._forget(stream)

    def _flush_soon(self) -> None:
        # Frames made in one turn of the loop (many streams' heads and bodies, window
        # updates) leave in one write at its end: a write is a system call. Bulk body
        # data goes at once, so that the bytes held here stay bounded.
        if self._unflushed >= _FLUSH_NOW:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self._flush_handle = None
        self._unflushed = 0
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            self._written += len(data)
            transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        while self.write_paused:
            transport = self.transport
            if transport is None or transport.is_closing():
                raise ClientDisconnectedError("the client went away")
            if self._drain_waiter is None or self._drain_waiter.done():
                self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    # -- ending ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop (and a pool worker's drain): GOAWAY NO_ERROR naming the last
        stream taken; those finish, newer ones are refused; then close."""
        if self.stopping or self.closing:
            if not self.streams:
                self.close()
            return
        self.stopping = True
        self.last_stream = self.h2.highest_inbound_stream_id
        # Written beside h2's state machine, which would refuse to send anything
        # after a GOAWAY of its own, and the streams in flight must still finish.
        self._goaway(ErrorCodes.NO_ERROR, b"")
        if not self.streams:
            self.close()

    def _goaway(self, code: int, debug: bytes) -> None:
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = code
        frame.additional_data = debug
        self._flush()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frame.serialize())

    def _fail(self, code: int, kind: str, reason: str, *, said: bool = False) -> None:
        """End the connection for the client's fault: GOAWAY ``code`` (``said``: h2
        queued it already), count ``kind``, log once, linger, close. The requests
        in flight on other streams end as the server's abort (Win32 1236): the
        client broke the protocol, but it is the server that ends them (the error
        itself is counted and logged here)."""
        self.failed = True
        self.dropped = True
        self.state.http2_errors[kind] += 1
        level = logging.WARNING if code == ErrorCodes.ENHANCE_YOUR_CALM else logging.INFO
        log.log(
            level,
            "HTTP/2 connection from %s ended: %s (%s)",
            self.client[0] if self.client else "?",
            _code_name(code).upper(),
            reason,
        )
        if said:
            self._flush()
        else:
            self._goaway(code, reason.encode("ascii", "replace")[:200])
        for stream in list(self.streams.values()):
            self._close_stream(stream, cancel=True)
        self.streams.clear()
        self._linger()

    def _linger(self) -> None:
        # Closing with unread input would reset the connection and may destroy the
        # GOAWAY in flight: half-close, drop what still arrives, then close.
        transport = self.transport
        lingering = self.state.timeouts.lingering
        if transport is None or transport.is_closing():
            return
        if lingering <= 0 or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self._arm(min(lingering, self.state.timeouts.lingering_total))

    def close(self) -> None:
        """Close the connection (after what is queued)."""
        self._flush()
        self.closing = True
        self._disarm()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        """Drop the connection now."""
        self.closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def drop(self) -> None:
        """Abort the connection on the server's own decision (a timer: IIS's
        Timer_MinBytesPerSecond): its requests in flight end as the server's abort
        (``ServerAbortedError``, logged with Win32 status 1236)."""
        self.dropped = True
        self.abort()

    # -- the one timer: idle (keep-alive), or lingering after an error -------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self.failed:
            self.close()
        elif not self.streams:
            # Idle: say goodbye politely, so that the client opens a new connection
            # rather than sending on this one.
            self.shutdown()

    # -- the minimum data rate (limits.min_bytes_per_second) ------------------------------
    #
    # As over HTTP/1.1 (transport/connection.py), over windows of limits.min_rate_window:
    # a stream's body from its head (or its 100 Continue) while the server leaves the
    # client window to send, below the rate: 408 if nothing of the response went out,
    # else RST_STREAM (CANCEL); the connection's sending while the transport holds
    # bytes for the client, below the rate: the connection is dropped. Its own timer,
    # made only while something is measured: a request without a body pays nothing.

    def watch_body(self, stream: H2Stream) -> None:
        """Measure the rate of ``stream``'s request body from now."""
        limits = self.state.limits
        if limits.min_bytes_per_second and not self.closing:
            now = self.loop.time()
            measure = self._body_rates[stream.id] = RateWindow()
            measure.begin(now, stream.received)
            self._rate_check_at(now + limits.min_rate_window)

    def _watch_sending(self) -> None:
        limits = self.state.limits
        if self._send_rate.since < 0 and limits.min_bytes_per_second:
            now = self.loop.time()
            self._send_rate.begin(now, self._sent())
            self._rate_check_at(now + limits.min_rate_window)

    def _sent(self) -> int:
        transport = self.transport
        return self._written - (transport.get_write_buffer_size() if transport else 0)

    def _rate_check_at(self, when: float) -> None:
        self._rate_timer = timer_by(self.loop, self._rate_timer, when, self._check_rates)

    def _check_rates(self) -> None:
        self._rate_timer = None
        limits = self.state.limits
        rate, window = limits.min_bytes_per_second, limits.min_rate_window
        if not rate or self.closing:
            self._body_rates.clear()
            self._send_rate.since = -1.0
            return
        now = self.loop.time()
        due = -1.0
        for stream_id, measure in list(self._body_rates.items()):
            stream = self.streams.get(stream_id)
            body = stream.body if stream is not None else None
            if stream is None or body is None or stream.closed or stream.remote_ended:
                del self._body_rates[stream_id]
                continue
            if stream.received - stream.acked >= self.settings.initial_window_size:
                measure.begin(now, stream.received)  # its window is full: ours to read
            elif not measure.judge(now, window, rate, True, stream.received):
                del self._body_rates[stream_id]
                self._body_too_slow(stream, body, measure, now)
                continue
            due = measure.due(window, due)
        transport = self.transport
        waiting = transport is not None and transport.get_write_buffer_size() > 0
        send_rate = self._send_rate
        if not send_rate.judge(now, window, rate, waiting, self._sent()):
            self._send_too_slow(now)
            return
        due = send_rate.due(window, due)
        if due >= 0:
            self._rate_check_at(due)

    def _body_too_slow(
        self, stream: H2Stream, body: StreamBody, measure: RateWindow, now: float
    ) -> None:
        got, seconds = stream.received - measure.mark, now - measure.since
        what = f"HTTP/2 stream {stream.id}: request body"
        self.state.too_slow("request_body", what, self.client, got, seconds)
        if stream.head_sent:
            # The response has begun: no 408.
            self.reset(stream, ErrorCodes.CANCEL, dropped=True)
        else:
            # Answered 408, then (the body unfinished) RST_STREAM NO_ERROR.
            body.fail(HttpError(408, 0, "the request body arrived too slowly"))

    def _send_too_slow(self, now: float) -> None:
        send_rate = self._send_rate
        got, seconds = self._sent() - send_rate.mark, now - send_rate.since
        send_rate.since = -1.0
        what = "HTTP/2 reading of a response"
        self.state.too_slow("response", what, self.client, got, seconds)
        self.drop()  # connection_lost cancels every stream's task


def decode_block(h2conn: h2.connection.H2Connection, block: bytes) -> list[tuple[bytes, bytes]]:
    """The field list of a header block, decoded by the connection's decoder (a
    ``FieldDecoder``: a repeated block's list is shared, not to be changed), with
    ``h2``'s errors for what ``hpack`` raises, as ``h2`` makes them: a list over the
    size limit (an HPACK bomb) a ``DenialOfServiceError``, any other failure a
    ``ProtocolError`` caused by it."""
    decoder = cast(FieldDecoder, h2conn.decoder)
    error: h2.exceptions.ProtocolError
    try:
        return cast("list[tuple[bytes, bytes]]", decoder.decode_shared(block))
    except hpack.OversizedHeaderListError as exc:
        error = h2.exceptions.DenialOfServiceError(f"Oversized header block: {exc}")
        cause: Exception = exc
    except (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError) as other:
        error = h2.exceptions.ProtocolError(f"Error decoding header block: {other}")
        cause = other
    # Set by hand: mypyc's "raise ... from" leaves __cause__ unset, and the caller
    # tells a COMPRESSION_ERROR by it.
    error.__cause__ = cause
    raise error


def _connection_step(h2conn: h2.connection.H2Connection, step: ConnectionInputs) -> None:
    # A server connection that is open stays open when it sends HEADERS or DATA
    # (h2's transition, without events): its state machine is asked otherwise only.
    machine = h2conn.state_machine
    if machine.state is not _SERVER_OPEN:
        machine.process_input(step)


def sent(machine: H2StreamStateMachine, step: StreamInputs, end: bool) -> None:
    """The steps ``h2``'s stream state machine takes when a frame is sent: ``step``
    (``SEND_HEADERS`` for a response head, ``SEND_DATA``), then ``SEND_END_STREAM``
    when ``end``. From half-closed (remote), the state of a request received whole,
    they are taken here as ``h2``'s transitions take them (``response_sent`` marks
    the head sent; ``send_end_stream`` closes the stream, closed by us); any other
    state asks the machine."""
    if machine.state is _HALF_CLOSED_REMOTE and (
        step is _SEND_DATA or (machine.client is False and not machine.headers_sent)
    ):
        if step is _SEND_HEADERS:
            machine.headers_sent = True
        if end:
            machine.state = _STREAM_CLOSED
            machine.stream_closed_by = _CLOSED_BY_US
        return
    machine.process_input(step)
    if end:
        machine.process_input(_SEND_END_STREAM)


def stream_windows(h2conn: h2.connection.H2Connection) -> tuple[int, int]:
    """The windows a new stream starts with: what it may receive (our setting), what
    it may send (the client's)."""
    return h2conn.local_settings.initial_window_size, h2conn.remote_settings.initial_window_size


def open_request_record(
    h2conn: h2.connection.H2Connection, stream_id: int, inbound: int, outbound: int
) -> StreamRecord:
    """Make ``h2``'s record of a stream the client opened with HEADERS and END_STREAM,
    as ``h2`` makes it on receiving that frame (new, with the windows
    :func:`stream_windows` says, in the half-closed (remote) state, a request
    received), and count it as the highest the client opened."""
    record = request_record(h2conn, stream_id, inbound, outbound)
    h2conn.highest_inbound_stream_id = stream_id
    return record


def request_record(
    h2conn: h2.connection.H2Connection, stream_id: int, inbound: int, outbound: int
) -> StreamRecord:
    """``h2``'s record of a stream the client opened with HEADERS and END_STREAM, as
    ``h2`` makes it on receiving that frame (receive window ``inbound``, send window
    ``outbound``, half-closed (remote)), kept in ``h2``'s streams."""
    # Arguments by position: a class called with keywords has them packed into a
    # dict and unpacked again for __init__ (some 1.8k instructions more).
    record = StreamRecord(stream_id, h2conn.config, inbound, outbound)
    record.max_outbound_frame_size = h2conn.max_outbound_frame_size
    h2conn.streams[stream_id] = record
    machine = record.state_machine
    machine.client = False
    machine.headers_received = True
    machine.state = _HALF_CLOSED_REMOTE
    return record


def forget_record(h2conn: h2.connection.H2Connection, stream_id: int) -> None:
    """Move ``h2``'s record of a closed stream to its closed streams (how it was
    closed, which decides what a late frame on it gets), as ``h2`` does when it counts
    the open streams. Left to ``h2``, closed records pile up until the next count,
    which walks them all through interpreted properties (some 10k instructions a
    request with 100 concurrent streams allowed). A record not closed stays."""
    record = h2conn.streams.get(stream_id)
    if record is not None:
        machine = record.state_machine
        if machine.state is _STREAM_CLOSED:
            del h2conn.streams[stream_id]
            closed_stream(h2conn, stream_id, machine.stream_closed_by)


def closed_stream(
    h2conn: h2.connection.H2Connection, stream_id: int, closed_by: StreamClosedBy | None
) -> None:
    """Keep how a stream whose record ``h2`` no longer has was closed, in ``h2``'s
    record of closed streams (its newest ``MAX_CLOSED_STREAMS``), as ``h2`` does."""
    closed = cast("collections.OrderedDict[int, StreamClosedBy | None]", h2conn._closed_streams)
    _ORDERED_SET(closed, stream_id, closed_by)
    if len(closed) > h2conn.MAX_CLOSED_STREAMS:
        closed.popitem(last=False)


def _h2_request_checks(headers: list[tuple[bytes, bytes]]) -> bool:
    # What h2's receive_headers checks of a request's fields, for the fast path: a
    # :status among the leading pseudo-header fields saying 1xx (END_STREAM on an
    # informational response). True when there is a content-length, which h2 checks
    # (and keeps) by its own code on the stream's record.
    for name, value in headers:
        if name[:1] != b":":
            break
        if name == b":status":
            if value[:1] == b"1":
                raise h2.exceptions.ProtocolError(
                    "Cannot set END_STREAM on informational responses"
                )
            break
    return any(name == b"content-length" for name, _ in headers)


def _known(code: int) -> bool:
    try:
        ErrorCodes(code)
    except ValueError:
        return False
    return True


def _code_name(code: int) -> str:
    return ErrorCodes(code).name.lower() if _known(code) else f"error_{code}"
