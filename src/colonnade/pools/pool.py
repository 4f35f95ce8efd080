"""The master's records: an application pool and its worker processes, and their states.

Data and the questions asked of it (which workers count, which one takes the next
connection, what ``colonnade pools`` shows); no I/O. What changes these records
lives in ``workers.py`` (processes), ``supervision.py`` (the tick) and
``master.py`` (starting and stopping a pool).
"""

from __future__ import annotations

import enum
import subprocess
import time
from collections import deque
from typing import Any

from colonnade.config.schema import PoolConfig
from colonnade.pools import ipc
from colonnade.pools.sandbox import Identity


class WorkerState(enum.StrEnum):
    """Where a worker process is in its life; the values are what ``colonnade pools`` shows.

    STARTING → READY ⇄ RETIRING → DRAINING, and the process exits. A worker that
    exits is dropped from its pool's list, whatever its state was.
    """

    STARTING = "starting"  # spawned, has not reported ready
    READY = "ready"  # serving
    RETIRING = "retiring"  # serving while its replacement starts (back to READY if that fails)
    DRAINING = "draining"  # told to stop: finishes its requests, hands idle connections back


class PoolState(enum.StrEnum):
    """Where a pool is; the values are what ``colonnade pools`` shows."""

    IDLE = "idle"  # no worker (on demand and not started yet, or idle timeout)
    RUNNING = "running"  # has workers
    STOPPED = "stopped"  # by command or rapid-fail protection: ``Pool.reason`` says which


#: The states of a worker that accepts and is given connections.
SERVING = frozenset((WorkerState.READY, WorkerState.RETIRING))


class WorkerProcess:
    """The master's view of one worker process."""

    def __init__(self, pool: Pool, proc: subprocess.Popen[bytes], generation: int) -> None:
        now = time.monotonic()
        self.pool = pool
        self.proc = proc
        self.pid = proc.pid
        self.generation = generation
        self.state = WorkerState.STARTING
        self.started = now
        self.started_wall = time.time()
        self.ready_at = now
        self.last_activity = now
        self.requests = 0
        self.active = 0
        self.connections = 0
        self.http2_errors: dict[str, int] = {}
        self.slow_clients: dict[str, int] = {}
        self.caches: dict[str, dict[str, int]] = {}
        self.farms: dict[str, dict[str, dict[str, int | float | str]]] = {}
        self.sites: dict[str, list[float]] = {}  # request counters by site (core.metrics)
        self.received = 0  # bytes read from clients
        #: Modules' counters (``colonnade.core.counters``): family -> label value ->
        #: count, and each family's (help, label name).
        self.counters: dict[str, dict[str, int]] = {}
        self.counter_families: dict[str, tuple[str, str]] = {}
        self.rss = 0
        self.private = 0
        self.cpu = 0.0  # seconds of CPU time (user + system), read with the memory
        self.recycle_reason: str | None = None  # why it is being replaced
        self.memory_read = 0.0
        self.ping_id = 0
        self.ping_sent: float | None = None
        self.last_ping = now
        self.replaces: WorkerProcess | None = None  # the worker this one takes over from
        self.expected = False  # an exit now is not a failure
        self.kill_at = 0.0
        self.error: str | None = None
        #: False once the worker said it takes no new connection (``ipc.Draining``).
        self.accepting = True
        self.pidfd = -1
        self.channel: ipc.Channel | None = None

    @property
    def serving(self) -> bool:
        """Ready, being replaced or not."""
        return self.state in SERVING

    def describe(self) -> dict[str, Any]:
        """For ``colonnade pools``."""
        return {
            "pid": self.pid,
            "state": self.state.value,
            "uptime": round(time.time() - self.started_wall, 3),
            "requests": self.requests,
            "active": self.active,
            "connections": self.connections,
            "http2_errors": self.http2_errors,
            "slow_clients": self.slow_clients,
            "caches": self.caches,
            "rss": self.rss,
            "private": self.private,
            "cpu": round(self.cpu, 3),
            "recycle_reason": self.recycle_reason,
            "generation": self.generation,
        }


class Pool:
    """One application pool: its settings, workers, queue and failures."""

    def __init__(self, name: str, settings: PoolConfig) -> None:
        self.name = name
        self.settings = settings
        self.state = PoolState.IDLE
        self.reason = ""  # why the pool is stopped
        self.workers: list[WorkerProcess] = []
        self.queue: deque[tuple[int, bytes, int]] = deque()  # (fd, bytes read, port)
        self.failures: deque[float] = deque()
        self.demand = False  # should have its workers running
        self.rr = 0
        self.fingerprint = b""
        self.identity: Identity | None = None
        self.temp_dir: str | None = None
        self.schedule_mark = time.time()
        self.next_spawn = 0.0

    def live(self) -> list[WorkerProcess]:
        """Workers that count toward ``workers``: starting or ready, not being replaced."""
        return [w for w in self.workers if w.state in (WorkerState.STARTING, WorkerState.READY)]

    def ready(self) -> list[WorkerProcess]:
        """Workers that serve and are not being replaced."""
        return [w for w in self.workers if w.state is WorkerState.READY]

    def next_worker(self) -> WorkerProcess | None:
        """A ready worker, round robin (one being replaced only if there is no other)."""
        ready = self.ready() or [w for w in self.workers if w.state is WorkerState.RETIRING]
        if not ready:
            return None
        self.rr = (self.rr + 1) % len(ready)
        return ready[self.rr]

    def describe(self) -> dict[str, Any]:
        """For ``colonnade pools``."""
        return {
            "name": self.name,
            "state": self.state.value,
            "reason": self.reason,
            "start": self.settings.start,
            "workers": [w.describe() for w in self.workers],
            "queue": len(self.queue),
            "failures": len(self.failures),
        }
