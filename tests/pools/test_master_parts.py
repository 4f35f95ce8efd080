"""The master's parts without worker processes: pool records, and the front door's 503s."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from colonnade.config.schema import PoolConfig
from colonnade.core.registry import Registry
from colonnade.modules.standard import BUILTIN
from colonnade.pools.config import ConfigSource
from colonnade.pools.master import Master, load
from colonnade.pools.pool import Pool, PoolState, WorkerProcess, WorkerState


class _Proc:
    """What ``WorkerProcess`` reads of a ``Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


def worker(pool: Pool, pid: int, state: WorkerState) -> WorkerProcess:
    w = WorkerProcess(pool, _Proc(pid), 1)  # type: ignore[arg-type]
    w.state = state
    pool.workers.append(w)
    return w


def test_colonnade_pools_shows_the_states_words() -> None:
    pool = Pool("api", PoolConfig())
    worker(pool, 10, WorkerState.STARTING)
    worker(pool, 11, WorkerState.READY)
    worker(pool, 12, WorkerState.RETIRING)
    worker(pool, 13, WorkerState.DRAINING)
    pool.state, pool.reason = PoolState.STOPPED, "rapid-fail protection"
    shown = pool.describe()
    assert (shown["state"], shown["reason"]) == ("stopped", "rapid-fail protection")
    assert type(shown["state"]) is str
    assert [w["state"] for w in shown["workers"]] == ["starting", "ready", "retiring", "draining"]
    assert [s.value for s in PoolState] == ["idle", "running", "stopped"]


def test_a_retiring_worker_serves_only_when_no_other_does() -> None:
    pool = Pool("p", PoolConfig())
    starting = worker(pool, 1, WorkerState.STARTING)
    old = worker(pool, 2, WorkerState.RETIRING)
    assert pool.next_worker() is old  # its replacement is not ready yet
    assert pool.live() == [starting]  # the replacement counts toward `workers`, not the old one
    starting.state = WorkerState.READY
    assert {pool.next_worker(), pool.next_worker()} == {starting}
    assert pool.ready() == [starting]
    assert old.serving and not worker(pool, 3, WorkerState.DRAINING).serving


def answers(master: Master, deliver: str) -> bytes:
    """What a client reads after the front door delivers its connection to pool ``deliver``."""

    async def main() -> bytes:
        client, server = socket.socketpair()
        with client:
            client.setblocking(False)
            master.frontdoor.deliver(deliver, server.detach(), b"GET / HTTP/1.1\r\n\r\n", 80)
            loop = asyncio.get_running_loop()
            data = b""
            while chunk := await asyncio.wait_for(loop.sock_recv(client, 65536), 5):
                data += chunk
            return data

    return asyncio.run(main())


def test_front_door_answers_503_through_the_http_layer(tmp_path: Path) -> None:
    source = ConfigSource(root=str(tmp_path), bindings=["http://127.0.0.1:8080"])
    registry = Registry.standard(BUILTIN)
    master = Master(source, registry=registry)
    master.loaded = load(source, registry)
    pool = master.pools["default"] = Pool("default", PoolConfig(queue_length=1))
    pool.state, pool.reason = PoolState.STOPPED, "stopped by command"

    stopped = answers(master, "default")
    head, body = stopped.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines[1:])
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
    assert fields[b"connection"] == b"close" and fields[b"retry-after"] == b"5"
    assert fields[b"content-type"] == b"text/plain; charset=utf-8"
    assert fields[b"content-length"] == b"%d" % len(body)
    assert fields[b"server"] == b"colonnade"
    # Not a client on this machine over TCP (a socket pair): the reason stays in
    # the log; the body only says the pool is stopped.
    assert body.endswith(b"the application pool is stopped\n")

    pool.state = PoolState.IDLE
    pool.queue.append((-1, b"", 80))  # the one place in the queue is taken
    assert b"the application pool's queue is full" in answers(master, "default")
    assert b"the application pool is not available" in answers(master, "nosuchpool")


