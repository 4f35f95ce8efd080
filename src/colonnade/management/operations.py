"""Operations on a running server, over its master's control socket.

One layer for every front end: the ``colonnade`` command formats what these
functions return; an admin API would serve the same data. Each call opens the
control socket (``pools/control.py``), sends one command and reads one reply.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from colonnade.config.schema import ServerConfig
from colonnade.core.tracestore import list_traces, read_trace
from colonnade.errors import ColonnadeError
from colonnade.management.tables import paint, table


class ControlError(ColonnadeError):
    """The master could not be reached, or refused the command; ``errors``: each
    mistake the master found (a refused configuration write: file:line: key …)."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


def call(
    control: str, op: str, pool: str | None = None, *, timeout: float = 10.0, **fields: Any
) -> dict[str, Any]:
    """Send one command (``op`` and its ``fields``) to the master listening on
    the socket ``control``; its reply."""
    request: dict[str, Any] = {"op": op, **fields}
    if pool is not None:
        request["pool"] = pool
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(control)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"no master is running (no control socket at {control})") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to the master at {control}: {exc}") from None
    try:
        reply: dict[str, Any] = json.loads(data)
    except ValueError:
        raise ControlError(f"the master at {control} closed the connection") from None
    if not reply.get("ok"):
        message = str(reply.get("error", "the master refused the command"))
        errors = reply.get("errors")
        raise ControlError(message, [str(e) for e in errors] if isinstance(errors, list) else None)
    return reply


def control_path(config: ServerConfig | None, explicit: str | None = None) -> str:
    """The control socket to use: ``explicit``, else the configuration's."""
    if explicit:
        return os.path.abspath(explicit)
    if config is None:
        from colonnade.pools.control import default_path

        return default_path()
    from colonnade.pools.control import socket_path  # its asyncio: not for a client

    return socket_path(config)


def pools(path: str) -> dict[str, Any]:
    """State of the master and its pools: workers, PIDs, uptime, requests, memory."""
    return call(path, "pools")


def recycle(path: str, pool: str) -> str:
    """Recycle every worker of ``pool`` (overlapped)."""
    return str(call(path, "recycle", pool)["message"])


def stop(path: str, pool: str) -> str:
    """Stop ``pool``: its workers drain and exit, its requests are answered 503."""
    return str(call(path, "stop", pool)["message"])


def start(path: str, pool: str) -> str:
    """Start a stopped ``pool`` again (clears rapid-fail protection)."""
    return str(call(path, "start", pool)["message"])


def sites(path: str) -> list[dict[str, Any]]:
    """The running server's sites: bindings, host names, root, pool, applications."""
    found: list[dict[str, Any]] = call(path, "sites")["sites"]
    return found


def applications(path: str, site: str | None = None) -> list[dict[str, Any]]:
    """The running server's applications (of ``site``): path, root, pool, modules."""
    found: list[dict[str, Any]] = call(path, "applications", site=site)["applications"]
    return found


def workers(path: str, pool: str | None = None) -> list[dict[str, Any]]:
    """The running server's worker processes (of ``pool``)."""
    found: list[dict[str, Any]] = call(path, "workers", pool)["workers"]
    return found


def config_file(path: str, site: str | None, url: str | None) -> dict[str, Any]:
    """The file that owns a level (the server file, or a folder's ``web.toml``),
    its version and its sections."""
    return call(path, "config_file", site=site, path=url)


