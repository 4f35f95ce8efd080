"""Timers that move lazily: one event-loop timer per connection, kept across the
waits of many requests instead of one armed and cancelled per wait.

How this works. Whoever waits with a deadline stores the deadline and asks
:func:`timer_by` for a timer that fires by then. A timer already armed for an
earlier moment is kept: when it fires, its callback sees the deadline has not
come, and arms again for it. Only a nearer deadline replaces the timer. The
transport's connections (``transport.connection``) and the reverse proxy's
upstream connections (``handlers.proxy.client``) arm theirs this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def timer_by(
    loop: asyncio.AbstractEventLoop,
    timer: asyncio.TimerHandle | None,
    when: float,
    callback: Callable[[], None],
) -> asyncio.TimerHandle:
    """A timer calling ``callback`` at ``when`` at the latest: ``timer`` if it fires
    by then already (the callback sees it is early and re-arms), else a new one, and
    ``timer`` cancelled. ``timer`` may be what uvloop's ``call_at`` gave for a
    moment already past: a ``Handle`` without ``when``, due at once."""
    if timer is not None:
        try:
            due = timer.when()
        except AttributeError:
            # uvloop answers call_at for a moment already past (to the millisecond)
            # with a plain Handle, run on the loop's next turn: by any deadline.
            return timer
        if due <= when:
            return timer
        timer.cancel()
    return loop.call_at(when, callback)
