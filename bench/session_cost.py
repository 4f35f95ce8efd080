"""In-process cost of session state: µs added per request, memory and Redis.

    .venv/bin/python bench/session_cost.py [--requests N] [--repeat R] [--json]

(colonnade's own venv, from the repository root; needs ``redis-server`` on PATH.)
The ``session`` row of ``bench/run.py`` runs it (pinned to the server CPU, the
redis-server beside it). It times the engine alone, without sockets, so that the
session's own cost is not lost in wrk's noise.

Four engines, each with one handler that increments ``session["n"]`` (a
read-modify-write, so every request loads, locks, saves and unlocks):

    none          no session module (the handler sees no session; the baseline)
    memory        ``state.session``, provider memory
    redis         ``state.session``, provider redis: a redis-server started here on a
                  free loopback port (two round trips per request: lock+load, one
                  pipeline, before the handler; save+unlock, one script, after it)
    redis-read    the same, the location read-only (one round trip: load)

Each measurement awaits ``Client.arequest("GET", "/inc")`` with the session's cookie
N times in a row and records every request's time; the variants take turns, R
rounds. Reported: the median request time of each variant and the median added to
``none``, and the round trips to Redis per request: the writes the redis-py client
made (one per command or pipeline) over a further 100 requests, counted apart from
the timed ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from colonnade import Context, Handler
from colonnade.testing import Client, build_engine


class Inc(Handler):
    """Increments ``session["n"]`` where there is a session."""

    id = "bench.inc"

    def execute(self, ctx: Context) -> None:
        session = ctx.session
        if session is not None:
            session["n"] = session.get("n", 0) + 1
        ctx.response.body = b"ok"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (make sysdeps)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("redis-server did not start")
        time.sleep(0.05)


#: Requests whose round trips to Redis are counted (after the timed ones).
COUNTED = 100


def count_round_trips(c: Client, cookie: dict[str, str]) -> float:
    """Writes of the redis-py client per request (each is answered before the
    request goes on: a round trip), over :data:`COUNTED` requests."""
    from redis.asyncio.connection import AbstractConnection

    real = AbstractConnection.send_packed_command
    writes = 0

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal writes
        writes += 1
        await real(self, command, check_health)

    async def run() -> None:
        for _ in range(COUNTED):
            await c.arequest("GET", "/inc", headers=cookie)

    # The engines take turns on loops of their own: the shared client makes a
    # new pool on each loop change, whose connecting is not a request's cost.
    c.loop.run_until_complete(c.arequest("GET", "/inc", headers=cookie))
    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        c.loop.run_until_complete(run())
    finally:
        AbstractConnection.send_packed_command = real  # type: ignore[method-assign]
    return writes / COUNTED


def engine(variant: str, redis_port: int) -> Any:
    modules = ["bench.inc"] if variant == "none" else ["state.session", "bench.inc"]
    config: dict[str, Any] = {
        "server": {"modules": modules},
        "sites": [{"name": "b", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "bench.inc"}],
    }
    if variant.startswith("redis"):
        config["redis"] = {"url": f"redis://127.0.0.1:{redis_port}/0"}
        config["session_state"] = {"provider": "redis"}
        if variant == "redis-read":
            config["session_state"]["mode"] = "read_only"
    return build_engine(config, modules=[Inc])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    variants = ["none", "memory", "redis", "redis-read"]
    with tempfile.TemporaryDirectory() as folder:
        proc, port = start_redis(Path(folder))
        try:
            clients = {v: Client(engine(v, port)) for v in variants}
            for c in clients.values():
                c.__enter__()
            try:
                cookies: dict[str, dict[str, str]] = {}
                for v, c in clients.items():
                    made = c.get("/inc")
                    value = made.header("set-cookie") or ""
                    cookies[v] = {"cookie": value.split(";")[0]} if value else {}
                    if v == "redis-read":  # a session to read: written by the redis variant
                        cookies[v] = cookies["redis"]
                times: dict[str, list[float]] = {v: [] for v in variants}
                for _ in range(args.repeat):
                    for v, c in clients.items():

                        async def run(c: Client = c, v: str = v) -> None:
                            for _ in range(args.requests):
                                began = time.perf_counter()
                                await c.arequest("GET", "/inc", headers=cookies[v])
                                times[v].append(time.perf_counter() - began)

                        c.loop.run_until_complete(run())
                trips = {v: count_round_trips(c, cookies[v]) for v, c in clients.items()}
            finally:
                for c in clients.values():
                    c.__exit__(None, None, None)
        finally:
            proc.kill()
            proc.wait()
    medians = {v: statistics.median(t) * 1e6 for v, t in times.items()}
    report = {
        "requests": args.requests * args.repeat,
        "median_us": {v: round(m, 1) for v, m in medians.items()},
        "added_us": {v: round(m - medians["none"], 1) for v, m in medians.items() if v != "none"},
        "round_trips": trips,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['requests']} requests per variant, in-process (no sockets)")
    for v in variants:
        added = "" if v == "none" else f"  (+{medians[v] - medians['none']:.1f} µs)"
        print(f"  {v:11} median {medians[v]:8.1f} µs{added}, {trips[v]:g} round trips")


if __name__ == "__main__":
    main()
