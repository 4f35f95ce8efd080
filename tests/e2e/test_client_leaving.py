"""A client that leaves mid-response (its connection lost while the request's task
waits: in a drain, in the application's own await) still has its request ended
as a client's leaving: its always-run stages run, so it is logged with Win32
status 64 (as IIS logs it), with no error line, and the connection is let go.

The losing order is made certain: the server's side of the connection is aborted
(connection_lost, at the loop's next turn) once the request waits where the test
means it to, seen from the server's loop."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.transport.connection import HttpConnection
from tests.e2e.conftest import LiveServer, win32_statuses
from tests.e2e.wire import Conn
from tests.handlers.fastcgi.php_kit import NEEDS_PHP, make_tree, php_cgi
from tests.handlers.fastcgi.php_kit import config as fastcgi_config
from tests.support.wait import PATIENCE, wait_for

CHUNK = 65536

ASGI = f"""
import asyncio
from pathlib import Path

CHUNK = b"x" * {CHUNK}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/sleep-first"):
        Path(__file__).with_name("sleeping").touch()  # no await until the sleep
        await asyncio.sleep(3600)
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    if scope["path"].endswith("/sleep"):
        await send({{"type": "http.response.body", "body": b"x", "more_body": True}})
        Path(__file__).with_name("sleeping").touch()  # no await until the sleep
        await asyncio.sleep(3600)
    for _ in range(1000):
        await send({{"type": "http.response.body", "body": CHUNK, "more_body": True}})
    await send({{"type": "http.response.body", "body": b""}})
"""

WSGI = f"""
CHUNK = b"x" * {CHUNK}


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (CHUNK for _ in range(1000))
"""


def _site(tmp_path: Path, **sections: Any) -> tuple[dict[str, Any], Path]:
    code = tmp_path / "code"
    code.mkdir()
    # Names of their own: a module imported by an earlier test is not this one's.
    tag = uuid.uuid4().hex[:12]
    (code / f"leave_asgi_{tag}.py").write_text(ASGI)
    (code / f"leave_wsgi_{tag}.py").write_text(WSGI)
    log = tmp_path / "access.log"
    config: dict[str, Any] = {
        "server": {"modules": ["handler.static", "log.http"]},
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "code",
                "applications": [
                    {
                        "path": "/wsgi",
                        "root": "code",
                        "app": f"leave_wsgi_{tag}:app",
                        "app_dir": "code",
                    },
                    {
                        "path": "/asgi",
                        "root": "code",
                        "app": f"leave_asgi_{tag}:app",
                        "app_dir": "code",
                    },
                ],
            }
        ],
        "http_logging": {"target": str(log), "buffer_size": 0},
        **sections,
    }
    return config, log


def _draining(state: Any) -> bool:
    """A connection's task waits for the client to take what it was sent."""
    return any(
        conn._drain_waiter is not None and not conn._drain_waiter.done()
        for conn in state.connections
    )


def _lose(state: Any) -> int:
    """Abort every connection (connection_lost, at the loop's next turn)."""
    lost = 0
    for conn in list(state.connections):
        # The transport's own abort (not the connection's: no flag of ours set).
        transport = conn._transport if isinstance(conn, HttpConnection) else conn.transport
        transport.abort()
        lost += 1
    return lost


def _leave(
    server: LiveServer,
    target: str,
    waiting: Callable[[Any], bool],
    log: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GET ``target`` from a client that reads nothing more, lose its connection
    once ``waiting(state)``, and check the request's end."""
    with Conn(server.port, timeout=30, rcvbuf=4096) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        if "sleep-first" not in target:
            assert conn.sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: server.look(waiting), PATIENCE, "the request waiting")
        assert server.look(_lose) == 1
        stem = logged(log, target)
    let_go(server)
    assert win32_statuses(log, stem) == ["64"]
    quiet(caplog)


def logged(log: Path, target: str) -> str:
    """Wait for ``target``'s line in the access log ``log``; its cs-uri-stem, spaced."""
    stem = f" {target.partition('?')[0]} "
    wait_for(lambda: log.exists() and stem in log.read_text(), PATIENCE, "the request logged")
    return stem


def let_go(server: LiveServer) -> None:
    """Wait until ``server`` has no connection left."""
    wait_for(
        lambda: server.look(lambda state: len(state.connections) == 0),
        PATIENCE,
        "the connection let go",
    )


def quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was logged at WARNING or above."""
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]


def test_an_asgi_stream_whose_client_left_mid_drain_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, log = _site(tmp_path)
    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        _leave(server, "/asgi/stream", _draining, log, caplog)


@pytest.mark.parametrize("target", ["/asgi/sleep", "/asgi/sleep-first"])
def test_an_asgi_app_awaiting_when_its_client_left_is_interrupted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    # Its own await (a sleep: after its answer began, or before) is cancelled, as
    # the docs promise, and the request still ends as a client's leaving.
    config, log = _site(tmp_path)
    flag = tmp_path / "code" / "sleeping"
    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        # The flag is set on the loop right before the sleep, with no await between.
        _leave(server, target, lambda state: flag.exists(), log, caplog)


@pytest.mark.parametrize("blocking", [True, False], ids=["pool", "inline"])
def test_a_wsgi_stream_whose_client_left_mid_drain_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, blocking: bool
) -> None:
    config, log = _site(tmp_path, wsgi={"blocking": blocking})
    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        _leave(server, "/wsgi/stream", _draining, log, caplog)


@contextlib.contextmanager
def proxy_site(tmp_path: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """The configuration of a front server proxying everything to a live upstream
    that serves ``/big.bin`` (16 MiB), and the front's access log."""
    up = tmp_path / "up"
    (up / "www").mkdir(parents=True)
    (up / "www" / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    upstream_config = {
        "server": {"modules": ["handler.static"]},
        "sites": [{"name": "up", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
    }
    log = tmp_path / "access.log"
    with LiveServer(upstream_config, up).start() as upstream:
        config = {
            "server": {"modules": ["handler.proxy", "log.http"]},
            "handlers": [{"path": "*", "handler": "handler.proxy"}],
            "sites": [{"name": "front", "bindings": ["http://127.0.0.1:1"]}],
            "proxy": {"upstream": f"http://127.0.0.1:{upstream.port}"},
            "http_logging": {"target": str(log), "buffer_size": 0},
        }
        yield config, log


def test_a_proxied_stream_whose_client_left_mid_drain_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        proxy_site(tmp_path) as (config, log),
        caplog.at_level(logging.DEBUG),
        LiveServer(config, tmp_path).start() as server,
    ):
        _leave(server, "/big.bin", _draining, log, caplog)


@NEEDS_PHP
def test_a_php_stream_whose_client_left_mid_drain_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_tree(tmp_path)
    log = tmp_path / "access.log"
    config = fastcgi_config(php_cgi(tmp_path))
    config["server"]["modules"].append("log.http")
    config["http_logging"] = {"target": str(log), "buffer_size": 0}
    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        _leave(server, "/download.php?mib=64", _draining, log, caplog)
