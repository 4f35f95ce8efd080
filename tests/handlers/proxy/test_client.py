"""The upstream connection pool over real sockets (TCP and unix): reuse, limits,
timeouts, and that a connection whose state is not clean is never lent again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.taskwait import finished_future
from colonnade.handlers.proxy import client
from colonnade.handlers.proxy.client import (
    Connection,
    Pool,
    PoolSettings,
    Upstream,
    Wait,
    parse_upstream,
)
from colonnade.handlers.proxy.errors import UpstreamConnectError, UpstreamTimeoutError
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for_async


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """The coroutine test run on an event loop of its own."""

    @functools.wraps(test)
    def sync(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return sync


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request head on the connection with OK."""
    while await reader.readuntil(b"\r\n\r\n"):
        writer.write(OK)
        await writer.drain()


class Served:
    """A test server's connections, closed with it (asyncio's ``Server.close``
    leaves accepted connections open)."""

    def __init__(self) -> None:
        self.count = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    def wrap(self, handler: Handler) -> Handler:
        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.count += 1
            self.writers.append(writer)
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        return counted

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        # Closed transports end the handlers' reads (no cancel: asyncio logs it).
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 10)
        if self.server is not None:
            await self.server.wait_closed()
        await asyncio.sleep(0)  # the transports' close callbacks


async def tcp_server(handler: Handler) -> tuple[Served, Upstream]:
    served = Served()
    served.server = await asyncio.start_server(served.wrap(handler), "127.0.0.1", 0)
    port = served.server.sockets[0].getsockname()[1]
    return served, Upstream("127.0.0.1", port)


async def get(pool: Pool) -> tuple[bytes, bool]:
    conn = await pool.acquire()
    conn.parser.start("GET")
    await conn.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", 5)
    body = b""
    while not conn.parser.idle:
        for event in conn.parser.feed(await conn.recv(5)):
            body += getattr(event, "data", b"")
    reusable = conn.parser.reusable
    pool.release(conn, reusable=reusable)
    return body, reusable


def test_parse_upstream() -> None:
    assert parse_upstream("http://10.0.0.5:8080").key == ("10.0.0.5", 8080, None)
    assert parse_upstream("http://app").key == ("app", 80, None)
    assert parse_upstream("http://[::1]:81/").name == "[::1]:81"
    assert parse_upstream("unix:/run/app.sock").name == "unix:/run/app.sock"
    for bad in ("ftp://x", "http://x:0", "http://x:y", "http://u@x", "http://x/path", "unix:rel"):
        with pytest.raises(ValueError):
            parse_upstream(bad)


@run
async def test_keep_alive_reuses_one_connection() -> None:
    server, upstream = await tcp_server(answer_each)
    pool = Pool(upstream, PoolSettings())
    try:
        for _ in range(5):
            assert await get(pool) == (b"ok", True)
        assert server.count == 1
        assert pool.idle_connections == 1
    finally:
        pool.close()
        await server.close()
    assert pool.open_connections == 0


@run
async def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "up.sock")
    server = Served()
    server.server = await asyncio.start_unix_server(server.wrap(answer_each), path)
    pool = Pool(Upstream(unix_path=path), PoolSettings())
    try:
        assert await get(pool) == (b"ok", True)
        assert await get(pool) == (b"ok", True)
        assert pool.open_connections == 1
    finally:
        pool.close()
        await server.close()


@run
async def test_a_connection_closed_by_the_upstream_is_not_lent() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        writer.close()

    server, upstream = await tcp_server(once)
    pool = Pool(upstream, PoolSettings())
    try:
        assert await get(pool) == (b"ok", True)
        # The close arrives while it is idle: it leaves the pool.
        await wait_for_async(lambda: not pool.idle_connections, PATIENCE, "the close seen")
        assert await get(pool) == (b"ok", True)
        assert server.count == 2
    finally:
        pool.close()
        await server.close()


@run
async def test_bytes_after_a_response_make_it_unclean() -> None:
    async def extra(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK + b"HTTP/1.1 200 OK\r\n")  # more than was asked
        await writer.drain()
        await reader.read()

    server, upstream = await tcp_server(extra)
    pool = Pool(upstream, PoolSettings())
    try:
        conn = await pool.acquire()
        conn.parser.start("GET")
        await conn.send(b"GET / HTTP/1.1\r\n\r\n", 5)
        data = b""
        while len(data) < len(OK) + 17:
            data += await conn.recv(5)
        conn.parser.feed(data)
        assert not conn.clean and not conn.parser.reusable
        pool.release(conn, reusable=True)  # the caller's word is not enough
        assert pool.open_connections == 0
    finally:
        pool.close()
        await server.close()


