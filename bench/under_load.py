"""User-space instructions per request *under load*, counted by callgrind.

run.py's instruction rows send one request at a time on one connection; under
load a server behaves otherwise (several requests wait at once, the cycle
collector runs, a WSGI pool's wake-ups are shared). This script counts a server
under ``h2load --h1 -c C`` instead:

1. the server starts under ``valgrind --tool=callgrind --dump-instr=no``
   (pinned to CPU 0, h2load to CPU 1), ``--workers 0`` for colonnade (one
   process: the one that serves);
2. a warm-up of ``--warmup`` requests at ``-c C``, then the counters are zeroed
   (``callgrind_control -z PID``: only this server's processes, never another
   callgrind's on the host);
3. ``--n1`` requests, a dump (``callgrind_control -d PID``: the counters are
   written and zeroed); ``--n2`` requests, a dump;
4. (dump 2 - dump 1) / (n2 - n1): what is spent waiting between the steps
   (timers, the loop's polls) cancels out, as start-up does in run.py.

Usage (from the repository root)::

    bench/.venv/bin/python bench/under_load.py pool --port 29010
    bench/.venv/bin/python bench/under_load.py loop --port 29010

``pool``: colonnade (compiled build) running apps.wsgi_hello on its WSGI thread
pool; ``loop``: the same app inline (``--no-wsgi-blocking``); ``pool-pure`` and
``loop-pure``: the pure install; ``asgi-pure``: the pure install running
apps.asgi_hello (run.py's colonnade-asgi-py row, in one process). (granian is not here yet: with its processes
under callgrind, the dumps asked for never arrived in a first try; session 24
counted it at 49.9k with two runs of 4,000 and 12,000 requests instead.) ``--keep DIR`` keeps the callgrind files (for callgrind_annotate).
Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.M)
_DONE = re.compile(r"^requests: .* (\d+) succeeded, (\d+) failed, (\d+) errored", re.M)
_COLONNADE_ARGS = (
    "serve apps.wsgi_hello:app --interface wsgi --app-dir bench --root {www}"
    " --bind {host}:{port} --workers 0 --timeout-keep-alive 300"
)
SERVERS = {
    "pool": ".venv-compiled/bin/colonnade " + _COLONNADE_ARGS,
    "loop": ".venv-compiled/bin/colonnade " + _COLONNADE_ARGS + " --no-wsgi-blocking",
    "pool-pure": ".venv/bin/colonnade " + _COLONNADE_ARGS,
    "loop-pure": ".venv/bin/colonnade " + _COLONNADE_ARGS + " --no-wsgi-blocking",
    # run.py's colonnade-asgi-py (the pure install, its access log on), in one process
    "asgi-pure": ".venv/bin/colonnade serve apps.asgi_hello:app --app-dir bench --root {www}"
    " --bind {host}:{port} --workers 0 --timeout-keep-alive 300",
}


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def control(option: str, pids: list[int]) -> None:
    for p in pids:
        subprocess.run(["callgrind_control", option, str(p)], check=True, capture_output=True)


def h2load(port: int, n: int, conns: int) -> None:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "h2load",
            "--h1",
            "-n",
            str(n),
            "-c",
            str(conns),
            f"http://{HOST}:{port}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    m = _DONE.search(out)
    if m is None or int(m.group(1)) != n:
        raise SystemExit(f"h2load: not all {n} requests succeeded:\n{out}")


def dumped_total(out_dir: Path, seen: set[Path]) -> int:
    """The summed totals of the dump files written since ``seen`` (added to it)."""
    deadline = time.monotonic() + 60
    while True:
        new = [f for f in out_dir.glob("cg.*") if f not in seen]
        totals = [_TOTAL.findall(f.read_text(errors="replace")) for f in new]
        if new and all(totals):
            seen.update(new)
            return sum(int(t[-1]) for t in totals)
        if time.monotonic() > deadline:
            raise SystemExit("callgrind wrote no dump")
        time.sleep(0.5)


def measure(name: str, port: int, args: argparse.Namespace) -> float:
    out_dir = Path(tempfile.mkdtemp(prefix=f"under-load-{name}-"))
    www = out_dir / "www"
    www.mkdir()
    command = SERVERS[name].format(host=HOST, port=port, www=www).split()
    argv = [
        "taskset",
        "-c",
        "0",
        "env",
        "PYTHONHASHSEED=0",
        "valgrind",
        "-q",
        "--tool=callgrind",
        "--dump-instr=no",
        "--trace-children=yes",
        f"--callgrind-out-file={out_dir}/cg.%p",
        *command,
    ]
    log = open(out_dir / "server.log", "wb")
    server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start: see {out_dir}/server.log") from None
                time.sleep(0.3)
        h2load(port, args.warmup, args.connections)
        time.sleep(1)
        pids = [p for p in descendants(server.pid) if _is_callgrind(p)]
        if not pids:
            raise SystemExit("no callgrind process found")
        control("-z", pids)
        seen = set(out_dir.glob("cg.*"))
        h2load(port, args.n1, args.connections)
        time.sleep(1)
        control("-d", pids)
        t1 = dumped_total(out_dir, seen)
        h2load(port, args.n2, args.connections)
        time.sleep(1)
        control("-d", pids)
        t2 = dumped_total(out_dir, seen)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    per = (t2 - t1) / (args.n2 - args.n1)
    print(f"{name}: {t1:,} at {args.n1}, {t2:,} at {args.n2}: {per:,.0f} instructions per request")
    if args.keep:
        dest = Path(args.keep) / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(out_dir, dest)
    shutil.rmtree(out_dir, ignore_errors=True)
    return per


def _is_callgrind(pid: int) -> bool:
    # A process valgrind runs has its tool mapped: callgrind's preload library.
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "vgpreload_core" in f.read()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs="+", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, default=29010)
    parser.add_argument("-c", "--connections", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--n1", type=int, default=4000)
    parser.add_argument("--n2", type=int, default=12000)
    parser.add_argument("--keep", help="copy the callgrind files to KEEP/SERVER")
    args = parser.parse_args()
    if not Path("bench/apps/wsgi_hello.py").exists():
        sys.exit("run from the repository root")
    for i, name in enumerate(args.servers):
        measure(name, args.port + i, args)


if __name__ == "__main__":
    main()
