"""`colonnade serve pkg.module:app` as a uvicorn user expects it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from colonnade.pools.sandbox import YOUNG_THRESHOLD
from tests.support.ports import free_port

from .conftest import ASGI_LIFESPAN, Process
from .wire import Conn, Wire

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


def fetch(port: int, path: str) -> Wire:
    with Conn(port) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return c.response()


def get(port: int, path: str) -> bytes:
    return fetch(port, path).body


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


FROZEN = """
import gc

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    frozen = gc.get_freeze_count() > 0
    return [b"frozen %d young %d" % (frozen, gc.get_threshold()[0])]
"""


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_serving_process_freezes_its_start_up_heap(tmp_path: Path, workers: str) -> None:
    """Once listening, what start-up left alive is out of the cycle collector's
    walks (pools/sandbox.py freeze_heap): the single process and a pool worker."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "web.py").write_text(FROZEN)
    port = free_port()
    server = Process(
        ["web:app", "--app-dir", "code", "--bind", f"127.0.0.1:{port}", "--workers", workers],
        cwd=tmp_path,
        port=port,
    )
    try:
        assert get(port, "/") == b"frozen 1 young %d" % YOUNG_THRESHOLD
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
    # The cause, then the traceback of the application's own frames only.
    assert out.stderr.strip().splitlines() == [
        "colonnade: app: cannot import module 'broken': ValueError: boom at import",
        "Traceback (most recent call last):",
        f'  File "{tmp_path / "broken.py"}", line 1, in <module>',
        "    raise ValueError('boom at import')",
        "ValueError: boom at import",
    ]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_serve_app_with_static_files(tmp_path: Path, workers: str) -> None:
    # One option mounts a folder inside the app's URL space: the static handler
    # answers there (in the master's workers too: the option travels to them).
    (tmp_path / "web.py").write_text(ASGI)
    (tmp_path / "collected" / "css").mkdir(parents=True)
    (tmp_path / "collected" / "css" / "site.css").write_text("body { color: teal }")
    port = free_port()
    args = ["web:app", "--static", "/static=collected", "--workers", workers]
    server = Process([*args, "--bind", f"127.0.0.1:{port}"], cwd=tmp_path, port=port)
    try:
        css = fetch(port, "/static/css/site.css")
        assert css.status == 200 and css.body == b"body { color: teal }"
        assert css.headers["etag"]  # the static handler's validator, not the app's
        folder = fetch(port, "/static")  # the folder itself: a redirect to its slash
        assert folder.status == 301 and folder.headers["location"] == "/static/"
        assert get(port, "/elsewhere") == b"asgi /elsewhere"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
        assert f"/static  files from {tmp_path / 'collected'}" in server.stderr()
    finally:
        server.kill()


def test_static_without_an_app_adds_a_folder_to_the_served_one(tmp_path: Path) -> None:
    (tmp_path / "index.txt").write_text("root")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("mounted")
    port = free_port()
    server = Process(
        ["--static", "/more=elsewhere", "--bind", f"127.0.0.1:{port}"], cwd=tmp_path, port=port
    )
    try:
        assert get(port, "/index.txt") == b"root"
        assert get(port, "/more/x.txt") == b"mounted"
    finally:
        server.kill()
