"""A worker's drain against connections the master is still handing it.

The master sends ``Adopt`` (a connection with its request) and, a moment later,
``Drain`` on the same channel. The worker must serve the adopted request before it
exits: a connection that is on its way into the transport when the drain starts is
still the worker's (seen as a reload under load losing a request now and then).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.modules.standard import BUILTIN
from colonnade.pools import ipc
from colonnade.pools.config import ConfigSource, pool_view
from colonnade.pools.worker import Worker
from tests.hosting.apps import asgi_apps
from tests.support.wait import PATIENCE


def _worker(tmp_path: Path, port: int, control: socket.socket) -> Worker:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("adopted\n")
    return _worker_of(ConfigSource(root=str(www), bindings=[f"http://127.0.0.1:{port}"]), control)


def _worker_of(source: ConfigSource, control: socket.socket) -> Worker:
    start = ipc.Start(pool="default", generation=1, source=source, listeners=[])
    config = source.load()
    registry = Registry.standard(BUILTIN)
    engine = Engine(pool_view(config, "default"), registry)
    engine.start()
    return Worker(start, control, config, engine, registry)


def _send(sock: socket.socket, message: ipc.Message, fds: tuple[int, ...] = ()) -> None:
    packet = ipc.encode(message, b"")
    if fds:
        socket.send_fds(sock, [packet], list(fds))
    else:
        sock.sendall(packet)


def _connected(
    request: bytes,
) -> tuple[int, socket.socket, socket.socket, socket.socket, socket.socket]:
    """A client's connection that sent ``request``, accepted here as the master
    would: (port, master's end and worker's end of the channel, client, accepted)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    master_end, worker_end = socket.socketpair()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    listener.close()
    client.sendall(request)
    client.settimeout(PATIENCE)
    return port, master_end, worker_end, client, accepted


def _adopted_then_drained(tmp_path: Path) -> None:
    """A connection adopted with its request, a drain right behind it: the worker
    answers it before it exits."""
    request = b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
    port, master_end, worker_end, client, accepted = _connected(request)

    async def main() -> None:
        worker = _worker(tmp_path, port, worker_end)
        running = asyncio.get_running_loop().create_task(worker.run())
        ready = await asyncio.to_thread(ipc.recv_blocking, master_end)
        assert ready is not None and isinstance(ready[0], ipc.Ready)
        # Both in the channel before the worker's loop looks again: one read of the
        # channel carries the connection and the drain, as under load.
        _send(master_end, ipc.Adopt(port), (accepted.fileno(),))
        accepted.close()
        _send(master_end, ipc.Drain(deadline=PATIENCE, migrate=True))
        await asyncio.wait_for(running, PATIENCE)

    asyncio.run(main())
    received = b""
    while b"adopted" not in received:
        chunk = client.recv(4096)
        assert chunk, f"the connection was closed unanswered after {received!r}"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    client.close()
    master_end.close()
    worker_end.close()


def test_a_connection_adopted_right_before_a_drain_is_served(tmp_path: Path) -> None:
    _adopted_then_drained(tmp_path)


def test_work_after_an_answer_is_cancelled_at_the_drains_deadline(tmp_path: Path) -> None:
    # The connection is busy with the work its application does after a complete
    # answer: the drain cannot hand it over, and at its deadline aborts it and
    # cancels that work (as a stop does), before the worker goes on to shut the
    # application down: it is not left running through that shutdown.
    port, master_end, worker_end, client, accepted = _connected(
        b"GET /buf HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    asgi_apps.AFTER_GATE.clear()
    asgi_apps.AFTER_DONE.clear()
    asgi_apps.EVENTS.clear()
    seen: list[object] = []

    async def main() -> None:
        source = ConfigSource(
            app="tests.hosting.apps.asgi_apps:after_response",
            bindings=[f"http://127.0.0.1:{port}"],
        )
        worker = _worker_of(source, worker_end)
        running = asyncio.get_running_loop().create_task(worker.run())
        ready = await asyncio.to_thread(ipc.recv_blocking, master_end)
        assert ready is not None and isinstance(ready[0], ipc.Ready)
        _send(master_end, ipc.Adopt(port), (accepted.fileno(),))
        accepted.close()
        received = b""
        while b"buffered" not in received:
            chunk = await asyncio.to_thread(client.recv, 4096)
            assert chunk, f"the connection was closed unanswered after {received!r}"
            received += chunk
        _send(master_end, ipc.Drain(deadline=0.3, migrate=True))
        await asyncio.wait_for(running, PATIENCE)
        seen.extend(asgi_apps.EVENTS)  # before asyncio.run cancels what is left

    try:
        asyncio.run(main())
    finally:
        asgi_apps.AFTER_GATE.set()
        client.close()
        master_end.close()
        worker_end.close()
    assert seen == [("after /buf stopped by", "CancelledError")]
    assert not asgi_apps.AFTER_DONE


def test_a_drain_whose_router_cannot_be_made_stops_and_serves_what_it_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A single-pool worker makes its router only at a drain (importing
    # pools/routing.py then). Should that fail (no descriptor left, the package
    # replaced in place), the worker stops as on a plain stop, answering the
    # connection it holds, instead of raising with its listeners closed.
    def no_router(self: Worker, routes: object) -> object:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(Worker, "_router", no_router)
    _adopted_then_drained(tmp_path)
