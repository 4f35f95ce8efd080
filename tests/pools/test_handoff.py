"""Routing and hand-off inside one process: the route table, the control channel, and
the connection hook that gives a request's socket (and its bytes) away."""

from __future__ import annotations

import asyncio
import os
import queue
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from colonnade.config.load import from_dict
from colonnade.pools import ipc
from colonnade.pools.config import ConfigSource
from colonnade.pools.routing import PoolRouter, RouteTable
from colonnade.transport.server import HttpServer, ServerState
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.support.wait import PATIENCE, wait_for, wait_for_async

from .conftest import get

SITES: dict[str, Any] = {
    "pools": {"default": {}, "api": {}, "blog": {}},
    "sites": [
        {
            "name": "main",
            "bindings": ["http://127.0.0.1:8080", "http://127.0.0.1:8081"],
            "applications": [{"path": "/api", "pool": "api"}],
        },
        {
            "name": "blog",
            "bindings": ["http://127.0.0.1:8080"],
            "host_names": ["blog.test"],
            "pool": "blog",
        },
        {"name": "solo", "bindings": ["http://127.0.0.1:9000"], "pool": "api"},
    ],
}


def test_route_table_chooses_like_the_engine() -> None:
    routes = RouteTable(from_dict(SITES, source="/srv/c.toml", base_dir="/srv"))
    assert routes.pool_for(8080, "x.test", "/") == "default"
    assert routes.pool_for(8080, "x.test", "/api") == "api"
    assert routes.pool_for(8080, "x.test", "/api/v1") == "api"
    assert routes.pool_for(8080, "x.test", "/apis") == "default"
    assert routes.pool_for(8080, "BLOG.test:8080", "/api") == "blog"
    assert routes.pool_for(9000, "blog.test", "/") == "api"
    assert routes.pool_for(7, "x", "/") is None
    assert (routes.owner(8080), routes.owner(8081), routes.owner(9000)) == ("default",) * 2 + (
        "api",
    )
    assert routes.pools_on(8080) == {"default", "api", "blog"}
    assert routes.needs_router("blog") and routes.needs_router("api")
    assert sorted(routes.listen) == [("127.0.0.1", 8080), ("127.0.0.1", 8081), ("127.0.0.1", 9000)]


def test_single_pool_needs_no_router() -> None:
    config = from_dict(
        {"sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"]}]},
        source="/c",
        base_dir="/",
    )
    assert not RouteTable(config).needs_router("default")


def test_channel_carries_messages_bytes_and_descriptors() -> None:
    async def main() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        got: asyncio.Queue[tuple[ipc.Message, bytes, list[int]]] = asyncio.Queue()
        left = ipc.Channel(a, lambda m, p, f: None, lambda: None)
        right = ipc.Channel(b, lambda m, p, f: got.put_nowait((m, p, f)), lambda: None)
        r, w = os.pipe()
        big = os.urandom(300_000)  # over INLINE_MAX: travels in a memfd
        left.send(ipc.Handoff(pool="api", port=80, head=True), b"GET / HTTP/1.1\r\n\r\n", [w])
        left.send(
            ipc.Start(
                pool="p", generation=2, source=ConfigSource(text="x" * 100_000), listeners=[]
            ),
            big,
        )
        message, payload, fds = await asyncio.wait_for(got.get(), 5)
        assert message == ipc.Handoff(pool="api", port=80, head=True)
        assert payload == b"GET / HTTP/1.1\r\n\r\n" and len(fds) == 1
        os.write(fds[0], b"through")  # the very pipe end, not a copy of its data
        assert os.read(r, 10) == b"through"
        os.close(fds[0])
        message, payload, fds = await asyncio.wait_for(got.get(), 5)
        assert isinstance(message, ipc.Start) and message.source.text == "x" * 100_000
        assert payload == big and fds == []
        left.close()
        assert right.closed is False
        await wait_for_async(lambda: right.closed, PATIENCE, "the other end noticing")
        os.close(r)

    asyncio.run(main())


