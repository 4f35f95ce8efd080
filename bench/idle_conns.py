"""Open N keep-alive connections to a server on loopback and hold them idle.

Used by bench/run.py to measure the memory a server spends on idle keep-alive
connections. Python 3 stdlib only.

    python bench/idle_conns.py --port 8000 [--path /] [-n 10000] [--hold 120]

Every connection sends one ``GET`` with keep-alive, reads the whole response (Content-Length
or chunked), then stays open and idle. When all are done the client prints one line

    READY {"ok": ..., "failed": ..., "errors": {...}, "seconds": ...}

and holds. Each line received on stdin is answered with

    ALIVE {"alive": ..., "closed_by_server": ...}

(connections the server has not closed). EOF on stdin, SIGTERM/SIGINT, or ``--hold``
seconds end the hold; the client then closes everything and exits. Every phase is bounded
in time, so it always stops by itself. ``--head-only``: each connection reads its
response's head and never its body, as a client too slow to download it (with
``--path`` a large file: what the server keeps per such client). Only loopback targets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import resource
import signal
import sys
import time
from collections import Counter


def raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    for limits in ((want, max(hard, want)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return
        except (ValueError, OSError):
            continue


async def read_response(reader: asyncio.StreamReader, head_only: bool = False) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    if head_only:
        return status  # the body stays unread: a client too slow to take it
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)  # data + CRLF
            if size == 0:
                break  # (trailers are not expected here)
    return status


class Conn:
    __slots__ = ("closed", "reader", "watch", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False
        self.watch: asyncio.Task[None] | None = None

    async def watch_eof(self) -> None:
        with contextlib.suppress(Exception):
            while await self.reader.read(65536):
                pass
        self.closed = True


async def open_one(
    host: str, port: int, request: bytes, limit: float, head_only: bool = False
) -> tuple[Conn | None, str | None]:
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status = await read_response(reader, head_only)
    except Exception as exc:  # every failure is counted by kind
        return None, type(exc).__name__
    conn = Conn(reader, writer)
    if not 200 <= status < 400:
        writer.close()
        return None, f"HTTP {status}"
    if not head_only:  # (watching would read the body a head-only client leaves)
        conn.watch = asyncio.ensure_future(conn.watch_eof())
    return conn, None


async def main_async(args: argparse.Namespace) -> int:
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        "Connection: keep-alive\r\nUser-Agent: colonnade-bench-idle\r\n\r\n"
    ).encode()
    conns: list[Conn] = []
    errors: Counter[str] = Counter()
    sem = asyncio.Semaphore(args.concurrency)
    deadline = time.monotonic() + args.timeout

    async def worker() -> None:
        async with sem:
            left = deadline - time.monotonic()
            if left <= 0:
                errors["deadline"] += 1
                return
            conn, err = await open_one(
                args.host, args.port, request, min(left, 5.0), args.head_only
            )
            if conn is not None:
                conns.append(conn)
            else:
                errors[err or "?"] += 1

    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(worker()) for _ in range(args.n)]
    # A server that stops accepting (a connection cap) would make us wait for the whole
    # --timeout: give up on the rest once no connection succeeded for --stall seconds.
    last = (0, time.monotonic())
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=0.25)
        now = time.monotonic()
        if len(conns) != last[0]:
            last = (len(conns), now)
        elif now - last[1] > args.stall:
            pending = [t for t in tasks if not t.done()]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            errors["stalled"] += len(pending)
            break
    report = {
        "ok": len(conns),
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "seconds": round(time.monotonic() - t0, 3),
    }
    print("READY " + json.dumps(report), flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stdin_reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin_reader), sys.stdin)

    async def serve_stdin() -> None:
        while True:
            line = await stdin_reader.readline()
            if not line:
                stop.set()
                return
            closed = sum(1 for c in conns if c.closed)
            print(
                "ALIVE " + json.dumps({"alive": len(conns) - closed, "closed_by_server": closed}),
                flush=True,
            )

    stdin_task = asyncio.ensure_future(serve_stdin())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.hold)
    stdin_task.cancel()
    for c in conns:
        if c.watch is not None:
            c.watch.cancel()
        c.writer.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("-n", type=int, default=10000, help="connections to open (default 10000)")
    ap.add_argument("--concurrency", type=int, default=256, help="connects in flight at once")
    ap.add_argument("--timeout", type=float, default=60.0, help="max seconds to open them all")
    ap.add_argument(
        "--stall",
        type=float,
        default=5.0,
        help="give up when no connection succeeded for this many seconds",
    )
    ap.add_argument("--hold", type=float, default=120.0, help="max seconds to hold them idle")
    ap.add_argument(
        "--head-only",
        action="store_true",
        help="read each response's head only and leave its body unread: slow clients "
        "of a large download (the server holds what it cannot send)",
    )
    args = ap.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        ap.error("only loopback targets are allowed")
    raise_nofile(args.n + 1024)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
