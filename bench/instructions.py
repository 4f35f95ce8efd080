"""User-space CPU instructions per request, counted by valgrind's callgrind.

The pieces of run.py's ``instructions`` workload that know nothing about the servers
(stdlib only):

- :func:`valgrind_argv` — the prefix that runs a server under callgrind, following every
  process it starts (``--trace-children=yes``; forked children are followed anyway), one
  output file per process: ``cg.<pid>`` in a folder of its own;
- :func:`drive` — N sequential keep-alive ``GET``\\ s on ONE connection, each response read
  in full (Content-Length) and checked (a 200, the same body every time) before the next
  request is sent (a new connection only where the server closes it: nginx does after
  1000 requests); :func:`drive_h2load` the same over TLS with h2load, for the TLS and
  HTTP/2 workloads (8 concurrent streams over h2);
- :func:`callgrind_total` — the instructions of every process of one run, summed.

run.py starts the server (pinned to the server CPU), waits until it answers, drives N1
then, in a second run, N2 requests, stops it gracefully, and reports
(total(N2) - total(N1)) / (N2 - N1): start-up, shut-down and the readiness probe cancel
out, what is left is the servers' own code per request. The kernel's share (syscalls,
TCP) is not counted, and the number does not move with machine noise.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

VALGRIND = "valgrind"
REQUEST = "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n"
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
_LENGTH = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding:.*chunked", re.I | re.M)
_CLOSE = re.compile(rb"^connection:[ \t]*close", re.I | re.M)
_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.M)
_H2LOAD_DONE = re.compile(r"^requests: .* (\d+) succeeded, 0 failed, 0 errored", re.M)
_H2LOAD_2XX = re.compile(r"^status codes: (\d+) 2xx, 0 3xx, 0 4xx, 0 5xx", re.M)


def valgrind_argv(out_dir: Path) -> list[str]:
    """``valgrind --tool=callgrind`` writing ``out_dir/cg.<pid>`` per process. ``-q``
    keeps valgrind's banner out of the server's stderr (its own errors still show).
    ``PYTHONHASHSEED=0``: the same hash layout in both runs (and every process), so the
    start-up cancels out exactly and repeated runs agree more closely."""
    return [
        "env",
        "PYTHONHASHSEED=0",
        VALGRIND,
        "-q",
        "--tool=callgrind",
        "--trace-children=yes",
        # The PHP processes a server starts (php-cgi) are the application's, not the
        # server's: like php-fpm, which the harness starts outside valgrind.
        "--trace-children-skip=*php-cgi*,*php-fpm*",
        f"--callgrind-out-file={out_dir}/cg.%p",
    ]


class Driven(NamedTuple):
    """What :func:`drive` saw: new connections the server asked for, and the body every
    response carried (one and the same, or :func:`drive` raised)."""

    reconnects: int
    body: bytes


def drive(
    host: str,
    port: int,
    path: str,
    n: int,
    timeout: float,
    headers: tuple[str, ...] = (),
    body: bytes | None = None,
) -> Driven:
    """``n`` sequential keep-alive GETs of ``path`` on one connection, within ``timeout``
    seconds in all, each with ``headers`` (``"Name: value"``) too; every response must be
    a 200 with a Content-Length or chunked (nginx in front of PHP), and carry the same
    body: ``body`` where given, else the first response's. A server that answers
    something else fast (an error page with a 200, a proxy's stand-in) is then not
    counted as the work measured. A server that closes the connection by design (nginx
    after ``keepalive_requests``, 1000 by default) says so with ``Connection: close``:
    the client then opens a new one, as wrk does. Raises OSError (socket, timeout) or
    ValueError."""
    extra = "".join(f"{h}\r\n" for h in headers)
    request = REQUEST.format(path=path, host=host, headers=extra).encode()
    deadline = time.monotonic() + timeout
    buf = bytearray()
    reconnects = 0
    s = socket.create_connection((host, port), timeout=timeout)
    try:

        def more() -> None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{n} requests not done within {timeout:g}s")
            s.settimeout(left)
            data = s.recv(65536)
            if not data:
                raise ValueError(f"the server closed the connection after {i} responses")
            buf.extend(data)

        for i in range(n):
            s.sendall(request)
            while (end := buf.find(b"\r\n\r\n")) < 0:
                more()
            head = bytes(buf[:end])
            status = _STATUS.match(head)
            if status is None or status.group(1) != b"200":
                line = head.split(b"\r\n", 1)[0]
                raise ValueError(f"response {i + 1}: {line!r}")
            length = _LENGTH.search(head)
            del buf[: end + 4]
            if _CHUNKED.search(head):
                got = _chunked(buf, more)
            elif length is None:
                raise ValueError(f"response {i + 1} has no Content-Length")
            else:
                need = int(length.group(1))
                while len(buf) < need:
                    more()
                # startswith: a memcmp in place (a 10 MiB body is not copied to compare)
                if body is not None and len(body) == need and buf.startswith(body):
                    got = body
                else:
                    got = bytes(buf[:need])
                del buf[:need]
            if body is None:
                body = got
            elif got is not body and got != body:
                raise ValueError(
                    f"response {i + 1}: a body of {len(got):,} bytes ({got[:40]!r}) "
                    f"unlike the expected {len(body):,} bytes ({body[:40]!r})"
                )
            if _CLOSE.search(head) and i + 1 < n:
                s.close()
                s = socket.create_connection((host, port), timeout=timeout)
                reconnects += 1
    finally:
        s.close()
    return Driven(reconnects, body or b"")


def drive_h2load(
    host: str, port: int, path: str, n: int, mode: tuple[str, ...], timeout: float
) -> int:
    """``n`` requests of ``path`` by h2load over TLS on ONE connection, in ``mode`` (its
    switches: ``()`` HTTP/2 with 8 concurrent streams, as the bench's h2 rows per
    connection; ``("--h1",)`` HTTP/1.1 one at a time); every one must succeed with a 2xx.
    h2load is not under callgrind: only the server's instructions are counted. Returns
    0 (h2load reconnects by itself only where the server closes, which is a failure
    here). Raises OSError (h2load missing, timeout) or ValueError."""
    streams = ("-m1",) if "--h1" in mode else ("-m8",)
    argv = ["h2load", f"-n{n}", "-c1", *streams, *mode, f"https://{host}:{port}{path}"]
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        ).stdout
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"{n} requests not done within {timeout:g}s") from exc
    done = _H2LOAD_DONE.search(out)
    if done is None or int(done.group(1)) != n or _H2LOAD_2XX.search(out) is None:
        last = out.strip().splitlines()[-1:] or ["no output"]
        raise ValueError(f"h2load: not {n} successful responses ({last[0][:120]})")
    return 0


def _chunked(buf: bytearray, more: Callable[[], None]) -> bytes:
    # A chunked body at the start of ``buf``, taken out of it (no trailers expected):
    # its bytes, joined.
    parts: list[bytes] = []
    while True:
        while (eol := buf.find(b"\r\n")) < 0:
            more()
        size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
        need = eol + 2 + size + 2
        while len(buf) < need:
            more()
        parts.append(bytes(buf[eol + 2 : eol + 2 + size]))
        del buf[:need]
        if size == 0:
            return b"".join(parts)


def callgrind_total(out_dir: Path) -> tuple[int, int]:
    """(instructions summed over every ``cg.*`` file in ``out_dir``, number of files).
    Raises ValueError when there is none, or one has no total (a process killed before
    callgrind wrote it)."""
    files = sorted(out_dir.glob("cg.*"))
    if not files:
        raise ValueError("callgrind wrote no output file")
    total = 0
    for f in files:
        found = _TOTAL.findall(f.read_text(errors="replace"))
        if not found:
            raise ValueError(f"{f.name} has no total (process killed?)")
        total += int(found[-1])
    return total, len(files)


#: No HTTP server answers a request in fewer user-space instructions (nginx's static
#: 1 KiB file, the cheapest row, reads ~13k): a reading below is a fault of the run.
MIN_PER_REQUEST = 5000
#: The N1-request run is made twice (before and after the N2 one): the two totals may
#: differ by this share of the requests' instructions (total(N2) - total(N1)) at most.
#: A start-up that costs more in one run than another (a file an earlier run or row
#: left behind and the server reads at start) would otherwise move the reading unseen.
#: Quiet runs of one server agree to a few hundred thousand instructions; on a busy
#: host work driven by time (an event loop's timers, for as long as a slow run lasts)
#: and a first run's own costs (a bench app's .pyc written) made colonnade-asgi's two
#: runs 0.9M apart, 1 % of its 84M: a bias under 5 % passes this check.
REPEAT_TOLERANCE = 0.05


def implausible(n1: int, n2: int, totals: Sequence[int], procs: Sequence[int]) -> str | None:
    """Why the callgrind runs of one server do not give a reading, or None if they do.

    ``totals`` and ``procs`` of the runs of N1, N2 and again N1 requests (in that order).
    The reading (total(N2) - total(N1)) / (N2 - N1) assumes that everything but the
    requests costs the same in both runs: the repeated N1 run checks that, and the floor
    catches a reading too small to be any server's work."""
    t1, t2, again = totals
    per = (t2 - t1) / (n2 - n1)
    if per < MIN_PER_REQUEST:
        return (
            f"{per:,.0f} instructions per request ({t1:,} for {n1:,} requests, {t2:,} for "
            f"{n2:,}): below {MIN_PER_REQUEST:,}, no server's work; a fixed cost that "
            "differs between the runs"
        )
    if abs(again - t1) > REPEAT_TOLERANCE * (t2 - t1):
        return (
            f"the two runs of {n1:,} requests counted {t1:,} and {again:,} instructions, "
            f"{abs(again - t1) / (n2 - n1):,.0f} per request of the reading "
            f"({per:,.0f}) apart: the server's fixed cost changed between runs (state an "
            "earlier run or row left behind, such as a file it reads at start)"
        )
    if len(set(procs)) > 1:
        return f"the runs had {' / '.join(map(str, procs))} processes"
    return None
