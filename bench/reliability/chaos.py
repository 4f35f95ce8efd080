"""The chaos suite (#23 item 4): one fault at a time under accounted load.

Each scenario starts its own ``colonnade serve`` (a master and 2 workers, loopback
only), puts :class:`chaos_load.Load` on it (keep-alive connections, every request
with an ``X-Request-Id`` the ledger accounts for), injects one fault, waits until
the server has recovered, and reports: requests sent, answered, failed, the
failures beyond those in flight at the fault (required: 0), and whether a
process, fd or temp file leaked (the master's and the workers' fds, the master's
children and the server's temp folder, at rest before and after).

    make chaos                                           # every scenario, a few minutes
    make chaos CHAOS_ARGS="--only sigkill,sigstop --out -"
    .venv/bin/python bench/reliability/chaos.py --list
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_load import Ledger, Load, Req, cpu_seconds, fd_count, server_side_ports  # noqa: E402
from chaos_report import machine, write_section  # noqa: E402
from chaos_server import Server  # noqa: E402

from colonnade.management import operations  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
UPLOAD = b"u" * 32 * 1024

#: (weight, request): dynamic answers, static files and uploads, keep-alive mostly.
MIX: list[tuple[int, Req]] = [
    (30, Req("asgi", "/asgi/")),
    (25, Req("wsgi", "/wsgi/")),
    (20, Req("static", "/small.txt")),
    (8, Req("upload", "/asgi/upload", "POST", UPLOAD)),
    (7, Req("upload-wsgi", "/wsgi/upload", "POST", UPLOAD)),
    (10, Req("close", "/asgi/", close=True)),
    # Slow answers: some requests are in flight whenever a fault hits.
    (3, Req("slow", "/asgi/slow?ms=300")),
    (3, Req("slow-post", "/asgi/slow?ms=300", "POST", b"x" * 100)),
]


def mix_of(table: list[tuple[int, Req]]) -> Callable[[random.Random], Req]:
    """A request chooser drawing from ``table`` by weight."""
    weights = [w for w, _ in table]
    reqs = [r for _, r in table]
    return lambda rng: rng.choices(reqs, weights)[0]


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:  # noqa: ASYNC109
    """Poll ``check`` (in a thread: it may talk to the control socket) until true."""
    end = time.monotonic() + timeout
    while not (found := await asyncio.to_thread(check)):
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout:g} s in vain for: {what}")
        await asyncio.sleep(0.05)
    return found


def gone(pid: int) -> bool:
    """True once ``pid`` has exited and been reaped (or is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@dataclass
class Rest:
    """What the server holds at rest (no client connection)."""

    master_fds: int
    worker_fds: list[int]
    processes: int
    temp: list[str]

    def describe(self) -> str:
        return (
            f"master {self.master_fds} fds, workers {'/'.join(map(str, self.worker_fds))} fds, "
            f"{self.processes} worker processes, {len(self.temp)} temp entries"
        )


def held_fds(pid: int) -> int:
    """Open fds of ``pid`` other than /dev/null: the event loop opens one descriptor
    of it at a worker's first connection (once), so a fresh worker that has not had
    a connection yet would otherwise look one fd short."""
    count = 0
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/{pid}/fd/{name}") != "/dev/null"
    except OSError:
        return -1
    return count


def at_rest(server: Server) -> Rest | None:
    """The server's holdings when it is settled (its workers ready, no other)."""
    workers = server.settled()
    if workers is None:
        return None
    if any(server_side_ports(pid, server.port) for pid in [server.master, *workers]):
        return None  # a client connection is still being closed
    return Rest(
        held_fds(server.master),
        sorted(held_fds(w) for w in workers),
        len(server.children()),
        server.temp_entries(),
    )


@dataclass
class Result:
    """One scenario's accounting."""

    name: str
    title: str
    summary: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    before: Rest | None = None
    after: Rest | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    skipped: str | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def leak_free(self) -> bool:
        return self.before is not None and self.after is not None and self.before == self.after

    @property
    def passed(self) -> bool:
        if self.skipped:
            return True
        return (
            self.summary.get("beyond_in_flight", 1) == 0
            and self.summary.get("unfinished", 1) == 0
            and self.leak_free
            and all(self.checks.values())
        )


class Run:
    """One scenario: a server, its load, the fault, the accounting."""

    def __init__(
        self,
        result: Result,
        *,
        keep: bool = False,
        warm: list[tuple[int, Req]] | None = None,
        **server: Any,
    ) -> None:
        self.result = result
        self.warm = warm or MIX
        self.keep = keep  # the caller reads the server's folder after, and removes it
        self.server = Server(**server)
        self.load: Load | None = None
        self.ledger = Ledger()

    async def __aenter__(self) -> Run:
        await asyncio.to_thread(self.server.start)
        # Traffic first (not counted): what a worker opens once, at its first
        # connections (a descriptor of /dev/null), or keeps for later (backend
        # connections, FastCGI processes), is no leak.
        warm = Load(self.server.port, mix_of(self.warm), connections=8, rate=150.0)
        warm.start()
        await asyncio.sleep(1 if self.warm is MIX else 3)
        await warm.stop()
        self.result.before = await until(lambda: at_rest(self.server), 30, "the server at rest")
        return self

    def start_load(self, table: list[tuple[int, Req]] = MIX, **options: Any) -> Load:
        options.setdefault("connections", 8)
        options.setdefault("rate", 150.0)
        self.load = Load(self.server.port, mix_of(table), ledger=self.ledger, **options)
        self.load.start()
        return self.load

    async def finish(self) -> None:
        """Stop the load; wait for the server at rest as before (or report what differs)."""
        if self.load is not None:
            await self.load.stop()
        self.result.summary = self.ledger.summary()
        self.result.failures = [
            f"request {rid} ({o.kind}, {'in flight' if self.ledger.in_flight(o) else 'BEYOND'}): {o.error}"
            for rid, o in self.ledger.failures(6)
        ]
        before = self.result.before
        try:
            self.result.after = await until(
                lambda: (rest := at_rest(self.server)) is not None and rest == before and rest,
                20,
                "rest",
            )
        except TimeoutError:
            self.result.after = await asyncio.to_thread(at_rest, self.server)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.server.stop)
        errors = [
            line
            for line in self.server.log().splitlines()
            if " ERROR " in line or "CRITICAL" in line
        ]
        if errors:
            self.result.notes.append(
                f"{len(errors)} ERROR line(s) in the server log, first: `{errors[0][:160]}`"
            )
        if exc[0] is None and not os.environ.get("CHAOS_KEEP"):
            if not self.keep:
                self.server.remove()
        elif not self.keep:
            self.result.notes.append(f"server folder kept: {self.server.folder}")

    def fault(self, pid: int, at: float, ended: float) -> None:
        """Record a fault on worker ``pid`` between ``at`` and ``ended``."""
        self.ledger.fault(pid, self.ports.get(pid, set()), at, ended)

    def snapshot(self, pid: int) -> None:
        """Which client connections ``pid`` holds now (just before its fault)."""
        self.ports = getattr(self, "ports", {})
        self.ports[pid] = server_side_ports(pid, self.server.port)


