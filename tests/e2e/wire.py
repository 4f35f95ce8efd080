"""A small, strict HTTP/1.1 response reader for end-to-end tests over raw sockets."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from tests.support.wait import PATIENCE


@dataclass
class Wire:
    """One response as it came over the wire."""

    status: int
    headers: dict[str, str]
    body: bytes
    raw_head: bytes = b""
    chunked: bool = False
    trailers: list[bytes] = field(default_factory=list)


class Conn:
    """A raw client connection with a read buffer."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = PATIENCE,
        rcvbuf: int | None = None,
    ) -> None:
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            # Set before connecting: the window scale is agreed in the handshake,
            # and a buffer shrunk afterwards still lets the peer send far more.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed mid-line")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed mid-body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, *, head_only: bool = False) -> Wire:
        """Read one response (``head_only`` for a response to HEAD)."""
        status_line = self._line()
        parts = status_line.split(b" ", 2)
        assert parts[0] in (b"HTTP/1.1", b"HTTP/1.0"), status_line
        headers: dict[str, str] = {}
        raw = [status_line]
        while True:
            line = self._line()
            if not line:
                break
            raw.append(line)
            name, _, value = line.partition(b":")
            headers[name.decode().lower()] = value.strip().decode("latin-1")
        status = int(parts[1])
        wire = Wire(status, headers, b"", b"\r\n".join(raw))
        if head_only or status in (204, 304) or 100 <= status < 200:
            return wire
        if headers.get("transfer-encoding") == "chunked":
            wire.chunked = True
            body = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while (line := self._line()) != b"":
                        wire.trailers.append(line)
                    break
                body.append(self._exact(size))
                assert self._exact(2) == b"\r\n"
            wire.body = b"".join(body)
        elif "content-length" in headers:
            wire.body = self._exact(int(headers["content-length"]))
        else:
            while self._fill():
                pass
            wire.body, self.buf = self.buf, b""
        return wire

    def await_head(self) -> None:
        """Read until a whole response head has arrived (it stays buffered for
        :meth:`response`): the server is handling the request."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed before a response head")

    def closed(self, wait: float = 10.0) -> bool:
        """True if the server closed the connection (EOF) within ``wait`` seconds.

        The default is generous for a loaded machine, yet below the default
        keep-alive timeout (15 s), which would close any connection in the end."""
        self.sock.settimeout(wait)
        end = time.monotonic() + wait
        try:
            while time.monotonic() < end:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
