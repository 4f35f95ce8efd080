"""Setting a connection up and tearing it down cheaply, with every limit kept.

A connection's timer is armed lazily (``connection.LazyTimers``): a deadline at
least ``_LAZY_FROM`` away waits for a sweep, so a connection served and closed
before it never makes an event-loop timer; the timeouts still fire at their
deadline, never before. The local address of a connection on a listening socket
bound to one address is that socket's (no per-connection lookup); on a wildcard
address it is the one the client reached. A finished connection leaves no
reference cycle for the garbage collector (``HTTP1Connection.release``).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.engine.sites import Binding
from colonnade.http import HTTP1Connection, RequestHead
from colonnade.pools.single import new_event_loop
from colonnade.testing import build_engine
from colonnade.transport import connection
from colonnade.transport.connection import Accepted, HttpConnection, fixed_address
from colonnade.transport.server import ServerState
from colonnade.transport.sockets import bind_socket
from tests.e2e.conftest import LiveServer, site_config
from tests.e2e.test_http1 import get
from tests.e2e.wire import Conn
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

#: uvloop's clock is libuv's, in whole milliseconds: a timer may fire up to one
#: early by the client's clock (see test_min_rate.CLOCK_SLACK).
CLOCK_SLACK = 0.01
#: Lazily armed: at least this long (tests run with the module's constants).
LAZY = connection._LAZY_FROM


def server_with(www: Path, **config: object) -> LiveServer:
    return LiveServer(site_config(**config), www).start()


@pytest.fixture
def live(www: Path) -> Iterator[LiveServer]:
    with server_with(www) as server:
        yield server


def conns(state: ServerState) -> list[HttpConnection]:
    return [c for c in state.connections if isinstance(c, HttpConnection)]


def pending(state: ServerState) -> int:
    timers = state.lazy_timers
    return 0 if timers is None else len(timers)


# -- lazy timers ----------------------------------------------------------------------


def test_a_lazily_armed_header_timeout_answers_408_at_its_deadline(www: Path) -> None:
    header = LAZY + 0.2
    with server_with(www, timeouts={"header": header}) as server, Conn(server.port) as c:
        start = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost:")
        r = c.response()
        took = time.monotonic() - start
        assert r.status == 408 and c.closed()
        assert took >= header - CLOCK_SLACK  # never early
        assert took < header + 5  # and it did come: the sweep armed the timer


def test_a_silent_connection_is_closed_at_the_lazily_armed_header_timeout(www: Path) -> None:
    header = LAZY + 0.2
    with server_with(www, timeouts={"header": header}) as server, Conn(server.port) as c:
        start = time.monotonic()
        wait_for(
            lambda: server.look(lambda s: len(conns(s)) == 1), PATIENCE, "the connection counted"
        )
        # the sweep gave it a timer at its own deadline, not one per request
        wait_for(
            lambda: server.look(pending) == 0, PATIENCE, "the sweep armed the connection's timer"
        )
        assert server.look(lambda s: all(c._timer is not None for c in conns(s)))
        assert c.closed() and c.buf == b""
        assert time.monotonic() - start >= header - CLOCK_SLACK


def test_a_lazily_armed_keep_alive_timeout_closes_the_idle_connection(www: Path) -> None:
    keep_alive = LAZY + 0.2
    with server_with(www, timeouts={"keep_alive": keep_alive}) as server, Conn(server.port) as c:
        c.send(get("/hello.txt"))
        assert c.response().status == 200
        answered = time.monotonic()
        assert c.closed()
        assert time.monotonic() - answered >= keep_alive - CLOCK_SLACK


def test_a_keep_alive_connection_in_use_is_not_cut_by_its_first_deadline(www: Path) -> None:
    # Requests keep coming, each within the keep-alive timeout: the lazily armed
    # timer moves with them, and the connection stays open past the first deadline.
    keep_alive = LAZY + 0.2
    with server_with(www, timeouts={"keep_alive": keep_alive}) as server, Conn(server.port) as c:
        end = time.monotonic() + 2 * keep_alive
        while time.monotonic() < end:
            c.send(get("/hello.txt"))
            assert c.response().status == 200
            time.sleep(keep_alive / 4)  # the client's pace: the test's subject
        assert not c.closed(wait=0.05)


def test_short_timeouts_are_armed_at_once(www: Path) -> None:
    # Below _LAZY_FROM a timer is made at once: nothing waits for a sweep.
    with server_with(www, timeouts={"header": 0.3}) as server, Conn(server.port) as c:
        wait_for(
            lambda: server.look(lambda s: len(conns(s)) == 1), PATIENCE, "the connection counted"
        )
        assert server.look(lambda s: all(c._timer is not None for c in conns(s)))
        assert server.look(pending) == 0
        c.send(b"GET / HTTP/1.1\r\nHost:")
        assert c.response().status == 408


def test_a_connection_served_and_closed_before_the_sweep_makes_no_timer(www: Path) -> None:
    with server_with(www) as server:  # header timeout 30 s: lazily armed
        for _ in range(20):
            with Conn(server.port) as c:
                c.send(get("/hello.txt", "Connection: close"))
                assert c.response().status == 200 and c.closed()
        wait_for(
            lambda: server.look(lambda s: not s.connections), PATIENCE, "every connection gone"
        )
        # each left the pending set as it ended: nothing is held for a sweep
        assert server.look(pending) == 0


class Socketless(asyncio.Transport):
    """A transport with no socket: what is written is kept, closing is noted."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closed = False
        self.done = asyncio.Event()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.done.set()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def test_a_connection_answered_before_the_sweep_never_makes_a_timer(www: Path) -> None:
    # Deterministic: the whole life of the second connection (a response-cache hit,
    # answered in data_received) runs in one turn of the loop, before any sweep.
    config = {  # no module that sees requests: the response cache answers
        "server": {"modules": ["handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [{"path": "*", "handler": "handler.static"}],
    }
    engine = build_engine(config, base_dir=str(www), with_entry_points=True)
    request = get("/hello.txt", "Connection: close")

    async def run() -> None:
        await engine.startup()
        state = ServerState(engine)
        accepted = Accepted(state, ("127.0.0.1", 1))  # the binding: its site
        try:
            cache = state.respcache
            assert cache is not None
            deadline = time.monotonic() + PATIENCE
            # Answered by the pipeline, which fills the cache once the file has
            # settled (unchanged for 2 s): ask until it did.
            while not cache.entries:
                assert time.monotonic() < deadline, "the answer was never stored"
                first, wire = accepted(), Socketless()
                first.connection_made(wire)
                first.data_received(request)
                await asyncio.wait_for(wire.done.wait(), PATIENCE)
                first.connection_lost(None)
                await asyncio.sleep(0.1)  # the file's age, not a condition of the server

            conn, wire = accepted(), Socketless()
            conn.connection_made(wire)
            assert conn._timer is None and pending(state) == 1  # waits for the sweep
            conn.data_received(request)
            assert wire.sent.startswith(b"HTTP/1.1 200 ") and wire.closed
            conn.connection_lost(None)
            assert conn._timer is None and pending(state) == 0
            assert conn.server == ("127.0.0.1", 1) and conn.client == ("127.0.0.1", 50000)
            assert not state.connections
        finally:
            await engine.shutdown()

    loop = new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        engine.close()
        loop.close()


# -- accepting a burst -------------------------------------------------------------------


def test_a_burst_is_accepted_in_one_turn_of_a_busy_loop(www: Path) -> None:
    # uvloop accepts one connection per turn of the loop. With DRAIN_FROM
    # connections open, a connection it accepts has the rest of the backlog taken
    # at once: a burst waits one turn, not one turn per connection.
    held, burst = connection.DRAIN_FROM, 100
    with server_with(www) as server:
        idle = [Conn(server.port) for _ in range(held)]
        try:
            wait_for(lambda: server.look(lambda s: len(s.connections) == held), PATIENCE, "held")
            gate = threading.Event()

            async def busy() -> None:
                # One long turn, as a loop serving a thousand connections has: the
                # burst arrives meanwhile and waits in the backlog.
                gate.wait(PATIENCE)

            turn = asyncio.run_coroutine_threadsafe(busy(), server.loop)
            new = [Conn(server.port) for _ in range(burst)]
            try:
                gate.set()
                turn.result(PATIENCE)
                # a few turns: the loop's own accept, the drain, connection_made
                counted = server.look(lambda s: len(s.connections), turns=8)
                assert counted == held + burst
                for c in new:
                    c.send(get("/hello.txt"))
                assert all(c.response().status == 200 for c in new)
            finally:
                for c in new:
                    c.sock.close()
        finally:
            for c in idle:
                c.sock.close()


# -- the local address ------------------------------------------------------------------


def test_fixed_address_of_listening_sockets() -> None:
    one = bind_socket(Binding("http", "127.0.0.1", 0))
    anywhere = bind_socket(Binding("http", "0.0.0.0", 0))
    try:
        assert fixed_address(one) == ("127.0.0.1", one.getsockname()[1])
        assert fixed_address(anywhere) is None
    finally:
        one.close()
        anywhere.close()
    if socket.has_ipv6:
        try:
            six = bind_socket(Binding("http", "::1", 0))
        except OSError:
            pass  # no IPv6 loopback here
        else:
            with six:
                assert fixed_address(six) == ("::1", six.getsockname()[1])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        assert fixed_address(unix) is None


def test_a_connection_knows_the_address_it_reached(www: Path) -> None:
    server = LiveServer(site_config(), www)
    server.sock.close()  # listen on every address instead: each connection asks
    server.sock = bind_socket(Binding("http", "0.0.0.0", 0))
    server.port = server.sock.getsockname()[1]
    with server.start(), Conn(server.port) as c:
        c.send(get("/hello.txt"))
        assert c.response().status == 200
        found = server.look(lambda s: [(c.server, c.client) for c in conns(s)])
        assert found == [(("127.0.0.1", server.port), c.sock.getsockname())]


def test_a_connection_on_a_fixed_address_has_it(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(get("/hello.txt"))
        assert c.response().status == 200
        found = live.look(lambda s: [(c.server, c.client) for c in conns(s)])
        assert found == [(("127.0.0.1", live.port), c.sock.getsockname())]


# -- no garbage left ------------------------------------------------------------------


def parsers() -> int:
    """HTTP/1.1 protocol states alive in this process."""
    return sum(1 for o in gc.get_objects() if type(o) is HTTP1Connection)


def test_finished_connections_are_freed_without_the_garbage_collector(live: LiveServer) -> None:
    gc.collect()
    gc.disable()  # only reference counting frees anything now
    try:
        before = parsers()
        for _ in range(5):
            with Conn(live.port) as c:
                c.send(get("/hello.txt", "Connection: close"))
                assert c.response().status == 200 and c.closed()
        wait_for(lambda: live.look(lambda s: not s.connections), PATIENCE, "the connections ended")
        # uvloop lets go of a closed transport (and so of its protocol) a turn later
        wait_for(
            lambda: live.look(lambda s: parsers() <= before, turns=2),
            PATIENCE,
            "the connections' parsers freed by reference counting",
        )
    finally:
        gc.enable()


def test_release_ends_parsing_and_keeps_responding() -> None:
    h1 = HTTP1Connection()
    (head, _end) = h1.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(head, RequestHead)
    h1.release()
    assert h1.start_response(head, 200, [], content_length=0).startswith(b"HTTP/1.1 200")
    with pytest.raises(AttributeError):
        h1.feed(b"GET / HTTP/1.1\r\n")
