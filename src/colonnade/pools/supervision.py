"""Supervision: the 100 ms tick that keeps every pool's workers healthy, and rapid-fail.

How this works
--------------
Every ``TICK`` the supervisor looks at each worker and pool and acts through
``Workers`` (kill, drain, recycle, start):

- a worker STARTING for longer than ``startup_time_limit`` is killed (a failure);
  one DRAINING past its deadline is killed (not a failure);
- a serving worker is pinged every ``ping_interval``; no pong within
  ``ping_response_time`` and it is killed (a failure);
- a ready worker is recycled when :func:`recycle_reason` names a trigger (uptime,
  requests, resident or private memory), and every worker of a pool when a time
  of its ``schedule`` has passed (:func:`crossed`);
- a pool none of whose workers answered a request for ``idle_timeout`` is drained
  (``start = "always"``: recycled instead);
- then the pool gets its missing workers, and its queue whatever became ready.

Failures are counted as they happen (:meth:`Supervisor.failure`: a worker that
could not start, died or hung): the next start backs off while they repeat, and
``max_crashes`` of them within ``interval`` stop the pool (rapid-fail protection).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from typing import TYPE_CHECKING

from colonnade.config.schema import PoolConfig
from colonnade.pools import ipc
from colonnade.pools.pool import Pool, PoolState, WorkerProcess, WorkerState

if TYPE_CHECKING:
    from colonnade.pools.master import Master

log = logging.getLogger("colonnade.pools")

TICK = 0.1


class Supervisor:
    """The periodic checks of every pool, and the failure count of each."""

    def __init__(self, master: Master) -> None:
        self.master = master

    async def run(self) -> None:
        """Check every pool each ``TICK``, until cancelled."""
        while True:
            await asyncio.sleep(TICK)
            try:
                now = time.monotonic()
                wall = time.time()
                for pool in list(self.master.pools.values()):
                    self.supervise(pool, now, wall)
            except Exception:
                log.exception("supervision tick failed")

    def supervise(self, pool: Pool, now: float, wall: float) -> None:
        """One tick for ``pool`` (``now`` monotonic, ``wall`` the time of day)."""
        master = self.master
        workers = master.workers
        settings = pool.settings
        for worker in list(pool.workers):
            if (
                worker.state is WorkerState.STARTING
                and now - worker.started > settings.startup_time_limit
            ):
                log.error(
                    "pool %s: worker %d not ready after %.0fs; killing it",
                    pool.name,
                    worker.pid,
                    settings.startup_time_limit,
                )
                workers.kill(worker, expected=False)
            elif worker.state is WorkerState.DRAINING and now > worker.kill_at:
                log.warning(
                    "pool %s: worker %d did not stop in time; killing it", pool.name, worker.pid
                )
                workers.kill(worker, expected=True)
                worker.kill_at = now + 60
            elif worker.serving:
                self._check_health(worker, now)
        if master.stopping or pool.state is PoolState.STOPPED:
            return
        self._check_idle(pool, now)
        self._check_schedule(pool, wall)
        workers.ensure(pool)
        if pool.queue:
            master.frontdoor.flush_queue(pool)

    def _check_health(self, worker: WorkerProcess, now: float) -> None:
        settings = worker.pool.settings
        if settings.ping and worker.channel is not None:
            if worker.ping_sent is not None:
                if now - worker.ping_sent > settings.ping_response_time:
                    log.error(
                        "pool %s: worker %d did not answer a ping in %.0fs; killing it",
                        worker.pool.name,
                        worker.pid,
                        settings.ping_response_time,
                    )
                    worker.ping_sent = None
                    self.master.workers.kill(worker, expected=False)
                    return
            elif now - worker.last_ping >= settings.ping_interval:
                worker.ping_id += 1
                worker.ping_sent = worker.last_ping = now
                worker.channel.send(ipc.Ping(worker.ping_id))
        if worker.state is WorkerState.RETIRING:
            return
        reason = recycle_reason(worker, settings, now)
        if reason is not None:
            self.master.workers.recycle_worker(worker, reason)

    def _check_idle(self, pool: Pool, now: float) -> None:
        timeout = pool.settings.idle_timeout
        ready = pool.ready()
        if not timeout or not ready or pool.queue:
            return
        if any(now - w.last_activity < timeout or w.active for w in ready):
            return
        log.info(
            "pool %s: no request for %.0fs; stopping its %d worker(s)",
            pool.name,
            timeout,
            len(ready),
        )
        workers = self.master.workers
        for worker in ready:
            if pool.settings.start == "always":
                workers.recycle_worker(worker, "idle timeout")
            else:
                workers.drain(worker, migrate=True)
        if pool.settings.start != "always":
            pool.demand = False

    def _check_schedule(self, pool: Pool, wall: float) -> None:
        schedule = pool.settings.recycling.schedule
        mark, pool.schedule_mark = pool.schedule_mark, wall
        if not schedule or not pool.workers:
            return
        for text in schedule:
            if crossed(text, mark, wall):
                self.master.workers.recycle(pool, f"schedule {text}")
                return

    def failure(self, pool: Pool, reason: str) -> None:
        """A worker of ``pool`` failed: back off its restart; stop the pool if they pile up."""
        now = time.monotonic()
        rapid = pool.settings.rapid_fail
        pool.failures.append(now)
        while pool.failures and now - pool.failures[0] > rapid.interval:
            pool.failures.popleft()
        # Restarting at once after a failure would spin: back off while they repeat.
        pool.next_spawn = now + min(0.1 * 2 ** (len(pool.failures) - 1), 5.0)
        if (
            rapid.enabled
            and len(pool.failures) >= rapid.max_crashes
            and pool.state is not PoolState.STOPPED
        ):
            log.error(
                "pool %s: %d failures in %.0fs (last: %s); rapid-fail protection stops the "
                "pool: it answers 503 until `colonnade start %s`",
                pool.name,
                len(pool.failures),
                rapid.interval,
                reason,
                pool.name,
            )
            self.master.stop_pool(pool, "rapid-fail protection")


def recycle_reason(worker: WorkerProcess, settings: PoolConfig, now: float) -> str | None:
    """Why ``worker`` is due for a recycle (uptime, requests, memory), or None."""
    recycling = settings.recycling
    if recycling.time and now - worker.ready_at >= recycling.time:
        return f"uptime {recycling.time:.0f}s"
    if recycling.requests and worker.requests >= recycling.requests:
        return f"{worker.requests} requests"
    if (recycling.memory or recycling.private_memory) and now - worker.memory_read >= 1.0:
        worker.memory_read = now
        read_memory(worker)
        if recycling.memory and worker.rss >= recycling.memory:
            return f"memory {worker.rss} bytes"
        if recycling.private_memory and worker.private >= recycling.private_memory:
            return f"private memory {worker.private} bytes"
    return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_memory(worker: WorkerProcess) -> None:
    """RSS (VmRSS), private memory (Private_Clean + Private_Dirty) and CPU time
    (utime + stime) from /proc."""
    found = process_memory(worker.pid)
    if found is not None:
        worker.rss, worker.private, worker.cpu = found


def process_memory(pid: int) -> tuple[int, int, float] | None:
    """RSS and private memory in bytes, and CPU seconds, of process ``pid`` (None:
    gone, or /proc unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # Fields after the command name (which may hold spaces): state is the
            # first, utime and stime the 12th and 13th.
            fields = f.read().rpartition(b")")[2].split()
        cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        rss = 0
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                    break
        private = 0
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                    private += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return rss, private, cpu


def crossed(text: str, since: float, now: float) -> bool:
    """Whether local time of day ``text`` (HH:MM[:SS]) fell in (since, now]."""
    parts = [int(p) for p in text.split(":")]
    hour, minute, second = [*parts, 0][:3]
    day = datetime.datetime.fromtimestamp(now).date()
    for offset in (0, -1):
        at = datetime.datetime.combine(
            day + datetime.timedelta(days=offset), datetime.time(hour, minute, second)
        ).timestamp()
        if since < at <= now:
            return True
    return False
