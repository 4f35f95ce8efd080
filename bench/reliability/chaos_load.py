"""A load client that accounts for every request it sends (chaos suite and soak).

Each request carries ``X-Request-Id``; the :class:`Ledger` keeps one record per id:
when it was sent, on which connection (the client's local port), and how it ended
(a status, or the error that ended it). Connections are kept alive unless a request
asks to close. Like every HTTP client, a GET sent on a reused connection that the
server closed before a single byte of the answer is sent again once on a new
connection (RFC 9112 section 9.3.1); such retries are counted, never hidden.

A fault is put down to the worker it hits with :func:`server_side_ports`: the
client ports of every TCP connection a process holds, read from /proc just before
the fault. A failed request counts as *in flight at the fault* when it was on such
a connection and sent before that worker was gone; every other failure is one
*beyond in flight*, which the chaos suite requires to be zero.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Bytes of a response head the client accepts.
HEAD_MAX = 65536


@dataclass
class Req:
    """One request to send: ``expect`` are the statuses that count as answered."""

    kind: str
    path: str
    method: str = "GET"
    body: bytes = b""
    close: bool = False
    expect: tuple[int, ...] = (200,)


@dataclass
class Outcome:
    """What became of one request id."""

    kind: str
    sent: float
    port: int = 0  # the client's local port: which connection
    done: float | None = None
    status: int | None = None
    error: str | None = None
    retried: bool = False
    #: The first attempt of a retried request: (port, sent, when it failed).
    first: tuple[int, float, float] | None = None
    pid: str | None = None  # x-worker-pid of the answer


@dataclass
class Ledger:
    """Every request by id, and the faults injected while they ran."""

    records: dict[int, Outcome] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: (worker pid, client ports it held, when it was hit, when it was gone)
    faults: list[tuple[int, set[int], float, float]] = field(default_factory=list)
    connections: int = 0

    def fault(self, pid: int, ports: set[int], at: float, gone: float) -> None:
        """Requests on ``ports`` sent before ``gone`` may fail: they were in flight."""
        self.faults.append((pid, ports, at, gone))

    def in_flight(self, o: Outcome) -> bool:
        """Whether ``o`` was unanswered on a connection a fault hit when it hit, or sent
        on one before its worker was gone."""
        attempts = [(o.port, o.sent, o.done)]
        if o.first is not None:
            attempts.append(o.first)
        return any(
            port in ports and sent <= gone and (done is None or done >= at)
            for _, ports, at, gone in self.faults
            for port, sent, done in attempts
        )

    def summary(self) -> dict[str, int]:
        """Sent, answered, failed, failures in flight at a fault and beyond."""
        sent = len(self.records)
        answered = failed = beyond = exposed = pending = retried = 0
        for o in self.records.values():
            retried += o.retried
            if self.in_flight(o):
                exposed += 1
            if o.done is None:
                pending += 1
            elif o.error is None:
                answered += 1
            else:
                failed += 1
                if not self.in_flight(o):
                    beyond += 1
        return {
            "sent": sent,
            "answered": answered,
            "failed": failed,
            "in_flight_at_fault": exposed,
            "beyond_in_flight": beyond,
            "unfinished": pending,
            "retried": retried,
            "connections": self.connections,
        }

    def failures(self, limit: int = 10) -> list[tuple[int, Outcome]]:
        """Some failed requests (for the report), those beyond in flight first."""
        bad = [(i, o) for i, o in self.records.items() if o.error is not None]
        bad.sort(key=lambda item: self.in_flight(item[1]))
        return bad[:limit]


class Broken(Exception):
    """The connection ended; ``got`` bytes of the answer had arrived."""

    def __init__(self, why: str, got: int) -> None:
        super().__init__(why)
        self.got = got


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (lower-case names), body."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise Broken(
            "closed before the head" if not exc.partial else "head cut", len(exc.partial)
        ) from None
    except asyncio.LimitOverrunError:
        raise Broken("head too long", HEAD_MAX) from None
    except (ConnectionError, OSError) as exc:
        raise Broken(type(exc).__name__, 0) from None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    try:
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif status in (204, 304) or status < 200:
            body = b""
        else:
            body = await reader.read()
    except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
        raise Broken(f"body cut: {type(exc).__name__}", len(head)) from None
    return status, headers, body


def encode_request(req: Req, rid: int, host: str = "chaos.test", cookie: str = "") -> bytes:
    """The request's bytes."""
    lines = [
        f"{req.method} {req.path} HTTP/1.1",
        f"Host: {host}",
        f"X-Request-Id: {rid}",
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if req.body or req.method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(req.body)}")
    if req.close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body


