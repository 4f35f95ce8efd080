"""Where the proxy-hello row's time goes, per request, on both sides (issue #19).

Starts the proxy-hello row's servers as bench/run.py does (colonnade-proxy and
nginx-proxy, each with a uvicorn upstream of its own, all pinned to the server
CPU; wrk on the client CPU with the row's 64 connections) and, per server and
round, measures over one wrk run:

- CPU time per request (user and system, from /proc/PID/stat) of the proxy's
  processes and of its upstream, and their context switches (/proc/PID/status);
- read- and write-like system calls per request (/proc/PID/io syscr, syscw);
- with ``--syscalls``: one more run under ``perf trace -s`` (tracepoints, not
  ptrace), the system calls by kind per request of the proxy and the upstream,
  connect() and accept4() among them (new upstream connections per request).

Rounds alternate the servers (A B, A B, ...). Usage, from the repository root:

    bench/.venv/bin/python bench/proxy_split.py --base-port 21000 [--rounds 3]
        [--duration 5] [--syscalls] [--servers colonnade-proxy,nginx-proxy]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import instructions
import run

TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    return [pid, *run._descendants(pid)]


def _sample(pid: int) -> dict[str, float]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    out = {"utime": int(fields[11]) / TICK, "stime": int(fields[12]) / TICK}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            out["vcsw"] = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            out["ncsw"] = int(line.split()[1])
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("syscr", "syscw"):
            out[key] = int(value)
    return out


def _sum(pids: list[int]) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for pid in pids:
        with contextlib.suppress(OSError):
            for k, v in _sample(pid).items():
                total[k] += v
    return total


def _wrk(port: int, duration: int, args: argparse.Namespace) -> dict[str, float]:
    # wrk's own context switches and CPU time (/usr/bin/time): how often a response
    # had to wake it.
    argv = ["taskset", "-c", str(args.client_cpu), "/usr/bin/time", "-f", "TIME %w %c %U %S"]
    argv += ["wrk", "-t1", "-c64", f"-d{duration}s", "--latency", f"http://{run.HOST}:{port}/"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    parsed = run.parse_wrk(done.stdout)
    m = re.search(r"TIME (\d+) (\d+) ([\d.]+) ([\d.]+)", done.stderr)
    if m:
        n = parsed["requests"]
        parsed["wrk_vcsw"] = int(m.group(1)) / n
        parsed["wrk_ncsw"] = int(m.group(2)) / n
        parsed["wrk_cpu_us"] = (float(m.group(3)) + float(m.group(4))) / n * 1e6
    return parsed


def measure(r: run.Running, args: argparse.Namespace) -> dict[str, float]:
    assert r.proc is not None and r.aux is not None
    front = _tree(r.proc.pid)
    up = _tree(r.aux.pid)
    a_front, a_up = _sum(front), _sum(up)
    res = _wrk(r.port, args.duration, args)
    b_front, b_up = _sum(front), _sum(up)
    n = res["requests"]
    row = {"rps": res.get("rps", 0.0), "p50_ms": res.get("p50", 0) * 1e3}
    row["p99_ms"] = res.get("p99", 0) * 1e3
    for k in ("wrk_vcsw", "wrk_ncsw", "wrk_cpu_us"):
        row[k] = res.get(k, 0.0)
    for side, a, b in (("proxy", a_front, b_front), ("up", a_up, b_up)):
        for k in ("utime", "stime"):
            row[f"{side}_{k}_us"] = (b[k] - a[k]) / n * 1e6
        for k in ("vcsw", "ncsw", "syscr", "syscw"):
            row[f"{side}_{k}"] = (b[k] - a[k]) / n
    row["total_cpu_us"] = sum(
        row[f"{s}_{k}_us"] for s in ("proxy", "up") for k in ("utime", "stime")
    )
    return row


def _under_perf(argv: list[str], r: run.Running, args: argparse.Namespace) -> dict[str, float]:
    # One wrk run with ``argv`` (perf) watching the proxy's and the upstream's processes.
    assert r.proc is not None and r.aux is not None
    pids = _tree(r.proc.pid) + _tree(r.aux.pid)
    perf = subprocess.Popen(
        [*argv, "-p", ",".join(map(str, pids))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    res = _wrk(r.port, args.duration, args)
    perf.send_signal(2)
    perf.wait(timeout=60)
    return res


def syscalls(r: run.Running, args: argparse.Namespace) -> str:
    """One wrk run under ``perf trace -s`` of the proxy's and the upstream's processes:
    each process's system calls by kind, per request."""
    out = run.OUT / f"proxy-split-{r.server.name}.trace"
    res = _under_perf(["perf", "trace", "-s", "-o", str(out)], r, args)
    n = res["requests"]
    lines = [f"{r.server.name}: {n:.0f} requests, {res.get('rps', 0):.0f} req/s under perf trace"]
    proc = ""
    for line in out.read_text().splitlines():
        m = re.match(r"\s*(\S.*) \((\d+)\), (\d+) events", line)
        if m:
            proc = f"{m.group(1)} {m.group(2)}"
            lines.append(f"  {proc}: {int(m.group(3)) / 2 / n:.2f} syscalls/request")
            continue
        m = re.match(r"\s+(\w+)\s+(\d+)\s+\d+\s+([\d.]+)", line)
        if m and proc:
            calls = int(m.group(2))
            total_ms = float(m.group(3))
            lines.append(
                f"    {m.group(1):16} {calls / n:6.3f}/req  {total_ms * 1e3 / calls:6.2f} us each"
            )
    return "\n".join(lines)


