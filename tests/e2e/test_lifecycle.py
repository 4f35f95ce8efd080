"""`colonnade serve` as a real process: serving, graceful stop, bad input at start."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .conftest import Process, free_port
from .wire import Conn

CONFIG = """
[server]
modules = ["acme.slow", "handler.static", "log.http"]
timeouts = {{ graceful = {graceful} }}

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[handlers]]
path = "/slow*"
handler = "acme.slow"

[[handlers]]
path = "*"
handler = "handler.static"
"""


def start(www: Path, graceful: float = 10) -> Process:
    port = free_port()
    (www / "colonnade.toml").write_text(CONFIG.format(port=port, graceful=graceful))
    return Process(["-c", "colonnade.toml"], cwd=www, port=port)


def test_sigterm_finishes_requests_in_flight(www: Path) -> None:
    server = start(www)
    try:
        results: list[bytes] = []

        def slow_request() -> None:
            with Conn(server.port, timeout=10) as c:
                c.send(b"GET /slow?ms=800 HTTP/1.1\r\nHost: t\r\n\r\n")
                results.append(c.response().body)

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.3)  # the request is in flight
        with Conn(server.port) as idle:  # an idle keep-alive connection
            server.proc.send_signal(signal.SIGTERM)
            assert idle.closed(wait=3), "idle connections close at once on stop"
        worker.join(10)
        assert results == [b"slow:"], "the in-flight request must complete"
        assert server.proc.wait(10) == 0
        err = server.stderr()
        assert "stopping" in err and "stopped" in err
    finally:
        server.kill()


def test_graceful_deadline_bounds_the_stop(www: Path) -> None:
    server = start(www, graceful=0.5)
    try:

        def stuck() -> None:
            try:
                with Conn(server.port, timeout=10) as c:
                    c.send(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
                    c.response()
            except (EOFError, OSError):
                pass

        worker = threading.Thread(target=stuck)
        worker.start()
        time.sleep(0.3)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 3
        worker.join(10)
    finally:
        server.kill()


def test_bad_config_fails_the_start_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "colonnade.toml").write_text(
        '[server]\nmodules = ["handler.static"]\n\n[[sites]]\nname = "a"\n'
        'bindings = ["http://127.0.0.1:1"]\npool = "nope"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "serve", "-c", "colonnade.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "colonnade: colonnade.toml:7: sites[0].pool: no pool named 'nope'" in out.stderr
    assert "Traceback" not in out.stderr