@run
async def test_max_connections_queues_then_times_out() -> None:
    server, upstream = await tcp_server(answer_each)
    pool = Pool(upstream, PoolSettings(max_connections=1, connect_timeout=0.3))
    try:
        held = await pool.acquire()
        with pytest.raises(UpstreamTimeoutError, match="busy"):
            await pool.acquire()
        waiting = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        pool.release(held, reusable=True)
        assert await asyncio.wait_for(waiting, 5) is held
        pool.release(held, reusable=True)
        assert server.count == 1
    finally:
        pool.close()
        await server.close()


@run
async def test_connect_refused() -> None:
    port = free_port()  # nobody listens there
    pool = Pool(Upstream("127.0.0.1", port), PoolSettings())
    with pytest.raises(UpstreamConnectError):
        await pool.acquire()
    assert pool.open_connections == 0


@run
async def test_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server, upstream = await tcp_server(silent)
    pool = Pool(upstream, PoolSettings())
    try:
        conn = await pool.acquire()
        await conn.send(b"GET / HTTP/1.1\r\n\r\n", 5)
        with pytest.raises(UpstreamTimeoutError):
            await conn.recv(0.1)
        pool.release(conn, reusable=False)
        assert pool.open_connections == 0
    finally:
        pool.close()
        await server.close()


@run
async def test_reading_stops_past_the_high_water_mark() -> None:
    sent = asyncio.Event()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"x" * (8 << 20))
        await writer.drain()
        sent.set()
        await reader.read()

    server, upstream = await tcp_server(flood)
    pool = Pool(upstream, PoolSettings(high_water=64 * 1024))
    try:
        conn = await pool.acquire()
        await conn.send(b"GET / HTTP/1.1\r\n\r\n", 5)
        # The upstream cannot finish writing 8 MiB: we stopped reading.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sent.wait(), 0.5)
        assert conn._queued < 2 << 20
        total = 0
        while total < 8 << 20:
            total += len(await conn.recv(5))
        await asyncio.wait_for(sent.wait(), 5)
        pool.release(conn, reusable=False)
    finally:
        pool.close()
        await server.close()


@run
async def test_idle_connections_expire() -> None:
    server, upstream = await tcp_server(answer_each)
    pool = Pool(upstream, PoolSettings(idle_timeout=0.05))
    try:
        await get(pool)
        assert pool.idle_connections == 1
        await wait_for_async(lambda: not pool.idle_connections, PATIENCE, "the idle timeout")
        assert pool.open_connections == 0
    finally:
        pool.close()
        await server.close()


@run
async def test_a_bursts_surplus_stays_a_while() -> None:
    # More than max_idle come back at once: all are kept, so the next burst reuses
    # them; the surplus closes once it stayed idle surplus_grace seconds, the
    # oldest first (the one returned last stays).
    server, upstream = await tcp_server(answer_each)
    pool = Pool(upstream, PoolSettings(max_idle=1, surplus_grace=0.05))
    try:
        burst = [await pool.acquire() for _ in range(3)]
        for conn in burst:
            pool.release(conn, reusable=True)
        assert pool.idle_connections == 3
        again = [await pool.acquire() for _ in range(3)]
        assert set(again) == set(burst)  # no new connection
        for conn in again:
            pool.release(conn, reusable=True)
        await wait_for_async(lambda: pool.open_connections == 1, PATIENCE, "the surplus closed")
        assert pool.idle_connections == 1
        assert await pool.acquire() is again[-1]
    finally:
        pool.close()
        await server.close()


@run
async def test_max_idle_zero_keeps_none() -> None:
    server, upstream = await tcp_server(answer_each)
    pool = Pool(upstream, PoolSettings(max_idle=0))
    try:
        assert await get(pool) == (b"ok", True)
        assert pool.idle_connections == 0
        assert pool.open_connections == 0
    finally:
        pool.close()
        await server.close()


MakeWait = Callable[[asyncio.AbstractEventLoop], Wait]


@pytest.fixture(params=["python", "c"])
def make_wait(request: pytest.FixtureRequest) -> MakeWait:
    """Each implementation of the connection's Wait: client.PyWait, and core/_taskwait.c's
    (the compiled build's; absent from a pure-Python build)."""
    if request.param == "python":
        return client.PyWait
    made = client._C_WAIT
    if made is None:
        pytest.skip("a pure-Python build has no C Wait")

    def make(loop: asyncio.AbstractEventLoop) -> Wait:
        return made(loop, finished_future(loop), client._CURRENT_TASK)

    return make


def test_new_wait_is_the_builds_own() -> None:
    # The compiled build's connections wait on core/_taskwait.c's Wait, the pure build's
    # on PyWait.
    async def main() -> None:
        wait = client.new_wait(asyncio.get_running_loop())
        if client._C_WAIT is None:
            assert type(wait) is client.PyWait
        else:
            assert type(wait) is client._C_WAIT

    asyncio.run(main())