def config_set(
    path: str,
    section: str,
    values: dict[str, Any] | None,
    *,
    site: str | None = None,
    url: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Set ``section`` (``values`` None: delete it) at a level, checked and applied
    by the master as the admin API does it."""
    return call(
        path,
        "config_set",
        # The master answers once every worker confirmed (up to 30 s) after its reload.
        timeout=90.0,
        section=section,
        values=values,
        delete=values is None,
        site=site,
        path=url,
        version=version,
    )


def recycle_progress(before: set[int], pool: dict[str, Any]) -> tuple[bool, str]:
    """Whether the recycle of ``pool`` that replaces the workers ``before`` is
    done; and a line saying how far it is."""
    old = [w for w in pool["workers"] if w["pid"] in before]
    new = [w for w in pool["workers"] if w["pid"] not in before]
    ready = sum(1 for w in new if w["state"] == "ready")
    inflight = sum(w["active"] for w in old)
    line = f"pool {pool['name']}: {ready} new worker(s) ready, {len(old)} old one(s) left"
    if old:
        line += f" with {inflight} request(s) in flight"
    return not old, line


def reload(path: str) -> str:
    """Re-read the server configuration (what SIGHUP does)."""
    return str(call(path, "reload")["message"])


def purge_cache(control: str, url_path: str, *, prefix: bool = False) -> str:
    """Drop the output cache's entries of ``url_path`` (every query string and
    variant), or of every path under it, in every worker of every pool."""
    return str(call(control, "purge", path=url_path, prefix=prefix)["message"])


def requests(
    control: str, *, elapsed: int = 0, pool: str | None = None, site: str | None = None
) -> dict[str, Any]:
    """The requests executing in every worker (at least ``elapsed`` ms; of ``pool``
    and ``site`` where given), longest-running first: ``requests``, and how many
    workers answered (``workers``) or did not in time (``unanswered``)."""
    fields: dict[str, Any] = {"elapsed": elapsed}
    if site is not None:
        fields["site"] = site
    return call(control, "requests", pool, **fields)


#: The columns of ``colonnade requests``: (heading, key).
_REQUEST_COLUMNS = (
    ("ID", "id"),
    ("ELAPSED", "elapsed"),
    ("POOL", "pool"),
    ("PID", "pid"),
    ("SITE", "site"),
    ("APP", "app"),
    ("CLIENT", "client"),
    ("VERB", "verb"),
    ("STAGE", "stage"),
    ("MODULE", "module"),
    ("URL", "url"),
)


def format_requests(found: dict[str, Any]) -> str:
    """``colonnade requests`` as a table (elapsed in ms), URL last."""
    rows = [
        [f"{row[key]} ms" if key == "elapsed" else str(row[key]) for _, key in _REQUEST_COLUMNS]
        for row in found["requests"]
    ]
    lines = []
    if rows:
        table = [[title for title, _ in _REQUEST_COLUMNS], *rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(_REQUEST_COLUMNS) - 1)]
        for r in table:
            cells = [
                c.rjust(w) if i in (1, 3) else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=False))
            ]
            lines.append("  ".join([*cells, r[-1]]))
    count = len(rows)
    lines.append(
        f"{count} request(s) executing in {found['workers']} worker(s)"
        + (
            f"; {found['unanswered']} worker(s) did not answer in time"
            if found["unanswered"]
            else ""
        )
        + (
            "; the request monitor is off ([server] request_monitor = false)"
            if found.get("monitor") is False
            else ""
        )
    )
    return "\n".join(lines)


def cache_stats(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The cache counters of every worker in ``status`` (:func:`pools`), added up by kind."""
    out: dict[str, dict[str, int]] = {}
    for pool in status["pools"]:
        for worker in pool["workers"]:
            for kind, counters in worker.get("caches", {}).items():
                summed = out.setdefault(kind, {})
                for name, value in counters.items():
                    summed[name] = summed.get(name, 0) + value
    return out


