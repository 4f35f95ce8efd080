"""``GET /metrics``: the counters of every worker, added up by the master, in the
Prometheus text exposition format (version 0.0.4).

How this works
--------------
Workers count (``core/metrics.py`` for requests by site, ``ServerState`` for
bytes received, the caches and farms their own) and send their counters to the
master once a second when they change, and at once when asked
(``ipc.Collect``, which a scrape sends through ``Workers.ask``). The master
adds up the workers it has now and :class:`Departed`: the last counters of the
workers that have exited, so that a recycle does not make a counter go back.
Gauges (requests executing, connections open, queue length, workers by state)
are of the moment and come from live workers only.

Why not ``prometheus_client``: its registry holds the metrics of one process,
updated where they happen, with a lock per update. Here the numbers are plain
integers summed over processes at scrape time, so a registry would only be a
detour to its formatter; the format is small and specified, and written here
(:func:`render`), escaping included.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from colonnade.pools.pool import WorkerProcess, WorkerState

if TYPE_CHECKING:
    from colonnade.pools.master import Master

#: The content type of the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Cache counters that are sizes of the moment (gauges); the rest only grow.
CACHE_GAUGES = frozenset({"entries", "bytes"})
#: Farm member counters that only grow (the rest are the moment's, or words).
FARM_COUNTERS = ("requests", "failures")

_WORD = re.compile(r"[a-z]+")


def recycle_kind(reason: str) -> str:
    """A recycle reason without its numbers, as a label value: ``"100 requests"`` →
    ``requests``, ``"private memory 5000 bytes"`` → ``private_memory``."""
    words = [
        w
        for w in reason.lower().split()
        if _WORD.fullmatch(w) and w not in ("bytes", "s", "changed")
    ]
    return "_".join(words) or "other"


class Departed:
    """The counters of the workers that have exited (so sums never go back), and
    the recycles the master started."""

    def __init__(self) -> None:
        self.sites: dict[str, list[float]] = {}
        self.received = 0
        self.http2_errors: Counter[str] = Counter()
        self.slow_clients: Counter[str] = Counter()
        self.caches: dict[str, Counter[str]] = {}
        #: Modules' counters (``colonnade.core.counters``) and their families.
        self.counters: dict[str, Counter[str]] = {}
        self.counter_families: dict[str, tuple[str, str]] = {}
        self.farms: dict[tuple[str, str, str], int] = {}
        #: (pool, reason kind) → recycles.
        self.recycles: Counter[tuple[str, str]] = Counter()
        #: pool → workers that exited when nobody asked them to.
        self.failures: Counter[str] = Counter()

    def recycled(self, worker: WorkerProcess, reason: str) -> None:
        """``worker`` is being recycled for ``reason``."""
        self.recycles[worker.pool.name, recycle_kind(reason)] += 1

    def exited(self, worker: WorkerProcess) -> None:
        """Keep the counters ``worker`` reported last (it has exited)."""
        add_sites(self.sites, worker.sites)
        self.received += worker.received
        self.http2_errors.update(worker.http2_errors)
        self.slow_clients.update(worker.slow_clients)
        for family, counts in worker.counters.items():
            self.counters.setdefault(family, Counter()).update(counts)
        self.counter_families.update(worker.counter_families)
        for kind, counters in worker.caches.items():
            kept = self.caches.setdefault(kind, Counter())
            kept.update({k: v for k, v in counters.items() if k not in CACHE_GAUGES})
        for farm, members in worker.farms.items():
            for member, stats in members.items():
                for name in FARM_COUNTERS:
                    key = (farm, member, name)
                    self.farms[key] = self.farms.get(key, 0) + int(stats.get(name, 0))
        if not worker.expected:
            self.failures[worker.pool.name] += 1


def add_sites(
    into: dict[str, list[float]], sites: Mapping[str, list[float]], size: int | None = None
) -> None:
    """Add the site counters ``sites`` (``core.metrics.snapshot``) into ``into``:
    those ``size`` long (the layout of this build: :func:`render` says), or any
    (the departed workers' sums: the master does not import the compiled
    ``core.metrics`` to supervise)."""
    for site, values in sites.items():
        if size is not None and len(values) != size:
            continue  # a worker of another build: its layout is not ours
        found = into.get(site)
        if found is None:
            into[site] = list(values)
        elif len(found) != len(values):
            continue  # two layouts (an upgrade): render keeps only this build's
        else:
            for i, value in enumerate(values):
                found[i] += value


async def collect(master: Master) -> str:
    """Ask every worker for its counters now, then :func:`render` them."""
    await master.workers.collect()
    return render(master)


# -- the text format --------------------------------------------------------------------


def escape_label(value: str) -> str:
    """A label value as the text format writes it between quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class Exposition:
    """Metric families written one after another: ``# HELP``, ``# TYPE``, samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
        suffix: str = "",
    ) -> None:
        """One family (``suffix``: ``_total`` for counters, added to the sample names)."""
        escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines.append(f"# HELP {name}{suffix} {escaped}")
        self.lines.append(f"# TYPE {name}{suffix} {kind}")
        for labels, value in samples:
            self.sample(f"{name}{suffix}", labels, value)

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """One sample line."""
        if labels:
            inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        """The exposition, ending with a newline."""
        return "\n".join(self.lines) + "\n"


def render(master: Master) -> str:
    """The master's metrics now: the last counters of every worker and of the
    departed ones."""
    departed = master.departed
    pools = list(master.pools.values())
    workers = [w for pool in pools for w in pool.workers]
    from colonnade.core import metrics as m

    sites: dict[str, list[float]] = {
        s: list(v) for s, v in departed.sites.items() if len(v) == m.SNAPSHOT_SIZE
    }
    for w in workers:
        add_sites(sites, w.sites, m.SNAPSHOT_SIZE)
    names = sorted(sites)
    out = Exposition()

    out.family(
        "colonnade_requests",
        "counter",
        "Requests answered, by site and status class.",
        (
            ({"site": site, "code": code}, int(sites[site][m.REQUESTS][i]))
            for site in names
            for i, code in enumerate(m.STATUS_CLASSES)
            if i or sites[site][m.REQUESTS][i]
        ),
        "_total",
    )
    # Of live workers only: what a departed worker had begun is not executing.
    executing: Counter[str] = Counter()
    for w in workers:
        for site, values in w.sites.items():
            if len(values) == m.SNAPSHOT_SIZE:
                executing[site] += int(values[m.STARTED] - sum(values[m.REQUESTS]))
    out.family(
        "colonnade_requests_executing",
        "gauge",
        "Requests begun and not yet answered, by site.",
        (({"site": site}, max(0, executing[site])) for site in names),
    )
    name = "colonnade_request_duration_seconds"
    out.lines.append(f"# HELP {name} Time from the request's arrival to its last byte, by site.")
    out.lines.append(f"# TYPE {name} histogram")
    for site in names:
        values = sites[site]
        cumulative = 0
        for bound, count in zip((*m.BUCKETS, float("inf")), values[m.DURATION], strict=True):
            cumulative += int(count)
            out.sample(f"{name}_bucket", {"site": site, "le": _number(bound)}, cumulative)
        out.sample(f"{name}_sum", {"site": site}, float(values[m.DURATION_SUM]))
        out.sample(f"{name}_count", {"site": site}, cumulative)
    out.family(
        "colonnade_response_bytes",
        "counter",
        "Response bytes sent (head and body), by site.",
        (({"site": site}, int(sites[site][m.BYTES_OUT])) for site in names),
        "_total",
    )
    out.family(
        "colonnade_received_bytes",
        "counter",
        "Bytes read from clients' connections (after TLS).",
        [({}, departed.received + sum(w.received for w in workers))],
        "_total",
    )
    out.family(
        "colonnade_auth_failures",
        "counter",
        "Requests answered 401 (no or wrong credentials), by site.",
        (({"site": site}, int(sites[site][m.AUTH_FAILURES])) for site in names),
        "_total",
    )
    out.family(
        "colonnade_denied_clients",
        "counter",
        "Requests refused for the client's address (403.501-504: IP and domain "
        "restrictions, dynamic IP restrictions), by site.",
        (({"site": site}, int(sites[site][m.DENIED])) for site in names),
        "_total",
    )
    out.family(
        "colonnade_connections_open",
        "gauge",
        "Client connections open, by pool.",
        (({"pool": p.name}, sum(w.connections for w in p.workers)) for p in pools),
    )
    out.family(
        "colonnade_pool_queue_length",
        "gauge",
        "Connections the master holds for a pool with no ready worker.",
        (({"pool": p.name}, len(p.queue)) for p in pools),
    )
    out.family(
        "colonnade_workers",
        "gauge",
        "Worker processes, by pool and state.",
        (
            ({"pool": p.name, "state": state.value}, sum(w.state is state for w in p.workers))
            for p in pools
            for state in WorkerState
        ),
    )
    out.family(
        "colonnade_worker_recycles",
        "counter",
        "Workers recycled, by pool and reason.",
        (
            ({"pool": pool, "reason": reason}, count)
            for (pool, reason), count in sorted(departed.recycles.items())
        ),
        "_total",
    )
    out.family(
        "colonnade_worker_failures",
        "counter",
        "Workers that exited unasked (crashed, or failed to start), by pool.",
        (({"pool": p.name}, departed.failures[p.name]) for p in pools),
        "_total",
    )
    _modules(out, master, workers)
    return out.text()


#: Counters by cause that workers report and departed workers leave behind:
#: (family, attribute of WorkerProcess and Departed, help).
_BY_CAUSE = (
    (
        "colonnade_http2_errors",
        "http2_errors",
        "HTTP/2 connections ended for the client's fault, by cause.",
    ),
    (
        "colonnade_slow_clients",
        "slow_clients",
        "Connections ended or refused for a client's behaviour, by cause: request_body "
        "and response (below limits.min_bytes_per_second), per_client (over "
        "limits.max_connections_per_client).",
    ),
)


def _modules(out: Exposition, master: Master, workers: list[WorkerProcess]) -> None:
    departed = master.departed
    for name, attr, about in _BY_CAUSE:
        total: Counter[str] = Counter(getattr(departed, attr))
        for w in workers:
            total.update(getattr(w, attr))
        out.family(
            name,
            "counter",
            about,
            (({"cause": cause}, count) for cause, count in sorted(total.items())),
            "_total",
        )
    _module_counters(out, departed, workers)
    counters: dict[tuple[str, str], int] = {}
    gauges: dict[tuple[str, str], int] = {}
    for kind, kept in departed.caches.items():
        for stat, value in kept.items():
            counters[kind, stat] = counters.get((kind, stat), 0) + value
    for w in workers:
        for kind, stats in w.caches.items():
            for stat, value in stats.items():
                into = gauges if stat in CACHE_GAUGES else counters
                into[kind, stat] = into.get((kind, stat), 0) + value
    for table, kind, suffix, what in (
        (counters, "counter", "_total", "so far"),
        (gauges, "gauge", "", "held now (every worker's added up)"),
    ):
        for stat in sorted({s for _, s in table}):
            out.family(
                f"colonnade_cache_{_metric_word(stat)}",
                kind,
                f"Cache {stat} {what}, by cache.",
                (({"cache": k}, v) for (k, s), v in sorted(table.items()) if s == stat),
                suffix,
            )
    farm_counters: dict[tuple[str, str, str], int] = dict(departed.farms)
    in_flight: dict[tuple[str, str], int] = {}
    for w in workers:
        for farm, members in w.farms.items():
            for member, counted in members.items():
                for stat in FARM_COUNTERS:
                    key = (farm, member, stat)
                    farm_counters[key] = farm_counters.get(key, 0) + int(counted.get(stat, 0))
                in_flight[farm, member] = in_flight.get((farm, member), 0) + int(
                    counted.get("in_flight", 0)
                )
    for stat in FARM_COUNTERS:
        out.family(
            f"colonnade_farm_member_{stat}",
            "counter",
            f"Requests sent to a farm member{' that failed' if stat == 'failures' else ''}.",
            (
                ({"farm": f, "member": mem}, v)
                for (f, mem, s), v in sorted(farm_counters.items())
                if s == stat
            ),
            "_total",
        )
    out.family(
        "colonnade_farm_member_in_flight",
        "gauge",
        "Requests at a farm member now.",
        (({"farm": f, "member": mem}, v) for (f, mem), v in sorted(in_flight.items())),
    )


def _module_counters(out: Exposition, departed: Departed, workers: list[WorkerProcess]) -> None:
    # Families declared by modules in the workers (colonnade.core.counters).
    families = dict(departed.counter_families)
    totals = {family: Counter(counts) for family, counts in departed.counters.items()}
    for w in workers:
        families.update(w.counter_families)
        for family, counts in w.counters.items():
            totals.setdefault(family, Counter()).update(counts)
    for family in sorted(families):
        about, label = families[family]
        out.family(
            f"colonnade_{_metric_word(family)}",
            "counter",
            about,
            (({label: value}, count) for value, count in sorted(totals.get(family, {}).items())),
            "_total",
        )


def _metric_word(name: str) -> str:
    """A counter's name as a part of a metric name (``[a-zA-Z0-9_]``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def reply(text: str) -> dict[str, Any]:
    """The command's reply: the exposition and its content type (``api.py`` sends
    it as it is)."""
    return {"ok": True, "content_type": CONTENT_TYPE, "text": text}
