"""What a client sends after an upgrade request is bounded in the server's memory
while nobody takes it: the bytes held while the upgrade request is answered
(``HTTP1Connection.over_held``) and those a WebSocket application leaves unread
(``RawChannel``, ``RAW_HIGH``). The connection stops reading, so the client meets
TCP's back-pressure; nothing is lost: what was held is delivered once taken."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from tests.e2e.wire import Conn
from tests.hosting.apps import asgi_apps
from tests.hosting.support import live, site_config

pytestmark = pytest.mark.e2e

APPS = "tests.hosting.apps.asgi_apps"
#: Far more than the kernel buffers of a loopback connection (tcp_rmem's top here
#: is 32 MiB, tcp_wmem's 4 MiB): a server that reads it all holds it in memory.
FLOOD = 96 * 1024 * 1024
#: How long the client pushes before the test judges how much got in.
PUSH = 2.0
#: One binary frame from the client: masked (with a zero key: the payload as is).
PAYLOAD = bytes(65000)
FRAME = b"\x82" + bytes([0x80 | 126]) + struct.pack("!H", len(PAYLOAD)) + bytes(4) + PAYLOAD
WEBSOCKET = (
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def push(sock: socket.socket, data: bytes, seconds: float) -> int:
    """Send ``data`` without blocking for ``seconds`` at most; how much got in."""
    sock.setblocking(False)
    sent = 0
    view = memoryview(data)
    end = time.monotonic() + seconds
    try:
        while sent < len(data) and time.monotonic() < end:
            try:
                sent += sock.send(view[sent : sent + (1 << 20)])
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        sock.setblocking(True)
    return sent


def frame_text(conn: Conn) -> str:
    """The next (unmasked, short) frame from the server, as text."""
    while len(conn.buf) < 2 or len(conn.buf) < 2 + conn.buf[1]:
        assert conn._fill(), "the connection closed"
    length = conn.buf[1]
    text, conn.buf = conn.buf[2 : 2 + length], conn.buf[2 + length :]
    return text.decode()


def test_a_websocket_application_that_does_not_receive_stops_the_reading(
    tmp_path: Path, gate: None
) -> None:
    frames = FRAME * (FLOOD // len(FRAME))
    with live(site_config(f"{APPS}:ws_count"), tmp_path) as server, Conn(server.port) as conn:
        conn.send(WEBSOCKET)
        assert conn.response(head_only=True).status == 101
        assert frame_text(conn) == "ready"
        got_in = push(conn.sock, frames, PUSH)
        # The kernel's buffers take some; the server, not reading, no more.
        assert got_in < len(frames) // 2
        asgi_apps.GATE.set()
        conn.send(frames[got_in:])  # the application receives again: all goes in
        conn.send(b"\x81\x84" + bytes(4) + b"done")
        assert frame_text(conn) == str(len(PAYLOAD) * (FLOOD // len(FRAME)))


def test_bytes_after_an_upgrade_request_being_answered_stop_the_reading(
    tmp_path: Path, gate: None
) -> None:
    # The answer does not switch protocols: what came after the request would be
    # HTTP again, but far more than HELD_MAX came, so the answer closes.
    junk = bytes(FLOOD)
    with (
        live(site_config(f"{APPS}:receive_elsewhere"), tmp_path) as server,
        Conn(server.port) as conn,
    ):
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        got_in = push(conn.sock, junk, PUSH)
        assert got_in < len(junk) // 2
        asgi_apps.GATE.set()
        got = conn.response()
        assert (got.status, got.body) == (200, b"answered")
        assert got.headers["connection"] == "close"


def test_an_answer_that_closes_for_too_much_held_arrives_whole(tmp_path: Path, gate: None) -> None:
    # The bytes held (and those the kernel took since) were never read: a plain
    # close would reset the connection and lose what the kernel still had to send
    # of the answer. It lingers instead (reads and drops them after its FIN).
    junk = bytes(FLOOD)
    with (
        live(site_config(f"{APPS}:gated_big"), tmp_path) as server,
        Conn(server.port) as conn,
    ):
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        push(conn.sock, junk, PUSH)
        asgi_apps.GATE.set()
        got = conn.response()
        assert got.headers["connection"] == "close"
        assert (got.status, len(got.body)) == (200, asgi_apps.BIG)