def format_cache_stats(totals: dict[str, dict[str, int]]) -> str:
    """``colonnade cache stats`` as text: one line per kind of cache."""
    if not totals:
        return "no worker reports a cache (is cache.output enabled, and have workers started?)"
    lines = []
    for kind, counters in sorted(totals.items()):
        looked = counters.get("hits", 0) + counters.get("misses", 0)
        ratio = f"{100 * counters.get('hits', 0) / looked:.1f}%" if looked else "-"
        parts = ", ".join(
            f"{name} {_size(value) if name == 'bytes' else value}"
            for name, value in counters.items()
        )
        lines.append(f"{kind}: hit ratio {ratio}; {parts}")
    return "\n".join(lines)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def format_pools(status: dict[str, Any], *, colour: bool = False) -> str:
    """``colonnade pools`` as text: each pool, and a table of its workers."""
    master = status["master"]
    lines = [
        f"master {master['pid']}, up {_duration(master['uptime'])}, "
        f"configuration generation {master['generation']}, "
        f"RSS {_size(master['rss'])} (private {_size(master['private'])}), "
        f"{master['modules_imported']} modules imported"
    ]
    for pool in status["pools"]:
        state = paint(pool["state"], "31" if pool["state"] == "stopped" else "", colour)
        state += f" ({pool['reason']})" if pool["reason"] else ""
        lines.append(
            f"\npool {pool['name']}: {state}, start {pool['start']}, "
            f"{len(pool['workers'])} worker(s), queue {pool['queue']}, "
            f"{pool['failures']} recent failure(s)"
        )
        if pool["workers"]:
            lines += format_workers(pool["workers"], colour=colour)
        for w in pool["workers"]:
            if w.get("http2_errors"):
                causes = ", ".join(f"{k} {v}" for k, v in sorted(w["http2_errors"].items()))
                lines.append(
                    f"  worker {w['pid']}: HTTP/2 connections ended for the client's fault: "
                    f"{causes}"
                )
            if w.get("slow_clients"):
                causes = ", ".join(f"{k} {v}" for k, v in sorted(w["slow_clients"].items()))
                lines.append(f"  worker {w['pid']}: connections cut or refused: {causes}")
    return "\n".join(lines)


def farms(control: str) -> list[dict[str, Any]]:
    """Every farm of the running configuration: its members, their state (the
    operator's and their health), requests in flight, requests, failures and
    response time, added up over the workers."""
    return list(call(control, "farms")["farms"])


def farm_action(control: str, action: str, farm: str, member: str) -> str:
    """``drain``, ``enable`` or ``disable`` ``member`` (name or address) of
    ``farm`` in every worker; the state survives a configuration reload."""
    return str(call(control, "farm", action=action, farm=farm, member=member)["message"])


def format_farms(report: list[dict[str, Any]]) -> str:
    """``colonnade farms`` as a table."""
    if not report:
        return "no farms in the configuration"
    lines = []
    for farm in report:
        lines.append(f"farm {farm['farm']} ({farm['algorithm']})")
        width = max(6, *(len(m["member"]) for m in farm["members"]))
        lines.append(
            f"  {'MEMBER':<{width}}  {'STATE':<11} {'IN-FLIGHT':>9} {'REQUESTS':>9} "
            f"{'FAILURES':>8} {'RESPONSE':>9}  HEALTH"
        )
        for m in farm["members"]:
            time_ms = "-" if m["response_ms"] is None else f"{m['response_ms']:.1f}ms"
            if not m["workers"]:
                health = "not used yet"
            elif m["down_in"]:
                health = f"down in {m['down_in']}/{m['workers']} worker(s): {m['reason']}"
            else:
                health = "up"
            lines.append(
                f"  {m['member']:<{width}}  {m['state']:<11} {m['in_flight']:>9} "
                f"{m['requests']:>9} {m['failures']:>8} {time_ms:>9}  {health}"
            )
    return "\n".join(lines)


def format_workers(workers: list[dict[str, Any]], *, colour: bool = False) -> list[str]:
    """Worker processes as a table (``pool`` a column when they have one)."""
    pooled = any("pool" in w for w in workers)
    headers = ["PID", "STATE", "UPTIME", "REQUESTS", "ACTIVE", "CONNS", "RSS", "PRIVATE", "CPU"]
    headers += ["RECYCLING"]
    rows = []
    for w in workers:
        row: list[object] = [
            w["pid"],
            w["state"],
            _duration(w["uptime"]),
            w["requests"],
            w["active"],
            w["connections"],
            _size(w["rss"]),
            _size(w["private"]),
            f"{w.get('cpu', 0.0):.1f}s",
            w.get("recycle_reason") or "",
        ]
        rows.append([w.get("pool", "-"), *row] if pooled else row)
    if pooled:
        headers.insert(0, "POOL")
    base = 1 if pooled else 0
    right = [base + i for i in (2, 6, 7, 8)]
    return table(headers, rows, colour=colour, right=right)


