"""Interpreted bytecodes and Python frames per request of the pure install, by function.

The pure install's time goes mostly to the interpreter loop (~25-35 instructions a
bytecode under callgrind, more for a call): this counts what it runs per request.
It starts ``colonnade serve apps.asgi_hello:app --workers 0`` from the pure
install (``.venv``; ``PYTHONPATH=src`` where the editable install points
elsewhere) under ``sys.settrace`` with ``'opcode'`` events, sends 200 warm-up
keep-alive ``GET /`` (only ``Host``, as ``bench/instructions.py`` sends) and then
N more, and prints the difference per request, in all and per function.

    .venv/bin/python bench/bytecodes.py PORT [N]   # run from the repository root
    LINES=/abs/path/file.py,... also counts per source line in those files
    TOP=60 how many functions to list

The tracer slows the server down ~20x: code whose path depends on elapsed time
(the site counters' duration buckets) takes its slow branch more often than in a
real run.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def serve(port: int, out: str) -> None:
    """The server, traced; snapshots of the counts on request (a trigger file)."""
    ops: collections.Counter[Any] = collections.Counter()
    calls: collections.Counter[Any] = collections.Counter()
    lines: collections.Counter[Any] = collections.Counter()
    wanted = set(os.environ.get("LINES", "").split(",")) - {""}

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            code = frame.f_code
            ops[code] += 1
            if wanted and code.co_filename in wanted:
                lines[(f"{code.co_filename}:{code.co_qualname}", frame.f_lineno)] += 1
        return local

    def glob(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        calls[frame.f_code] += 1
        return local

    def dumper() -> None:
        n = 0
        while True:
            time.sleep(0.05)
            trigger = f"{out}.trig{n}"
            if not os.path.exists(trigger):
                continue
            snap_ops, snap_calls = dict(ops), dict(calls)
            data: dict[str, tuple[int, int]] = {}
            for code in set(snap_ops) | set(snap_calls):
                key = f"{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}"
                o, c = data.get(key, (0, 0))
                data[key] = (o + snap_ops.get(code, 0), c + snap_calls.get(code, 0))
            for (name, line), count in dict(lines).items():
                data[f"LINE {name}:{line}"] = (count, 0)
            with open(f"{out}.snap{n}", "w") as f:
                json.dump(data, f)
            os.unlink(trigger)
            n += 1

    threading.Thread(target=dumper, daemon=True).start()
    threading.settrace(glob)
    sys.settrace(glob)
    from colonnade.management.cli import main

    sys.argv = ["colonnade", "serve", "apps.asgi_hello:app", "--app-dir", "bench", "--root",
                "bench/out/www", "--bind", f"127.0.0.1:{port}", "--workers", "0"]  # fmt: skip
    raise SystemExit(main())


def drive(sock: socket.socket, n: int) -> None:
    """``n`` sequential keep-alive GETs, each answered with a Content-Length."""
    buf = b""
    for _ in range(n):
        sock.sendall(REQUEST)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buf) >= end + 4 + length:
                    buf = buf[end + 4 + length :]
                    break
            buf += sock.recv(65536)


def snapshot(out: str, n: int) -> dict[str, list[int]]:
    open(f"{out}.trig{n}", "w").close()
    while not os.path.exists(f"{out}.snap{n}") or os.path.exists(f"{out}.trig{n}"):
        time.sleep(0.02)
    time.sleep(0.1)
    with open(f"{out}.snap{n}") as f:
        data: dict[str, list[int]] = json.load(f)
    return data


def main() -> None:
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    out = os.path.join("bench", "out", f"bytecodes-{port}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    env = dict(os.environ, PYTHONHASHSEED="0")
    with open(f"{out}.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), out],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(300):
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.1)
        drive(sock, 200)
        before = snapshot(out, 0)
        drive(sock, n)
        after = snapshot(out, 1)
        rows = []
        total_ops = total_calls = 0.0
        for key, (o, c) in after.items():
            o0, c0 = before.get(key, (0, 0))
            if not key.startswith("LINE "):
                total_ops += o - o0
                total_calls += c - c0
            if o - o0 or c - c0:
                rows.append(((o - o0) / n, (c - c0) / n, key))
        print(
            f"bytecodes/request {total_ops / n:.1f}  "
            f"Python frames entered or resumed/request {total_calls / n:.1f}"
        )
        rows.sort(reverse=True)
        top = int(os.environ.get("TOP", "60"))
        functions = [r for r in rows if not r[2].startswith("LINE ")][:top]
        for o, c, key in functions + [r for r in rows if r[2].startswith("LINE ")]:
            print(f"{o:8.1f} {c:6.2f}  {key.replace(os.getcwd() + '/', '')}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        for name in os.listdir(os.path.dirname(out)):
            if name.startswith(os.path.basename(out) + ".") and not name.endswith(".log"):
                os.unlink(os.path.join(os.path.dirname(out), name))


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        main()
