"""`colonnade serve pkg.module:app` as a uvicorn user expects it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ASGI_LIFESPAN, Process, free_port
from .wire import Conn

ASGI = (
    "async def app(scope, receive, send):"
    + ASGI_LIFESPAN
    + """
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi " + scope["path"].encode()})
"""
)

WSGI = """
def make_app():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi " + environ["PATH_INFO"].encode("latin-1")]
    return app
"""


def get(port: int, path: str) -> bytes:
    with Conn(port) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return c.response().body


@pytest.mark.parametrize(
    ("source", "args", "expected"),
    [
        (ASGI, ["web:app"], b"asgi /a/b"),
        (ASGI, ["web:app", "--interface", "asgi"], b"asgi /a/b"),
        (WSGI, ["web:make_app", "--factory"], b"wsgi /a/b"),
        (WSGI, ["web:make_app", "--factory", "--interface", "wsgi"], b"wsgi /a/b"),
    ],
)
def test_serve_app(tmp_path: Path, source: str, args: list[str], expected: bytes) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "web.py").write_text(source)
    port = free_port()
    server = Process(
        [*args, "--app-dir", "code", "--bind", f"127.0.0.1:{port}"], cwd=tmp_path, port=port
    )
    try:
        assert get(port, "/a/b") == expected
    finally:
        server.kill()


def test_an_app_that_cannot_be_imported_fails_the_start_clearly(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ValueError('boom at import')\n")
    out = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "serve", "broken:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "colonnade: app: cannot import module 'broken': ValueError: boom at import"
    )
