"""The end of a FastCGI exchange stops its body pump (``stop_pump``); a cancellation
of the request's own task that arrives meanwhile is not lost (it used to be swallowed
with the pump's)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from colonnade.handlers.fastcgi.handler import stop_pump
from colonnade.handlers.fastcgi.pool import Instance


async def _slow_to_stop(release: asyncio.Event) -> None:
    # A pump that takes a while to stop once cancelled (a send under way).
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await release.wait()
        raise


async def _stop(cancel_the_request: bool) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
    """(the pump, the task stopping it), once the pump has stopped; the stopping task is
    cancelled while it waits if ``cancel_the_request``."""
    release = asyncio.Event()
    pump = asyncio.create_task(_slow_to_stop(release))
    try:
        await asyncio.sleep(0)
        end = asyncio.create_task(stop_pump(pump))
        await asyncio.sleep(0)  # end waits for the pump
        if cancel_the_request:
            end.cancel()  # the request is cancelled (its client went away)
            await asyncio.sleep(0)
    finally:
        release.set()
    await asyncio.wait([end])
    return pump, end


def test_the_pump_is_stopped_and_its_cancellation_stays_its_own() -> None:
    pump, end = asyncio.run(_stop(cancel_the_request=False))
    assert pump.cancelled()
    assert end.result() is None  # no error: the pump's cancellation ends with it


def test_a_cancellation_of_the_request_while_the_pump_stops_goes_on() -> None:
    pump, end = asyncio.run(_stop(cancel_the_request=True))
    assert pump.cancelled()
    assert end.cancelled()


def test_a_cancellation_already_being_answered_is_not_raised_again() -> None:
    # The request's task was cancelled before it stops the pump (a timeout that
    # passed, being answered with a 504.1): that cancellation is not a new one.
    async def scenario() -> tuple[asyncio.Task[None], int]:
        release = asyncio.Event()
        release.set()
        pump = asyncio.create_task(_slow_to_stop(release))
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await stop_pump(pump)  # no error
        return pump, task.uncancel()

    pump, left = asyncio.run(scenario())
    assert pump.cancelled()
    assert left == 0


def test_a_read_waiting_when_its_connection_is_closed_fails_at_once() -> None:
    # The pool closed under a request (a reload past its deadline, the application
    # removed) disconnects its busy instances: a read waiting on one must end with
    # a failure (the request's 502/503 follows), not wait for bytes that never come.
    async def main() -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        inst = Instance(None, 0)
        inst.attach(ours)
        reading = asyncio.ensure_future(inst.recv(100, wait_first=True))
        await asyncio.sleep(0.01)
        assert not reading.done()
        inst.disconnect()
        with pytest.raises(OSError) as failed:
            await asyncio.wait_for(reading, 5)
        assert not isinstance(failed.value, TimeoutError)  # an OSError too
        theirs.close()

    asyncio.run(main())
