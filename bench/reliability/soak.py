"""The soak (#23 item 5): mixed traffic against a master and 2 workers for
SOAK_MINUTES (default 30), worker RSS and fds sampled every minute.

Traffic: static small (1 KB) and large (1 MB) files, ASGI and WSGI answers,
uploads to both, keep-alive and ``Connection: close`` requests, errors (500 from
both apps, 404), and WebSocket echo sessions alongside. After the warm-up (the
first 5 minutes) neither a worker's RSS nor its fds other than client
connections may grow by more than 5 %; the client connections a worker holds at
the moment of a sample are counted apart (they come and go with the traffic).

    make soak                               # 30 minutes
    SOAK_MINUTES=10 make soak               # shorter
    .venv/bin/python bench/reliability/soak.py --minutes 1 --warmup 0.25 --sample 10 --out -
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_load import Ledger, Load, Req, fd_split, rss_bytes, websocket_echo  # noqa: E402
from chaos_report import machine, write_section  # noqa: E402
from chaos_server import Server  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: The most a worker's RSS or fds may grow after warm-up.
GROWTH_LIMIT = 0.05

UPLOAD = b"u" * 64 * 1024

#: (weight, request)
MIX: list[tuple[int, Req]] = [
    (20, Req("asgi", "/asgi/")),
    (16, Req("wsgi", "/wsgi/")),
    (18, Req("static-small", "/small.txt")),
    (4, Req("static-large", "/large.bin")),
    (5, Req("upload-asgi", "/asgi/upload", "POST", UPLOAD)),
    (5, Req("upload-wsgi", "/wsgi/upload", "POST", UPLOAD)),
    (10, Req("close", "/asgi/", close=True)),
    (6, Req("close-static", "/small.txt", close=True)),
    (1, Req("error-asgi", "/asgi/error", expect=(500,))),
    (1, Req("error-wsgi", "/wsgi/error", expect=(500,))),
    (4, Req("not-found", "/missing.txt", expect=(404,))),
]
_WEIGHTS = [w for w, _ in MIX]
_REQS = [r for _, r in MIX]


def mixed(rng: random.Random) -> Req:
    """One request of the soak's mix."""
    return rng.choices(_REQS, _WEIGHTS)[0]


@dataclass
class Sample:
    """One minute's reading of one worker."""

    minute: float
    pid: int
    rss: int
    fds: int
    connections: int

    @property
    def other_fds(self) -> int:
        return self.fds - self.connections