def test_wait_woken_before_awaited_cancelled_and_awaited(make_wait: MakeWait) -> None:
    # The connection's Wait: woken before a task awaits it (the await returns at
    # once), cancelled (the wake that follows leaves it cancelled), woken now
    # (the task runs before wake returns) and woken at the next turn; armed again
    # for each, one object.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wait = make_wait(loop)
        assert wait.done()
        wait.arm()
        assert not wait.done()
        wait.wake(True)
        assert wait.done() and wait.result() is None
        await wait  # ended: no suspension
        wait.arm()
        assert wait.cancel("gone")
        wait.wake(True)
        assert wait.cancelled()
        with pytest.raises(asyncio.CancelledError):
            wait.result()
        steps: list[str] = []

        async def waiting() -> None:
            await wait
            steps.append("woken")

        for now in (True, False):
            wait.arm()
            task = loop.create_task(waiting())
            await asyncio.sleep(0)
            assert not task.done()

            def read(now: bool = now) -> None:
                wait.wake(now)
                steps.append("read")

            loop.call_soon(read)  # as the protocol's read: a callback outside any task
            await task
        assert steps == ["woken", "read", "read", "woken"]

    asyncio.run(main())


def test_wait_woken_now_from_inside_a_task_wakes_its_task_at_the_next_turn(
    make_wait: MakeWait,
) -> None:
    # wake(True) whose caller turns out to be a task (a transport that hands the
    # protocol its last bytes from within a call the task made: a TLS transport's
    # close): the waiting task cannot run inside that one, so it is woken at the
    # loop's next turn, as by wake(False), and not lost. Before the guard, the
    # wake-up ran at once: asyncio refused to enter the task (RuntimeError in the
    # caller) and the waiting task was never woken.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wait = make_wait(loop)
        wait.arm()
        steps: list[str] = []

        async def waiting() -> None:
            await wait
            steps.append("woken")

        task = loop.create_task(waiting())
        await asyncio.sleep(0)
        assert not task.done()
        wait.wake(True)  # from this task
        steps.append("returned")
        await asyncio.wait({task}, timeout=PATIENCE)
        assert steps == ["returned", "woken"]

    _run_leaving_tasks(main())


def test_connection_read_from_inside_a_task_wakes_the_waiting_request() -> None:
    # The same through the protocol: buffer_updated called while another task
    # runs (as a TLS transport's close would) wakes the request waiting for the
    # bytes, which then has them.
    async def main() -> None:
        async with _lent(PoolSettings()) as conn:
            waiter = conn.waiter(PATIENCE)
            task = asyncio.get_running_loop().create_task(_await(waiter))
            await asyncio.sleep(0)
            assert not task.done()
            view = conn.get_buffer(-1)
            view[:2] = b"ok"
            conn.buffer_updated(2)  # from this task, not a loop callback
            await asyncio.wait({task}, timeout=PATIENCE)
            assert task.done()
            assert conn.taken(PATIENCE) == b"ok"

    _run_leaving_tasks(main())


@contextlib.asynccontextmanager
async def _lent(settings: PoolSettings) -> AsyncIterator[Connection]:
    # A connection of a pool of ``settings`` to a server answering each request,
    # closed after, with the pool and the server.
    server, upstream = await tcp_server(answer_each)
    pool = Pool(upstream, settings)
    try:
        conn = await pool.acquire()
        yield conn
        conn.close()
    finally:
        pool.close()
        await server.close()


def test_reads_of_every_size_are_copied_out_whole() -> None:
    # What each read puts in the pool's shared buffer is copied out at once
    # (buffer_updated: _fields.c's take in the compiled build, a view's tobytes
    # otherwise), whatever its size and whatever the read before it left there.
    async def main() -> None:
        async with _lent(PoolSettings(high_water=2048)) as conn:
            for size in (2, 2, 1, 5, 2048, 3, 7):
                data = bytes((size + i) % 256 for i in range(size))
                view = conn.get_buffer(-1)
                view[:size] = data
                conn.buffer_updated(size)
                assert conn.take() == data

    _run_leaving_tasks(main())


def test_reads_before_a_take_come_out_joined_in_order() -> None:
    # Reads the handler did not take yet queue up (the first in a slot of its own,
    # the rest after it) and come out as one piece, in order; the connection is
    # not clean while any waits.
    async def main() -> None:
        async with _lent(PoolSettings(high_water=2048)) as conn:
            for pieces in ([b"a"], [b"a", b"bc"], [b"a", b"bc", b"def", b"g"]):
                for piece in pieces:
                    view = conn.get_buffer(-1)
                    view[: len(piece)] = piece
                    conn.buffer_updated(len(piece))
                    assert not conn.clean
                assert conn.take() == b"".join(pieces)
                assert conn.take() is None
                assert conn.clean

    _run_leaving_tasks(main())