class Captured:
    """The master's side of hand-offs, for a worker running in a thread."""

    def __init__(self) -> None:
        self.items: queue.Queue[tuple[str, int, bool, bytes, int]] = queue.Queue()

    def send(self, pool: str, port: int, head: bool, data: bytes, fd: int) -> None:
        self.items.put((pool, port, head, data, fd))


@pytest.fixture
def default_worker(tmp_path: Path) -> Any:
    """A worker of pool "default" in a thread, with its router, on a two-pool site."""
    (tmp_path / "www").mkdir()
    config = {
        "server": {"modules": ["acme.pid", "acme.slow"]},
        "pools": {"default": {}, "api": {}},
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [{"path": "/api", "pool": "api"}],
            }
        ],
        "handlers": [
            {"path": "/slow*", "handler": "acme.slow"},
            {"path": "*", "handler": "acme.pid"},
        ],
    }
    server = LiveServer(config, tmp_path).start()
    captured = Captured()
    router = PoolRouter("default", RouteTable(server.engine.config), captured.send)
    http: HttpServer = server.server
    http.state.router = router
    yield server, captured, router
    server.stop()


def take(captured: Captured) -> tuple[str, int, bool, bytes, socket.socket]:
    pool, port, head, data, fd = captured.items.get(timeout=PATIENCE)
    return pool, port, head, data, socket.socket(fileno=fd)


def answer(sock: socket.socket, body: bytes) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


def test_request_for_another_pool_hands_over_the_socket_and_its_bytes(default_worker: Any) -> None:
    server, captured, _ = default_worker
    with Conn(server.port) as c:
        c.send(get("/here"))
        assert b'"path": "/here"' in c.response().body
        request = get("/api/items", "X-Test: 1")
        c.send(request[:20])  # the head arrives in pieces: held until complete
        c.send(request[20:])
        pool, port, head, data, sock = take(captured)
        assert (pool, port, head, data) == ("api", server.port, True, request)
        with sock:
            answer(sock, b"from the api pool")  # the client's connection, unchanged
            response = c.response()
            assert response.body == b"from the api pool"
            c.send(b"more")  # later bytes reach the new owner, not the old one
            assert sock.recv(10) == b"more"
    assert server.engine_state().connections == set()


def test_request_with_a_body_travels_whole(default_worker: Any) -> None:
    server, captured, _ = default_worker
    with Conn(server.port) as c:
        request = b"POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        c.send(request)
        _, _, _, data, sock = take(captured)
        sock.close()
    assert data == request


def test_malformed_head_is_answered_here(default_worker: Any) -> None:
    server, captured, _ = default_worker
    with Conn(server.port) as c:
        c.send(b"GET /api HTTP/1.1\r\nHost: a b\r\n\r\n")
        assert c.response().status == 400
    assert captured.items.empty()


def test_draining_hands_over_idle_connections(default_worker: Any, tmp_path: Path) -> None:
    server, captured, router = default_worker
    gate = tmp_path / "finish"
    with Conn(server.port) as idle, Conn(server.port) as busy:
        idle.send(get("/a"))
        idle.response()
        busy.send(get(f"/slow?until={quote(str(gate))}"))  # held until the gate opens
        expected = {idle.sock.getsockname(): False, busy.sock.getsockname(): True}

        def in_flight(state: ServerState) -> dict[object, bool]:
            return {c.client: c.task is not None for c in state.connections}

        wait_for(
            lambda: server.look(in_flight) == expected, PATIENCE, "a request in flight on busy"
        )
        conns = server.look(lambda state: list(state.connections))

        def drain() -> None:
            router.draining = True
            router.hand_over_idle(conns)

        server.loop.call_soon_threadsafe(drain)
        pool, _, head, data, sock = take(captured)
        assert (pool, head, data) == ("default", False, b"")  # the idle one, at once
        sock.close()
        gate.touch()
        response = busy.response()  # the busy one finishes first, kept alive …
        assert response.body == b"slow:" and "connection" not in response.headers
        pool, _, head, data, sock = take(captured)  # … and then goes too
        assert (pool, head, data) == ("default", False, b"")
        sock.close()