# -- scenarios -----------------------------------------------------------------------------


async def hit_worker(run: Run, sig: int, timeout: float) -> tuple[int, float, float]:
    """Under load, send ``sig`` to a worker and wait until it is gone (and its
    replacement ready): (its pid, when it was hit, when it was gone)."""
    run.start_load()
    await asyncio.sleep(3)
    victim = run.server.ready()[0]
    assert sig in (signal.SIGKILL, signal.SIGSTOP), sig  # (a stopped process takes no other)
    # Frozen first, then its connections read, then the signal: read while it ran, a
    # connection it accepted between the read and the signal was not put down to
    # the fault, and its request counted as failing beyond those in flight.
    at = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    run.snapshot(victim)
    if sig != signal.SIGSTOP:
        os.kill(victim, sig)
    try:
        await until(lambda: gone(victim), timeout, f"worker {victim} gone after {sig!r}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGCONT)
    ended = time.monotonic()
    run.fault(victim, at, ended)
    await until(lambda: (s := run.server.settled()) and victim not in s, 30, "a replacement ready")
    return victim, at, ended


async def sigkill(result: Result) -> None:
    """SIGKILL of a worker: the master replaces it; only its requests in flight fail."""
    async with Run(result) as run:
        victim, at, _ = await hit_worker(run, signal.SIGKILL, 10)
        result.notes.append(
            f"worker {victim} killed; replacement ready in {time.monotonic() - at:.2f} s"
        )
        await asyncio.sleep(3)
        await run.finish()


async def sigstop(result: Result) -> None:
    """SIGSTOP of a worker: found hung by the ping (1 s interval, 3 s answer) and replaced."""
    async with Run(result) as run:
        victim, at, found = await hit_worker(run, signal.SIGSTOP, 30)
        result.notes.append(
            f"worker {victim} stopped; found hung and killed after {found - at:.1f} s "
            f"(ping_interval 1 s, ping_response_time 3 s); replacement ready after "
            f"{time.monotonic() - at:.1f} s"
        )
        result.checks["hung worker killed by the ping"] = (
            "did not answer a ping" in run.server.log()
        )
        await asyncio.sleep(3)
        await run.finish()


def _edit(server: Server, n: int, kind: str) -> str:
    """The server file for edit ``n`` of ``kind``: a broken one, one that recycles the
    pool (a server setting: the workers' inputs change), or a pool setting the
    master applies alone."""
    if kind == "broken-syntax":
        return server.render(pool_extra=f"ping_interval = [{n}")
    if kind == "broken-key":
        return server.render(pool_extra=f"no_such_setting_{n} = 1")
    if kind == "broken-value":
        return server.render(pool_extra="ping_response_time = -1")
    if kind == "recycle":
        return server.render(timeouts_extra=f"header = {20 + n}")
    return server.render(pool_extra=f"queue_length = {1000 + n}")


async def config_edits(result: Result) -> None:
    """50 edits of the server file in a minute, 10 of them broken, each followed by a
    reload: the broken ones are refused (the old configuration serves on), the good
    ones switch (those touching the workers' inputs recycle the pool, overlapped)."""
    broken = ["broken-syntax", "broken-key", "broken-value"]
    kinds = [
        broken[n // 5 % 3] if n % 5 == 3 else "recycle" if n % 5 == 1 else "settings"
        for n in range(50)
    ]
    async with Run(result) as run:
        run.start_load()
        await asyncio.sleep(2)
        control = run.server.control
        accepted = refused = wrong = 0
        generation = (await asyncio.to_thread(operations.call, control, "pools"))["master"][
            "generation"
        ]
        started = time.monotonic()
        for n, kind in enumerate(kinds):
            run.server.write_config(_edit(run.server, n, kind))
            try:
                await asyncio.to_thread(operations.reload, control)
                ok = True
            except operations.ControlError:
                ok = False
            now_gen = (await asyncio.to_thread(operations.call, control, "pools"))["master"][
                "generation"
            ]
            if ok:
                accepted += 1
                wrong += now_gen != generation + 1
            else:
                refused += 1
                wrong += now_gen != generation
            wrong += ok == kind.startswith("broken")
            generation = now_gen
            await asyncio.sleep(max(0.0, started + (n + 1) * 1.2 - time.monotonic()))
        took = time.monotonic() - started
        broken = sum(k.startswith("broken") for k in kinds)
        recycles = len(
            re.findall(r"recycling worker \d+ \(configuration changed\)", run.server.log())
        )
        result.notes.append(
            f"{len(kinds)} edits in {took:.0f} s: {accepted} reloaded, {refused} refused "
            f"({broken} broken by design); {recycles} worker recycles for configuration changes"
        )
        result.checks["broken edits refused, good ones reloaded"] = wrong == 0 and refused == broken
        await until(lambda: run.server.settled(), 60, "the pool settled")
        await asyncio.sleep(2)
        # At rest the server runs the last good configuration: compare with that.
        await run.finish()


def _logged_ids(path: Path) -> set[int]:
    found = set()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#"):
            continue
        last = line.rsplit(" ", 1)[-1]
        if last.isdigit():
            found.add(int(last))
    return found


async def disk_full(result: Result) -> None:
    """The access log's disk fills up (a 1 MB tmpfs): serving goes on, the lost lines
    are counted in the error log, and logging resumes once there is room again."""
    if os.geteuid() != 0:
        result.skipped = "needs root (mount -t tmpfs)"
        return
    server_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    folder = Path(
        subprocess.check_output(
            ["mktemp", "-d", "-p", str(server_dir), "colonnade-chaos-XXXX"], text=True
        ).strip()
    )
    logs = folder / "logs"
    logs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(logs)], check=True)
    try:
        fields = (
            'fields = ["date", "time", "cs-method", "cs-uri-stem", "sc-status", "time-taken", '
            '"cs(X-Request-Id)"]\nbuffer_size = 4096\nflush_interval = 0.2'
        )
        async with Run(result, folder=folder, log_extra=fields, keep=True) as run:
            access = logs / "access.log"
            run.start_load()
            await asyncio.sleep(2)
            filler = logs / "filler"
            with contextlib.suppress(OSError), open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            full_at = time.monotonic()
            await asyncio.sleep(8)
            filler.unlink()  # room again: the log goes on
            await asyncio.sleep(4)
            await run.finish()
        summary = result.summary
        lost = sum(
            int(m) for m in re.findall(r"access log \S+: (\d+) line\(s\) lost", run.server.log())
        )
        logged = _logged_ids(access)
        answered = {rid for rid, o in run.ledger.records.items() if o.status is not None}
        missing = len(answered - logged)
        result.notes.append(
            f"disk full for 8 s ({time.monotonic() - full_at:.0f} s before the end): {lost} lines reported "
            f"lost in the error log; {len(logged)} requests logged, {missing} answered requests not in the log"
        )
        result.checks["lost lines counted (as many as answered requests missing from the log)"] = (
            lost == missing and lost > 0
        )
        result.checks["logging resumed"] = bool(logged) and max(logged) > max(answered) - 200
        summary["log_lines_lost"] = lost
    finally:
        subprocess.run(["umount", "-l", str(logs)], check=False)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


