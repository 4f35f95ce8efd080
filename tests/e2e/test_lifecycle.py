"""`colonnade serve` as a real process: serving, graceful stop, bad input at start."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from tests.support.ports import free_port
from tests.support.wait import PATIENCE

from .conftest import Process
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


def held(gate: Path) -> bytes:
    """A request for acme.slow that answers its head at once and the rest only once
    ``gate`` exists."""
    return f"GET /slow?head=1&until={quote(str(gate))} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def test_sigterm_finishes_requests_in_flight(www: Path) -> None:
    # The deadline is far off: everything seen here happens before it.
    server = start(www, graceful=60)
    gate = www / "finish"
    try:
        with Conn(server.port) as busy:
            busy.send(held(gate))
            busy.await_head()  # the request is in flight
            with Conn(server.port) as idle:  # an idle keep-alive connection
                server.proc.send_signal(signal.SIGTERM)
                assert idle.closed(), "idle connections close at once on stop"
            assert server.proc.poll() is None, "the stop waits for the request in flight"
            gate.touch()
            assert busy.response().body == b"slow:", "the in-flight request must complete"
        assert server.proc.wait(PATIENCE) == 0
        err = server.stderr()
        assert "stopping" in err and "stopped" in err
    finally:
        server.kill()


def test_graceful_deadline_bounds_the_stop(www: Path) -> None:
    server = start(www, graceful=0.5)
    try:
        with Conn(server.port) as stuck:
            stuck.send(held(www / "never"))  # held for a minute: well past any wait here
            stuck.await_head()
            server.proc.send_signal(signal.SIGINT)
            assert server.proc.wait(PATIENCE) == 0
        # Cut off at the deadline, not after the request (nor the default 30 s).
        assert "1 connection(s) still busy after 0.5s; aborting" in server.stderr()
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
