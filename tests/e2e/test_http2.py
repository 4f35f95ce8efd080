"""HTTP/2 by prior knowledge (h2c) with real clients: httpx, curl, a raw h2 client.

WSGI and ASGI applications run unchanged and see HTTP/2; static files of several
MiB stream under flow control on concurrent streams; a stream the client does not
read blocks no other; request bodies larger than a stream window stream in; a
graceful stop says GOAWAY and lets the request in flight finish.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.hosting.support import live
from tests.hosting.support import site_config as app_config
from tests.support.wait import PATIENCE, wait_for

from .conftest import LiveServer, site_config
from .h2wire import RawH2, get_headers

BIG = 5 * 1024 * 1024 + 123  # a few MiB, and not a multiple of any frame or chunk size


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    answer = {
        "protocol": environ["SERVER_PROTOCOL"],
        "host": environ.get("HTTP_HOST"),
        "cookie": environ.get("HTTP_COOKIE"),
        "length": len(body),
        "sha": hashlib.sha256(body).hexdigest(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    digest = hashlib.sha256()
    length = chunks = 0
    while True:
        message = await receive()
        digest.update(message.get("body", b""))
        length += len(message.get("body", b""))
        chunks += 1
        if not message.get("more_body"):
            break
    answer = {
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "length": length,
        "chunks": chunks,
        "sha": digest.hexdigest(),
    }
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


async def sized_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # A body of declared length in two pieces, then (``/over``) one byte too many.
    assert scope["type"] == "http"
    start = {"type": "http.response.start", "status": 200}
    await send({**start, "headers": [(b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": b"01234", "more_body": True})
    await send({"type": "http.response.body", "body": b"56789", "more_body": True})
    if scope["path"] == "/over":
        await send({"type": "http.response.body", "body": b"!", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def h2_client() -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=PATIENCE)


def test_wsgi_app_sees_http2(tmp_path: Path) -> None:
    payload = os.urandom(700_000)  # more than a stream window: read as it arrives
    with live(app_config("tests.e2e.test_http2:wsgi_app"), tmp_path) as server, h2_client() as c:
        url = f"http://127.0.0.1:{server.port}/"
        r = c.post(url, content=payload, headers={"cookie": "a=1; b=2"})
        assert r.http_version == "HTTP/2" and r.status_code == 200
        answer = r.json()
        assert answer["protocol"] == "HTTP/2"
        assert answer["host"] == f"127.0.0.1:{server.port}"
        assert answer["cookie"] == "a=1; b=2"
        assert answer["length"] == len(payload)
        assert answer["sha"] == hashlib.sha256(payload).hexdigest()


def test_asgi_app_sees_http2_and_streams_the_body_in(tmp_path: Path) -> None:
    payload = os.urandom(2 * 1024 * 1024)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]

    with live(app_config("tests.e2e.test_http2:asgi_app"), tmp_path) as server, h2_client() as c:
        url = f"http://127.0.0.1:{server.port}/"
        r = c.post(url, content=pieces())
        assert r.http_version == "HTTP/2" and r.status_code == 200
        answer = r.json()
        assert answer["http_version"] == "2" and answer["scheme"] == "http"
        assert answer["length"] == len(payload) and answer["chunks"] > 1
        assert answer["sha"] == hashlib.sha256(payload).hexdigest()
        # The app's connection: close is HTTP/1.1's business; the connection serves on.
        assert "connection" not in r.headers
        assert c.get(url).json()["length"] == 0


@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("h2static")
    www = root / "www"
    www.mkdir()
    (www / "hello.txt").write_text("Hello, world!")
    (www / "big.bin").write_bytes(os.urandom(BIG))
    logs = root / "logs"
    logs.mkdir()
    config = site_config(modules=["acme.slow", "handler.static", "log.http"])
    config["http_logging"] = {
        "target": str(logs / "access.log"),
        "buffer_size": 0,
        "fields": ["cs-method", "cs-uri-stem", "cs-version", "sc-status"],
    }
    server = LiveServer(config, root).start()
    yield server, root
    server.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_prior_knowledge_static_files(static: tuple[LiveServer, Path], tmp_path: Path) -> None:
    # curl 7.88 (Debian 12) cannot reuse a prior-knowledge connection (curl/curl
    # #10634, fixed in 8.0): one stream per connection here, several connections at
    # once; concurrent streams on one connection are httpx's test below.
    server, root = static
    base = f"http://127.0.0.1:{server.port}"
    runs = [
        subprocess.Popen(
            [
                "curl",
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                str(tmp_path / name),
                "-w",
                "%{http_version} %{response_code}",
                f"{base}/{path}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, path in [(f"big{i}", "big.bin") for i in range(3)]
        + [(f"hello{i}", "hello.txt") for i in range(3)]
    ]
    for run in runs:
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0 and out == "2 200"
    big = (root / "www" / "big.bin").read_bytes()
    for i in range(3):
        assert (tmp_path / f"big{i}").read_bytes() == big
        assert (tmp_path / f"hello{i}").read_bytes() == b"Hello, world!"


def test_concurrent_streams_on_one_connection(static: tuple[LiveServer, Path]) -> None:
    server, root = static
    big = (root / "www" / "big.bin").read_bytes()

    async def fetch_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=PATIENCE) as c:
            base = f"http://127.0.0.1:{server.port}"
            urls = [f"{base}/big.bin", f"{base}/hello.txt"] * 4 + [f"{base}/slow?ms=200"]
            return await asyncio.gather(*(c.get(url) for url in urls))

    responses = asyncio.run(fetch_all())
    assert all(r.http_version == "HTTP/2" and r.status_code == 200 for r in responses)
    assert [r.content for r in responses[:8]] == [big, b"Hello, world!"] * 4
    assert responses[8].content == b"slow:"
    # One connection carried them all, the large ones interleaved with the small.
    assert server.look(lambda s: s.requests) >= 9


def _frames(c: RawH2, stream: int) -> list[tuple[str, int, bool]]:
    # (kind, payload length, END_STREAM) of the server's frames on ``stream``.
    return [
        (type(f).__name__, len(f.data) if isinstance(f, DataFrame) else 0, "END_STREAM" in f.flags)
        for f in c.frames
        if f.stream_id == stream
    ]


def test_a_response_ends_with_its_last_frame(static: tuple[LiveServer, Path]) -> None:
    # No empty DATA frame to end a stream: END_STREAM rides on the body's last DATA
    # frame (a file, whose length is declared), or on HEADERS when there is no body.
    server, _ = static
    with RawH2(server.port) as c:
        c.send(c.headers(1, get_headers("/hello.txt")))
        assert c.response(1) == (200, b"Hello, world!")
        assert _frames(c, 1) == [("HeadersFrame", 0, False), ("DataFrame", 13, True)]
        c.send(c.headers(3, get_headers("/hello.txt", "HEAD")))
        assert c.response(3) == (200, b"")
        assert _frames(c, 3) == [("HeadersFrame", 0, True)]


def test_a_body_of_declared_length_ends_with_its_last_byte(tmp_path: Path) -> None:
    config = app_config("tests.e2e.test_http2:sized_app")
    with live(config, tmp_path) as server, RawH2(server.port) as c:
        c.send(c.headers(1, get_headers("/")))
        assert c.response(1) == (200, b"0123456789")
        assert _frames(c, 1) == [
            ("HeadersFrame", 0, False),
            ("DataFrame", 5, False),
            ("DataFrame", 5, True),
        ]
        # More than declared is the application's error, as over HTTP/1.1: the
        # declared bytes went out whole, the byte too many never does.
        c.send(c.headers(3, get_headers("/over")))
        outcome = c.outcome(stream=3)
        assert (outcome.kind, outcome.stream) == ("status", 3)
        assert sum(n for kind, n, _ in _frames(c, 3) if kind == "DataFrame") == 10


def test_response_heads_use_no_dynamic_table(static: tuple[LiveServer, Path]) -> None:
    # The server's HPACK encoder indexes nothing (http/h2.py FieldEncoder): its first
    # header block, and the first after the client changes its table size, start with
    # a dynamic table size update to 0 (RFC 7541 6.3), which even a client that
    # keeps no table at all accepts.
    server, _ = static
    with RawH2(server.port) as c:
        for stream in (1, 3):
            c.send(c.headers(stream, get_headers("/hello.txt")))
            assert c.response(stream) == (200, b"Hello, world!")
        c.decoder.max_allowed_table_size = 0
        c.send(c.settings(HEADER_TABLE_SIZE=0), c.headers(5, get_headers("/hello.txt")))
        assert c.response(5) == (200, b"Hello, world!")
        blocks = {f.stream_id: f.data for f in c.frames if isinstance(f, HeadersFrame)}
        assert [blocks[s][:1] == b"\x20" for s in (1, 3, 5)] == [True, False, True]
        assert blocks[3][:1] == b"\x88"  # :status 200, whole from the static table
        assert not c.decoder.header_table.dynamic_entries


async def big_head_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # A head larger than a frame: HEADERS and CONTINUATION frames.
    assert scope["type"] == "http"
    headers = [(b"x-big-%d" % i, b"v" * 8000) for i in range(5)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_head_larger_than_a_frame(tmp_path: Path) -> None:
    config = app_config("tests.e2e.test_http2:big_head_app")
    with live(config, tmp_path) as server, h2_client() as c:
        for _ in range(2):
            r = c.get(f"http://127.0.0.1:{server.port}/")
            assert r.http_version == "HTTP/2" and r.status_code == 200 and r.content == b"ok"
            assert [r.headers[f"x-big-{i}"] for i in range(5)] == ["v" * 8000] * 5


def test_access_log_says_http2(static: tuple[LiveServer, Path]) -> None:
    server, root = static
    with h2_client() as c:
        assert c.get(f"http://127.0.0.1:{server.port}/hello.txt?log").status_code == 200
    log = root / "logs" / "access.log"
    line = wait_for(
        lambda: next(
            (x for x in log.read_text().splitlines() if x.startswith("GET /hello.txt")), None
        ),
        PATIENCE,
        "the access log line",
    )
    assert line.split() == ["GET", "/hello.txt", "HTTP/2", "200"]


def test_a_stream_the_client_does_not_read_blocks_no_other(
    static: tuple[LiveServer, Path],
) -> None:
    server, _ = static
    with RawH2(server.port) as c:
        # The connection's window wide open, each stream's the default 64 KiB: stream 1
        # (a file of several MiB) stalls once its window is used up, and is never read.
        c.send(c.window_update(0, 2**30), c.headers(1, get_headers("/big.bin")))
        deadline = time.monotonic() + PATIENCE
        received = 0
        while received < 65_535:
            frame = c.next_frame(deadline)
            assert frame is not None
            if isinstance(frame, DataFrame) and frame.stream_id == 1:
                received += len(frame.data)
        c.send(c.headers(3, get_headers("/hello.txt")))
        status, body = c.response(3)
        assert (status, body) == (200, b"Hello, world!")
        # Stream 1 got no byte beyond its window, and is still open; the server holds
        # none of the file meanwhile (it reads a piece only once the window allows).
        assert received == 65_535
        held = server.look(
            lambda s: [
                (stream.id, stream.waiting)
                for conn in s.connections
                for stream in getattr(conn, "streams", {}).values()
            ]
        )
        assert held == [(1, 0)]
        late = [f for f in c.frames if f.stream_id == 1 and isinstance(f, DataFrame)]
        assert sum(len(f.data) for f in late) == 65_535
        assert not any(isinstance(f, RstStreamFrame | GoAwayFrame) for f in c.frames)
        # Reading it now lets it finish, whole.
        c.send(c.window_update(1, BIG))
        status, body = c.response(1)
    assert status == 200 and len(body) == BIG - 65_535


def test_expect_100_continue(static: tuple[LiveServer, Path]) -> None:
    server, _ = static
    with RawH2(server.port) as c:
        headers = [*get_headers("/slow", "POST"), ("expect", "100-continue")]
        c.send(c.headers(1, headers, end_stream=False))
        deadline = time.monotonic() + PATIENCE
        while not c.statuses(1):  # nothing is sent before the server asks for it
            assert c.next_frame(deadline) is not None
        assert c.statuses(1) == [100]
        c.send(c.data(1, b"body", end_stream=True))
        assert c.response(1) == (200, b"slow:body")
        assert c.statuses(1) == [100, 200]


def test_graceful_stop_says_goaway_and_finishes_the_stream_in_flight(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    gate = tmp_path / "gate"
    server = LiveServer(site_config(), tmp_path).start()
    try:
        with RawH2(server.port) as c:
            c.send(c.headers(1, get_headers(f"/slow?until={gate}&head=1")))
            deadline = time.monotonic() + PATIENCE
            while not any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in c.frames):
                assert c.next_frame(deadline) is not None
            server.begin_stop()
            outcome = c.outcome(stream=1)
            assert (outcome.kind, outcome.code, outcome.stream) == (
                "goaway",
                ErrorCodes.NO_ERROR,
                1,
            )
            # A stream opened after the GOAWAY is refused (safe to retry elsewhere).
            c.send(c.headers(3, get_headers("/hello.txt")))
            refused = c.outcome(stream=3)
            assert (refused.kind, refused.code, refused.stream) == (
                "rst",
                ErrorCodes.REFUSED_STREAM,
                3,
            )
            gate.touch()
            status, body = c.response(1)
            assert (status, body) == (200, b"slow:")
            assert c.next_frame(time.monotonic() + PATIENCE) is None  # then it closes
    finally:
        gate.touch()
        server.stop()


def test_an_idle_connection_ends_with_goaway(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hi")
    config = site_config(timeouts={"keep_alive": 0.5})
    with LiveServer(config, tmp_path).start() as server, RawH2(server.port) as c:
        c.send(c.headers(1, get_headers("/hello.txt")))
        assert c.response(1) == (200, b"hi")
        outcome = c.outcome(stream=99)
        assert (outcome.kind, outcome.code) == ("goaway", ErrorCodes.NO_ERROR)
        assert c.next_frame(time.monotonic() + PATIENCE) is None
        wait_for(lambda: server.look(lambda s: not s.connections), PATIENCE, "no connection")
