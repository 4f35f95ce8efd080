"""Where this process is in its life, for what answers health probes.

A worker process is *draining* once its stop or drain has begun (SIGTERM on the
server, a recycle, an idle shutdown, a stopped pool): it finishes what it has
but should get no new work. The pool layer says so (:func:`begin_drain`); modules
read it (:func:`draining`) without importing the pool layer, which sits above
them. The other way, a module may ask the pool layer to go on serving for a while
once a stop begins (:func:`set_stop_delay`): time for a load balancer that polls
readiness to take this instance out before its listeners close.
"""

from __future__ import annotations

import asyncio

_draining = False
_stop_delay = 0.0


def draining() -> bool:
    """Whether this process has begun to drain or stop (it takes no new work)."""
    return _draining


def begin_drain() -> None:
    """Mark this process as draining (it does not come back: a process drains once)."""
    global _draining
    _draining = True


def stop_delay() -> float:
    """Seconds a graceful stop keeps serving, readiness failing, before it closes
    the listeners (0: none)."""
    return _stop_delay


def set_stop_delay(seconds: float) -> None:
    """Set :func:`stop_delay` (the ``http.health`` module does, from its settings)."""
    global _stop_delay
    _stop_delay = seconds


async def delay_stop() -> None:
    """Wait :func:`stop_delay` seconds, serving as usual (a graceful stop has begun)."""
    if _stop_delay > 0:
        await asyncio.sleep(_stop_delay)