def traces(
    control: str, site: str | None = None, *, directory: str | None = None
) -> dict[str, Any]:
    """The kept failed-request traces, newest first (of ``site`` only, when given).

    Asked of the master; where none runs (a single-process server has no control
    socket) and ``directory`` is given, read from that folder directly.
    """
    try:
        return call(control, "traces", site=site)
    except ControlError:
        if directory is None or os.path.exists(control):
            raise
    return {"ok": True, "directory": directory, "traces": list_traces(directory, site)}


def trace(control: str, trace_id: str, *, directory: str | None = None) -> dict[str, Any]:
    """One kept trace by id (the request's correlation id); see :func:`traces`."""
    try:
        return dict(call(control, "trace", trace_id=trace_id)["trace"])
    except ControlError:
        if directory is None or os.path.exists(control):
            raise
    found = read_trace(directory, trace_id)
    if found is None:
        raise ControlError(f"no trace {trace_id!r} in {directory}")
    return found


def format_traces(listing: dict[str, Any]) -> str:
    """``colonnade trace list`` as a table."""
    rows = listing["traces"]
    if not rows:
        return f"no trace kept in {listing['directory']}"
    lines = [f"{'ID':<12}  {'TIME (UTC)':<26} {'SITE':<12} {'STATUS':>7} {'MS':>9}  REQUEST"]
    for t in rows:
        status = f"{t['status']}" if t.get("status") is not None else "-"
        taken = t.get("time_taken_ms")
        lines.append(
            f"{t['id'] or '-':<12}  {t['time'] or '-':<26} {t['site']:<12} {status:>7} "
            f"{taken if taken is not None else '-':>9}  {t['method'] or '-'} {t['url'] or '-'}"
        )
    return "\n".join(lines)


def format_trace(data: dict[str, Any]) -> str:
    """``colonnade trace show``: the request, then every hook with its times and
    the events in between, in order (a text waterfall)."""
    request = data.get("request", {})
    lines = [
        f"trace {data.get('id')}  {data.get('time')}  site {data.get('site')}  "
        f"application {data.get('application')}  pid {data.get('pid')}",
        f"{request.get('method')} {request.get('url')} -> {request.get('status')}."
        f"{request.get('substatus')} in {request.get('time_taken_ms')} ms; "
        f"handler {request.get('handler')}; user {request.get('user') or '(anonymous)'} "
        f"({request.get('auth_type') or 'none'})",
        f"kept because: {data.get('reason')}",
        "",
        f"{'ENTRY µs':>10} {'EXIT µs':>10} {'TOOK':>8}  {'STAGE':<28} MODULE / EVENT",
    ]
    timeline: list[tuple[int, int, str]] = []
    for h in data.get("hooks", []):
        took = h["exit_us"] - h["entry_us"]
        mark = "" if h["outcome"] == "continue" else f"  [{h['outcome']}]"
        timeline.append(
            (
                h["entry_us"],
                0,
                f"{h['entry_us']:>10} {h['exit_us']:>10} {took:>8}  {h['stage']:<28} "
                f"{h['module']}{mark}",
            )
        )
    for e in data.get("events", []):
        fields = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("at_us", "level", "kind"))
        timeline.append(
            (
                e["at_us"],
                1,
                f"{e['at_us']:>10} {'':>10} {'':>8}  {'':<28} * {e['kind']} ({e['level']}) "
                f"{fields}",
            )
        )
    lines += [text for _, _, text in sorted(timeline, key=lambda t: (t[0], t[1]))]
    if data.get("dropped"):
        lines.append(f"({data['dropped']} record(s) over the limit were dropped)")
    return "\n".join(lines)