def profile(r: run.Running, args: argparse.Namespace) -> Path:
    """One wrk run under ``perf record -e cpu-clock`` (timer sampling: this VM has no
    hardware counters) of the proxy's and the upstream's processes; the data file."""
    out = run.OUT / f"proxy-split-{r.server.name}.perf"
    argv = ["perf", "record", "-e", "cpu-clock", "-F", "4000", "-g", "-o", str(out)]
    res = _under_perf(argv, r, args)
    print(
        f"{r.server.name}: {res['requests']:.0f} requests under perf record "
        f"(wrk woken {res.get('wrk_vcsw', 0):.3f} times a request): {out}"
    )
    return out


def drive_many(port: int, n: int, conns: int) -> None:
    """``n`` requests as wrk sends them, over ``conns`` keep-alive connections at once
    (one thread each, sequential requests on each: bench/instructions.py's drive)."""
    with concurrent.futures.ThreadPoolExecutor(conns) as pool:
        share = [n // conns + (i < n % conns) for i in range(conns)]
        jobs = [pool.submit(instructions.drive, run.HOST, port, "/", k, 600.0) for k in share]
        for job in jobs:
            job.result()


def _valgrind_socket(wrap: list[str]):  # type: ignore[no-untyped-def]
    # run._start_on_socket with the upstream under callgrind and time to start.
    def start(argv, sock, err_path, see):  # type: ignore[no-untyped-def]
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        full = [*argv[:3], *wrap, *argv[3:]]  # after "taskset -c N"
        with open(err_path, "wb") as err:
            proc = run.spawn(full, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}; see {see}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                return proc, full, sock
            time.sleep(0.5)
        run.stop(proc)
        raise RuntimeError("its socket did not accept within 180 s")

    return start


def callgrind(name: str, who: str, n: int, conns: int, args: argparse.Namespace) -> float:
    """Instructions of ``who`` ("proxy": the front end, "up": its upstream) over ``n``
    requests at ``conns`` connections (start-up included: take a difference)."""
    cg = run.CALLGRIND_DIR / f"split-{name}-{who}-{args.base_port}"
    shutil.rmtree(cg, ignore_errors=True)
    cg.mkdir(parents=True)
    wrap = instructions.valgrind_argv(cg.relative_to(run.REPO))
    saved = run._start_on_socket
    r = None
    try:
        if who == "up":
            run._start_on_socket = _valgrind_socket(wrap)
            r = run.start_server(name, "split-cg", args, "/", timeout=180)
        else:
            r = run.start_server(name, "split-cg", args, "/", wrap=wrap, timeout=180)
        if r.error:
            raise RuntimeError(r.error)
        drive_many(r.port, n, conns)
        if who == "up":
            assert r.aux is not None
            run.stop(r.aux, grace=60)
        else:
            assert r.proc is not None
            run.stop(r.proc, grace=60)
        total = float(instructions.callgrind_total(cg)[0])
        kept = cg.with_name(f"{cg.name}-{n}")  # for callgrind_annotate
        shutil.rmtree(kept, ignore_errors=True)
        cg.rename(kept)
        return total
    finally:
        run._start_on_socket = saved
        if r is not None:
            run.stop_run(r)


def client_args(base_port: int, duration: int) -> argparse.Namespace:
    """run.py's arguments for these scripts: the server CPU 0 and the client CPU 1
    unless run.py's defaults say otherwise; this process moved to the client CPU."""
    args = run.parse_args(["--base-port", str(base_port), "--out", "-"])
    args.duration = duration
    args.server_cpu = 0 if args.server_cpu is None else args.server_cpu
    args.client_cpu = 1 if args.client_cpu is None else args.client_cpu
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {args.client_cpu})
    return args


