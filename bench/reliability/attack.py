"""Slow-client attacks with slowhttptest against Colonnade and nginx, on loopback only.

    make attack                                          (everything, ~9 minutes)
    .venv/bin/python bench/reliability/attack.py [options]

Each attack of Debian's ``slowhttptest`` runs at ``--connections`` (1,000) against a
freshly started server: ``colonnade serve --workers 2`` and nginx (2 workers, its
default timeouts), one after the other, each while a well-behaved client measures:

- **slowloris** (``-H``): request heads sent a header line every 10 s, never ended;
- **slowbody** (``-B``, R.U.D.Y.): a POST declaring ``Content-Length: 1000000`` (under
  nginx's default 1 MiB limit) whose body comes 10 bytes every 10 s, to an
  application that reads its body;
- **slowread** (``-X``): GETs of a 10 MiB file read 32 bytes every 5 s through a
  receive window of 512-1024 bytes;
- **range** (``-R``, "Apache Killer", CVE-2011-3192): GETs of a 100 KiB static file
  with a ``Range`` of some 3,000 overlapping ranges; each connection ends once
  answered, so slowhttptest is run again and again through the window.

Both servers serve the same URLs: ``/files/`` from ``bench/out/www`` (static), and
``/upload``, the WSGI app ``upload_app:app`` beside this file, which reads the whole
body (Colonnade runs it in its workers; nginx proxies it, buffering the body first,
to a one-process Colonnade on another port, as nginx is deployed in front of an
application server).

The good client opens a new connection for each request, ``--rate`` requests a
second alternating ``GET /files/hello.txt`` and ``POST /upload`` (64 bytes), each
failing after ``--timeout`` seconds; it measures ``--baseline`` seconds before the
attack (its baseline, same server, same run), ``--measure`` seconds once the attack
holds its connections, and 5 s after the attack ended (recovery). The server's RSS
(master and workers, summed) is sampled twice a second; its worker PIDs are
compared before and after (a worker that died was replaced). Last, a memory check:
``--rounds`` rounds of one attack (``--rounds-attack``, slow read) against one
Colonnade, its RSS and open descriptors after each round: settling, or growing.

The results go into ``--out`` (bench/RELIABILITY.md), between the markers
``<!-- attack:begin -->`` and ``<!-- attack:end -->``, the rest of the file left as
it is; raw numbers into bench/out/reliability/attack-*.json. Every process started
here is stopped by process group, also on Ctrl-C; ``--max-minutes`` bounds the run.
Python 3 stdlib only (the bench harness's process helpers, bench/run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import run as harness  # noqa: E402  (bench/run.py: process control, memory, ports)
from apps.make_static import generate as generate_static  # noqa: E402

HOST = harness.HOST
OUT = BENCH / "out" / "reliability"
WWW = BENCH / "out" / "www"
RELIABILITY = BENCH / "RELIABILITY.md"
BEGIN, END = "<!-- attack:begin -->", "<!-- attack:end -->"
APP = "upload_app:app"
RECOVERY = 5.0  # seconds of good client after the attack ended
UPLOAD = b"x" * 64

HEADER = """# Reliability: attacks, faults and time

