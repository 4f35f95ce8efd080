"""The WSGI handler over real sockets: the stdlib validator, big and chunked bodies,
back-pressure, and close() when the client goes away."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from tests.e2e.wire import Conn
from tests.hosting.apps import wsgi_apps
from tests.hosting.support import live, site_config
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

APPS = "tests.hosting.apps.wsgi_apps"


def _request(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_the_stdlib_validator_finds_nothing(tmp_path: Path) -> None:
    # wsgiref.validate checks the environ, start_response, the input and error
    # streams and the iterable (its close() included) and raises, or warns (an
    # error under pytest), on the first violation: every request must be a 200.
    body = os.urandom(10 * 1024 * 1024)
    with live(site_config(f"{APPS}:validated", path="/v"), tmp_path) as server:
        with Conn(server.port) as conn:
            conn.send(_request("GET", "/v/hello"))
            got = conn.response()
            assert (got.status, got.body) == (200, b"validated /hello")

            conn.send(_request("GET", "/v/stream"))
            got = conn.response()
            assert got.status == 200 and got.chunked
            assert got.body == b"".join(b"part %d\n" % i for i in range(100))

            conn.send(_request("GET", "/v/error"))
            got = conn.response()
            assert got.status == 500
            assert b"validated app failure" not in got.body

        # On a connection of its own: after a big body that arrived whole, the
        # transport may leave reading paused (it resumes only when a read waits).
        with Conn(server.port, timeout=30) as conn:
            conn.send(_request("POST", "/v/upload", {"Content-Length": str(len(body))}))
            conn.sock.sendall(body)
            got = conn.response()
            assert got.status == 200
            assert got.body == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


@pytest.mark.parametrize("buffer", [True, False], ids=["buffered", "streamed"])
def test_chunked_upload_streams_into_wsgi_input(tmp_path: Path, buffer: bool) -> None:
    pieces = [os.urandom(n) for n in (1, 1000, 70_000, 300_000, 5)]
    data = b"".join(pieces)
    config = site_config(f"{APPS}:digest", sections={"wsgi": {"buffer_request_body": buffer}})
    with live(config, tmp_path) as server, Conn(server.port) as conn:
        conn.send(_request("POST", "/", {"Transfer-Encoding": "chunked"}))
        for piece in pieces:
            conn.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sock.sendall(b"0\r\n\r\n")
        got = conn.response()
    assert got.body == f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def test_a_slow_reader_gets_every_byte(tmp_path: Path) -> None:
    with (
        live(site_config(f"{APPS}:big_stream"), tmp_path) as server,
        Conn(server.port, timeout=20) as conn,
    ):
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        conn.send(_request("GET", "/"))
        wait_for(
            lambda: server.look(lambda state: any(c.write_paused for c in state.connections)),
            PATIENCE,
            "the server filling the socket and having to wait",
        )
        got = conn.response()
    assert len(got.body) == 128 * 65536
    assert got.body[:65536] == b"\x00" * 65536
    assert got.body[-65536:] == bytes([127]) * 65536
    assert ("closed", "big") in wsgi_apps.EVENTS


def test_a_client_going_away_closes_the_iterable(tmp_path: Path) -> None:
    with live(site_config(f"{APPS}:slow_stream"), tmp_path) as server:
        conn = Conn(server.port)
        conn.send(_request("GET", "/"))
        conn._line()  # the status line: the first chunk is on its way
        conn.close()
        wsgi_apps.GATE.set()  # the next chunk finds the client gone
        wait_for(lambda: ("closed", "slow") in wsgi_apps.EVENTS, PATIENCE, "close() called")


def test_file_wrapper_goes_out_with_sendfile(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    with live(site_config(f"{APPS}:file_app"), tmp_path) as server, Conn(server.port) as conn:
        conn.send(_request("GET", f"/?{path}"))
        got = conn.response()
        conn.send(_request("GET", f"/?{path}"))  # the connection goes on afterwards
        again = conn.response()
    assert got.headers["content-length"] == str(len(data) - 10)
    assert got.body == again.body == data[10:]


@pytest.mark.parametrize("reader", ["swallows_input_errors", "digest"])
def test_a_chunked_body_over_the_limit_is_413_1_not_the_apps_500(
    tmp_path: Path, reader: str
) -> None:
    # The limit is known only while the chunked body arrives, so the application
    # is already reading it: whatever it makes of the exception (its own 500, or
    # an unhandled one), the client gets the server's 413.1, as over ASGI.
    config = site_config(
        f"{APPS}:{reader}",
        modules=["security.request_filtering"],
        sections={"request_filtering": {"max_allowed_content_length": 100_000}},
    )
    with live(config, tmp_path) as server, Conn(server.port) as conn:
        conn.send(_request("POST", "/", {"Transfer-Encoding": "chunked"}))
        piece = os.urandom(64 * 1024)
        for _ in range(3):
            conn.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sock.sendall(b"0\r\n\r\n")
        got = conn.response()
    assert got.status == 413, got.body
    assert b"Error code: 413.1" in got.body
    assert b"app error" not in got.body


def test_slow_uploads_hold_no_thread(tmp_path: Path) -> None:
    # R.U.D.Y. (bench/reliability/attack.py, slowhttptest -B): uploads declaring a
    # large body and sending it a few bytes at a time. Streamed to the application,
    # each held one of its threads until the body timeout, and as many as there are
    # threads left none for anyone else; buffered on the loop, they hold none.
    config = site_config(f"{APPS}:digest", sections={"wsgi": {"threads": 2}})
    slow: list[socket.socket] = []
    with live(config, tmp_path) as server:
        try:
            for _ in range(6):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(_request("POST", "/", {"Content-Length": "1000000"}) + b"a=b&")
                slow.append(sock)
            wait_for(
                lambda: server.look(lambda state: len(state.connections)) >= 6,
                PATIENCE,
                "the six slow uploads connected",
            )
            for _ in range(3):  # more requests than threads
                with Conn(server.port, timeout=10) as conn:
                    conn.send(_request("POST", "/", {"Content-Length": "3"}) + b"abc")
                    got = conn.response()
                assert got.status == 200
                assert got.body == f"3 {hashlib.sha256(b'abc').hexdigest()}".encode()
        finally:
            for sock in slow:
                sock.close()