def test_take_in_c_copies_out_of_a_bytearray_and_refuses_the_rest() -> None:
    if client._C_TAKE is None:
        pytest.skip("a pure-Python build has no C take")
    take = client._C_TAKE
    buffer = bytearray(b"abcdef")
    got = take(buffer, 3)
    assert type(got) is bytes and got == b"abc"
    assert take(buffer, 0) == b"" and take(buffer, 6) == b"abcdef"
    for size in (-1, 7):
        with pytest.raises(ValueError):
            take(buffer, size)
    with pytest.raises(TypeError):
        take(memoryview(buffer), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        take(bytes(buffer), 1)  # type: ignore[arg-type]


def _run_leaving_tasks(main: Coroutine[Any, Any, None]) -> None:
    # ``main`` on a loop of its own, closed without waiting for the tasks left: a
    # task whose wake-up was lost fails the test instead of hanging asyncio.run's
    # clean-up (which waits for every task it cancels).
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        loop.close()


def test_wait_cancelled_while_a_task_waits(make_wait: MakeWait) -> None:
    # The task cancelled while it waits gets CancelledError with its message; a
    # wake after that changes nothing.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wait = make_wait(loop)
        wait.arm()
        task = loop.create_task(_await(wait))
        await asyncio.sleep(0)
        task.cancel("bye")
        wait.wake(True)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert wait.cancelled()

    asyncio.run(main())


async def _await(wait: Wait) -> None:
    await wait


def test_wait_under_asyncios_python_task(make_wait: MakeWait) -> None:
    # asyncio's Python Task (where its C module is absent) calls the wait's
    # methods by keyword, cancel(msg=...) among them: the same outcomes.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wait = make_wait(loop)
        python_task = asyncio.tasks._PyTask  # type: ignore[attr-defined]
        steps: list[str] = []

        async def waiting() -> None:
            await wait
            steps.append("woken")

        wait.arm()
        task = python_task(waiting(), loop=loop)
        await asyncio.sleep(0)
        loop.call_soon(wait.wake, True)
        await task
        wait.arm()
        task = python_task(_await(wait), loop=loop)
        await asyncio.sleep(0)
        task.cancel("bye")
        with pytest.raises(asyncio.CancelledError, match="bye"):
            await task
        assert wait.cancelled() and steps == ["woken"]

    asyncio.run(main())


def test_wait_has_one_waiter_and_checks_its_arguments(make_wait: MakeWait) -> None:
    # One task waits at a time: a second waiter is a bug and raises; a callback
    # added to an ended wait is called soon, with the wait; an unknown keyword is
    # refused (the C type reads its keyword itself).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wait = make_wait(loop)
        seen: list[object] = []
        wait.add_done_callback(seen.append)  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        assert seen == [wait]
        wait.arm()
        wait.add_done_callback(seen.append)  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError):
            wait.add_done_callback(seen.append)  # type: ignore[attr-defined]
        with pytest.raises(TypeError):
            wait.add_done_callback(seen.append, contxt=None)  # type: ignore[attr-defined]
        assert wait.remove_done_callback(seen.append) == 1  # type: ignore[attr-defined]
        assert wait.remove_done_callback(seen.append) == 0  # type: ignore[attr-defined]
        with pytest.raises(asyncio.InvalidStateError):
            wait.result()
        assert wait.cancel(msg="stop")
        assert not wait.cancel()
        with pytest.raises(asyncio.CancelledError, match="stop"):
            await wait  # cancelled before it was awaited
        await asyncio.sleep(0)
        assert seen == [wait]  # removed: not called

    asyncio.run(main())


def test_c_wait_answers_the_tasks_look_ups() -> None:
    # What asyncio's task reads of a wait by name at each wait, answered by the C
    # type before its generic look-up: the same values the generic way gives.
    made = client._C_WAIT
    if made is None:
        pytest.skip("a pure-Python build has no C Wait")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        wait: Any = made(loop, finished_future(loop), client._CURRENT_TASK)
        assert wait._asyncio_future_blocking is False
        wait._asyncio_future_blocking = True
        assert getattr(wait, "_asyncio_future_blocking") is True  # noqa: B009
        wait._asyncio_future_blocking = False
        assert wait._asyncio_future_blocking is False
        with pytest.raises(TypeError):
            wait._asyncio_future_blocking = 1
        assert wait._loop is loop and wait.get_loop() is loop
        assert asyncio.isfuture(wait)
        assert asyncio.futures._get_loop(wait) is loop  # type: ignore[attr-defined]
        assert wait.add_done_callback is wait.add_done_callback  # bound once
        with pytest.raises(AttributeError):
            wait.no_such_attribute  # noqa: B018
        with pytest.raises(AttributeError):
            wait.arm = None

    asyncio.run(main())
