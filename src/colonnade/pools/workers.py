"""Worker processes through their life: start, ready, messages, drain, exit, recycle.

How this works
--------------
:meth:`Workers.ensure` starts a pool's missing workers while it has demand (a
request is queued for it, or it starts ``always``) and is not stopped. A started
worker (``spawn.py``) is first sent ``ipc.Start``; it is STARTING until it
answers ``Ready``, then serves. The master learns of its exit through a pidfd
(:meth:`Workers._exited`): an exit it did not ask for is a failure, counted by
the supervisor's rapid-fail protection, and the worker is replaced.

A recycle is overlapped: the old worker is RETIRING (it still serves) while its
replacement starts, and only when the replacement is ready is the old one told
to drain (``ipc.Drain``: finish its requests within ``shutdown_time_limit``, hand
idle connections back). If the replacement never comes up, the old worker is
READY again. Without overlap the old worker drains first and the front door
holds connections until the new one is ready.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from colonnade.pipeline.monitor import ExecutingRequest
from colonnade.pools import ipc
from colonnade.pools.config import worker_count
from colonnade.pools.frontdoor import close_fd, is_client_socket
from colonnade.pools.pool import Pool, PoolState, WorkerProcess, WorkerState
from colonnade.pools.spawn import SpawnError, spawn

if TYPE_CHECKING:
    from colonnade.pools.master import Master

log = logging.getLogger("colonnade.pools")

#: How long a stopping worker may overrun ``shutdown_time_limit`` before SIGKILL.
KILL_GRACE = 2.0


#: Seconds a purge (or the request monitor) waits for the workers' answers (a
#: worker busy with a long synchronous task answers late; the purge still
#: happens there).
PURGE_WAIT = 5.0

#: Seconds a configuration write or ``colonnade reload`` waits for every worker to
#: confirm the new configuration before it answers (applied by the master, not yet
#: confirmed by all: a write answers 202, a reload names the workers).
SETTLE_WAIT = 30.0


class Workers:
    """Starts, talks to, drains, kills and replaces the worker processes of every pool."""

    def __init__(self, master: Master) -> None:
        self.master = master
        #: Questions asked of workers (a purge, the request monitor), by id: the
        #: future their answer completes.
        self._asked: dict[int, asyncio.Future[Any]] = {}
        self._ask_ids = itertools.count(1)
        #: Set whenever a worker's configuration may have settled (it reloaded,
        #: became ready or exited): what :meth:`settle` waits on.
        self._moved = asyncio.Event()
        #: (generation, why) of the latest configurations a worker did not take: it
        #: refused a reload, or a worker started with it failed to start.
        self.refusals: collections.deque[tuple[int, str]] = collections.deque(maxlen=64)

    def ensure(self, pool: Pool) -> None:
        """Start workers until the pool has its count (when it should run)."""
        master = self.master
        if master.stopping or pool.state is PoolState.STOPPED or not pool.demand:
            return
        if pool.name not in master.used:
            return
        missing = worker_count(pool.settings) - len(pool.live())
        if missing <= 0 or time.monotonic() < pool.next_spawn:
            return
        for _ in range(missing):
            if self.start(pool) is None:
                return

    def start(self, pool: Pool, replaces: WorkerProcess | None = None) -> WorkerProcess | None:
        """Start one worker of ``pool`` (taking over from ``replaces`` once ready)."""
        master = self.master
        listeners = master.frontdoor.owned_by(pool.name)
        assert master.shared is not None  # made before any worker starts
        try:
            proc, channel = spawn(pool, listeners, master.shared.fd)
        except SpawnError as exc:
            log.error("pool %s: cannot start a worker: %s", pool.name, exc)
            master.supervisor.failure(pool, f"cannot start a worker: {exc}")
            return None
        worker = WorkerProcess(pool, proc, master.generation)
        worker.replaces = replaces
        pool.workers.append(worker)
        if pool.state is PoolState.IDLE:
            pool.state = PoolState.RUNNING
        loop = asyncio.get_running_loop()
        worker.pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(worker.pidfd, self._exited, worker)
        worker.channel = ipc.Channel(
            channel,
            lambda message, payload, fds: self._on_message(worker, message, payload, fds),
            lambda: None,
        )
        start = ipc.Start(
            pool=pool.name,
            generation=master.generation,
            source=master.source,
            listeners=listeners,
            log_level=master.log_level,
            temp_dir=pool.temp_dir,
            shared_fd=master.shared.fd,
            farm_admin=master.farm_admin,
            entry_points=master.loaded.entry_points if master.loaded is not None else [],
        )
        worker.channel.send(start)
        log.info(
            "pool %s: started worker %d%s",
            pool.name,
            proc.pid,
            f" (replacing {replaces.pid})" if replaces is not None else "",
        )
        return worker

    # -- what workers say ------------------------------------------------------------------

    def _on_message(
        self, worker: WorkerProcess, message: ipc.Message, payload: bytes, fds: list[int]
    ) -> None:
        if isinstance(message, ipc.Handoff):
            self._on_handoff(worker, message, payload, fds)
            return
        for fd in fds:
            close_fd(fd)
        now = time.monotonic()
        if isinstance(message, ipc.Ready):
            self._on_ready(worker, now)
            self._moved.set()
        elif isinstance(message, ipc.Draining):
            worker.accepting = False
            self._moved.set()
        elif isinstance(message, ipc.Reloaded):
            if message.ok:
                worker.generation = max(worker.generation, message.generation)
            else:
                self.refusals.append(
                    (
                        message.generation,
                        f"pool {worker.pool.name}: worker {worker.pid} refused the new "
                        "configuration (see the server log)",
                    )
                )
            self._moved.set()
        elif isinstance(message, ipc.Stats | ipc.Pong | ipc.Collected):
            stats = message if isinstance(message, ipc.Stats) else message.stats
            if isinstance(message, ipc.Pong) and message.id == worker.ping_id:
                worker.ping_sent = None
            elif isinstance(message, ipc.Collected):
                waiting = self._asked.pop(message.id, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(0)
            if stats.requests != worker.requests or stats.active:
                worker.last_activity = now
            worker.requests, worker.active = stats.requests, stats.active
            worker.connections = stats.connections
            worker.http2_errors = stats.http2_errors
            worker.slow_clients = stats.slow_clients
            worker.caches = stats.caches
            worker.farms = stats.farms
            worker.sites = stats.sites
            worker.received = stats.received
            worker.counters = stats.counters
            worker.counter_families = stats.counter_families
        elif isinstance(message, ipc.Purged | ipc.Applied | ipc.Executing):
            waiting = self._asked.pop(message.id, None)
            if waiting is not None and not waiting.done():
                if isinstance(message, ipc.Purged):
                    waiting.set_result(message.count)
                elif isinstance(message, ipc.Executing):
                    waiting.set_result(message.requests)
                else:
                    waiting.set_result(0)
        elif isinstance(message, ipc.RequestLimit):
            worker.requests = max(worker.requests, message.requests)
            worker.last_activity = now
            if worker.state is WorkerState.READY:
                self.recycle_worker(worker, f"{message.requests} requests")
        elif isinstance(message, ipc.Failed):
            worker.error = message.error
            log.error(
                "pool %s: worker %d failed to start: %s",
                worker.pool.name,
                worker.pid,
                message.error,
            )

    def _on_ready(self, worker: WorkerProcess, now: float) -> None:
        pool = worker.pool
        if worker.state is not WorkerState.STARTING:
            return
        worker.state = WorkerState.READY
        worker.ready_at = worker.last_activity = worker.last_ping = now
        log.info(
            "pool %s: worker %d ready in %.0f ms",
            pool.name,
            worker.pid,
            (now - worker.started) * 1000,
        )
        old = worker.replaces
        worker.replaces = None
        if old is not None and old in pool.workers:
            self.drain(old, migrate=True)
        frontdoor = self.master.frontdoor
        frontdoor.flush_queue(pool)
        frontdoor.update_accepting()
        self.master.release_memory_soon()
        if worker.started < self.master.code_changed_at:
            # serve --reload: it was starting when the code changed (a recycle takes
            # only ready workers) and may have imported the old code.
            self.recycle_worker(worker, "code changed")

    def _on_handoff(
        self, worker: WorkerProcess, message: ipc.Handoff, data: bytes, fds: list[int]
    ) -> None:
        if not fds:
            return
        fd, rest = fds[0], fds[1:]
        for extra in rest:
            close_fd(extra)
        if not is_client_socket(fd, message.port):
            log.error("worker %d handed over something that is not a client socket", worker.pid)
            close_fd(fd)
            return
        frontdoor = self.master.frontdoor
        pool = self.master.pools.get(message.pool)
        if message.head or (pool is not None and pool.next_worker() is not None):
            frontdoor.deliver(message.pool, fd, data, message.port)
        else:
            frontdoor.peek(fd, data, message.port)  # idle: wait for a request before starting one

    def _exited(self, worker: WorkerProcess) -> None:
        master = self.master
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            loop.remove_reader(worker.pidfd)
        close_fd(worker.pidfd)
        code = worker.proc.wait()
        if worker.channel is not None:
            # What it said last (its final counters) before it went.
            worker.channel.read_pending()
            worker.channel.close()
        master.departed.exited(worker)
        pool = worker.pool
        if worker in pool.workers:
            pool.workers.remove(worker)
        how = f"signal {-code}" if code < 0 else f"code {code}"
        starting = worker.state is WorkerState.STARTING
        if worker.expected:
            log.info("pool %s: worker %d exited (%s)", pool.name, worker.pid, how)
        else:
            what = "failed to start" if starting else "exited unexpectedly"
            log.warning("pool %s: worker %d %s (%s)", pool.name, worker.pid, what, how)
            master.supervisor.failure(pool, worker.error or f"worker {what} ({how})")
            if starting:
                self.refusals.append(
                    (
                        worker.generation,
                        f"pool {pool.name}: a worker with the new configuration {what}: "
                        + (worker.error or how),
                    )
                )
        self._moved.set()
        old = worker.replaces
        if old is not None and old in pool.workers and starting:
            log.warning(
                "pool %s: the replacement of worker %d did not start; it keeps serving",
                pool.name,
                old.pid,
            )
            _keep(old)
        if not pool.workers and pool.state is PoolState.RUNNING:
            pool.state = PoolState.IDLE
        master.frontdoor.update_accepting()
        self.ensure(pool)
        master.worker_gone(pool)

    # -- telling workers what to do --------------------------------------------------------

    def drain(self, worker: WorkerProcess, *, migrate: bool) -> None:
        """Stop ``worker``: it finishes its requests in time (``migrate``: and hands idle
        connections back to the master), or is killed."""
        if worker.state is WorkerState.DRAINING:
            return
        limit = worker.pool.settings.shutdown_time_limit
        worker.expected = True
        worker.kill_at = time.monotonic() + limit + KILL_GRACE
        if worker.state is WorkerState.STARTING:
            self.kill(worker, expected=True, sig=signal.SIGTERM)
        elif worker.channel is not None:
            worker.channel.send(ipc.Drain(deadline=limit, migrate=migrate))
        worker.state = WorkerState.DRAINING
        self.master.frontdoor.update_accepting()

    def kill(self, worker: WorkerProcess, *, expected: bool, sig: int = signal.SIGKILL) -> None:
        """Signal ``worker`` (SIGKILL by default); ``expected``: its exit is no failure."""
        worker.expected = worker.expected or expected
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    def recycle(self, pool: Pool, reason: str) -> int:
        """Replace every worker of ``pool`` (overlapped); the number being replaced."""
        workers = pool.ready()
        for worker in workers:
            self.recycle_worker(worker, reason)
        return len(workers)

    def recycle_worker(self, worker: WorkerProcess, reason: str) -> None:
        """Replace one worker: overlapped (the new one first) unless the pool says not."""
        pool = worker.pool
        log.info("pool %s: recycling worker %d (%s)", pool.name, worker.pid, reason)
        worker.state = WorkerState.RETIRING
        worker.recycle_reason = reason
        self.master.departed.recycled(worker, reason)
        if pool.settings.recycling.overlapping and pool.state is not PoolState.STOPPED:
            if self.start(pool, replaces=worker) is None:
                _keep(worker)
        else:
            pool.demand = True
            self.drain(worker, migrate=True)

    async def purge(self, kind: str, path: str, *, prefix: bool) -> tuple[int, int, int]:
        """Purge ``path`` from the caches of ``kind`` in every serving worker of
        every pool: (workers asked, workers that answered within
        :data:`PURGE_WAIT`, entries dropped)."""
        asked, answers = await self.ask(
            lambda ask_id: ipc.Purge(id=ask_id, kind=kind, path=path, prefix=prefix)
        )
        return asked, len(answers), sum(answers)

    async def executing(self, elapsed: int) -> tuple[int, list[list[ExecutingRequest]]]:
        """The requests executing for at least ``elapsed`` ms in every serving
        worker of every pool: (workers asked, each answering worker's list)."""
        return await self.ask(lambda ask_id: ipc.ListRequests(id=ask_id, elapsed=elapsed))

    async def ask(self, make: Callable[[int], ipc.Message]) -> tuple[int, list[Any]]:
        """Send ``make(id)`` to every worker of every pool, and wait up to
        :data:`PURGE_WAIT` for the serving ones to answer (``Purged``,
        ``Applied``, ``Executing``): (workers asked, their answers). A worker still
        starting gets the message too and carries it out once it serves, unawaited;
        a busy worker's late answer is dropped."""
        loop = asyncio.get_running_loop()
        waiting: dict[int, asyncio.Future[Any]] = {}
        for pool in self.master.pools.values():
            for worker in pool.workers:
                if worker.channel is None:
                    continue
                ask_id = next(self._ask_ids)
                if worker.serving:
                    waiting[ask_id] = self._asked[ask_id] = loop.create_future()
                worker.channel.send(make(ask_id))
        if not waiting:
            return 0, []
        done, _ = await asyncio.wait(waiting.values(), timeout=PURGE_WAIT)
        for ask_id in waiting:
            self._asked.pop(ask_id, None)
        return len(waiting), [f.result() for f in done]

    async def collect(self) -> None:
        """Have every serving worker report its counters now (``GET /metrics``);
        those that do not answer within :data:`PURGE_WAIT` count with their last."""
        await self.ask(lambda ask_id: ipc.Collect(id=ask_id))

    async def settle(self, generation: int, wait: float) -> tuple[bool | None, list[str]]:
        """Wait until every worker serves configuration ``generation`` or later:
        (True, []) once they do; (False, why) when a worker refused it or one
        started with it failed; (None, the workers still pending) after ``wait``
        seconds. A worker with an older configuration that is replaced or draining
        is waited for until it stops accepting connections (``ipc.Draining``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            refused = [why for g, why in self.refusals if g >= generation]
            if refused:
                return False, refused
            pending = [
                f"pool {pool.name}: worker {w.pid} ({w.state.value})"
                for pool in self.master.pools.values()
                for w in pool.workers
                if w.state is WorkerState.STARTING
                or (w.generation < generation and (w.state is WorkerState.READY or w.accepting))
            ]
            left = deadline - loop.time()
            if not pending or left <= 0:
                return (None if pending else True), pending
            self._moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)

    def reload_config(self, pool: Pool) -> None:
        """Make every serving worker of ``pool`` re-read its ``web.toml`` files."""
        for worker in pool.workers:
            if worker.serving and worker.channel is not None:
                worker.channel.send(ipc.Reload(generation=self.master.generation))


def _keep(worker: WorkerProcess) -> None:
    """The replacement of a retiring worker did not come: it serves on."""
    if worker.state is WorkerState.RETIRING:
        worker.state = WorkerState.READY
