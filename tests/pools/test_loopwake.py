"""The eventfd write and read with which a thread wakes a worker's event loop
(core/loopwake.py): os's in the pure build, colonnade/_libc.c's (the GIL held over the
system call) in the compiled one, installed with the process's event loop."""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from colonnade.core import loopwake

Pair = tuple[Callable[[int, int], None], Callable[[int], int]]

pytestmark = pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux's")


def _native() -> ModuleType | None:
    try:
        return importlib.import_module("colonnade._libc")
    except ImportError:  # the pure-Python build
        return None


def _pairs() -> list[Pair]:
    pairs: list[Pair] = [(os.eventfd_write, os.eventfd_read)]
    native = _native()
    if native is not None:
        pairs.append((native.eventfd_write, native.eventfd_read))
    return pairs


@pytest.fixture
def restored() -> Iterator[None]:
    before = loopwake.eventfd_write, loopwake.eventfd_read
    yield
    loopwake.eventfd_write, loopwake.eventfd_read = before


def test_the_process_loop_installs_the_builds_pair(restored: None) -> None:
    from colonnade.handlers.wsgi.bridge import Outbox
    from colonnade.pools.single import new_event_loop

    loopwake.install(os.eventfd_write, os.eventfd_read)
    loop = new_event_loop()
    try:
        native = _native()
        if native is None:
            assert loopwake.eventfd_write is os.eventfd_write
            assert loopwake.eventfd_read is os.eventfd_read
        else:  # the compiled build: the GIL stays held over the system call
            assert loopwake.eventfd_write is native.eventfd_write
            assert loopwake.eventfd_read is native.eventfd_read
        # What a WSGI outbox made on this loop wakes it with.
        outbox = Outbox(loop)
        assert outbox._fd >= 0
        assert outbox._signal is loopwake.eventfd_write
        assert outbox._read is loopwake.eventfd_read
        outbox.close()
    finally:
        loop.close()


@pytest.mark.parametrize("pair", _pairs(), ids=lambda pair: pair[0].__module__ or "?")
def test_each_pair_reads_and_writes_a_non_blocking_counter_as_os_does(pair: Pair) -> None:
    write, read = pair
    fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):  # nothing written: EAGAIN, at once
            read(fd)
        write(fd, 1)
        write(fd, 2)
        assert read(fd) == 3  # the sum, and the counter reset
        with pytest.raises(BlockingIOError):
            read(fd)
        # Written from other threads while this one reads: nothing lost.
        threads = [threading.Thread(target=write, args=(fd, 1)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert read(fd) == 8
    finally:
        os.close(fd)
    # A system call's error raises OSError: EBADF, the descriptor not open that way.
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError):
            write(fd, 1)
    finally:
        os.close(fd)
    fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError):
            read(fd)
    finally:
        os.close(fd)
    with pytest.raises((TypeError, ValueError, OverflowError)):
        write(-1, 1)
    with pytest.raises(TypeError):
        read("3")  # type: ignore[arg-type]


def test_many_threads_waking_one_loop_lose_no_wake_up(restored: None) -> None:
    """Application threads' commands, answered and final, reach their tasks through
    one outbox on the process's loop (the build's pair): 16 threads at once, 200
    round trips each, every one delivered."""
    import asyncio

    from colonnade.errors import ClientDisconnectedError
    from colonnade.handlers.wsgi.bridge import DONE, WRITE, Bridge, Outbox
    from colonnade.pools.single import new_event_loop
    from tests.support.wait import PATIENCE

    threads, trips = 16, 200
    loop = new_event_loop()
    try:

        def application(bridge: Bridge) -> None:
            try:
                for i in range(trips):
                    bridge.call(WRITE, i)  # waits for the loop's answer
            except ClientDisconnectedError:  # the test failed: its tasks were cancelled
                return
            bridge.post((DONE, "whole"))

        async def serve(bridge: Bridge) -> int:
            seen = 0
            while True:
                op, arg = await bridge
                if op == DONE:
                    return seen
                assert arg == seen
                seen += 1
                bridge.answer(None)

        async def run() -> list[int]:
            outbox = Outbox(asyncio.get_running_loop())
            assert outbox._fd >= 0  # woken through the eventfd
            bridges = [Bridge(outbox) for _ in range(threads)]
            tasks = [asyncio.ensure_future(serve(bridge)) for bridge in bridges]
            # Daemons: where a wake-up is lost, a thread waits for its answer forever.
            workers = [
                threading.Thread(target=application, args=(b,), daemon=True) for b in bridges
            ]
            for worker in workers:
                worker.start()
            try:
                return await asyncio.wait_for(asyncio.gather(*tasks), PATIENCE)
            finally:
                deadline = time.monotonic() + 5
                for worker in workers:
                    worker.join(max(0.0, deadline - time.monotonic()))
                outbox.close()

        assert loop.run_until_complete(run()) == [trips] * threads
    finally:
        loop.close()
