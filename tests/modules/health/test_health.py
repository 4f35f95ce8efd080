"""http.health over real sockets: liveness and readiness answered before the
application, configurable paths, and readiness 503 once a graceful stop has begun
while a slow request is still being served."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Process
from tests.e2e.wire import Conn, Wire
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

#: An ASGI app that counts the requests it sees; /slow waits for a file to appear.
APP = """
import asyncio, os

seen = []

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    seen.append(scope["path"])
    if scope["path"] == "/slow":
        open("started", "w").close()
        while not os.path.exists("release"):
            await asyncio.sleep(0.01)
    body = f"app {scope['path']} seen={len(seen)}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def config(port: int, health: str = "") -> str:
    return textwrap.dedent(
        f"""
        [server]
        modules = ["http.health", "handler.static"]
        {health}

        [[sites]]
        name = "main"
        bindings = ["http://127.0.0.1:{port}"]

          [[sites.applications]]
          path = "/"
          app = "web:app"
          app_dir = "."
        """
    )


def start(tmp_path: Path, health: str = "", workers: int = 0) -> Process:
    (tmp_path / "web.py").write_text(APP)
    port = free_port()
    (tmp_path / "colonnade.toml").write_text(config(port, health))
    args = ["-c", "colonnade.toml"]
    if workers:
        args += ["--workers", str(workers), "--start-workers"]
    return Process(args, cwd=tmp_path, port=port)


def get(c: Conn, path: str, method: str = "GET") -> Wire:
    c.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return c.response(head_only=method == "HEAD")


def is_ready(port: int) -> bool:
    with Conn(port) as c:
        return get(c, "/readyz").status == 200


def test_probes_are_answered_without_the_application(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        with Conn(server.port) as c:
            live = get(c, "/healthz")
            assert (live.status, live.body) == (200, b"ok\n")
            assert live.headers["cache-control"] == "no-store"
            ready = get(c, "/readyz")
            assert (ready.status, ready.body) == (200, b"ready\n")
            assert get(c, "/readyz", "HEAD").status == 200
            # The application saw none of them: its first request is this one.
            assert get(c, "/other").body == b"app /other seen=1"
            # Other methods, and paths beside the probes', are the application's.
            c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            assert c.response().body == b"app /healthz seen=2"
            assert get(c, "/healthz/x").body == b"app /healthz/x seen=3"
    finally:
        server.kill()


def test_the_paths_are_configurable_and_a_probe_can_be_off(tmp_path: Path) -> None:
    server = start(tmp_path, '[health]\nliveness = "/-/live"\nreadiness = ""')
    try:
        with Conn(server.port) as c:
            assert get(c, "/-/live").body == b"ok\n"
            assert get(c, "/healthz").body == b"app /healthz seen=1"
            assert get(c, "/readyz").body == b"app /readyz seen=2"
    finally:
        server.kill()


@pytest.mark.parametrize("workers", [0, 1], ids=["one-process", "workers"])
def test_readiness_fails_once_a_graceful_stop_begins(tmp_path: Path, workers: int) -> None:
    # The probes below run inside the delay (it is not cut short: keep it brief).
    server = start(tmp_path, "[health]\nstop_delay = 3", workers=workers)
    try:
        # With workers, the front door answers 503 until the pool's worker is ready.
        wait_for(lambda: is_ready(server.port), PATIENCE, "readiness 200")
        with Conn(server.port) as probe, Conn(server.port) as c:
            c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_for((tmp_path / "started").exists, PATIENCE, "the slow request running")
            server.proc.send_signal(signal.SIGTERM)
            # While the slow request runs, the stop has begun: readiness fails on an
            # open connection, and on a new one (the listener still accepts), while
            # liveness and the application still answer.
            wait_for(
                lambda: get(probe, "/readyz").status == 503,
                PATIENCE,
                "readiness failing once the stop began",
            )
            with Conn(server.port) as fresh:
                ready = get(fresh, "/readyz")
                assert (ready.status, ready.body) == (503, b"draining\n")
                assert get(fresh, "/healthz").status == 200
                assert get(fresh, "/other").status == 200
            (tmp_path / "release").touch()
            slow = c.response()
            assert (slow.status, slow.body) == (200, b"app /slow seen=2")
        assert server.proc.wait(PATIENCE) == 0
    finally:
        server.kill()
