"""An upgrade the server does not take (RFC 9110 7.8): a request with ``Connection:
Upgrade`` answered by anything but 101 is plain HTTP, and its connection stays open
for the next request where that is safe (as nginx does). ``curl --http2`` on an
``http://`` URL sends exactly such a request (``Upgrade: h2c``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.hosting.apps import asgi_apps
from tests.hosting.support import live, site_config

pytestmark = pytest.mark.e2e

PAGE = b"<p>hello</p>\n"
# What curl 8 sends for `curl --http2 http://host/page.html`.
H2C = (
    b"GET /page.html HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
)
WEBSOCKET = (
    b"GET /page.html HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
PLAIN = b"GET /page.html HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("ignored-upgrade")
    (base / "www").mkdir()
    (base / "www" / "page.html").write_bytes(PAGE)
    config = {
        "server": {"modules": ["security.request_filtering", "handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
    }
    server = LiveServer(config, base).start()
    yield server
    server.stop()


@pytest.mark.parametrize("upgrade", [H2C, WEBSOCKET], ids=["h2c", "websocket"])
def test_an_ignored_upgrade_keeps_the_connection(static: LiveServer, upgrade: bytes) -> None:
    with Conn(static.port) as conn:
        conn.send(upgrade)
        got = conn.response()
        assert (got.status, got.body) == (200, PAGE)
        assert "connection" not in got.headers
        conn.send(PLAIN)
        again = conn.response()
        assert (again.status, again.body) == (200, PAGE)


def test_a_request_pipelined_behind_an_ignored_upgrade_is_http(static: LiveServer) -> None:
    # The bytes after the upgrade request's head are the next request (not the new
    # protocol's: no 101 came), parsed as HTTP once the answer says so.
    with Conn(static.port) as conn:
        conn.send(H2C + PLAIN.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        first = conn.response()
        assert (first.status, first.body) == (200, PAGE)
        second = conn.response()
        assert (second.status, second.body) == (200, PAGE)
        assert second.headers["connection"] == "close"
        assert conn.closed()


def test_requests_pipelined_in_pieces_behind_an_ignored_upgrade(static: LiveServer) -> None:
    with Conn(static.port) as conn:
        conn.send(H2C + PLAIN[:20])
        first = conn.response()
        assert (first.status, first.body) == (200, PAGE)
        conn.send(PLAIN[20:] + WEBSOCKET + PLAIN)
        for _ in range(3):
            got = conn.response()
            assert (got.status, got.body) == (200, PAGE)
            assert "connection" not in got.headers


def test_an_upgrade_request_answered_before_its_body_came_closes(static: LiveServer) -> None:
    # Its body's bytes and the next request's cannot be told apart without reading it.
    with Conn(static.port) as conn:
        conn.send(
            b"PUT /page.html HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: h2c\r\nContent-Length: 100\r\n\r\n"
        )
        got = conn.response()
        assert got.status == 405
        assert got.headers["connection"] == "close"
        assert conn.closed()


APPS = "tests.hosting.apps.asgi_apps"


def test_an_upgrade_request_with_a_body_read_in_full_keeps_the_connection(
    tmp_path: Path,
) -> None:
    with live(site_config(f"{APPS}:echo"), tmp_path) as server, Conn(server.port) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Content-Length: 5\r\n\r\nhello"
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        )
        first = conn.response()
        assert (first.status, first.body) == (200, b"hello")
        assert first.headers.get("connection") != "close"
        second = conn.response()
        assert (second.status, second.body) == (200, b"abc")


def test_a_websocket_upgrade_still_switches_protocols(tmp_path: Path) -> None:
    # 101: the bytes after the head are the new protocol's, as before.
    with live(site_config(f"{APPS}:ws_echo"), tmp_path) as server, Conn(server.port) as conn:
        conn.send(WEBSOCKET.replace(b"/page.html", b"/").replace(b"localhost", b"x"))
        got = conn.response(head_only=True)
        assert got.status == 101
        assert got.headers["upgrade"].lower() == "websocket"
        # A masked text frame "hi" (mask 0): the echo comes back unmasked.
        conn.send(b"\x81\x82\x00\x00\x00\x00hi")
        while len(conn.buf) < 4:
            assert conn._fill()
        assert conn.buf[:4] == b"\x81\x02hi"


def test_requests_pipelined_behind_an_ignored_upgrade_then_a_half_close(
    static: LiveServer,
) -> None:
    # Every request that came whole before the client's FIN is answered (as nginx
    # does), those held behind the upgrade request included; the last answer closes.
    with Conn(static.port) as conn:
        conn.send(H2C + PLAIN + PLAIN)
        conn.sock.shutdown(socket.SHUT_WR)
        for _ in range(3):
            got = conn.response()
            assert (got.status, got.body) == (200, PAGE)
        assert conn.closed()


def test_a_half_close_after_an_upgrade_request_alone_closes_after_its_answer(
    static: LiveServer,
) -> None:
    with Conn(static.port) as conn:
        conn.send(H2C)
        conn.sock.shutdown(socket.SHUT_WR)
        got = conn.response()
        assert (got.status, got.body) == (200, PAGE)
        assert conn.closed()


def test_a_half_close_behind_an_ignored_upgrade_before_its_answer(
    tmp_path: Path, gate: None
) -> None:
    # The FIN comes while the upgrade request is being answered: the requests held
    # behind it are answered still, and the last answer closes.
    with live(site_config(f"{APPS}:gated"), tmp_path) as server, Conn(server.port) as conn:
        plain = PLAIN.replace(b"/page.html", b"/")
        conn.send(H2C.replace(b"/page.html", b"/") + plain + plain)
        conn.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the FIN in before the answer
        asgi_apps.GATE.set()
        for _ in range(3):
            got = conn.response()
            assert (got.status, got.body) == (200, b"gated")
        assert got.headers["connection"] == "close"
        assert conn.closed()


def test_a_half_close_behind_an_ignored_upgrade_while_its_answer_goes_out(
    tmp_path: Path, gate: None
) -> None:
    # The FIN comes after the upgrade request's answer began (its head went out
    # kept alive): the request held behind it is still answered.
    with live(site_config(f"{APPS}:big_slow"), tmp_path) as server, Conn(server.port) as conn:
        conn.send(H2C.replace(b"/page.html", b"/") + PLAIN.replace(b"/page.html", b"/"))
        conn.await_head()
        conn.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the FIN in before the body: a wrong server closes anyway
        asgi_apps.GATE.set()
        for _ in range(2):
            got = conn.response()
            assert (got.status, len(got.body)) == (200, 100_000)
        assert conn.closed()


def test_a_switch_after_a_half_close_gives_the_new_protocol_its_end(
    tmp_path: Path, gate: None
) -> None:
    # A 101 to an upgrade request whose client had closed its side before: the new
    # protocol sees the end of the client's bytes (the application its disconnect,
    # and the connection closes), not a wait for bytes that never come.
    app = f"{APPS}:ws_late_accept"
    with live(site_config(app), tmp_path) as server, Conn(server.port) as conn:
        conn.send(WEBSOCKET.replace(b"/page.html", b"/").replace(b"localhost", b"x"))
        conn.sock.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the FIN in before the application accepts
        asgi_apps.GATE.set()
        got = conn.response(head_only=True)
        assert got.status == 101
        assert conn.closed()
