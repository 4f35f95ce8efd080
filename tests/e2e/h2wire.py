"""A raw HTTP/2 client for protocol tests: frames built by hand (hyperframe, hpack),
sent over a real socket, and the server's frames read back one by one."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field

from h2.errors import ErrorCodes
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.support.wait import PATIENCE

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def get_headers(path: str = "/hello.txt", method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":authority", "t"), (":path", path)]


@dataclass
class Outcome:
    """What the server did about a test's frames: the first GOAWAY or RST_STREAM, or a
    complete response on the stream watched, or the end of the connection."""

    kind: str  # "goaway", "rst", "status", "eof"
    code: int = 0  # the error code, or the status
    stream: int = 0
    debug: bytes = b""
    frames: list[Frame] = field(default_factory=list)


class RawH2:
    """One client connection speaking HTTP/2 by hand."""

    def __init__(self, port: int, *, preface: bytes | None = PREFACE, settings: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.buf = b""
        self.frames: list[Frame] = []
        self.fields: dict[int, list[tuple[bytes, bytes]]] = {}
        start = preface or b""
        if settings:
            start += SettingsFrame(0).serialize()
        if start:
            self.sock.sendall(start)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------

    def send(self, *frames: Frame | bytes) -> None:
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        # The server may have ended the connection already: its frames say why.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def block(self, headers: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> bytes:
        return bytes(self.encoder.encode(headers))

    def headers(
        self,
        stream: int,
        headers: list[tuple[str, str]] | None = None,
        *,
        end_stream: bool = True,
        end_headers: bool = True,
        block: bytes | None = None,
    ) -> HeadersFrame:
        f = HeadersFrame(stream)
        f.data = block if block is not None else self.block(headers or get_headers())
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f

    @staticmethod
    def continuation(stream: int, data: bytes, *, end: bool = False) -> ContinuationFrame:
        f = ContinuationFrame(stream)
        f.data = data
        if end:
            f.flags.add("END_HEADERS")
        return f

    @staticmethod
    def data(stream: int, data: bytes, *, end_stream: bool = False) -> DataFrame:
        f = DataFrame(stream)
        f.data = data
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    @staticmethod
    def rst(stream: int, code: int = ErrorCodes.CANCEL) -> RstStreamFrame:
        f = RstStreamFrame(stream)
        f.error_code = code
        return f

    @staticmethod
    def ping(data: bytes = b"12345678", *, stream: int = 0) -> PingFrame:
        f = PingFrame(stream)
        f.opaque_data = data
        return f

    @staticmethod
    def settings(**values: int) -> SettingsFrame:
        return SettingsFrame(0, settings={getattr(SettingsFrame, k): v for k, v in values.items()})

    @staticmethod
    def window_update(stream: int, increment: int) -> WindowUpdateFrame:
        f = WindowUpdateFrame(stream)
        f.window_increment = increment
        return f

    @staticmethod
    def goaway(code: int = 0) -> GoAwayFrame:
        f = GoAwayFrame(0)
        f.error_code = code
        return f

    @staticmethod
    def raw(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        """A frame exactly as given, valid or not."""
        return (
            len(payload).to_bytes(3, "big")
            + bytes([kind, flags])
            + stream.to_bytes(4, "big")
            + payload
        )

    # -- reading -------------------------------------------------------------------------

    def next_frame(self, deadline: float) -> Frame | None:
        """The server's next frame; None once it closed the connection."""
        while True:
            if len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) >= 9 + length:
                    frame.parse_body(memoryview(self.buf[9 : 9 + length]))
                    self.buf = self.buf[9 + length :]
                    self.frames.append(frame)
                    if isinstance(frame, HeadersFrame | ContinuationFrame):
                        self.fields.setdefault(frame.stream_id, []).extend(
                            self.decoder.decode(frame.data, raw=True)
                        )
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer from the server; frames so far: {self.frames}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                continue
            if not chunk:
                return None
            self.buf += chunk

    def outcome(self, stream: int = 1, timeout: float = PATIENCE) -> Outcome:
        """Read until the server says something decisive (see :class:`Outcome`)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next_frame(deadline)
            if frame is None:
                return Outcome("eof", frames=self.frames)
            if isinstance(frame, GoAwayFrame):
                return Outcome(
                    "goaway",
                    frame.error_code,
                    frame.last_stream_id,
                    frame.additional_data,
                    self.frames,
                )
            if isinstance(frame, RstStreamFrame):
                return Outcome("rst", frame.error_code, frame.stream_id, frames=self.frames)
            if frame.stream_id == stream and "END_STREAM" in frame.flags:
                return Outcome("status", self.status(stream), stream, frames=self.frames)

    def statuses(self, stream: int) -> list[int]:
        """Every ``:status`` sent on ``stream``: interim ones (1xx), then the final one."""
        return [int(v) for n, v in self.fields.get(stream, []) if n == b":status"]

    def status(self, stream: int) -> int:
        statuses = self.statuses(stream)
        if not statuses:
            raise AssertionError(f"no :status on stream {stream}")
        return statuses[-1]

    def response(self, stream: int = 1, timeout: float = PATIENCE) -> tuple[int, bytes]:
        """Read a whole response on ``stream`` (status, body), opening the windows."""
        deadline = time.monotonic() + timeout
        body = b""
        while True:
            frame = self.next_frame(deadline)
            if frame is None:
                raise AssertionError(f"connection closed; frames: {self.frames}")
            if isinstance(frame, GoAwayFrame | RstStreamFrame):
                raise AssertionError(f"unexpected {frame}")
            if frame.stream_id != stream:
                continue
            if isinstance(frame, DataFrame):
                body += frame.data
                if frame.flow_controlled_length:
                    self.send(
                        self.window_update(0, frame.flow_controlled_length),
                        self.window_update(stream, frame.flow_controlled_length),
                    )
            if "END_STREAM" in frame.flags:
                return self.status(stream), body