@contextlib.contextmanager
def serving(names: list[str], tag: str, args: argparse.Namespace) -> Iterator[list[run.Running]]:
    """Each named server started and warmed up with a second of wrk, stopped on
    leaving; an empty list (said on stderr) where one failed to start."""
    running: list[run.Running] = []
    try:
        for name in names:
            r = run.start_server(name, tag, args, "/")
            if r.error:
                print(f"{name}: {r.error}", file=sys.stderr)
                running.append(r)
                yield []
                return
            running.append(r)
            _wrk(r.port, 1, args)  # warm-up
        yield running
    finally:
        for r in running:
            run.stop_run(r)


def measure_rounds(
    running: list[run.Running],
    rounds: int,
    measure: Callable[[run.Running, argparse.Namespace], dict[str, float]],
    args: argparse.Namespace,
) -> dict[str, list[dict[str, float]]]:
    """``measure`` each server in turn (A B, A B, ...), ``rounds`` times: each
    server's rows, by its name."""
    rows: dict[str, list[dict[str, float]]] = {r.server.name: [] for r in running}
    for _ in range(rounds):
        for r in running:
            rows[r.server.name].append(measure(r, args))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-port", type=int, default=21000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--servers", default="colonnade-proxy,nginx-proxy")
    ap.add_argument("--syscalls", action="store_true")
    ap.add_argument("--perf", action="store_true", help="perf record a run of each")
    ap.add_argument("--callgrind", choices=("proxy", "up"), help="instructions per request")
    ap.add_argument("--conns", type=int, default=64, help="--callgrind: connections")
    ap.add_argument("--requests", default="1000,3000", help="--callgrind: N1,N2")
    own = ap.parse_args()
    args = client_args(own.base_port, own.duration)
    names = own.servers.split(",")
    if own.callgrind:
        args.colonnade_workers = 0  # as run.py under valgrind (no pidfd_open)
        n1, n2 = (int(x) for x in own.requests.split(","))
        for name in names:
            t1 = callgrind(name, own.callgrind, n1, own.conns, args)
            t2 = callgrind(name, own.callgrind, n2, own.conns, args)
            per = (t2 - t1) / (n2 - n1)
            print(f"{name} {own.callgrind} at {own.conns} connections: {per:,.0f} instr/request")
        return 0
    with serving(names, "split", args) as running:
        if not running:
            return 1
        rows = measure_rounds(running, own.rounds, measure, args)
        keys = list(rows[names[0]][0]) if own.rounds else []
        print(f"{'median of ' + str(own.rounds):22}" + "".join(f"{n:>18}" for n in names))
        for k in keys:
            cells = "".join(f"{statistics.median(x[k] for x in rows[n]):18.3f}" for n in names)
            print(f"{k:22}{cells}")
        if own.syscalls:
            for r in running:
                print(syscalls(r, args))
        if own.perf:
            for r in running:
                profile(r, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
