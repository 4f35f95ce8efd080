"""security.dynamic_ip over real sockets: one process, then a master with two workers
under ``wrk`` load (the limit holds across both workers)."""

from __future__ import annotations

import base64
import itertools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer, Process
from tests.e2e.wire import Conn
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

_sites = itertools.count()


def site(settings: dict[str, Any]) -> dict[str, Any]:
    # A site name of its own: the counters are per site and settings, and the
    # process's shared table is shared by every test of the session.
    return {
        "server": {"modules": ["security.dynamic_ip", "acme.slow", "handler.static"]},
        "sites": [
            {"name": f"e2e{next(_sites)}", "bindings": ["http://127.0.0.1:1"], "root": "www"}
        ],
        "handlers": [
            {"path": "/slow*", "handler": "acme.slow"},
            {"path": "*", "handler": "handler.static"},
        ],
        "dynamic_ip_security": settings,
    }


@pytest.fixture
def www(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "a.txt").write_text("hello")
    return tmp_path


@pytest.fixture
def serve(www: Path) -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(settings: dict[str, Any]) -> LiveServer:
        server = LiveServer(site(settings), www).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def test_429_with_retry_after_on_a_keep_alive_connection(serve: Any) -> None:
    server = serve(
        {"deny_by_request_rate": True, "max_requests": 2, "interval": 30, "deny_status": 429}
    )
    with Conn(server.port) as c:
        statuses = []
        for _ in range(4):
            c.send(get("/a.txt"))
            response = c.response()
            statuses.append(response.status)
        assert statuses == [200, 200, 429, 429]
        assert 1 <= int(response.headers["retry-after"]) <= 61
        assert b"too many requests" in response.body


def test_abort_drops_the_connection_without_an_answer(serve: Any) -> None:
    server = serve(
        {
            "deny_by_request_rate": True,
            "max_requests": 1,
            "interval": 30,
            "deny_action": "AbortRequest",
        }
    )
    with Conn(server.port) as c:
        c.send(get("/a.txt"))
        assert c.response().status == 200
        c.send(get("/a.txt"))
        assert c.closed()
        assert c.buf == b""  # not a byte of an answer


def test_concurrent_requests_over_sockets(serve: Any, tmp_path: Path) -> None:
    server = serve({"deny_by_concurrent_requests": True, "max_concurrent_requests": 1})
    gate = tmp_path / "gate"
    with Conn(server.port) as held, Conn(server.port) as other:
        held.send(get(f"/slow?head=1&until={gate}"))
        held.await_head()  # in flight: its head went out, its body waits for the gate
        other.send(get("/a.txt"))
        refused = other.response()
        assert refused.status == 403
        assert b"too many concurrent requests" in refused.body
        gate.touch()
        assert held.response().status == 200
        other.send(get("/a.txt"))
        assert other.response().status == 200


# -- a master with two workers under load -----------------------------------------------------

WRK = shutil.which("wrk")


def wrk(port: int, seconds: int = 3, path: str = "/a.txt") -> subprocess.Popen[str]:
    """wrk for ``seconds``, a new connection per request: the kernel spreads
    connections over the processes accepting on a port, where a few keep-alive
    connections may all land on one worker."""
    assert WRK is not None
    return subprocess.Popen(
        [
            WRK,
            "-t2",
            "-c8",
            f"-d{seconds}s",
            "-H",
            "Connection: close",
            f"http://127.0.0.1:{port}{path}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def allowed(run: subprocess.Popen[str]) -> tuple[int, int]:
    """(answers that were not refused, all answers) from wrk's report."""
    out = run.communicate(timeout=PATIENCE)[0]
    assert run.returncode == 0, out
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    refused = int(found.group(1)) if found else 0
    return total - refused, total


def server_file(folder: Path, port: int, settings: str) -> Path:
    (folder / "www").mkdir(exist_ok=True)
    (folder / "www" / "a.txt").write_text("hello")
    path = folder / "colonnade.toml"
    path.write_text(
        f"""
[server]
modules = ["security.dynamic_ip", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[handlers]]
path = "*"
handler = "handler.static"

[pools.default]
start = "always"

[dynamic_ip_security]
{settings}
"""
    )
    return path


@pytest.mark.skipif(WRK is None, reason="wrk is not installed (make sysdeps)")
def test_the_rate_holds_across_two_workers(tmp_path: Path) -> None:
    limit = 1000
    port = free_port()
    config = server_file(
        tmp_path,
        port,
        f"deny_by_request_rate = true\nmax_requests = {limit}\ninterval = 600\ndeny_status = 429\n",
    )
    server = Process(["-c", str(config), "--workers", "2", "--no-watch"], tmp_path, port)
    try:
        # Both workers accept before the load starts (wrk keeps its connections).
        wait_for(
            lambda: len(re.findall(r"worker \d+ ready", server.stderr())) == 2,
            PATIENCE,
            "two workers ready",
        )
        ok, total = allowed(wrk(port))
        log = server.stderr()
    finally:
        server.kill()
    print("wrk:", ok, "of", total, "let through")
    assert total > 2 * limit, f"the load was too small to judge: {total} requests"
    # One count for both workers: a count per worker would let up to 2 * limit through.
    assert abs(ok - limit) <= limit * 0.05, (ok, total)
    # Both workers served (and refused) part of the load.
    refusing = set(re.findall(r"\[default:(\d+)\] colonnade\.dynamic_ip: refused", log))
    assert len(refusing) == 2, log[-3000:]


HTPASSWD = shutil.which("htpasswd")


@pytest.mark.skipif(HTPASSWD is None, reason="htpasswd is not installed (make sysdeps)")
def test_failed_basic_logons_lock_the_address_out(serve: Any, www: Path) -> None:
    # The real auth.basic and a file made by the real htpasswd: its 401.1s are
    # what dynamic IP restrictions count.
    users = www / "users.htpasswd"
    assert HTPASSWD is not None
    subprocess.run(
        [HTPASSWD, "-cbs", str(users), "alice", "right"], check=True, capture_output=True
    )
    settings = {"deny_by_auth_failures": True, "max_auth_failures": 3, "deny_status": 429}
    config = site(settings)
    config["server"]["modules"].insert(1, "auth.basic")
    config["basic_authentication"] = {"enabled": True, "user_file": str(users)}
    server = LiveServer(config, www).start()
    try:
        wrong = "Authorization: Basic " + base64.b64encode(b"alice:wrong").decode()
        right = "Authorization: Basic " + base64.b64encode(b"alice:right").decode()
        with Conn(server.port) as c:
            for expected in (200, 401, 401, 401, 429):
                header = right if expected in (200, 429) else wrong
                c.send(f"GET /a.txt HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n".encode())
                response = c.response()
                assert response.status == expected, (expected, response.status)
        assert b"too many failed logons" in response.body
        # Until the sliding window (auth_failure_interval = 300 s) has room again.
        assert 1 <= int(response.headers["retry-after"]) <= 301
    finally:
        server.stop()
