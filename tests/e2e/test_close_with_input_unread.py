"""A close after a ``Connection: close`` answer while the client's pipelined bytes are
still unread: over real sockets, the answer must arrive whole (a plain close with
unread input makes the kernel send a reset, which discards what it still had to
send of the answer: RFC 9112 9.6)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from colonnade.transport.connection import _LINGER_MAX, HttpConnection
from tests.fuzz.served import LOOP, STATE, Wire
from tests.support.wait import PATIENCE

from .conftest import LiveServer

# Larger than the client's receive buffer (what the server's kernel still holds
# when it closes is what a reset discards), smaller than a slow client makes the
# file's send wait long enough to read the whole tail meanwhile.
SIZE = 1024 * 1024


@pytest.fixture
def big(www: Path) -> bytes:
    data = bytes(range(256)) * (SIZE // 256)
    (www / "www" / "big.bin").write_bytes(data)
    return data


def _read_to_end(sock: socket.socket) -> tuple[bytes, str]:
    got, how = b"", "closed"
    sock.settimeout(PATIENCE)
    while True:
        try:
            chunk = sock.recv(16384)
        except ConnectionResetError:
            how = "reset"
            break
        if not chunk:
            break
        got += chunk
    return got, how


@pytest.mark.e2e
def test_a_connection_close_answer_behind_unread_pipelined_bytes_arrives_whole(
    live: LiveServer, big: bytes
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)  # a small window
        s.connect(("127.0.0.1", live.port))
        # ~740 KB of pipelined requests behind the one that closes: ignored, but
        # still arriving when the answer is written.
        tail = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n" * 20000
        head = b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

        def send() -> None:
            with contextlib.suppress(OSError):  # the reset, before the fix
                s.sendall(head + tail)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(0.5)  # a slow reader: the answer waits in the server's kernel
        got, how = _read_to_end(s)
        sender.join(PATIENCE)
    head_end = got.find(b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 "), got[:200]
    body = got[head_end + 4 :]
    assert len(body) == SIZE and body == big, (len(body), how)  # 49,152 bytes, "reset"
    assert how == "closed"


def test_a_lingering_close_drops_a_bounded_number_of_bytes() -> None:
    # Not over sockets: a connection lingering (answered, half-closed) is fed
    # more than _LINGER_MAX bytes; it closes then, not after its timeouts only.
    async def go() -> tuple[bool, bool, bool]:
        wire = Wire()
        conn = HttpConnection(STATE)
        wire.protocol = conn
        conn.connection_made(wire)
        conn.data_received(b"GET /docs/a.txt HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        conn.data_received(b"GET /docs/a.txt HTTP/1.1\r\n")  # pipelined: ignored
        assert conn.h1.ignored
        for _ in range(20):
            await asyncio.sleep(0)
        lingering = conn.lingering and not wire.closed  # answered, half-closed
        piece = b"x" * (1024 * 1024)
        for _ in range(_LINGER_MAX // len(piece)):
            conn.data_received(piece)
        before = wire.closed
        conn.data_received(piece)
        after = wire.closed
        conn.connection_lost(None)
        await asyncio.sleep(0)
        return lingering, before, after

    lingering, before, after = LOOP.run_until_complete(go())
    assert lingering and not before and after
