"""The end of a FastCGI exchange stops its body pump (``stop_pump``); a cancellation
of the request's own task that arrives meanwhile is not lost (it used to be swallowed
with the pump's)."""

from __future__ import annotations

import asyncio

import pytest

from colonnade.handlers.fastcgi.handler import stop_pump


async def _slow_to_stop(release: asyncio.Event) -> None:
    # A pump that takes a while to stop once cancelled (a send under way).
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await release.wait()
        raise


def test_the_pump_is_stopped_and_its_cancellation_stays_its_own() -> None:
    async def main() -> None:
        release = asyncio.Event()
        pump = asyncio.create_task(_slow_to_stop(release))
        try:
            await asyncio.sleep(0)
            end = asyncio.create_task(stop_pump(pump))
            await asyncio.sleep(0)
        finally:
            release.set()
        await end  # no error: the pump's cancellation ends with it
        assert pump.cancelled()

    asyncio.run(main())


def test_a_cancellation_of_the_request_while_the_pump_stops_goes_on() -> None:
    async def main() -> None:
        release = asyncio.Event()
        pump = asyncio.create_task(_slow_to_stop(release))
        try:
            await asyncio.sleep(0)
            end = asyncio.create_task(stop_pump(pump))
            await asyncio.sleep(0)  # end waits for the pump
            end.cancel()  # the request is cancelled (its client went away)
            await asyncio.sleep(0)
        finally:
            release.set()
        with pytest.raises(asyncio.CancelledError):
            await end
        assert end.cancelled()

    asyncio.run(main())
