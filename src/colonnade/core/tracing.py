"""Request traces: what one request did, stage by stage and hook by hook.

A module that emits trace events writes::

    if (trace := ctx.trace) is not None:
        trace.event("cache", result="hit", key=key)

``ctx.trace`` is None for every request no trace rule selected, so a module pays
one attribute read and one identity test there, and builds no event. A request
that is traced gets a :class:`Trace` before its first stage (the runner asks the
application's :class:`TraceSource`, the module ``tracing.failed_requests``); the
runner then walks the plan on a timed path that records every hook's entry and
exit, and the source decides at the end (status, time taken, the worst event)
whether the trace is kept or dropped, as IIS's Failed Request Tracing buffers a
request's events and writes them only when a rule's failure definition matched.

Times are microseconds since the request's trace began (``time.perf_counter_ns``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from colonnade.core.context import Context

#: Event levels, IIS's trace verbosity: lower is worse.
CRITICAL = 1
ERROR = 2
WARNING = 3
INFO = 4
VERBOSE = 5

LEVEL_NAMES: dict[int, str] = {
    CRITICAL: "critical",
    ERROR: "error",
    WARNING: "warning",
    INFO: "info",
    VERBOSE: "verbose",
}

#: The most events (and hook records) one trace holds; a request that emits more
#: (a loop in a module) keeps the first ones and counts what it dropped.
MAX_RECORDS = 5000


class Trace:
    """The buffered trace of one request.

    ``hooks`` holds one record per hook call: ``(stage, module, entry_us,
    exit_us, outcome)``, outcome ``"continue"``, ``"finish"`` or ``"error"``;
    ``events`` one ``(at_us, level, kind, fields)`` per event. Both are plain
    tuples until the trace is kept; nothing is formatted for a trace that is
    dropped.
    """

    __slots__ = ("dropped", "events", "hooks", "id", "started_ns", "wall", "worst")

    def __init__(self, trace_id: str) -> None:
        self.id = trace_id
        self.started_ns = time.perf_counter_ns()
        self.wall = time.time()
        self.hooks: list[tuple[str, str, int, int, str]] = []
        self.events: list[tuple[int, int, str, dict[str, Any]]] = []
        self.dropped = 0
        #: The worst (lowest) level of any event so far (VERBOSE + 1: none).
        self.worst = VERBOSE + 1

    def now(self) -> int:
        """Microseconds since the trace began."""
        return (time.perf_counter_ns() - self.started_ns) // 1000

    def event(self, kind: str, level: int = INFO, **fields: Any) -> None:
        """Record that ``kind`` happened now, with ``fields`` (JSON-able values:
        strings, numbers, booleans, None, lists of them)."""
        if level < self.worst:
            self.worst = level
        if len(self.events) + len(self.hooks) >= MAX_RECORDS:
            self.dropped += 1
            return
        self.events.append((self.now(), level, kind, fields))

    def hook(self, stage: str, module: str, entry_us: int, exit_us: int, outcome: str) -> None:
        """Record one hook call (the runner's timed walk calls this)."""
        if len(self.events) + len(self.hooks) >= MAX_RECORDS:
            self.dropped += 1
            return
        self.hooks.append((stage, module, entry_us, exit_us, outcome))

    def kept_for(self, ctx: Context) -> bool:
        """Whether the trace will be kept for the response as it stands (its status,
        the events so far): what the detailed error page asks, to name the trace.
        The source's trace type answers; a plain trace is never kept."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """The trace as JSON-able data (without the request summary the source adds)."""
        return {
            "id": self.id,
            "hooks": [
                {"stage": s, "module": m, "entry_us": a, "exit_us": b, "outcome": o}
                # Recorded at exit: a SEND_RESPONSE hook before the flush around it.
                for s, m, a, b, o in sorted(self.hooks, key=lambda h: (h[2], -h[3]))
            ],
            "events": [
                {"at_us": at, "level": LEVEL_NAMES.get(lvl, str(lvl)), "kind": kind, **fields}
                for at, lvl, kind, fields in self.events
            ],
            "dropped": self.dropped,
        }


@runtime_checkable
class TraceSource(Protocol):
    """A module that decides which requests are traced and keeps their traces.

    The runner looks for one among an application's modules when it compiles the
    plan; an application without one has no timed path at all.
    """

    #: URL paths no rule selects, as the source found them: the runner does not
    #: ask the source about them again (a set lookup is all such a request pays).
    #: The source adds to it, and keeps it bounded.
    untraced: set[str]

    def start_trace(self, ctx: Context) -> Trace | None:
        """A new trace when a rule selects ``ctx``'s request (by site and path),
        else None (and, where that holds for every request of the path, the path
        goes into :attr:`untraced`). Called before the first stage."""

    def end_trace(self, ctx: Context, trace: Trace) -> None:
        """The request is over: keep ``trace`` when a rule's failure definition
        matched (status, time taken, the worst event), else drop it. Must not
        block the event loop."""
