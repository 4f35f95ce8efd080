"""core.timers.timer_by: one timer kept while it fires in time, replaced when a
nearer deadline comes, on asyncio's loop and uvloop's alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop

from colonnade.core.timers import timer_by

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def loop(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoop:
    made = LOOPS[request.param]()
    request.addfinalizer(made.close)
    return made


def test_a_timer_that_fires_in_time_is_kept_and_a_nearer_deadline_replaces_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    fired: list[str] = []
    now = loop.time()
    first = timer_by(loop, None, now + 10, lambda: fired.append("first"))
    assert timer_by(loop, first, now + 20, lambda: fired.append("later")) is first
    nearer = timer_by(loop, first, now + 0.01, lambda: fired.append("nearer"))
    assert nearer is not first and first.cancelled()
    loop.run_until_complete(asyncio.sleep(0.05))
    assert fired == ["nearer"]


def test_a_moment_already_past_fires_at_once_and_is_kept(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """uvloop answers a moment already past with a plain Handle, which has no
    ``when``: the next deadline keeps it (it runs on the next turn), not an
    AttributeError in the connection's callback."""
    fired: list[str] = []
    past = timer_by(loop, None, loop.time() - 1, lambda: fired.append("past"))
    assert timer_by(loop, past, loop.time() + 10, lambda: fired.append("next")) is past
    loop.run_until_complete(asyncio.sleep(0))
    assert fired == ["past"]
