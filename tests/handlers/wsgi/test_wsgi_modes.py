"""``[wsgi] blocking``: the thread pool (the default) and inline on the event loop
(``blocking = false``) answer alike, byte for byte, over real sockets; what only the
inline mode does (no thread, a whole body before the call, the warning about an
application that blocks) and what it keeps (back-pressure, the request monitor, the
minimum data rate)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from colonnade.handlers.wsgi.handler import BLOCKED_WARNING, WsgiHandler
from colonnade.management import serve_options
from colonnade.management.cli import _parser, config_source
from tests.e2e.wire import Conn
from tests.hosting.apps import wsgi_apps
from tests.hosting.support import live, site_config
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

APPS = "tests.hosting.apps.wsgi_apps"
MODES = {"pool": True, "loop": False}  # mode → [wsgi] blocking


def _config(app: str, mode: str, **wsgi: Any) -> dict[str, Any]:
    return site_config(f"{APPS}:{app}", sections={"wsgi": {"blocking": MODES[mode], **wsgi}})


def _request(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_DATE = re.compile(rb"\r\ndate: [^\r]*", re.IGNORECASE)
_CID = re.compile(rb"Correlation id: <code>[0-9a-f]+</code>")
_PORTS = re.compile(rb'"(REMOTE|SERVER)_PORT": "\d+"')


def _exchange(port: int, head: bytes, body: list[bytes]) -> bytes:
    # One request on a connection of its own (Connection: close): every byte the
    # server sent until it closed, even where it broke off mid-response; the Date
    # and what differs per request (correlation id, ports) made constant.
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(head)
        for piece in body:
            sock.sendall(piece)
        received = bytearray()
        while data := sock.recv(65536):
            received += data
    out = _DATE.sub(b"\r\ndate: -", bytes(received))
    out = _CID.sub(b"Correlation id: <code>-</code>", out)
    return _PORTS.sub(rb'"\1_PORT": "-"', out)


DATA = b"0123456789abcdef" * 12_500
PIECES = [b"x", b"y" * 1000, b"z" * 70_000, b"w" * 5]


def _digest(data: bytes) -> bytes:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def _cases(tmp_path: Path) -> list[tuple[str, bytes, list[bytes]]]:
    (tmp_path / "file.bin").write_bytes(os.urandom(200_000))
    data, pieces = DATA, PIECES
    chunked = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    lines_body = b"first line\nabcdef\nx\ny\n" + b"z\n" * 50 + b"last"
    close = {"Connection": "close"}

    def get(path: str) -> tuple[str, bytes, list[bytes]]:
        return path, _request("GET", path, close), []

    def post(path: str, body: bytes) -> tuple[str, bytes, list[bytes]]:
        return path, _request("POST", path, {**close, "Content-Length": str(len(body))}), [body]

    return [
        get("/hello/"),
        get("/environ_app/a%20b/caf%C3%A9?x=1&y=%20"),
        get("/stream/"),
        get("/one_chunk_generator/"),
        get("/lazy_start/"),
        get("/custom_reason/"),
        get("/writer/"),
        get("/big_stream/"),
        get("/raises/"),
        get("/raises_in_iteration/"),
        get("/exc_info_app/"),
        get("/exc_info_too_late/"),
        get("/twice/"),
        get("/exits/"),
        get(f"/file_app/?{tmp_path / 'file.bin'}"),
        post("/digest/", data),
        ("/digest/ empty", post("/digest/", b"")[1], []),
        post("/read_all/", data[:1000]),
        post("/lines/", lines_body),
        (
            "/digest/ chunked",
            _request("POST", "/digest/", {**close, "Transfer-Encoding": "chunked"}),
            chunked,
        ),
    ]


@pytest.mark.parametrize("buffer", [True, False], ids=["buffered", "streamed"])
def test_both_modes_send_the_same_bytes(tmp_path: Path, buffer: bool) -> None:
    # Every kind of response (buffered, streamed, write(), exc_info, errors before
    # and during the body, sendfile) and of request body (declared, chunked, read
    # whole or in pieces or by lines), on the pool and inline: the same bytes on
    # the wire (the Date aside), and the same iterables closed.
    cases = _cases(tmp_path)
    seen: dict[str, list[bytes]] = {}
    closed: dict[str, list[Any]] = {}
    for mode in MODES:
        config = _config("dispatch", mode, buffer_request_body=buffer)
        with live(config, tmp_path) as server:
            seen[mode] = [_exchange(server.port, head, body) for _, head, body in cases]
            # close() runs as the request ends: wait for the last one's
            wait_for(lambda: ("closed", "big") in wsgi_apps.EVENTS, PATIENCE, "close() called")
        closed[mode] = sorted(wsgi_apps.EVENTS)
        wsgi_apps.EVENTS.clear()
    for (name, _, _), pooled, inline in zip(cases, seen["pool"], seen["loop"], strict=True):
        # wsgi.multithread says where the application runs; nothing else differs
        if name.startswith("/environ_app"):
            assert b'"wsgi.multithread": true' in pooled
            assert b'"wsgi.multithread": false' in inline
            inline = inline.replace(b'"wsgi.multithread": false', b'"wsgi.multithread": true')
            length = re.compile(rb"\r\ncontent-length: \d+")
            pooled, inline = length.sub(b"", pooled), length.sub(b"", inline)
        assert pooled == inline, name
    assert closed["pool"] == closed["loop"]
    assert {name for _, name in closed["pool"]} == {"stream", "one", "big", "failing"}
    # and they are what the application meant
    answers = dict(zip([name for name, _, _ in cases], seen["loop"], strict=True))
    assert len(answers) == len(cases)
    assert answers["/hello/"].endswith(b"\r\n\r\nHello, world!")
    assert b"transfer-encoding: chunked" in answers["/stream/"]
    assert b"\r\ncontent-length: 5\r\n" in answers["/one_chunk_generator/"]
    assert answers["/one_chunk_generator/"].endswith(b"\r\n\r\nhello")
    assert answers["/lazy_start/"].startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert answers["/custom_reason/"].startswith(b"HTTP/1.1 299 Quite Fine\r\n")
    assert answers["/writer/"].endswith(
        b"8\r\nwritten \r\n6\r\ntwice \r\nd\r\nthen returned\r\n0\r\n\r\n"
    )
    assert answers["/exc_info_app/"].startswith(b"HTTP/1.1 503 ")
    assert answers["/exc_info_app/"].endswith(b"replaced")
    for failed in ("/raises/", "/twice/", "/exits/"):
        assert answers[failed].startswith(b"HTTP/1.1 500 "), failed
        assert b"Correlation id: <code>" in answers[failed]
        assert b"SECRET-TRACEBACK-DETAIL" not in answers[failed]
        assert b"Traceback" not in answers[failed]
    # a failure once the body streams: what went out, then the connection drops
    # (no terminating chunk)
    assert answers["/raises_in_iteration/"].endswith(b"7\r\npartial\r\n")
    assert answers["/exc_info_too_late/"].endswith(b"b\r\nhead is out\r\n")
    assert b"content-length: 199990\r\n" in answers[f"/file_app/?{tmp_path / 'file.bin'}"]
    assert answers["/digest/"].endswith(b"\r\n\r\n" + _digest(DATA))
    assert answers["/digest/ chunked"].endswith(b"\r\n\r\n" + _digest(b"".join(PIECES)))
    assert answers["/digest/ empty"].endswith(b"\r\n\r\n" + _digest(b""))
    env = json.loads(answers["/environ_app/a%20b/caf%C3%A9?x=1&y=%20"].rsplit(b"\r\n\r\n", 1)[1])
    assert env["SCRIPT_NAME"] == "/environ_app"
    assert env["PATH_INFO"] == "/a b/caf\u00c3\u00a9"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["wsgi.version"] == [1, 0] and env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input"] == "EmptyInput" and env["wsgi.input_terminated"] is True
    for key in ("REQUEST_METHOD", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL"):
        assert env[key], key
    assert env["wsgi.multiprocess"] is True and env["wsgi.run_once"] is False


@pytest.mark.parametrize("mode", MODES)
def test_each_request_gets_its_own_environ_values(tmp_path: Path, mode: str) -> None:
    # The environ is a copy of a template holding the common values, and the
    # text forms of the last Host, server and client address are remembered:
    # nothing of one request may show in the next, on one connection or another.
    def ask(conn: Conn, head: bytes) -> dict[str, Any]:
        conn.send(head)
        got = conn.response()
        assert got.status == 200, got.body
        data: dict[str, Any] = json.loads(got.body)
        return data

    with (
        live(_config("dispatch", mode), tmp_path) as server,
        Conn(server.port) as first,
        Conn(server.port) as second,
    ):
        plain = ask(first, _request("GET", "/environ_app/a"))
        other = ask(
            first,
            b"POST /environ_app/b?q=1 HTTP/1.0\r\nHost: example.test:81\r\n"
            b"Connection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        )
        again = ask(first, _request("GET", "/environ_app/c"))
        elsewhere = ask(second, b"DELETE /environ_app/d HTTP/1.1\r\nHost: x.test\r\n\r\n")
        first_port = first.sock.getsockname()[1]
        second_port = second.sock.getsockname()[1]
    expected = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/a",
        "QUERY_STRING": "",
        "RAW_URI": "/environ_app/a",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": str(server.port),
        "REMOTE_PORT": str(first_port),
        "wsgi.url_scheme": "http",
    }
    assert {k: plain[k] for k in expected} == expected
    assert {k: other[k] for k in expected} == {
        **expected,
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/b",
        "QUERY_STRING": "q=1",
        "RAW_URI": "/environ_app/b?q=1",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "SERVER_NAME": "example.test",
    }
    assert {k: again[k] for k in expected} == {
        **expected,
        "PATH_INFO": "/c",
        "RAW_URI": "/environ_app/c",
    }
    assert {k: elsewhere[k] for k in expected} == {
        **expected,
        "REQUEST_METHOD": "DELETE",
        "PATH_INFO": "/d",
        "RAW_URI": "/environ_app/d",
        "SERVER_NAME": "x.test",
        "REMOTE_PORT": str(second_port),
    }
    assert first_port != second_port


@pytest.mark.parametrize("mode", MODES)
def test_where_the_application_runs(tmp_path: Path, mode: str) -> None:
    with live(_config("where", mode), tmp_path) as server, Conn(server.port) as conn:
        conn.send(_request("GET", "/"))
        got = conn.response()
        loop_thread = server.thread.name
    name, multithread = got.body.decode().rsplit(" ", 1)
    if mode == "loop":
        assert (name, multithread) == (loop_thread, "False")
    else:
        assert name.startswith("wsgi/") and multithread == "True"


@pytest.mark.parametrize("mode", MODES)
def test_back_pressure_holds_the_application(tmp_path: Path, mode: str) -> None:
    # A client that does not read: the server stops asking the application for
    # chunks (on the pool its thread waits; inline the loop does not call the
    # generator again), and a request in flight shows in the request monitor.
    with (
        live(_config("counted_stream", mode), tmp_path) as server,
        Conn(server.port, timeout=30, rcvbuf=16384) as conn,
    ):
        conn.send(_request("GET", "/big"))
        wait_for(
            lambda: server.look(lambda state: any(c.write_paused for c in state.connections)),
            PATIENCE,
            "the server filling the socket and having to wait",
        )
        held = wsgi_apps.PRODUCED[0]
        # many turns of the loop later, still no more than a chunk further
        assert server.look(lambda state: wsgi_apps.PRODUCED[0], turns=50) <= held + 1
        assert held < 64
        executing = server.look(lambda state: [c.request.path for c in server.engine.executing])
        assert executing == ["/big"]
        got = conn.response()
    assert len(got.body) == 128 * 65536
    assert got.body[-65536:] == bytes([127]) * 65536
    assert wsgi_apps.PRODUCED[0] == 128
    assert ("closed", "counted") in wsgi_apps.EVENTS


@pytest.mark.parametrize("mode", MODES)
def test_a_client_too_slow_to_read_is_cut_and_the_iterable_closed(
    tmp_path: Path, mode: str
) -> None:
    # The minimum data rate still guards a streamed response, inline too.
    config = _config("counted_stream", mode)
    config["server"]["limits"] = {"min_bytes_per_second": 1_000_000, "min_rate_window": 1.0}
    with (
        live(config, tmp_path) as server,
        Conn(server.port, timeout=30, rcvbuf=16384) as conn,
    ):
        conn.send(_request("GET", "/?16384"))  # 1 GiB
        assert conn.closed(PATIENCE), "the connection was not cut"
        wait_for(lambda: ("closed", "counted") in wsgi_apps.EVENTS, PATIENCE, "close() called")
    assert wsgi_apps.PRODUCED[0] < 16384


def test_inline_the_body_is_read_whole_before_the_call(tmp_path: Path) -> None:
    # buffer_request_body = false cannot hold inline: wsgi.input would wait for the
    # client on the loop's thread, stalling every request. A slow upload is read
    # on the loop first, and other requests are answered meanwhile.
    config = _config("dispatch", "loop", buffer_request_body=False)
    with live(config, tmp_path) as server:
        slow = socket.create_connection(("127.0.0.1", server.port))
        try:
            slow.sendall(_request("POST", "/digest/", {"Content-Length": "200000"}) + b"a" * 10)
            with Conn(server.port, timeout=10) as conn:
                conn.send(_request("GET", "/hello/"))
                assert conn.response().body == b"Hello, world!"
            slow.sendall(b"a" * 199_990)
            with Conn(server.port) as conn:
                conn.sock.close()
                conn.sock = slow
                got = conn.response()
        finally:
            slow.close()
    assert got.body == f"200000 {hashlib.sha256(b'a' * 200_000).hexdigest()}".encode()


def test_an_inline_application_that_blocks_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="colonnade.wsgi")
    with live(_config("sleeps", "loop"), tmp_path) as server, Conn(server.port) as conn:
        conn.send(_request("GET", "/?0"))
        assert conn.response().body == b"slept"
        assert not [r for r in caplog.records if r.name == "colonnade.wsgi"]
        for _ in range(2):  # logged once, counted each time
            conn.send(_request("GET", f"/?{BLOCKED_WARNING + 0.05}"))
            assert conn.response().body == b"slept"
        modules = [m for rt in server.engine.runtimes for m in rt.modules]
        (host,) = [m.host for m in modules if isinstance(m, WsgiHandler)]
        assert host is not None and host.blocked_calls == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "colonnade.wsgi"]
    assert len(warnings) == 1, warnings
    assert "held the event loop" in warnings[0] and "GET /" in warnings[0]
    assert "blocking = true" in warnings[0]


@pytest.mark.parametrize(
    ("argv", "environ", "blocking"),
    [
        ([], {}, None),
        (["--no-wsgi-blocking"], {}, False),
        ([], {"COLONNADE_WSGI_BLOCKING": "false"}, False),
        (["--wsgi-blocking"], {"COLONNADE_WSGI_BLOCKING": "false"}, True),
    ],
)
def test_colonnade_serve_sets_the_mode(
    argv: list[str], environ: dict[str, str], blocking: bool | None
) -> None:
    args = _parser().parse_args(["serve", f"{APPS}:hello", *argv])
    serve_options.prepare(args, environ)
    config = config_source(args).load()
    assert config.sections.get("wsgi", {}).get("blocking") == blocking
