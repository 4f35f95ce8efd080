"""A graceful stop closes open WebSockets with 1001 at its start, over real processes:
`colonnade serve` alone and a master with a worker (SIGTERM, and a recycle); and a
reverse-proxied WebSocket tunnel at once."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from colonnade.management import operations
from tests.handlers.proxy.kit import front_config, upstream_node
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

from .conftest import LiveServer, Process
from .wire import Conn

#: Far beyond what the tests allow for the close: a stop that waited for the
#: WebSocket to end by itself would show.
DEADLINE = 30
#: How soon after the signal (or the recycle) the client must see the 1001.
PROMPT = 3.0

# HTTP: answers its head, its body once the gate exists. WebSocket: echoes; records
# the disconnect's code in the marker file. ``/busy`` accepts and then waits on
# something else than ``receive`` (it never reads again). ``/late`` accepts only
# once the gate exists (the handshake stays in flight until then).
APP = """
import asyncio
import os

MARKER = {marker!r}
GATE = {gate!r}
LATE = {late!r}

async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({{"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"8")]}})
        await send({{"type": "http.response.body", "body": b"", "more_body": True}})
        while not os.path.exists(GATE):
            await asyncio.sleep(0.02)
        await send({{"type": "http.response.body", "body": b"finished"}})
        return
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/late":
        # The handshake is held (its request in flight) until the test says accept.
        open(LATE, "w").close()
        while not os.path.exists(GATE):
            await asyncio.sleep(0.02)
    await send({{"type": "websocket.accept"}})
    if scope["path"] == "/busy":
        await send({{"type": "websocket.send", "text": "ready"}})
        await asyncio.Event().wait()
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            with open(MARKER, "a") as f:
                f.write(f"{{message['code']}}\\n")
            return
        await send({{"type": "websocket.send", "text": message["text"]}})
"""

CONFIG = """
[server]
timeouts = {{ graceful = {deadline} }}

[pools.default]
shutdown_time_limit = {deadline}

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[sites.applications]]
path = "/"
root = "www"
app = "wsapp:app"
app_dir = "code"
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "www").mkdir()
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "wsapp.py").write_text(
        APP.format(
            marker=str(tmp_path / "marker"),
            gate=str(tmp_path / "gate"),
            late=str(tmp_path / "late"),
        )
    )
    yield tmp_path


def serve(site: Path, *extra: str) -> Process:
    port = free_port()
    (site / "colonnade.toml").write_text(CONFIG.format(port=port, deadline=DEADLINE))
    return Process(["-c", "colonnade.toml", "--no-watch", *extra], cwd=site, port=port)


@contextlib.contextmanager
def open_ws(port: int, path: str = "/") -> Iterator[ClientConnection]:
    """A connected client whose first exchange went through."""
    with connect(f"ws://127.0.0.1:{port}{path}", proxy=None, open_timeout=PATIENCE) as c:
        if path == "/busy":
            assert c.recv(timeout=PATIENCE) == "ready"
        else:
            c.send("hello")
            assert c.recv(timeout=PATIENCE) == "hello"
        yield c


def closed_with(c: ClientConnection) -> int | None:
    """The code of the server's close frame, waiting at most ``PROMPT`` seconds."""
    with pytest.raises(ConnectionClosed) as info:
        c.recv(timeout=PROMPT)
    return info.value.rcvd.code if info.value.rcvd is not None else None


@contextlib.contextmanager
def master(site: Path) -> Iterator[tuple[Process, str]]:
    """A master with one worker and its control socket; stopped at the end."""
    control = str(site / "control.sock")
    server = serve(site, "--workers", "1", "--control", control)
    try:
        yield server, control
    finally:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(PATIENCE)
        finally:
            server.kill()


def wait_workers_gone(control: str, pids: set[int]) -> None:
    """Until none of ``pids`` is a worker of the pool any more, well before the 30 s."""

    def gone() -> bool:
        workers = operations.pools(control)["pools"][0]["workers"]
        return not pids & {w["pid"] for w in workers}

    wait_for(gone, PROMPT * 2, "the old worker gone, well before its 30 s limit")


def codes(site: Path) -> list[str]:
    marker = site / "marker"
    return marker.read_text().split() if marker.exists() else []