Written by scripts, each owning its section between `<!-- NAME:begin -->` and
`<!-- NAME:end -->` markers (issue #23). Each section says how to rerun it.
"""


@dataclass(frozen=True)
class Attack:
    name: str
    title: str
    flags: tuple[str, ...]
    path: str
    burst: bool = False  # its connections end once answered: rerun through the window


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in [
        Attack(
            "slowloris",
            "slow headers (slowloris)",
            ("-H", "-i", "10", "-x", "24"),
            "/files/hello.txt",
        ),
        Attack(
            "slowbody",
            "slow body (R.U.D.Y.)",
            ("-B", "-i", "10", "-s", "1000000", "-x", "10", "-t", "POST"),
            "/upload",
        ),
        Attack(
            "slowread",
            "slow read",
            ("-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3"),
            "/files/10m.bin",
        ),
        Attack(
            "range",
            "range header (Apache Killer)",
            ("-R", "-a", "10", "-b", "3000", "-t", "GET"),
            "/files/100k.bin",
            burst=True,
        ),
    ]
}
SERVERS = ("colonnade", "nginx")


# ======================================================================================
# The servers
# ======================================================================================


@dataclass
class Target:
    """A started server: its process (group leader), command lines, helper processes."""

    name: str
    port: int
    proc: subprocess.Popen[Any]
    cmd: list[str]
    aux: list[subprocess.Popen[Any]] = field(default_factory=list)
    aux_cmd: list[list[str]] = field(default_factory=list)

    def pids(self) -> set[int]:
        """The server's processes: the leader and its descendants (master, workers)."""
        if self.proc.poll() is not None:
            return set()
        return {self.proc.pid, *harness._descendants(self.proc.pid)}

    def rss(self) -> tuple[int, int]:
        """(RSS bytes of master and workers summed, process count)."""
        return harness.tree_memory(self.proc.pid)

    def stop(self) -> None:
        for p in [self.proc, *self.aux]:
            harness.stop(p, grace=5.0)


def colonnade_bin(args: argparse.Namespace) -> str:
    return str(args.colonnade or REPO / ".venv/bin/colonnade")


def colonnade_argv(args: argparse.Namespace, port: int, workers: int) -> list[str]:
    argv = [
        os.path.relpath(colonnade_bin(args), REPO),
        "serve",
        APP,
        "--interface",
        "wsgi",
        "--app-dir",
        os.path.relpath(HERE, REPO),
        "--bind",
        f"{HOST}:{port}",
        "--no-watch",
        "--log-level",
        "warning",
    ]
    if workers:
        sock = OUT / f"control-{port}" / "control.sock"
        argv += [
            "--static",
            f"/files={os.path.relpath(WWW, REPO)}",
            "--workers",
            str(workers),
            "--start-workers",
            "--control",
            os.path.relpath(sock, REPO),
        ]
    else:
        argv.append("--no-access-log")
    return argv


def nginx_conf(port: int, upstream: int) -> Path:
    """The bench's nginx (its default timeouts) with 2 workers, ``/files/`` static, and
    ``/upload`` proxied (the body buffered by nginx first, its default) to ``upstream``."""
    locations = (
        f"\n        location /files/ {{ alias {WWW}/; }}"
        f"\n        location = /upload {{ proxy_pass http://{HOST}:{upstream}; }}"
    )
    return harness.nginx_conf(port, True, workers=2, locations=locations)


def _spawn(argv: list[str], log_name: str) -> subprocess.Popen[Any]:
    out = (OUT / log_name).open("wb")
    try:
        return harness.spawn(argv, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def _await_ready(proc: subprocess.Popen[Any], port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} at start")
        if harness.probe(port, path) == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"did not answer {path} within {timeout:g} s")


def start(name: str, args: argparse.Namespace) -> Target:
    """Start server ``name`` on a free port; wait until it answers both URLs."""
    port = harness.free_port()
    if name == "nginx" and shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed (bench/setup.sh installs it)")
    if name == "colonnade":
        argv = colonnade_argv(args, port, workers=2)
        proc = _spawn(argv, f"colonnade-{port}.log")
        target = Target(name, port, proc, argv)
    else:
        up = harness.free_port()
        up_argv = colonnade_argv(args, up, workers=0)
        up_proc = _spawn(up_argv, f"upstream-{up}.log")
        try:
            _await_ready(up_proc, up, "/upload", args.start_timeout)
        except RuntimeError:
            harness.stop(up_proc)
            raise
        conf = nginx_conf(port, up)
        nginx_dir = harness.NGINX_DIR
        argv = ["nginx", "-p", f"{nginx_dir}/", "-e", f"{nginx_dir}/error-{port}.log"]
        argv += ["-c", str(conf), "-g", "daemon off;"]
        proc = _spawn(argv, f"nginx-{port}.log")
        target = Target(name, port, proc, argv, [up_proc], [up_argv])
    try:
        _await_ready(proc, port, "/files/hello.txt", args.start_timeout)
        _await_ready(proc, port, "/upload", args.start_timeout)
    except RuntimeError:
        target.stop()
        raise
    return target


# ======================================================================================
# The well-behaved client
# ======================================================================================


@dataclass(frozen=True)
class Outcome:
    kind: str  # "static" or "app"
    ok: bool
    seconds: float
    error: str


def _request(kind: str, port: int) -> tuple[bytes, bytes]:
    host = f"Host: {HOST}:{port}\r\nConnection: close\r\n"
    if kind == "static":
        return f"GET /files/hello.txt HTTP/1.1\r\n{host}\r\n".encode(), b"Hello, world!"
    head = f"POST /upload HTTP/1.1\r\n{host}Content-Length: {len(UPLOAD)}\r\n\r\n"
    return head.encode() + UPLOAD, str(len(UPLOAD)).encode()


async def fetch(kind: str, port: int, limit: float) -> Outcome:
    """One request on a new connection: ok if 200 with the expected body in time."""
    request, expected = _request(kind, port)
    t0 = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            body = await reader.readexactly(int(m.group(1))) if m else await reader.read()
        seconds = time.perf_counter() - t0
        if status != 200:
            return Outcome(kind, False, seconds, f"status {status}")
        return Outcome(kind, body == expected, seconds, "" if body == expected else "wrong body")
    except TimeoutError:
        return Outcome(kind, False, time.perf_counter() - t0, "timeout")
    except (OSError, EOFError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        return Outcome(kind, False, time.perf_counter() - t0, type(exc).__name__)
    finally:
        if writer is not None:
            writer.close()


async def good_client(port: int, seconds: float, args: argparse.Namespace) -> list[Outcome]:
    """``args.rate`` requests a second for ``seconds``, paced (open loop: a slow answer
    does not delay the next request), alternating static and application."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    tasks: list[asyncio.Task[Outcome]] = []
    i = 0
    while loop.time() < begin + seconds:
        kind = "static" if i % 2 == 0 else "app"
        tasks.append(asyncio.create_task(fetch(kind, port, args.timeout)))
        i += 1
        await asyncio.sleep(max(0.0, begin + i / args.rate - loop.time()))
    return list(await asyncio.gather(*tasks))


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    ok = [o.seconds for o in outcomes if o.ok]
    errors = Counter(f"{o.kind}: {o.error}" for o in outcomes if not o.ok)
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "success": len(ok) / len(outcomes) if outcomes else 0.0,
        "median_ms": statistics.median(ok) * 1000 if ok else None,
        "p99_ms": _percentile(ok, 0.99) * 1000 if ok else None,
        "max_ms": max(ok) * 1000 if ok else None,
        "errors": dict(errors.most_common()),
    }


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(q * len(s)) - 1)]


# ======================================================================================
# One attack against one server
# ======================================================================================


def slowhttptest_argv(
    attack: Attack,
    port: int,
    args: argparse.Namespace,
    prefix: Path,
    length: int | None = None,
) -> list[str]:
    if length is None:
        length = ramp_seconds(args) + math.ceil(args.measure) + 2
    return [
        "slowhttptest",
        *attack.flags,
        "-c",
        str(args.connections),
        "-r",
        str(args.conn_rate),
        "-l",
        str(length),
        "-p",
        "3",
        "-g",
        "-o",
        str(prefix),
        "-u",
        f"http://{HOST}:{port}{attack.path}",
    ]


def ramp_seconds(args: argparse.Namespace) -> int:
    return math.ceil(args.connections / args.conn_rate) + 2


def read_stats(csv_path: Path) -> dict[str, Any]:
    """slowhttptest's per-second table: the most connections it held at once, how
    many the server closed, and in how many seconds its own probe got an answer."""
    try:
        rows = list(csv.DictReader(csv_path.open()))
    except OSError:
        return {}
    if not rows:
        return {}
    return {
        "held_peak": max(int(r["Connected"]) for r in rows),
        "closed_end": int(rows[-1]["Closed"]),
        "probe_available": sum(1 for r in rows if int(r["Service Available"]) > 0) / len(rows),
        "seconds": len(rows),
    }


async def sample_rss(
    target: Target, into: list[tuple[float, int, int]], stop: asyncio.Event
) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        rss, n = target.rss()
        into.append((round(time.monotonic() - t0, 1), rss, n))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


class Attacker:
    """slowhttptest against one server: one run held through the window, or, for a
    ``burst`` attack (its connections end as soon as they are answered), runs one
    after the other until the window closes."""

    def __init__(self, attack: Attack, target: Target, args: argparse.Namespace) -> None:
        self.attack, self.target, self.args = attack, target, args
        self.runs: list[tuple[subprocess.Popen[Any], Path]] = []
        self.argv: list[str] = []

    def launch(self) -> subprocess.Popen[Any]:
        name = f"slowhttptest-{self.attack.name}-{self.target.name}-{len(self.runs)}"
        prefix = OUT / name
        self.argv = slowhttptest_argv(self.attack, self.target.port, self.args, prefix)
        with (OUT / f"{name}.out").open("wb") as out:
            proc = harness.spawn(self.argv, stdout=out, stderr=subprocess.STDOUT)
        self.runs.append((proc, prefix))
        return proc

    async def keep_on(self, until: float) -> None:
        """For a burst attack: a new run each time the last one ended, until ``until``."""
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            proc = self.runs[-1][0]
            if proc.poll() is not None:
                self.launch()
            await asyncio.sleep(0.1)

    async def finish(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        for proc, _ in self.runs:
            # a child's exit has no awaitable here (Popen, started by the harness)
            while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            harness.stop(proc, grace=1.0)

    def stats(self) -> dict[str, Any]:
        """slowhttptest's own accounts, over its runs: the most connections held at once,
        the connections the server closed, the share of seconds its probe was answered."""
        each = [read_stats(prefix.with_suffix(".csv")) for _, prefix in self.runs]
        each = [e for e in each if e]
        if not each:
            return {}
        seconds = sum(e["seconds"] for e in each)
        return {
            "runs": len(each),
            "held_peak": max(e["held_peak"] for e in each),
            "closed": sum(e["closed_end"] for e in each),
            "probe_available": sum(e["probe_available"] * e["seconds"] for e in each) / seconds,
        }


async def run_one(server: str, attack: Attack, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"server": server, "attack": attack.name}
    try:
        target = start(server, args)
    except (OSError, RuntimeError) as exc:
        harness.log(f"{server}: failed to start: {exc}")
        return row | {"error": f"failed to start: {exc}"}
    attacker = Attacker(attack, target, args)
    try:
        row["server_cmd"] = target.cmd
        row["aux_cmd"] = target.aux_cmd
        await good_client(target.port, 1.0, args)  # warm-up, not counted
        row["baseline"] = summary(await good_client(target.port, args.baseline, args))
        row["rss_idle"] = target.rss()[0]
        pids_before = target.pids()
        loop = asyncio.get_running_loop()
        attacker.launch()
        row["attack_cmd"] = attacker.argv
        samples: list[tuple[float, int, int]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(target, samples, stop))
        if attack.burst:
            keep = asyncio.create_task(attacker.keep_on(loop.time() + args.measure))
        else:  # measured once the attack holds its connections
            await asyncio.sleep(ramp_seconds(args))
        row["during"] = summary(await good_client(target.port, args.measure, args))
        if attack.burst:
            await keep
        await attacker.finish(grace=10.0)
        row["after"] = summary(await good_client(target.port, RECOVERY, args))
        stop.set()
        await sampler
        row["rss_peak"] = max((s[1] for s in samples), default=None)
        row["rss_after"] = target.rss()[0]
        row["rss_samples"] = samples
        row["stats"] = attacker.stats()
        row["alive"] = target.proc.poll() is None
        row["replaced"] = len(pids_before - target.pids())
        row["processes"] = len(pids_before)
    finally:
        for proc, _ in attacker.runs:
            harness.stop(proc, grace=1.0)
        target.stop()
    d, b = row["during"], row["baseline"]
    harness.log(
        f"{attack.name:9} {server:9} {held(row):>14}"
        f"  ok {d['success']:.1%} (after {row['after']['success']:.1%})"
        f"  median {_ms(d['median_ms'])} (base {_ms(b['median_ms'])})"
        f"  p99 {_ms(d['p99_ms'])} (base {_ms(b['p99_ms'])})"
        f"  rss {_mib(row['rss_idle'])} -> {_mib(row['rss_peak'])} -> {_mib(row['rss_after'])}"
        f"  died {row['replaced']}"
    )
    return row


def held(row: dict[str, Any]) -> str:
    """What the attack amounted to: connections held at once, or for a burst attack,
    requests answered (each connection one request)."""
    stats = row.get("stats") or {}
    if not stats:
        return "n/a"
    if ATTACKS[row["attack"]].burst:
        return f"{stats['closed']} answered"
    closed = f", {stats['closed']} closed by the server" if stats["closed"] else ""
    return f"{stats['held_peak']} held{closed}"


def established(port: int) -> int:
    """Established TCP connections to ``port`` on the server's side (the kernel's view:
    accepted, or still in the backlog)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def open_fds(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


async def run_rounds(server: str, attack: Attack, args: argparse.Namespace) -> dict[str, Any]:
    """``args.rounds`` rounds of ``attack`` against one server, one after the other:
    whether its RSS settles (memory returned, or at least reused) or grows each round.
    After each round: RSS and open descriptors once the attack's connections are gone."""
    row: dict[str, Any] = {"server": server, "attack": attack.name, "rounds": []}
    try:
        target = start(server, args)
    except (OSError, RuntimeError) as exc:
        return row | {"error": f"failed to start: {exc}"}
    try:
        pids = target.pids()
        row["idle"] = (target.rss()[0], open_fds(pids))
        for n in range(args.rounds):
            prefix = OUT / f"rounds-{attack.name}-{server}-{n}"
            argv = slowhttptest_argv(attack, target.port, args, prefix, length=args.round_seconds)
            row["attack_cmd"] = argv
            with (OUT / f"{prefix.name}.out").open("wb") as out:
                proc = harness.spawn(argv, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + args.round_seconds + 20
            while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            harness.stop(proc, grace=1.0)
            deadline = time.monotonic() + 20
            while established(target.port) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            row["rounds"].append((target.rss()[0], open_fds(pids)))
        row["died"] = len(pids - target.pids())
    finally:
        target.stop()
    harness.log(
        f"rounds of {attack.name} against {server}: RSS "
        + " -> ".join(_mib(r[0]) for r in [row["idle"], *row["rounds"]])
        + f"; fds {row['idle'][1]} -> {row['rounds'][-1][1] if row['rounds'] else '?'}"
    )
    return row


# ======================================================================================
# The report
# ======================================================================================


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def _mib(v: int | None) -> str:
    return "n/a" if v is None else f"{v / 2**20:.0f} MiB"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdict(row: dict[str, Any], args: argparse.Namespace) -> str:
    """Against the aims: 100 % success and latency (median, p99) ≤ 2x the baseline."""
    d = row["during"]
    misses = []
    if d["success"] < 1.0:
        misses.append(f"success {d['success']:.1%}")
    for key in ("median_ms", "p99_ms"):
        r = _ratio(d[key], row["baseline"][key])
        if r is None or r > 2.0:
            misses.append(f"{key.split('_')[0]} {'n/a' if r is None else f'{r:.1f}x'}")
    if not row["alive"]:
        misses.append("server died")
    elif row["replaced"]:
        misses.append(f"{row['replaced']} process(es) died")
    return "met" if not misses else "missed: " + ", ".join(misses)


def render(
    rows: list[dict[str, Any]],
    memory: dict[str, Any] | None,
    meta: dict[str, Any],
    args: argparse.Namespace,
) -> str:
    out = [
        BEGIN,
        "## Slow-client attacks (slowhttptest)",
        "",
        f"Run {meta['date']} at commit {meta['commit']}, {meta['colonnade']}; "
        f"slowhttptest {meta['slowhttptest']}, nginx {meta['nginx']}. "
        f"Machine: {meta['nproc']} CPUs shared with other work, no pinning; "
        f"load average {meta['load_start']} at the start, {meta['load_end']} at the end "
        f"(the run took {meta['minutes']:.1f} min).",
        "",
        f"Each attack: {args.connections} connections opened at {args.conn_rate}/s against a "
        "freshly started server; the good client measured "
        f"{args.baseline:g} s before the attack (baseline), {args.measure:g} s once the attack "
        f"held its connections (during), and {RECOVERY:g} s after it ended (after): {args.rate:g} "
        "requests a second, each on a new connection, alternating `GET /files/hello.txt` "
        f"(static) and `POST /upload` with 64 bytes (a WSGI app reading its body), a request "
        f"failing after {args.timeout:g} s. Latency: connect to last byte, successful requests. "
        "RSS: master and workers summed, idle before the attack → peak during → after. "
        "Aims: success 100 %, median and p99 ≤ 2x baseline, no process dying.",
        "",
        "| attack | server | attack size | success during (after) | median: during / baseline "
        "| p99: during / baseline | RSS idle → peak → after | processes died | aims |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if "error" in row:
            out.append(f"| {row['attack']} | {row['server']} | | | | | | | n/a ({row['error']}) |")
            continue
        d, b, a = row["during"], row["baseline"], row["after"]
        rm, rp = _ratio(d["median_ms"], b["median_ms"]), _ratio(d["p99_ms"], b["p99_ms"])
        out.append(
            f"| {ATTACKS[row['attack']].title} | {row['server']} | {held(row)} "
            f"| {d['success']:.1%} of {d['requests']} ({a['success']:.1%}) "
            f"| {_ms(d['median_ms'])} / {_ms(b['median_ms'])} ({rm:.1f}x) ".replace("(Nonex)", "")
            + f"| {_ms(d['p99_ms'])} / {_ms(b['p99_ms'])} ({rp:.1f}x) ".replace("(Nonex)", "")
            + f"| {_mib(row['rss_idle'])} → {_mib(row['rss_peak'])} → {_mib(row['rss_after'])} "
            f"| {'server died' if not row['alive'] else row['replaced']} of {row['processes']} "
            f"| {verdict(row, args)} |"
        )
    failures = [
        f"- {ATTACKS[r['attack']].title}, {r['server']}: "
        + ", ".join(f"{k} x{v}" for k, v in {**r["during"]["errors"]}.items())
        for r in rows
        if "error" not in r and r["during"]["errors"]
    ]
    if failures:
        out += ["", "Failed good-client requests during the attacks:", "", *failures]
    if memory and memory.get("rounds"):
        points = [memory["idle"], *memory["rounds"]]
        out += [
            "",
            f"Memory over repeated attacks: {len(memory['rounds'])} rounds of the "
            f"{ATTACKS[memory['attack']].title} attack ({args.connections} connections, "
            f"{args.round_seconds} s each) against one {memory['server']} server, measured once "
            "each round's connections were gone (idle first):",
            "",
            "| | "
            + " | ".join(["idle", *(f"round {i + 1}" for i in range(len(points) - 1))])
            + " |",
            "|---" * (len(points) + 1) + "|",
            "| RSS | " + " | ".join(_mib(p[0]) for p in points) + " |",
            "| open descriptors | " + " | ".join(str(p[1]) for p in points) + " |",
            "",
            f"Processes died: {memory.get('died', 'n/a')}.",
        ]
    elif memory and "error" in memory:
        out += ["", f"Memory over repeated attacks: n/a ({memory['error']})."]
    out += ["", "Notes:", ""] + [f"- {n}" for n in NOTES]
    out += [
        "",
        "Rerun (from the repository root; loopback only, about 9 minutes; `make attack` "
        "installs slowhttptest through the Makefile's SYSDEPS first):",
        "",
        "```sh",
        "make attack",
        "# one attack, one server, printed instead of written:",
        ".venv/bin/python bench/reliability/attack.py --attacks slowbody --servers colonnade \\",
        "    --out -",
        "```",
        "",
        "The commands it ran (PORT: a free port per run; UPSTREAM: nginx's application):",
        "",
        "```sh",
    ]
    seen = set()
    for row in rows:
        if "error" in row:
            continue
        port = str(row["attack_cmd"][-1]).split(":")[2].split("/")[0]
        for cmd in [row["server_cmd"], *row["aux_cmd"], row["attack_cmd"]]:
            text = shlex.join(cmd).replace(port, "PORT")
            text = re.sub(r"-(\d+)(\.conf|/)", r"-PORT\2", text)
            text = (
                re.sub(rf"{HOST}:\d{{4,5}}", f"{HOST}:UPSTREAM", text)
                if cmd in row["aux_cmd"]
                else text
            )
            text = text.replace(str(REPO) + "/", "")
            if text not in seen:
                seen.add(text)
                out.append(text)
    if memory and memory.get("attack_cmd"):
        text = shlex.join(memory["attack_cmd"]).replace(str(REPO) + "/", "")
        out.append(re.sub(rf"{HOST}:\d+", f"{HOST}:PORT", re.sub(r"-\d+ ", "-N ", text)))
    out += ["```", "", "Raw numbers: `bench/out/reliability/attack-*.json`.", END]
    return "\n".join(out) + "\n"


#: What a reader needs to read the table right; kept with the script that writes it.
NOTES = [
    "Attack size: slowhttptest's own count of the most attack connections open at once "
    "(`held`; `closed by the server`: those the server ended while the attack ran, as "
    "Colonnade's 30 s header timeout ends a slowloris head with 408), or for the range "
    "attack, whose connections end once answered, the requests answered.",
    "Found and fixed: before commit 637833b the slow-body attack left the good client "
    "54.5 % (every `POST /upload` timed out, static files unaffected): bodies declared "
    "over 64 KiB were streamed to the WSGI application, each slow upload holding one of "
    "its 8 threads per worker. `[wsgi] buffer_request_body` is now true by default (the "
    "body is read on the loop before a thread is taken, as nginx buffers before it "
    "proxies); tests/handlers/wsgi/test_wsgi_live.py::test_slow_uploads_hold_no_thread.",
    "The minimum data rate (request bodies, response sending: IIS `minBytesPerSecond`) "
    "and the per-client connection cap land with branch `slowclient`; the slow-body and "
    "slow-read rows are measured without them (Colonnade holds every slow-read "
    "connection as long as the client keeps reading). Rerun `make attack` once it is merged.",
    "On a shared machine (load average well above the 2 CPUs) the latency ratios move "
    "from run to run by some tenths; success, RSS and processes are the firm results.",
]


def write_section(path: Path, section: str) -> None:
    """Replace this script's section of ``path`` (create the file with a header)."""
    text = path.read_text() if path.exists() else HEADER
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


# ======================================================================================
# Main
# ======================================================================================


def version_of(argv: list[str], pattern: str) -> str:
    m = re.search(pattern, harness.sh(argv))
    return m.group(1) if m else "unknown"


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--attacks", default=",".join(ATTACKS), help="comma-separated: " + ", ".join(ATTACKS)
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: colonnade, nginx")
    p.add_argument(
        "--connections", type=int, default=1000, help="attack connections (default 1000)"
    )
    p.add_argument("--conn-rate", type=int, default=250, help="attack connections opened a second")
    p.add_argument("--baseline", type=float, default=8.0, help="s of good client before the attack")
    p.add_argument("--measure", type=float, default=30.0, help="s of good client during the attack")
    p.add_argument("--rate", type=float, default=40.0, help="good-client requests a second")
    p.add_argument("--timeout", type=float, default=5.0, help="a good request fails after this (s)")
    p.add_argument(
        "--colonnade",
        type=Path,
        help="the colonnade command (default: .venv/bin/colonnade, the pure build of make;"
        " .venv-compiled/bin/colonnade for the compiled one)",
    )
    p.add_argument("--start-timeout", type=float, default=20.0)
    p.add_argument(
        "--rounds", type=int, default=5, help="rounds of the memory check (0: none; default 5)"
    )
    p.add_argument("--rounds-attack", default="slowread", help="the memory check's attack")
    p.add_argument("--round-seconds", type=int, default=12, help="each round's length (s)")
    p.add_argument("--max-minutes", type=float, default=12.0, help="hard bound on the whole run")
    p.add_argument("--out", default=str(RELIABILITY), help="the report file, or - to print only")
    args = p.parse_args(argv)
    args.attacks = [a for a in args.attacks.split(",") if a]
    args.servers = [s for s in args.servers.split(",") if s]
    for a in args.attacks:
        if a not in ATTACKS:
            p.error(f"unknown attack {a!r}")
    for s in args.servers:
        if s not in SERVERS:
            p.error(f"unknown server {s!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("slowhttptest") is None:
        print("slowhttptest is missing: `make sysdeps` (as root) installs it", file=sys.stderr)
        return 2
    nofile = harness.raise_nofile()
    if nofile < args.connections * 2 + 256:
        print(f"ulimit -n is {nofile}: too low for {args.connections} connections", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    generate_static(WWW)
    signal.signal(signal.SIGTERM, harness._on_signal)
    signal.signal(signal.SIGALRM, harness._on_signal)
    signal.alarm(int(args.max_minutes * 60))
    build = "compiled" if ".venv-compiled" in colonnade_bin(args) else "pure Python (not compiled)"
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": harness.git_rev(),
        "colonnade": f"Colonnade {build} build",
        "slowhttptest": version_of(["slowhttptest", "-h"], r"version (\S+)"),
        "nginx": version_of(["nginx", "-v"], r"nginx/(\S+)"),
        "nproc": os.cpu_count(),
        "load_start": loadavg(),
    }
    began = time.monotonic()
    rows: list[dict[str, Any]] = []
    memory: dict[str, Any] | None = None
    try:
        for name in args.attacks:
            for server in args.servers:
                rows.append(asyncio.run(run_one(server, ATTACKS[name], args)))
        if args.rounds and "colonnade" in args.servers:
            memory = asyncio.run(run_rounds("colonnade", ATTACKS[args.rounds_attack], args))
    except (KeyboardInterrupt, harness.AbortError) as exc:
        harness.log(f"aborted: {exc!r}; the rows measured so far are reported")
    finally:
        signal.alarm(0)
        harness.stop_all()
    meta["load_end"] = loadavg()
    meta["minutes"] = (time.monotonic() - began) / 60
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    (OUT / f"attack-{stamp}.json").write_text(
        json.dumps(
            {"meta": meta, "args": vars(args) | {"colonnade": str(args.colonnade)}, "rows": rows},
            indent=1,
        )
    )
    section = render(rows, memory, meta, args)
    if args.out == "-":
        print(section)
    else:
        write_section(Path(args.out), section)
        harness.log(f"wrote the attack section of {args.out}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
