"""Failed request tracing (IIS ``FailedRequestsTracingModule``, "FREB").

How this works:

- *Which requests.* The module is a :class:`~colonnade.core.tracing.TraceSource`:
  the runner asks :meth:`FailedRequestTracing.start_trace` before the first stage.
  It tests the request's URL path against the effective rules of that path (one
  compiled pattern per section object); no match, no trace, and the request takes
  the untimed walk; the path joins ``untraced``, which the runner looks a
  request's path up in before it asks (a set lookup is all such a request pays).
- *Buffered, then decided.* A traced request records every hook's entry and exit
  (the runner's timed walk) and the events modules emit. At the end
  (:meth:`end_trace`) the rules whose path matched decide with the final status,
  the time taken and the worst event level; when none keeps it, the trace is
  dropped without having been formatted.
- *Written off the event loop.* A kept trace is encoded and written on this
  module's one writer thread, as one JSON file in the site's folder
  (``core/tracestore.py``), after which the oldest files beyond ``max_files`` go.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.module import Module
from colonnade.core.tracestore import file_name, site_folder, write_trace
from colonnade.core.tracing import Trace
from colonnade.modules.failed_request_tracing.config import (
    FailedRequestTracingSection,
    TraceRule,
)

log = logging.getLogger("colonnade.tracing")

#: The most paths remembered as traced by no rule (then the memory starts over).
MAX_UNTRACED = 10_000


class RuleTrace(Trace):
    """A trace with the rules whose path selected the request."""

    __slots__ = ("rules",)

    def __init__(self, trace_id: str, rules: tuple[TraceRule, ...]) -> None:
        super().__init__(trace_id)
        self.rules = rules

    def kept_for(self, ctx: Context) -> bool:
        """Kept for the response's status or the events so far (the time taken is
        known only at the end)."""
        return _keeps(ctx, self, 0.0) is not None


class FailedRequestTracing(Module):
    """``tracing.failed_requests``: trace requests a rule selects; keep the failed ones."""

    id = "tracing.failed_requests"
    section = FailedRequestTracingSection

    def __init__(self) -> None:
        self.folder = ""
        self.max_files = 0
        self.site = ""
        self.app_id = ""
        self.pool = ""
        self._writer: ThreadPoolExecutor | None = None
        self._failing = False
        #: Paths no rule selects (the runner skips start_trace for them).
        self.untraced: set[str] = set()

    def provision(self, app: Application) -> None:
        """Where this application's site keeps its traces; the writer thread."""
        settings = app.section(FailedRequestTracingSection)
        self.folder = site_folder(os.path.abspath(settings.directory), app.site)
        self.max_files = settings.max_files
        self.site = app.site
        self.app_id = app.id
        self.pool = app.pool
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="colonnade-trace")

    def cleanup(self) -> None:
        """Write the traces still queued, then stop the writer thread."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    # -- TraceSource ----------------------------------------------------------------

    def start_trace(self, ctx: Context) -> Trace | None:
        """A trace for a request whose path a rule matches, else None."""
        settings = ctx.section(FailedRequestTracingSection)
        match = settings.path_match
        path = ctx.request.path
        if match is None or match(path) is None:
            # The settings, so the answer, are the same for every request of the
            # path: remembered. A client inventing paths would grow the set without
            # end: it starts over past a bound.
            if len(self.untraced) >= MAX_UNTRACED:
                self.untraced.clear()
            self.untraced.add(path)
            return None
        rules = tuple(rule for rule in settings.rules if rule.matches_path(path))
        return RuleTrace(ctx.correlation_id, rules)

    def end_trace(self, ctx: Context, trace: Trace) -> None:
        """Keep the trace (queued for the writer thread) when a rule says so."""
        seconds = trace.now() / 1_000_000
        reason = _keeps(ctx, trace, seconds)
        writer = self._writer
        if reason is None or writer is None:
            return
        data = self._document(ctx, trace, seconds, reason)
        writer.submit(self._write, file_name(trace.id, trace.wall), data)

    # -- inside ---------------------------------------------------------------------

    def _document(self, ctx: Context, trace: Trace, seconds: float, reason: str) -> dict[str, Any]:
        request = ctx.request
        response = ctx.response
        user = ctx.user
        body = trace.to_dict()
        return {
            "id": trace.id,
            "site": self.site,
            "application": self.app_id,
            "pool": self.pool,
            "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(trace.wall))
            + f".{int((trace.wall % 1) * 1_000_000):06d}Z",
            "reason": reason,
            "request": {
                "method": request.method,
                "url": request.target.decode("latin-1"),
                "path": request.path,
                "original_path": request.original_path,
                "client": str(request.client[0]) if request.client else None,
                "status": response.status,
                "substatus": response.substatus,
                "time_taken_ms": round(seconds * 1000, 3),
                "user": user.name if user is not None else None,
                "auth_type": user.auth_type if user is not None else None,
                "handler": ctx.handler.id if ctx.handler is not None else None,
                "physical_path": _physical(ctx),
                "bytes_sent": ctx.writer.bytes_sent,
            },
            "stages": _stages(trace),
            **{k: v for k, v in body.items() if k != "id"},
        }

    def _write(self, name: str, data: dict[str, Any]) -> None:
        try:
            encoded = json.dumps(data, indent=1, default=str).encode()
            write_trace(self.folder, name, encoded, self.max_files)
        except Exception as exc:
            # Once per run of failures: a folder that cannot be written would
            # otherwise log every traced request.
            if not self._failing:
                log.warning("cannot write a trace into %s: %s", self.folder, exc)
            self._failing = True
        else:
            self._failing = False


def _keeps(ctx: Context, trace: Trace, seconds: float) -> str | None:
    # Why the trace is kept (the first rule whose failure definition matched), or None.
    rules = trace.rules if isinstance(trace, RuleTrace) else ()
    response = ctx.response
    for rule in rules:
        reason = rule.keeps(response.status, response.substatus, seconds, trace.worst)
        if reason is not None:
            return f"{reason} (rule for {rule.path!r})"
    return None


def _physical(ctx: Context) -> str | None:
    try:
        return ctx.physical_path
    except Exception:  # a path this application cannot map
        return None


def _stages(trace: Trace) -> list[dict[str, Any]]:
    # Each run of consecutive hooks of one stage, from its first entry to its last
    # exit: the waterfall's rows. A SEND_RESPONSE hook runs inside the flush.
    rows: list[dict[str, Any]] = []
    for stage, _module, entry, exit_, _outcome in sorted(trace.hooks, key=lambda h: (h[2], -h[3])):
        last = rows[-1] if rows else None
        if last is not None and last["stage"] == stage:
            last["exit_us"] = max(last["exit_us"], exit_)
            last["hooks"] += 1
        else:
            rows.append({"stage": stage, "entry_us": entry, "exit_us": exit_, "hooks": 1})
    return rows