@pytest.mark.parametrize("workers", [None, 1], ids=["single", "master"])
def test_sigterm_closes_websockets_with_1001_at_once(site: Path, workers: int | None) -> None:
    server = serve(site, *(["--workers", str(workers)] if workers else []))
    try:
        with (
            Conn(server.port) as http,
            open_ws(server.port) as c,
            open_ws(server.port, "/busy") as busy,
        ):
            http.send(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
            http.await_head()  # an HTTP request in flight
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert closed_with(c) == 1001
            assert closed_with(busy) == 1001
            assert time.monotonic() - started < PROMPT
            # The request in flight still finishes as before.
            assert server.proc.poll() is None
            (site / "gate").touch()
            assert http.response().body == b"finished"
        # Exits well before the 30 s deadline: the WebSockets no longer hold it.
        assert server.proc.wait(PROMPT * 2) == 0
        assert codes(site) == ["1001"]  # the echo app saw its disconnect
        assert "still busy" not in server.stderr()
    finally:
        server.kill()


def test_a_recycle_closes_the_old_workers_websockets_with_1001(site: Path) -> None:
    with master(site) as (server, control):

        def worker_pids() -> set[int]:
            try:
                workers = operations.pools(control)["pools"][0]["workers"]
            except operations.ControlError:
                return set()  # listening already, its control socket not yet
            return {w["pid"] for w in workers if w["state"] == "ready"}

        with open_ws(server.port) as c, open_ws(server.port, "/busy") as busy:
            pids = worker_pids()  # the pool starts on demand: it has one now
            assert pids
            started = time.monotonic()
            operations.recycle(control, "default")
            assert closed_with(c) == 1001
            assert closed_with(busy) == 1001
            assert time.monotonic() - started < PROMPT
            assert codes(site) == ["1001"]

        wait_workers_gone(control, pids)
        with open_ws(server.port) as again:  # the new worker serves WebSockets
            again.close()


def test_an_upgrade_completed_during_a_recycle_closes_with_1001_at_once(site: Path) -> None:
    # The handshake's request is in flight when the old worker's drain begins; it is
    # accepted afterwards. Its state cannot move to the new worker, so it is told to
    # stop like the WebSockets open at the start, instead of holding the old worker
    # until its 30 s limit.
    with master(site) as (server, control):
        with open_ws(server.port) as warm:  # the pool starts on demand
            warm.close()
        workers = operations.pools(control)["pools"][0]["workers"]
        pids = {w["pid"] for w in workers if w["state"] == "ready"}
        assert pids
        opened: list[ClientConnection] = []
        failed: list[BaseException] = []

        def handshake() -> None:
            try:
                opened.append(
                    connect(f"ws://127.0.0.1:{server.port}/late", proxy=None, open_timeout=DEADLINE)
                )
            except BaseException as e:  # reported by the test below
                failed.append(e)

        client = threading.Thread(target=handshake, daemon=True)
        client.start()
        try:
            wait_for((site / "late").exists, PATIENCE, "the handshake held by the app")
            operations.recycle(control, "default")
            wait_for(
                lambda: "draining: handing connections over" in server.stderr(),
                PATIENCE,
                "the old worker's drain begun",
            )
            started = time.monotonic()
            (site / "gate").touch()  # now the app accepts
            client.join(PATIENCE)
            assert not failed, failed
            assert opened, "the handshake did not complete"
            with opened[0] as c:
                assert closed_with(c) == 1001
            assert time.monotonic() - started < PROMPT
        finally:
            (site / "gate").touch()
            client.join(PATIENCE)

        wait_workers_gone(control, pids)
        assert "still busy" not in server.stderr()


def test_a_stop_closes_a_proxied_websocket_tunnel_at_once(tmp_path: Path) -> None:
    # The tunnel is bytes: no close frame is sent, the client sees the connection end
    # (1006), at the start of the stop rather than at its 30 s deadline.
    config = front_config("http://127.0.0.1:1")  # the upstream's port is set below
    config["server"]["timeouts"] = {"graceful": DEADLINE}
    for folder in ("node", "front"):
        (tmp_path / folder).mkdir()
    with upstream_node(tmp_path / "node") as node:
        config["proxy"]["upstream"] = f"http://127.0.0.1:{node.port}"
        front = LiveServer(config, tmp_path / "front").start()
        try:
            with connect(f"ws://127.0.0.1:{front.port}/ws", proxy=None, open_timeout=PATIENCE) as c:
                c.send("hello")
                assert c.recv(timeout=PATIENCE) == "echo: hello"
                started = time.monotonic()
                front.begin_stop()
                with pytest.raises(ConnectionClosed) as info:
                    c.recv(timeout=PROMPT)
                assert info.value.rcvd is None
                assert time.monotonic() - started < PROMPT
        finally:
            front.stop()
