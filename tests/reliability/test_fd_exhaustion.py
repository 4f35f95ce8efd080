"""A server out of file descriptors keeps waiting connections for later (#23 chaos).

libuv (under uvloop's ``create_server``) accepts and closes connections when
``accept()`` fails with EMFILE, so their clients were reset although another
worker, or this one a moment later, could serve them. A worker whose open-files
limit leaves no room above max_connections accepts through a listener that pauses
instead: the connection waits in the backlog and is answered once a descriptor
is free again. With room, client connections alone cannot exhaust descriptors,
and the event loop's own accept (cheaper per connection) is kept.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 404")
    except OSError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    # An open-files limit below max_connections (10,000) + FD_RESERVE: the server
    # accepts through the pausing listener, as with any low ulimit.
    proc = subprocess.Popen(
        ["prlimit", "--nofile=4096:", sys.executable, "-m", "colonnade.management.cli", "serve",
         "--root", str(tmp_path), "--bind", f"127.0.0.1:{port}", "--no-access-log", "--no-watch"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or answers(port), PATIENCE, "the server answering")
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def request(sock: socket.socket) -> bytes:
    """GET /missing on a kept-alive connection: the whole answer."""
    sock.sendall(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_connection_beyond_the_fd_limit_waits_and_is_served(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = server
    soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    held: list[socket.socket] = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
            held.append(sock)
            assert request(sock).startswith(b"HTTP/1.1 404")
        # Not one descriptor to spare: the next accept() fails with EMFILE.
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (fd_count(proc.pid), hard))
        # A third connection must not be reset or closed...
        third = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        held.append(third)
        third.sendall(b"GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        third.settimeout(0.5)
        with pytest.raises(TimeoutError):
            third.recv(1)  # waiting in the backlog: nothing, neither an answer nor EOF
        # ...and is answered once a descriptor is free again.
        held.pop(0).close()
        third.settimeout(PATIENCE)
        started = time.monotonic()
        assert third.recv(64).startswith(b"HTTP/1.1 404")
        assert time.monotonic() - started < PATIENCE
        assert proc.poll() is None
    finally:
        for sock in held:
            sock.close()
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
    # Serving on (after the listener's pause, at most a second, if one is under way).
    wait_for(lambda: answers(port), PATIENCE, "the server answering again")


def test_the_accept_path_follows_the_open_files_limit() -> None:
    from colonnade.transport.server import FD_RESERVE, native_accept_is_safe

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert native_accept_is_safe(soft - FD_RESERVE)
    assert not native_accept_is_safe(soft - FD_RESERVE + 1)
