"""Where the wsgi-hello row's time goes beyond instructions, per thread (issue #24).

Starts the wsgi-hello row's servers as bench/run.py does (colonnade-wsgi, granian-wsgi,
... pinned to the server CPU; wrk on the client CPU with the row's 64 connections) and
measures, per server and round, over one wrk run and per request:

- each thread's CPU time (user, system: /proc/PID/task/TID/stat) and its voluntary and
  involuntary context switches (/proc/PID/task/TID/status), threads grouped by name
  (a pool's numbered threads, ``wsgi/-0``, ``wsgi/-1``, ..., as one ``wsgi/-*``);
- with ``--perf``: one more run under ``perf stat --per-thread`` (tracepoints, not
  ptrace: barely slowed), context switches and ``futex``, ``epoll_pwait``, ``read``
  and ``write`` calls per request, of the processes' main threads (``L``: the
  event loop; the master idles) and of their other threads (``T``: the pool's);
- with ``--strace``: one more (slowed) run under ``strace -f -c -e trace=futex,...``,
  the calls per request (strace slows every call: compare the servers' ratios, not
  the absolute times).

``all.cpu_us`` and ``all.sys_us`` are the processes' totals; the switches and a
thread group's rows miss what threads that ended during the run spent (granian
starts and ends blocking threads), and a thread's CPU time can read 0 where its
runs are short (the pool's).

Rounds alternate the servers (A B, A B, ...). Usage, from the repository root:

    bench/.venv/bin/python bench/wsgi_split.py --base-port 29000 [--rounds 3]
        [--duration 5] [--perf] [--strace] [--servers colonnade-wsgi,granian-wsgi]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_split
import run

TICK = os.sysconf("SC_CLK_TCK")
_NUMBERED = re.compile(r"[-_ ]?\d+$")


def _threads(pids: list[int]) -> dict[str, dict[str, float]]:
    # Per thread group (name, numbered threads as one): CPU seconds and switches.
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                base = f"/proc/{pid}/task/{task}"
                with contextlib.suppress(OSError):
                    stat = Path(f"{base}/stat").read_text()
                    name = stat[stat.index("(") + 1 : stat.rindex(")")]
                    if task == str(pid):
                        name = f"main:{name}"
                    else:
                        name = _NUMBERED.sub("*", name)
                    fields = stat[stat.rindex(")") + 2 :].split()
                    row = out[name]
                    row["n"] += 1
                    row["utime"] += int(fields[11]) / TICK
                    row["stime"] += int(fields[12]) / TICK
                    for line in Path(f"{base}/status").read_text().splitlines():
                        if line.startswith("voluntary_ctxt_switches"):
                            row["vcsw"] += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            row["ncsw"] += int(line.split()[1])
    return out


def measure(r: run.Running, args: argparse.Namespace) -> dict[str, float]:
    assert r.proc is not None
    pids = proxy_split._tree(r.proc.pid)
    before, whole = _threads(pids), proxy_split._sum(pids)
    res = proxy_split._wrk(r.port, args.duration, args)
    after, whole_after = _threads(pids), proxy_split._sum(pids)
    n = res["requests"]
    row = {"rps": res.get("rps", 0.0), "wrk_vcsw": res.get("wrk_vcsw", 0.0)}
    row["all.vcsw"] = row["all.ncsw"] = 0.0
    for name, b in after.items():
        a = before.get(name, {})
        cells = {k: b[k] - a.get(k, 0.0) for k in ("utime", "stime", "vcsw", "ncsw")}
        if not any(cells.values()):
            continue
        row[f"{name}.threads"] = b["n"]
        row[f"{name}.cpu_us"] = (cells["utime"] + cells["stime"]) / n * 1e6
        row[f"{name}.sys_us"] = cells["stime"] / n * 1e6
        row[f"{name}.vcsw"] = cells["vcsw"] / n
        row[f"{name}.ncsw"] = cells["ncsw"] / n
        row["all.vcsw"] += cells["vcsw"] / n  # (a process's status: its main thread's)
        row["all.ncsw"] += cells["ncsw"] / n
    # CPU time from the processes' totals (/proc/PID/stat): they keep what threads
    # that ended meanwhile spent (granian's blocking threads come and go).
    cells = {k: whole_after[k] - whole[k] for k in ("utime", "stime")}
    row["all.cpu_us"] = (cells["utime"] + cells["stime"]) / n * 1e6
    row["all.sys_us"] = cells["stime"] / n * 1e6
    return row


_PERF_EVENTS = (
    "context-switches",
    "syscalls:sys_enter_futex",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_write",
)


def _watched(
    argv: list[str], r: run.Running, args: argparse.Namespace
) -> tuple[list[int], dict[str, float]]:
    """One wrk run with ``argv -p PIDS`` (perf, strace) attached to the server's
    processes, stopped with SIGINT after it: the processes and wrk's figures."""
    assert r.proc is not None
    pids = proxy_split._tree(r.proc.pid)
    argv = [*argv, "-p", ",".join(map(str, pids))]
    watcher = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    res = proxy_split._wrk(r.port, args.duration, args)
    watcher.send_signal(2)
    watcher.wait(timeout=60)
    return pids, res


