"""The connection task's wait between requests in the compiled build
(transport.connection.Waker, and core/_taskwait.c's Wait that new_waker makes in
its place where built): asyncio's future protocol as a task uses it, on both
loops the server runs, each implementation alike. (The pure build waits on a
future of the loop; the connection's tests run whichever the install is.)"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from colonnade import buildinfo
from colonnade.core.taskwait import finished_future
from colonnade.transport import connection
from colonnade.transport.connection import Rewaiting, Waker

Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    if request.param == "uvloop":
        return lambda coro: uvloop.run(coro)
    return lambda coro: asyncio.run(coro)


#: How the test at hand makes its waker (see ``kind``).
_MAKE: list[Callable[[asyncio.AbstractEventLoop], Any]] = []


@pytest.fixture(params=["python", "c"], autouse=True)
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each implementation: the Waker, and core/_taskwait.c's Wait in its place
    (connection.new_waker's in the compiled build; absent from a pure build)."""
    made = connection._C_WAIT
    if request.param == "c":
        if made is None:
            pytest.skip("a pure-Python build has no C wait")
        _MAKE.append(lambda loop: made(loop, finished_future(loop), connection._CURRENT_TASK))
    else:
        _MAKE.append(Waker)
    try:
        yield request.param
    finally:
        _MAKE.clear()


def _waker() -> Any:  # (a Waker or the C wait: the same calls)
    return _MAKE[0](asyncio.get_running_loop())


def test_new_waker_is_the_builds_own() -> None:
    # The compiled build's connections wait on the C wait, the pure build's on a
    # future (new_waker's Waker where the C wait is absent).
    async def main() -> None:
        waker = connection.new_waker(asyncio.get_running_loop())
        made = connection._C_WAIT
        assert type(waker) is (Waker if made is None else made)

    asyncio.run(main())


async def _wait(waker: Rewaiting, seen: list[object]) -> None:
    waker.arm()
    try:
        seen.append(await waker)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise


def test_a_wake_is_scheduled_for_the_loops_next_turn(run: Runner) -> None:
    async def main() -> None:
        waker = _waker()
        seen: list[object] = []
        task = asyncio.create_task(_wait(waker, seen))
        await asyncio.sleep(0)  # the task waits
        assert not waker.done()
        after: list[object] = []

        def callback() -> None:  # as data_received: a loop callback, no task running
            waker.set_result(True)
            after.extend(seen)

        asyncio.get_running_loop().call_soon(callback)
        await task
        assert after == []  # not resumed within set_result()
        assert seen == [True]
        assert waker.done() and waker.result() is True

    run(main())


@pytest.mark.parametrize("woken", [False, True])
def test_a_cancelled_task_stops_waiting(run: Runner, woken: bool) -> None:
    async def main() -> None:
        waker = _waker()
        seen: list[object] = []
        task = asyncio.create_task(_wait(waker, seen))
        await asyncio.sleep(0)
        if woken:
            # The wake-up is scheduled (handed a finished future), and the task is
            # cancelled before it runs: cancelled all the same.
            waker.set_result(True)
        task.cancel("bye")
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == ["cancelled"]
        if woken:
            assert waker.result() is True and not waker.cancel()
            return
        assert waker.cancelled() and not waker.cancel()
        with pytest.raises(asyncio.CancelledError):
            waker.result()
        waker.set_result(True)  # too late: nothing happens
        assert waker.cancelled()

    run(main())


def test_a_wait_that_ended_before_the_await_returns_at_once(run: Runner) -> None:
    async def main() -> None:
        waker = _waker()
        waker.arm()
        waker.set_result(True)
        assert await waker is True
        # armed again, it waits again
        seen: list[object] = []
        task = asyncio.create_task(_wait(waker, seen))
        await asyncio.sleep(0)
        assert seen == [] and not waker.done()
        waker.set_result(False)
        await task
        assert seen == [False]

    run(main())


def test_callbacks_as_a_future_calls_them(run: Runner) -> None:
    async def main() -> None:
        waker = _waker()
        waker.arm()
        called: list[object] = []
        waker.add_done_callback(called.append)
        with pytest.raises(RuntimeError):
            waker.add_done_callback(called.append)  # one waiter: its task
        assert waker.remove_done_callback(called.append) == 1
        assert waker.remove_done_callback(called.append) == 0
        with pytest.raises(asyncio.InvalidStateError):
            waker.result()
        waker.set_result(True)
        assert waker.exception() is None
        waker.add_done_callback(called.append)  # done: called soon
        assert called == []
        await asyncio.sleep(0)
        assert called == [waker]

    run(main())


def test_the_connection_knows_which_build_runs_it() -> None:
    # The compiled build waits on a Waker, the pure one on a future of the loop.
    compiled = "colonnade.transport.connection" in buildinfo.compiled_modules()
    assert connection._COMPILED is compiled


def test_the_wake_up_is_handed_a_finished_future(run: Runner) -> None:
    # What the task's wake-up reads in C (a future's result) instead of the Waker's
    # result() by name; the await still gives the value.
    async def main() -> None:
        waker = _waker()
        waker.arm()
        handed: list[object] = []
        waker.add_done_callback(handed.append)  # where the waiting task's wake-up goes
        waker.set_result(False)
        await asyncio.sleep(0)
        assert len(handed) == 1
        future = handed[0]
        assert isinstance(future, asyncio.Future)
        assert future.done() and future.result() is None
        assert waker.result() is False

    run(main())


def test_a_closed_connections_wait_is_freed_without_the_collector() -> None:
    # The C wait binds two of its methods once, each holding it: a cycle, which a
    # closed connection's wait must not leave for the collector's full pass (the
    # connection lets go of them: review17 found 10 closed connections leaving 10
    # waits). Whatever the build's wait (parametrized by ``kind``, used or not), a
    # real connection's own.
    from tests.fuzz.served import LOOP, STATE, Wire

    async def one(n: int) -> None:
        wire = Wire()
        conn = connection.HttpConnection(STATE)
        wire.protocol = conn
        conn.connection_made(wire)
        # A path of its own, answered 404: never a response cache's hit (answered
        # as it arrives, with no task, so no wait), whatever ran before.
        conn.data_received(b"GET /not-here-%d HTTP/1.1\r\nHost: s\r\n\r\n" % n)
        for _ in range(10):
            await asyncio.sleep(0)
        assert conn._wake is not None  # waiting for the next request
        conn.connection_lost(None)
        for _ in range(10):
            await asyncio.sleep(0)
        wire.protocol = None  # the harness's own cycle (a real transport lets go)

    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        for n in range(10):
            LOOP.run_until_complete(one(n))
        gc.collect()
        left = sorted({type(o).__qualname__ for o in gc.garbage})
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        gc.enable()
    assert left == [], f"cyclic garbage per closed connection: {left}"
