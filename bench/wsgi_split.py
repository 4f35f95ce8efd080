"""Where the wsgi-hello row's time goes beyond instructions, per thread (issue #24).

Starts the wsgi-hello row's servers as bench/run.py does (colonnade-wsgi, granian-wsgi,
... pinned to the server CPU; wrk on the client CPU with the row's 64 connections) and
measures, per server and round, over one wrk run and per request:

- each thread's CPU time (user, system: /proc/PID/task/TID/stat) and its voluntary and
  involuntary context switches (/proc/PID/task/TID/status), threads grouped by name
  (a pool's numbered threads, ``wsgi/-0``, ``wsgi/-1``, ..., as one ``wsgi/-*``);
- with ``--strace``: one more (slowed) run under ``strace -f -c -e trace=futex,...``,
  the calls per request (strace slows every call: compare the servers' ratios, not
  the absolute times).

Rounds alternate the servers (A B, A B, ...). Usage, from the repository root:

    bench/.venv/bin/python bench/wsgi_split.py --base-port 29000 [--rounds 3]
        [--duration 5] [--strace] [--servers colonnade-wsgi,granian-wsgi]
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
    before = _threads(pids)
    res = proxy_split._wrk(r.port, args.duration, args)
    after = _threads(pids)
    n = res["requests"]
    row = {"rps": res.get("rps", 0.0), "wrk_vcsw": res.get("wrk_vcsw", 0.0)}
    total = defaultdict(float)
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
        for k, v in cells.items():
            total[k] += v
    row["all.cpu_us"] = (total["utime"] + total["stime"]) / n * 1e6
    row["all.sys_us"] = total["stime"] / n * 1e6
    row["all.vcsw"] = total["vcsw"] / n
    row["all.ncsw"] = total["ncsw"] / n
    return row


def under_strace(r: run.Running, args: argparse.Namespace, calls: str) -> str:
    """One wrk run with strace -f -c attached to the server's processes: calls per
    request of each kind in ``calls``."""
    assert r.proc is not None
    pids = proxy_split._tree(r.proc.pid)
    out = run.OUT / f"wsgi-split-{r.server.name}.strace"
    argv = ["strace", "-f", "-c", "-e", f"trace={calls}", "-o", str(out)]
    for pid in pids:
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    res = proxy_split._wrk(r.port, args.duration, args)
    tracer.send_signal(2)
    tracer.wait(timeout=60)
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
        if own.strace:
            print("\n".join(under_strace(r, args, own.calls) for r in running))
    return 0


if __name__ == "__main__":
    sys.exit(main())