async def fd_exhaustion(result: Result) -> None:
    """A worker's open-files limit cut to what it holds plus 3: accepting fails for a
    while; that must neither spin its CPU nor kill it, nor fail requests elsewhere.
    The pool's open-files limit (4,096) is below max_connections + 1,024, so its
    workers accept through the pausing listener, as a server with a low ulimit does
    (transport.server.native_accept_is_safe)."""
    async with Run(result, pool_extra="[pools.default.limits]\nopen_files = 4096") as run:
        table = [
            (40, Req("asgi", "/asgi/")),
            (30, Req("close", "/asgi/", close=True)),
            (30, Req("wsgi", "/wsgi/")),
        ]
        run.start_load(table, connections=16, rate=200)
        await asyncio.sleep(2)
        victim, other = run.server.ready()
        limit = fd_count(victim) + 3
        old = resource.prlimit(victim, resource.RLIMIT_NOFILE)
        cpu0 = (cpu_seconds(victim), cpu_seconds(other))
        t0 = time.monotonic()
        resource.prlimit(victim, resource.RLIMIT_NOFILE, (limit, old[1]))
        await asyncio.sleep(10)
        resource.prlimit(victim, resource.RLIMIT_NOFILE, old)
        spent = time.monotonic() - t0
        cpu = (cpu_seconds(victim) - cpu0[0], cpu_seconds(other) - cpu0[1])
        await asyncio.sleep(3)
        alive = not gone(victim)
        result.notes.append(
            f"worker {victim} limited to {limit} open files for {spent:.0f} s: it used {cpu[0]:.2f} s of CPU "
            f"({cpu[0] / spent:.0%} of a core), the other worker {cpu[1]:.2f} s; "
            f"{'still serving' if alive else 'it died'}"
        )
        result.checks["no CPU spin (limited worker under 50 % of a core)"] = cpu[0] / spent < 0.5
        result.checks["the worker survived"] = alive
        await run.finish()