async def websockets(port: int, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """WebSocket sessions (20 echoes each), two at a time, until ``stop``."""

    async def one() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(websocket_echo(port, "/asgi/ws", 20), 20)
                counts["ok"] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                counts["failed"] += 1
                counts.setdefault(f"error {type(exc).__name__}", 0)
                counts[f"error {type(exc).__name__}"] += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass

    await asyncio.gather(one(), one())


async def soak(args: argparse.Namespace) -> tuple[bool, str]:
    """Run it; (passed, the report's Markdown)."""
    server = Server(workers=2).start()
    started = time.monotonic()
    samples: list[Sample] = []
    loads: list[str] = []
    ledger = Ledger()
    ws_counts = {"ok": 0, "failed": 0}
    try:
        workers = server.ready()
        load = Load(server.port, mixed, connections=args.connections, rate=args.rate, ledger=ledger)
        load.start()
        stop_ws = asyncio.Event()
        ws_task = asyncio.create_task(websockets(server.port, stop_ws, ws_counts))
        end = started + args.minutes * 60
        next_sample = started
        while True:
            now = time.monotonic()
            if now >= next_sample:
                minute = (now - started) / 60
                for pid in workers:
                    fds, connections = fd_split(pid)
                    samples.append(Sample(minute, pid, rss_bytes(pid), fds, connections))
                loads.append(machine())
                last = samples[-len(workers) :]
                print(
                    f"[soak] {minute:5.1f} min: "
                    + "; ".join(
                        f"{s.pid}: {s.rss / 2**20:.1f} MB, {s.fds} fds ({s.connections} conn.)"
                        for s in last
                    )
                    + f"; {ledger.summary()['sent']} requests; {machine()}",
                    flush=True,
                )
                next_sample += args.sample
                if now >= end:
                    break
            await asyncio.sleep(max(0.0, min(next_sample, end + 0.01) - time.monotonic()))
        stop_ws.set()
        await ws_task
        await load.stop()
        alive = server.ready()
    finally:
        server.stop()
        server.remove()
    summary = ledger.summary()
    return report(args, samples, summary, ws_counts, workers, alive, loads, ledger)


def report(
    args: argparse.Namespace,
    samples: list[Sample],
    summary: dict[str, int],
    ws: dict[str, int],
    workers: list[int],
    alive: list[int],
    loads: list[str],
    ledger: Ledger,
) -> tuple[bool, str]:
    """The verdict and the Markdown section."""
    lines = [
        "## Soak (#23 item 5)",
        "",
        f"`SOAK_MINUTES={args.minutes:g} make soak` (bench/reliability/soak.py): a master and 2 workers,",
        f"{args.connections} keep-alive client connections paced to about {args.rate:g} requests/s in all, plus",
        "WebSocket echo sessions two at a time. Mix: ASGI and WSGI answers, static 1 KB and 1 MB,",
        "64 KB uploads to both apps, `Connection: close` requests, 500s from both apps and 404s.",
        f"Worker RSS and fds sampled every {args.sample:g} s; after the warm-up ({args.warmup:g} min) neither",
        f"may grow by more than {GROWTH_LIMIT:.0%} (fds: those other than client connections' sockets (and duplicates) held at",
        "the sample, which come and go with the traffic). Run at "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        + f"; the machine is shared with other work: {loads[0] if loads else '?'} at the start, "
        + f"{loads[-1] if loads else '?'} at the end.",
        "",
    ]
    passed = True
    by_pid: dict[int, list[Sample]] = {}
    for s in samples:
        by_pid.setdefault(s.pid, []).append(s)
    header = (
        "| minute | "
        + " | ".join(f"worker {i + 1} RSS MB | fds (conn.)" for i in range(len(workers)))
        + " |"
    )
    lines += [header, "|" + "---|" * (1 + 2 * len(workers))]
    rows = len(by_pid[workers[0]]) if workers else 0
    for row in range(rows):
        cells = [f"{by_pid[workers[0]][row].minute:.1f}"]
        for pid in workers:
            s = by_pid[pid][row]
            cells += [f"{s.rss / 2**20:.1f}", f"{s.fds} ({s.connections})"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    verdicts = []
    for i, pid in enumerate(workers):
        series = by_pid[pid]
        after = [s for s in series if s.minute >= args.warmup - 1e-9]
        if len(after) < 2:
            verdicts.append(f"worker {i + 1}: too short a run to judge")
            passed = False
            continue
        base, last = after[0], after[-1]
        rss_growth = (last.rss - base.rss) / base.rss
        fd_growth = (last.other_fds - base.other_fds) / base.other_fds
        ok = rss_growth <= GROWTH_LIMIT and fd_growth <= GROWTH_LIMIT and last.rss > 0
        passed &= ok
        verdicts.append(
            f"worker {i + 1} (pid {pid}): RSS {base.rss / 2**20:.1f} → {last.rss / 2**20:.1f} MB "
            f"({rss_growth:+.1%}), fds other than connections {base.other_fds} → {last.other_fds} "
            f"({fd_growth:+.1%}): {'pass' if ok else 'FAIL'}"
        )
    if sorted(alive) != sorted(workers):
        passed = False
        verdicts.append(f"the workers changed during the soak: {workers} → {alive} (FAIL)")
    traffic_ok = summary["failed"] == 0 and summary["unfinished"] == 0 and ws["failed"] == 0
    passed &= traffic_ok
    kinds: dict[str, int] = {}
    for o in ledger.records.values():
        kinds[o.kind] = kinds.get(o.kind, 0) + 1
    lines += [f"- {v}" for v in verdicts]
    lines += [
        f"- requests: {summary['sent']} sent, {summary['answered']} answered as expected, "
        f"{summary['failed']} failed, {summary['unfinished']} unfinished, {summary['retried']} retried "
        f"on a new connection after a keep-alive close; {summary['connections']} connections opened",
        "- by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
        f"- WebSocket sessions: {ws['ok']} completed (20 echoes and a clean close each), {ws['failed']} failed"
        + "".join(f"; {k}: {n}" for k, n in ws.items() if k.startswith("error")),
        "",
        f"**Verdict: {'pass' if passed else 'FAIL'}.**",
    ]
    for rid, o in ledger.failures(5):
        lines.append(f"  - request {rid} ({o.kind}): {o.error}")
    return passed, "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30"))
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="minutes before the baseline sample"
    )
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second in all")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--out", default=str(REPO / "bench" / "RELIABILITY.md"), help="'-' prints only"
    )
    args = parser.parse_args()
    passed, text = asyncio.run(soak(args))
    print(text)
    if args.out != "-":
        write_section(Path(args.out), "soak", text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