def test_a_write_waits_until_every_worker_serves_its_generation() -> None:
    from types import SimpleNamespace

    from colonnade.pools import ipc
    from colonnade.pools.workers import Workers

    pool = Pool("default", PoolConfig())
    old = worker(pool, 20, WorkerState.READY)  # generation 1
    workers = Workers(SimpleNamespace(pools={"default": pool}))  # type: ignore[arg-type]

    async def scenario() -> None:
        # Nobody confirmed generation 2 within the wait: the answer names who.
        assert await workers.settle(2, 0.01) == (None, ["pool default: worker 20 (ready)"])
        waiting = asyncio.ensure_future(workers.settle(2, 5.0))
        await asyncio.sleep(0)
        assert not waiting.done()
        # The worker's reload is done: the wait ends at once, not at its deadline.
        workers._on_message(old, ipc.Reloaded(generation=2, ok=True), b"", [])
        assert await asyncio.wait_for(waiting, 1.0) == (True, [])
        # A worker replaced for generation 3: the old one counts until it stops
        # accepting, the new one until it is ready.
        new = worker(pool, 21, WorkerState.STARTING)
        new.generation = 3
        old.state = WorkerState.DRAINING
        pending = (await workers.settle(3, 0.01))[1]
        assert pending == [
            "pool default: worker 20 (draining)",
            "pool default: worker 21 (starting)",
        ]
        workers._on_message(old, ipc.Draining(), b"", [])
        new.state = WorkerState.READY
        assert await workers.settle(3, 0.01) == (True, [])
        # A worker that refuses generation 4: the answer says so at once.
        workers._on_message(new, ipc.Reloaded(generation=4, ok=False), b"", [])
        ok, why = await workers.settle(4, 5.0)
        assert ok is False and why == [
            "pool default: worker 21 refused the new configuration (see the server log)"
        ]

    asyncio.run(scenario())


def test_a_worker_start_releases_memory_once_per_loop_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ready worker has the master give back what its start left (malloc_trim),
    once for the workers that became ready in one turn of the loop."""
    from colonnade.pools import master as master_module

    released: list[int] = []
    monkeypatch.setattr(master_module, "release_memory", lambda: released.append(1))
    master = Master(ConfigSource(root=str(tmp_path), bindings=["http://127.0.0.1:8080"]))

    async def scenario() -> None:
        master.release_memory_soon()
        master.release_memory_soon()  # a second worker ready in the same turn
        assert released == []  # not within the turn that made the workers ready
        await asyncio.sleep(0)
        assert released == [1]
        master.release_memory_soon()  # a later start: released again
        await asyncio.sleep(0)
        assert released == [1, 1]

    asyncio.run(scenario())


def test_python_handler_sections_are_known_without_the_apps(tmp_path: Path) -> None:
    """A server-level ``[asgi]``/``[wsgi]`` (``serve --root-path``,
    ``--no-wsgi-blocking``) is valid where the view of the configuration holds no
    Python app: the master checks it without its apps, and the worker of a pool
    with none builds only its own pool's sites. Both refused it (the master would
    not start)."""
    from colonnade.core.registry import Registry
    from colonnade.engine import Engine
    from colonnade.modules.standard import BUILTIN
    from colonnade.pools import checker
    from colonnade.pools.config import ConfigSource, pool_view

    (tmp_path / "www").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "web.py").write_text("def app(environ, start_response): ...\n")
    file = tmp_path / "colonnade.toml"
    file.write_text(
        "[asgi]\n"
        'root_path = "/api"\n'
        "[wsgi]\n"
        "blocking = false\n"
        "[pools.static]\n"
        "[pools.python]\n"
        "[[sites]]\n"
        'name = "files"\n'
        'bindings = ["http://127.0.0.1:8080"]\n'
        'root = "www"\n'
        'pool = "static"\n'
        "[[sites]]\n"
        'name = "app"\n'
        'bindings = ["http://127.0.0.1:8081"]\n'
        'root = "www"\n'
        'pool = "python"\n'
        "[[sites.applications]]\n"
        'path = "/"\n'
        'app = "web:app"\n'
        'app_dir = "app"\n'
        'interface = "wsgi"\n'
    )
    source = ConfigSource(file=str(file)).read()
    registry = Registry.standard(BUILTIN)
    found, engine = checker.report(source, registry)
    assert found.errors == [] and engine is not None
    Engine(pool_view(source.load(), "static"), registry)  # no ConfigError


def test_the_front_door_bounds_unsent_bytes_on_its_sockets_and_at_a_reload(
    tmp_path: Path,
) -> None:
    # [server] tcp_notsent_lowat on the sockets the master binds (what it accepts
    # before a worker serves inherits it), and on those a reload keeps.
    master = Master(ConfigSource(root=str(tmp_path), bindings=["http://127.0.0.1:8080"]))
    door = master.frontdoor
    tcp, unix = ("127.0.0.1", 0), (str(tmp_path / "s.sock"), 0)
    try:
        door.listen([tcp, unix], unsent=131072)
        sock = door.listeners[tcp]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 131072
        door.listen([tcp, unix], unsent=65536)  # a reload that changes it
        assert door.listeners[tcp] is sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 65536
        door.listen([tcp, unix], unsent=0)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 0
    finally:
        door.close()