class Load:
    """``connections`` keep-alive connections sending requests from ``mix``, paced to
    about ``rate`` requests a second in all, until :meth:`stop`."""

    def __init__(
        self,
        port: int,
        mix: Callable[[random.Random], Req],
        *,
        connections: int = 8,
        rate: float = 200.0,
        timeout: float = 20.0,
        ledger: Ledger | None = None,
        seed: int = 23,
    ) -> None:
        self.port = port
        self.mix = mix
        self.connections = connections
        self.interval = connections / rate if rate else 0.0
        self.timeout = timeout
        self.ledger = ledger or Ledger()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._random = random.Random(seed)

    def start(self) -> None:
        """Start the connections' tasks."""
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.connections)]

    async def stop(self) -> Ledger:
        """Let every connection finish its request in progress; the ledger."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.ledger

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, limit=HEAD_MAX), self.timeout
        )
        self.ledger.connections += 1
        return reader, writer, writer.get_extra_info("sockname")[1]

    async def _run(self) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter, int] | None = None
        reused = False
        cookie = ""  # the last cookie set (a session's), sent back as a browser does
        ledger = self.ledger
        next_at = time.monotonic() + self._random.random() * self.interval
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            next_at = max(next_at + self.interval, time.monotonic() - 1.0)
            req = self.mix(self._random)
            rid = next(ledger.ids)
            outcome = ledger.records[rid] = Outcome(req.kind, time.monotonic())
            for attempt in (0, 1):
                if conn is not None and conn[0].at_eof():
                    conn[1].close()  # closed by the server while idle: not reused
                    conn, reused = None, False
                try:
                    if conn is None:
                        conn, reused = await self._open(), False
                    reader, writer, port = conn
                    outcome.port = port
                    if attempt:
                        outcome.sent = time.monotonic()
                    writer.write(encode_request(req, rid, cookie=cookie))
                    status, headers, _ = await asyncio.wait_for(read_response(reader), self.timeout)
                except (Broken, OSError, TimeoutError) as exc:
                    got = exc.got if isinstance(exc, Broken) else -1
                    if conn is not None:
                        conn[1].close()
                    stale = reused and got == 0 and req.method == "GET"
                    conn, reused = None, False
                    if stale and attempt == 0:
                        outcome.retried = True
                        outcome.first = (outcome.port, outcome.sent, time.monotonic())
                        continue
                    outcome.error = f"{type(exc).__name__}: {exc}"
                    outcome.done = time.monotonic()
                    break
                outcome.done = time.monotonic()
                outcome.status = status
                outcome.pid = headers.get("x-worker-pid")
                if "set-cookie" in headers:
                    cookie = headers["set-cookie"].split(";", 1)[0]
                if status not in req.expect:
                    outcome.error = f"status {status}"
                if req.close or headers.get("connection", "").lower() == "close":
                    writer.close()
                    conn, reused = None, False
                else:
                    reused = True
                break
        if conn is not None:
            conn[1].close()


async def websocket_echo(port: int, path: str, messages: int, size: int = 64) -> None:
    """Open a WebSocket on ``path``, have ``messages`` text frames echoed, close it
    cleanly; raises on anything else."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: chaos.test\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no upgrade: {head[:40]!r}")
        for n in range(messages):
            payload = (f"{n:08d}" * (size // 8 + 1))[:size].encode()
            writer.write(_frame(0x1, payload))
            opcode, echoed = await _read_frame(reader)
            if opcode != 0x1 or echoed != payload:
                raise RuntimeError(f"wrong echo: {opcode} {echoed[:20]!r} for {payload[:20]!r}")
        writer.write(_frame(0x8, (1000).to_bytes(2, "big")))
        opcode, _ = await _read_frame(reader)
        if opcode != 0x8:
            raise RuntimeError("no close frame")
    finally:
        writer.close()


def _frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    n = second & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(n)


# -- what a process holds ------------------------------------------------------------------


def _socket_fds(pid: int) -> list[int]:
    """The socket inode of each of ``pid``'s socket descriptors (one per descriptor:
    a duplicated socket's inode comes once per descriptor)."""
    found = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found.append(int(target[8:-1]))
    except OSError:
        pass
    return found


def _socket_inodes(pid: int) -> set[int]:
    return set(_socket_fds(pid))


def _tcp_sockets() -> list[tuple[int, int, str, int]]:
    """Every TCP socket of this network namespace: (local port, remote port, state, inode)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, remote = fields[1], fields[2]
                    found.append(
                        (
                            int(local.rsplit(":", 1)[1], 16),
                            int(remote.rsplit(":", 1)[1], 16),
                            fields[3],
                            int(fields[9]),
                        )
                    )
        except OSError:
            pass
    return found


def server_side_ports(pid: int, server_port: int) -> set[int]:
    """The client ports of the TCP connections to ``server_port`` that ``pid`` holds."""
    inodes = _socket_inodes(pid)
    return {
        remote
        for local, remote, _, inode in _tcp_sockets()
        if inode in inodes and local == server_port and remote != 0  # not the listener
    }


def fd_split(pid: int) -> tuple[int, int]:
    """(open fds of ``pid``, how many of them are TCP connections' descriptors), from
    one listing of its fds: a socket that is neither a unix socket nor a listening TCP
    socket counts as a connection, also one that closed between the reads. Counted by
    descriptor, not by socket: a connection that sent a large file holds a duplicate
    of its socket for its lifetime (transport/connection.py ``_twin``)."""
    fds = _socket_fds(pid)
    total = fd_count(pid)
    other = {inode for _, _, state, inode in _tcp_sockets() if state == "0A"}  # LISTEN
    try:
        with open("/proc/net/unix") as f:
            next(f)
            other.update(int(line.split()[6]) for line in f if len(line.split()) > 6)
    except OSError:
        pass
    return total, sum(1 for inode in fds if inode not in other)


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid`` (-1 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