async def memory_limit(result: Result) -> None:
    """Workers recycled on reaching ``recycling.private_memory`` (overlapped): /asgi/grow
    keeps 2 MB a call; every request still answered."""
    async with Run(
        result, pool_extra="[pools.default.recycling]\nprivate_memory = 60_000_000"
    ) as run:
        table = [*MIX, (6, Req("grow", "/asgi/grow?mb=2"))]
        run.start_load(table)
        await until(
            lambda: run.server.log().count("(private memory") >= 3, 120, "3 memory recycles"
        )
        await until(lambda: run.server.settled(), 60, "the pool settled")
        result.notes.append(
            f"{run.server.log().count('(private memory')} workers recycled for private memory over 60 MB "
            "(2 MB kept per /asgi/grow)"
        )
        await run.finish()


async def client_aborts(result: Result) -> None:
    """Clients that abort mid-upload (FIN or RST) and mid-download, while the load runs."""
    async with Run(result) as run:
        run.start_load()
        await asyncio.sleep(2)
        port = run.server.port
        done = {"upload": 0, "download": 0}

        async def upload(path: str, rst: bool) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: chaos.test\r\nContent-Length: 10000000\r\n\r\n".encode()
                + b"x" * 256 * 1024
            )
            await writer.drain()
            _abort(writer, rst)
            done["upload"] += 1

        async def download(rst: bool) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /large.bin HTTP/1.1\r\nHost: chaos.test\r\n\r\n")
            await reader.readexactly(64 * 1024)
            _abort(writer, rst)
            done["download"] += 1

        for n in range(40):
            await upload("/asgi/upload" if n % 2 else "/wsgi/upload", rst=n % 4 < 2)
            await download(rst=n % 3 == 0)
            await asyncio.sleep(0.1)
        result.notes.append(
            f"{done['upload']} uploads aborted after 256 KB of 10 MB, {done['download']} downloads after 64 KB of 1 MB (FIN or RST)"
        )
        await asyncio.sleep(2)
        await run.finish()


