"""handler.proxy in front of uvicorn (the Starlette upstream app), over TCP and
over a unix socket: bodies both ways, keep-alive, a WebSocket."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import LiveServer
from tests.handlers.proxy.kit import UPSTREAM_APP, front
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

# uvicorn is a dev dependency (pyproject): a missing one is a broken install, not a skip.
import uvicorn  # noqa: E402, F401


def _reachable(address: tuple[str, int] | str) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(address)
        except OSError:
            return False
        return True


@pytest.fixture(scope="module", params=["tcp", "unix"])
def uvicorn_upstream(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """uvicorn serving the upstream app; yields its address for [proxy] upstream."""
    if request.param == "tcp":
        port = free_port()
        where: tuple[str, int] | str = ("127.0.0.1", port)
        args = ["--host", "127.0.0.1", "--port", str(port)]
        address = f"http://127.0.0.1:{port}"
    else:
        path = str(tmp_path_factory.mktemp("uds") / "up.sock")
        where = path
        args = ["--uds", path]
        address = f"unix:{path}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", UPSTREAM_APP, "--log-level", "warning", *args],
        cwd=str(Path(__file__).parents[3]),
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: proc.poll() is not None or _reachable(where), PATIENCE, "uvicorn")
        assert proc.poll() is None, "uvicorn exited"
        yield address
    finally:
        proc.terminate()
        proc.wait(PATIENCE)


@pytest.fixture(scope="module")
def proxy(uvicorn_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with front(tmp_path_factory.mktemp("front"), uvicorn_upstream) as server:
        yield server


def test_hello_and_keep_alive(proxy: LiveServer, uvicorn_upstream: str) -> None:
    base = f"http://127.0.0.1:{proxy.port}"
    with httpx.Client() as client:
        assert client.get(f"{base}/hello").text == "Hello, world!"
        peers = {str(client.get(f"{base}/headers").json()["client"]) for _ in range(10)}
    if uvicorn_upstream.startswith("http:"):
        assert len(peers) == 1  # one upstream connection, kept alive


def test_upload_and_download(proxy: LiveServer) -> None:
    base = f"http://127.0.0.1:{proxy.port}"
    body = os.urandom(4 * 1024 * 1024 + 1)
    with httpx.Client(timeout=60) as client:
        got = client.post(f"{base}/digest", content=iter([body[:1000], body[1000:]]))
        assert got.text == f"{len(body)} {hashlib.sha256(body).hexdigest()}"
        echo = body[: 1024 * 1024]  # httpx reads only once it sent all: buffers bound it
        assert client.put(f"{base}/echo", content=echo).content == echo
        size = 8 * 1024 * 1024
        assert len(client.get(f"{base}/big?n={size}").content) == size


def test_websocket(proxy: LiveServer) -> None:
    with connect(f"ws://127.0.0.1:{proxy.port}/ws", proxy=None, open_timeout=30) as ws:
        ws.send("hi")
        assert ws.recv(30) == "echo: hi"
        ws.send(b"\x00\x01")
        assert ws.recv(30) == b"\x00\x01"