def under_perf(r: run.Running, args: argparse.Namespace) -> str:
    """One wrk run under ``perf stat --per-thread``: each event per request, for the
    processes' main threads (L) and their other threads (T)."""
    out = run.OUT / f"wsgi-split-{r.server.name}.perf"
    argv = ["perf", "stat", "--per-thread", "-x", ";", "-e", ",".join(_PERF_EVENTS)]
    pids, res = _watched([*argv, "-o", str(out)], r, args)
    n = res["requests"]
    counts: dict[str, float] = defaultdict(float)
    for line in out.read_text().splitlines():
        cells = line.split(";")
        if len(cells) < 4 or line.startswith("#"):
            continue
        with contextlib.suppress(ValueError):
            tid = int(cells[0].rsplit("-", 1)[1])
            who = "L" if tid in pids else "T"
            counts[f"{who} {cells[3].removeprefix('syscalls:sys_enter_')}"] += float(cells[1])
    lines = [f"{r.server.name}: {n:.0f} requests, {res.get('rps', 0):.0f} req/s under perf stat"]
    lines += [f"  {k:24} {v / n:7.3f}/req" for k, v in sorted(counts.items())]
    return "\n".join(lines)


def under_strace(r: run.Running, args: argparse.Namespace, calls: str) -> str:
    """One wrk run with strace -f -c attached to the server's processes: calls per
    request of each kind in ``calls``."""
    out = run.OUT / f"wsgi-split-{r.server.name}.strace"
    argv = ["strace", "-f", "-c", "-e", f"trace={calls}", "-o", str(out)]
    _, res = _watched(argv, r, args)
    n = res["requests"]
    lines = [f"{r.server.name}: {n:.0f} requests, {res.get('rps', 0):.0f} req/s under strace"]
    for line in out.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d*)\s*(\w+)$", line)
        if m and m.group(3) != "total":
            errors = f" ({int(m.group(2)) / n:.3f} failed)" if m.group(2) else ""
            lines.append(f"  {m.group(3):16} {int(m.group(1)) / n:7.3f}/req{errors}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-port", type=int, default=29000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--servers", default="colonnade-wsgi,granian-wsgi")
    ap.add_argument("--perf", action="store_true", help="one more run under perf stat")
    ap.add_argument("--strace", action="store_true", help="one more run under strace -c")
    ap.add_argument("--calls", default="futex,epoll_wait,epoll_pwait,read,write,recvfrom,sendto")
    own = ap.parse_args()
    args = proxy_split.client_args(own.base_port, own.duration)
    run.generate_static(run.WWW)
    names = own.servers.split(",")
    with proxy_split.serving(names, "wsgi-split", args) as running:
        if not running:
            return 1
        rows = proxy_split.measure_rounds(running, own.rounds, measure, args)
        for name in names:
            print(f"{name} (median of {own.rounds}, per request)")
            for k in sorted({k for x in rows[name] for k in x}):
                values = [x.get(k, 0.0) for x in rows[name]]
                print(f"  {k:32}{statistics.median(values):12.3f}")
        if own.perf:
            print("\n".join(under_perf(r, args) for r in running))
        if own.strace:
            print("\n".join(under_strace(r, args, own.calls) for r in running))
    return 0


if __name__ == "__main__":
    sys.exit(main())
