"""The instructions workload's checks (bench/instructions.py, bench/run.py): a reading
of callgrind runs whose fixed cost differed, a response other than the one measured, a
listener on the port the server does not hold, and the proxy row's log file that grew
across rows (run AE's proxy row read 420 instructions per request: its first run's
start-up read back 64 MiB of an access log earlier rows had written)."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import HOST, free_port

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import run  # noqa: E402
from instructions import MIN_PER_REQUEST, drive, implausible  # noqa: E402


def test_run_aes_proxy_reading_is_refused() -> None:
    # colonnade-proxy in run AE: 876,563,386 for 1,000 requests, 877,403,949 for
    # 3,000; the repeated run had a small log to read back (~775M).
    why = implausible(1000, 3000, [876_563_386, 877_403_949, 775_500_000], [1, 1])
    assert why is not None
    assert "420 instructions per request" in why


def test_a_fixed_cost_that_changed_between_runs_is_refused() -> None:
    # A plausible-looking 34k per request: the first run's start-up cost 34M more.
    why = implausible(1000, 3000, [859_000_000, 927_000_000, 825_000_000], [1, 1])
    assert why is not None
    assert "fixed cost changed" in why


def test_runs_that_agree_give_a_reading() -> None:
    # colonnade-static of run AE (static-1k): the cache-1k row's run as the repeat
    assert implausible(1000, 3000, [737_262_255, 772_701_950, 737_257_368], [1, 1]) is None
    nginx = [29_672_845, 56_245_676, 29_690_000]  # two processes, master and worker
    assert implausible(1000, 3000, nginx, [2, 2, 2]) is None


def test_runs_with_other_processes_are_refused() -> None:
    why = implausible(1000, 3000, [737_262_255, 772_701_950, 737_257_368], [1, 2, 1])
    assert why == "the runs had 1 / 2 / 1 processes"


def test_the_floor_is_below_every_servers_work() -> None:
    # nginx's static 1 KiB file, the cheapest row of run AE, read 13,286
    assert MIN_PER_REQUEST < 13_286


@contextmanager
def _server(answer: Callable[[int], bytes]) -> Iterator[int]:
    """A keep-alive HTTP/1.1 server in a thread: request i (from 0) gets ``answer(i)``."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    listener.bind((HOST, port))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            buf, i = b"", 0
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf.split(b"\r\n\r\n", 1)[1]
                conn.sendall(answer(i))
                i += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_drive_gives_the_body_every_response_carried() -> None:
    with _server(lambda i: _ok(b"Hello, world!")) as port:
        driven = drive(HOST, port, "/", 50, timeout=30)
    assert driven == (0, b"Hello, world!")


def test_a_response_with_another_body_fails_the_run() -> None:
    # a 200 that is not the page measured (an error page, a stand-in): the run fails
    def answer(i: int) -> bytes:
        return _ok(b"Hello, world!" if i < 20 else b"no upstream")

    with _server(answer) as port, pytest.raises(ValueError, match="response 21: a body of 11"):
        drive(HOST, port, "/", 50, timeout=30)


def test_a_body_unlike_the_earlier_runs_fails_the_run() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, compared in place
    with _server(lambda i: _ok(big)) as port:
        assert drive(HOST, port, "/", 5, timeout=30, body=big).body is big
    other = big[:-1] + b"x"
    with _server(lambda i: _ok(other)) as port, pytest.raises(ValueError, match="response 1"):
        drive(HOST, port, "/", 5, timeout=30, body=big)


def test_a_listener_the_server_does_not_hold_is_seen() -> None:
    # Two listeners on one port (SO_REUSEPORT): a server holding only one of them
    # would get a share of the connections, and another process the rest.
    port = free_port()
    ours, theirs = socket.socket(), socket.socket()
    try:
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((HOST, port))
            s.listen(1)
        listeners = run._listener_inodes(port)
        assert len(listeners) == 2
        pid = os.getpid()
        assert run._tree_holds(pid, listeners)
        # one held, one another process's (an inode no process here holds)
        assert not run._tree_holds(pid, {*listeners, "socket:[1]"})
    finally:
        ours.close()
        theirs.close()


def test_the_proxy_rows_access_log_starts_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What earlier rows and runs logged is not read back by this start.
    monkeypatch.setattr(run, "PROXY_DIR", tmp_path)
    log = tmp_path / "access-23109.log"
    log.write_text("#Fields: date time\n" + "2026-12-07 06:03:09 GET / 200\n" * 1000)
    conf = run.proxy_conf(tmp_path / "colonnade-23109.toml", 23109, tmp_path / "up.sock")
    assert not log.exists()
    assert f'target = "{log}"' in conf.read_text()
