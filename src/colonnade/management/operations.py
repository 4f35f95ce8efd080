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
from colonnade.errors import ColonnadeError
from colonnade.pools.control import socket_path


class ControlError(ColonnadeError):
    """The master could not be reached, or refused the command."""


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
        raise ControlError(str(reply.get("error", "the master refused the command")))
    return reply


def control_path(config: ServerConfig | None, explicit: str | None = None) -> str:
    """The control socket to use: ``explicit``, else the configuration's."""
    if explicit:
        return os.path.abspath(explicit)
    if config is None:
        from colonnade.pools.control import default_path

        return default_path()
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


def format_pools(status: dict[str, Any]) -> str:
    """``colonnade pools`` as a table."""
    master = status["master"]
    lines = [
        f"master {master['pid']}, up {_duration(master['uptime'])}, "
        f"configuration generation {master['generation']}"
    ]
    for pool in status["pools"]:
        state = pool["state"] + (f" ({pool['reason']})" if pool["reason"] else "")
        lines.append(
            f"\npool {pool['name']}: {state}, start {pool['start']}, "
            f"{len(pool['workers'])} worker(s), queue {pool['queue']}, "
            f"{pool['failures']} recent failure(s)"
        )
        if pool["workers"]:
            lines.append(
                f"  {'PID':>7}  {'STATE':<9} {'UPTIME':>7} {'REQUESTS':>9} {'ACTIVE':>6} "
                f"{'CONNS':>5} {'RSS':>10} {'PRIVATE':>10}"
            )
        for w in pool["workers"]:
            lines.append(
                f"  {w['pid']:>7}  {w['state']:<9} {_duration(w['uptime']):>7} "
                f"{w['requests']:>9} {w['active']:>6} {w['connections']:>5} "
                f"{_size(w['rss']):>10} {_size(w['private']):>10}"
            )
            if w.get("http2_errors"):
                causes = ", ".join(f"{k} {v}" for k, v in sorted(w["http2_errors"].items()))
                lines.append(
                    f"           HTTP/2 connections ended for the client's fault: {causes}"
                )
    return "\n".join(lines)