def _abort(writer: asyncio.StreamWriter, rst: bool) -> None:
    sock = writer.get_extra_info("socket")
    if rst and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()


def _children_named(parents: list[int], name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, _, rest = f.read().rpartition(")")
                if head.split("(", 1)[1] == name and int(rest.split()[1]) in parents:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _upstream(port: int, folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _redis(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


#: The backend requests: 5xx is the right answer while a backend is away.
OUTAGE_STATUSES = (200, 500, 502, 503, 504)
BACKENDS = {"proxy": "/up/small.txt", "php": "/hello.php", "redis": "/asgi/session"}


async def backends(result: Result) -> None:
    """An upstream (handler.proxy), php-cgi (handler.fastcgi, managed processes) and
    Redis (state.session) go away and come back, one after the other, under load.
    While one is away its requests are answered 5xx (502/503: the right answer);
    every other request, and its own once it is back, must succeed."""
    from chaos_server import free_port

    if not all(
        os.path.exists(p)
        or any(os.access(os.path.join(d, p), os.X_OK) for d in os.environ["PATH"].split(":"))
        for p in ("php-cgi", "redis-server")
    ):
        result.skipped = "needs php-cgi and redis-server (make sysdeps)"
        return
    up_port, redis_port = free_port(), free_port()
    extra = f"""
[[handlers]]
path = "/up/*"
handler = "handler.proxy"

[[handlers]]
path = "*.php"
handler = "handler.fastcgi"
resource_type = "file"

[[handlers]]
path = "*"
handler = "handler.static"

[proxy]
upstream = "http://127.0.0.1:{up_port}"
connect_timeout = 2
timeout = 5

[fastcgi.applications.php]
program = "/usr/bin/php-cgi"
max_instances = 1

[session_state]
provider = "redis"
mode = "off"

[[locations]]
path = "/asgi/session"
[locations.session_state]
mode = "read_write"

[redis]
url = "redis://127.0.0.1:{redis_port}/0"
retry_min = 0.2
retry_max = 1.0
pool_size = 1
"""
    modules = (
        "security.request_filtering", "state.session", "handler.proxy", "handler.fastcgi",
        "handler.static", "log.http",
    )  # fmt: skip
    upstream = redis = None
    try:
        redis = _redis(redis_port)
        await until(lambda: _answers(redis_port), 10, "redis-server answering")
        folder = Path(tempfile.mkdtemp(prefix="colonnade-chaos-"))
        www = folder / "www"
        (www / "up").mkdir(parents=True)
        (www / "up" / "small.txt").write_bytes(b"u" * 1024)
        (www / "hello.php").write_text("<?php echo 'php ok';")
        upstream = _upstream(up_port, www)
        await until(lambda: _answers(up_port), 10, "the upstream answering")
        table = [*MIX]
        table += [(12, Req(k, path, expect=OUTAGE_STATUSES)) for k, path in BACKENDS.items()]
        async with Run(result, folder=folder, warm=table, extra=extra, modules=modules) as run:
            run.start_load(table)
            await asyncio.sleep(3)
            outages: dict[str, tuple[float, float]] = {}
            # The upstream: killed, back on the same port 4 s later.
            t0 = time.monotonic()
            upstream.kill()
            upstream.wait()
            await asyncio.sleep(4)
            upstream = _upstream(up_port, www)
            await until(lambda: _answers(up_port), 10, "the upstream answering again")
            outages["proxy"] = (t0, time.monotonic())
            await asyncio.sleep(3)
            # php-cgi: every managed process killed; the workers start new ones.
            workers = run.server.ready()
            php = _children_named(workers, "php-cgi")
            t0 = time.monotonic()
            for pid in php:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            outages["php"] = (t0, time.monotonic())
            await asyncio.sleep(3)
            # Redis: killed, back 4 s later (empty: the sessions are new ones).
            t0 = time.monotonic()
            redis.kill()
            redis.wait()
            await asyncio.sleep(4)
            redis = _redis(redis_port)
            await until(lambda: _answers(redis_port), 10, "redis-server answering again")
            outages["redis"] = (t0, time.monotonic())
            await asyncio.sleep(4)
            await run.finish()
            php_after = _children_named(run.server.ready(), "php-cgi")
        # A backend's 5xx counts as right while it was away, and for its client's
        # back-off after (Redis: retry_max 1 s; the proxy and php: none).
        grace = {"proxy": 0.5, "php": 0.5, "redis": 1.5}
        for kind, (t0, t1) in outages.items():
            mine = [o for o in run.ledger.records.values() if o.kind == kind]
            during = [
                o
                for o in mine
                if o.status and o.status >= 500 and t0 - 0.5 <= o.sent <= t1 + grace[kind]
            ]
            stray = [o for o in mine if o.status and o.status >= 500 and o not in during]
            ok = sum(o.status == 200 for o in mine)
            result.notes.append(
                f"{kind}: {len(mine)} requests, {ok} answered 200, {len(during)} answered "
                f"{'/'.join(sorted({str(o.status) for o in during})) or '5xx'} while it was away "
                f"({t1 - t0:.1f} s), {len(stray)} 5xx at other times"
            )
            result.checks[f"{kind}: no 5xx outside its outage"] = not stray
            result.checks[f"{kind}: served again after"] = any(
                o.status == 200 and o.sent > t1 + grace[kind] for o in mine
            )
        result.notes.append(
            f"php-cgi processes: {len(php)} killed, {len(php_after)} running at the end"
        )
    finally:
        for proc in (upstream, redis):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


SCENARIOS: dict[str, tuple[str, Callable[[Result], Awaitable[None]]]] = {
    "sigkill": ("SIGKILL of a worker", sigkill),
    "sigstop": ("SIGSTOP of a worker (hung)", sigstop),
    "config-edits": ("50 configuration edits in a minute, 10 broken", config_edits),
    "disk-full": ("access log disk full (1 MB tmpfs)", disk_full),
    "fd-exhaustion": ("fd exhaustion (RLIMIT_NOFILE of a worker)", fd_exhaustion),
    "memory-limit": ("worker at its memory limit (recycled)", memory_limit),
    "client-aborts": ("clients aborting mid-upload and mid-download", client_aborts),
    "backends": ("upstream, php-cgi and Redis going away and back", backends),
}


def render(results: list[Result], started: str, load: str) -> str:
    lines = [
        "## Chaos suite (#23 item 4)",
        "",
        '`make chaos` (bench/reliability/chaos.py; one scenario: `make chaos CHAOS_ARGS="--only sigkill"`).',
        "Each scenario: a fresh `colonnade serve --workers 2` (loopback), 8 keep-alive connections",
        "paced to about 150 requests/s in all (ASGI, WSGI, static, 32 KB uploads, answers taking",
        "300 ms, some `Connection: close`), each request with an `X-Request-Id` the client accounts",
        "for. *In flight*:",
        "requests on connections the faulted worker held (read from /proc just before the fault) sent",
        "before it was gone; *beyond*: every other failure (required: 0). *Retried*: a GET on a reused",
        "keep-alive connection closed before any byte of its answer, sent again once on a new one",
        "(RFC 9112 §9.3.1), as browsers do. Leaks: the master's and workers' fds (not counting",
        "/dev/null, which the event loop opens once at a worker's first connection), the master's",
        "children and the server's temp folder (its TMPDIR) at rest, before and after.",
        f"Run at {started}; the machine is shared: {load}.",
        "",
        "| scenario | sent | answered | failed | in flight at fault | beyond | retried | leaks | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.title} | – | – | – | – | – | – | – | skipped: {r.skipped} |")
            continue
        s = r.summary
        leaks = "none" if r.leak_free else "**yes**"
        lines.append(
            f"| {r.title} | {s.get('sent', 0)} | {s.get('answered', 0)} | {s.get('failed', 0)} | "
            f"{s.get('in_flight_at_fault', 0)} | {s.get('beyond_in_flight', 0)} | {s.get('retried', 0)} | "
            f"{leaks} | {'pass' if r.passed else '**FAIL**'} |"
        )
    lines.append("")
    for r in results:
        if r.skipped:
            continue
        lines.append(f"- **{r.title}**: " + "; ".join(r.notes))
        for name, ok in r.checks.items():
            lines.append(f"  - {name}: {'yes' if ok else '**no**'}")
        if r.before is not None:
            lines.append(f"  - at rest before: {r.before.describe()}")
        if r.after is not None:
            lines.append(f"  - at rest after: {r.after.describe()}")
        for failure in r.failures:
            lines.append(f"  - {failure}")
    return "\n".join(lines)


async def run_all(names: list[str]) -> list[Result]:
    results = []
    for name in names:
        title, scenario = SCENARIOS[name]
        result = Result(name, title)
        print(f"[chaos] {name}: {title}", flush=True)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(scenario(result), 300)
        except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a failure, reported
            result.checks[f"ran to the end ({type(exc).__name__}: {exc})"] = False
        print(
            f"[chaos] {name}: {'pass' if result.passed else 'FAIL'} in {time.monotonic() - t0:.0f} s "
            f"{result.summary} {result.checks} {result.notes}",
            flush=True,
        )
        results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="scenarios, comma-separated")
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--out", default=str(REPO / "bench" / "RELIABILITY.md"), help="'-' prints only"
    )
    args = parser.parse_args()
    if args.list:
        for name, (title, _) in SCENARIOS.items():
            print(f"{name:16} {title}")
        return 0
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = machine()
    results = asyncio.run(run_all(names))
    text = render(results, started, load)
    print(text)
    if args.out != "-":
        write_section(Path(args.out), "chaos", text)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
