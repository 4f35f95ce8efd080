"""Defaults a user expects, over real sockets: what `make serve` compresses, and any
method token reaching static content (405 + Allow) and applications (with its body)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

from .conftest import ASGI_LIFESPAN, LiveServer, Process, site_config
from .wire import Conn

pytestmark = pytest.mark.e2e

WELCOME = Path(__file__).resolve().parents[2] / "examples" / "welcome"

# Methods llhttp does not know, every tchar, an RTSP name on an HTTP line, lowercase.
METHODS = [b"FROBNICATE", b"!#$%&'*+-.^_`|~09AZaz", b"PLAY", b"get", b"QUERY"]


def test_make_serve_compresses_the_welcome_text() -> None:
    # `make serve` is `colonnade serve --root examples/welcome`: the embedded default.
    text = (WELCOME / "readme.txt").read_bytes()
    assert len(text) > 2048  # a few KiB of text, worth compressing
    port = free_port()
    server = Process(["--root", str(WELCOME), "--bind", f"127.0.0.1:{port}"], WELCOME, port)
    try:
        with Conn(port) as c:
            c.send(b"GET /readme.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
            r = c.response()
            assert r.status == 200
            assert r.headers["content-encoding"] == "gzip"
            assert r.headers["vary"] == "Accept-Encoding"
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
            assert gzip.decompress(r.body) == text
            assert len(r.body) < len(text) // 2
            # Without Accept-Encoding the same URL is the file as it is, and says it varies.
            c.send(b"GET /readme.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            plain = c.response()
            assert plain.body == text and "content-encoding" not in plain.headers
            assert plain.headers["vary"] == "Accept-Encoding"
            # The page that links to it is compressed too.
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
            page = c.response()
            assert page.headers["content-encoding"] == "gzip"
            assert b"/readme.txt" in gzip.decompress(page.body)
    finally:
        server.kill()


@pytest.mark.parametrize("method", METHODS)
def test_static_content_answers_any_method_405_with_allow(live: LiveServer, method: bytes) -> None:
    with Conn(live.port) as c:
        c.send(method + b" /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody")
        r = c.response()
        assert r.status == 405
        assert r.headers["allow"] == "GET, HEAD"
        # Not a protocol error: the connection goes on.
        c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.response().body == b"Hello, world!"


def test_invalid_method_bytes_are_still_a_400(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(b"FROB(1) /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.response()
        assert r.status == 400 and r.headers["connection"] == "close"
        assert c.closed()


def test_request_filtering_refuses_an_unknown_verb(www: Path) -> None:
    config = site_config(modules=["security.request_filtering", "acme.slow", "handler.static"])
    config["request_filtering"] = {"verbs": {"FROBNICATE": False}}
    with LiveServer(config, www).start() as server, Conn(server.port) as c:
        c.send(b"frobnicate /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.response().status == 404  # 404.6, verb denied
        c.send(b"BREW /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.response().status == 405


ASGI = (
    "async def app(scope, receive, send):"
    + ASGI_LIFESPAN
    + """
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body",
                "body": scope["method"].encode() + b" " + body})
"""
)

WSGI = """
def app(environ, start_response):
    body = environ["wsgi.input"].read()  # wsgi.input_terminated: to the end, chunked too
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [environ["REQUEST_METHOD"].encode() + b" " + body]
"""


@pytest.fixture(params=[ASGI, WSGI], ids=["asgi", "wsgi"])
def app_port(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    (tmp_path / "web.py").write_text(request.param)
    port = free_port()
    server = Process(["web:app", "--bind", f"127.0.0.1:{port}"], tmp_path, port)
    try:
        yield port
    finally:
        server.kill()


def test_applications_receive_any_method_with_its_body(app_port: int) -> None:
    with Conn(app_port) as c:
        for method in METHODS:
            c.send(method + b" /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
            r = c.response()
            assert (r.status, r.body) == (200, method + b" hello")
        # All of them at once, pipelined in one write.
        c.send(
            b"".join(
                method + b" /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n" + method[:3]
                for method in METHODS
            )
        )
        for method in METHODS:
            assert c.response().body == method + b" " + method[:3]


def test_a_chunked_body_with_spaced_extensions_reaches_the_app(app_port: int) -> None:
    with Conn(app_port) as c:
        c.send(
            b"FROBNICATE /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5; name=value\r\nhello\r\n1 ;a=b\r\n \r\n5\t;\ta = "b c"\r\nworld\r\n0\r\n\r\n'
        )
        r = c.response()
        assert (r.status, r.body) == (200, b"FROBNICATE hello world")
