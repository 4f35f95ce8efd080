"""The end of a FastCGI exchange stops its body pump (``stop_pump``); a cancellation
of the request's own task that arrives meanwhile is not lost (it used to be swallowed
with the pump's)."""

from __future__ import annotations

import asyncio

from colonnade.handlers.fastcgi.handler import stop_pump


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
