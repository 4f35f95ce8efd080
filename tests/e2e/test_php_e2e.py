"""Real PHP behind a real ``colonnade serve`` process: a 200 MiB upload and a
200 MiB download leave the worker's memory where it was, and no php-cgi
outlives the server or a killed worker."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Process
from tests.handlers.fastcgi.kit import request
from tests.handlers.fastcgi.php_kit import NEEDS_PHP, PHP_CGI, make_tree, php_cgi, php_pids
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = NEEDS_PHP


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("php-e2e"))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """The largest RSS of a process while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


@pytest.fixture(scope="module")
def served(tree: Path) -> Iterator[Process]:
    port = free_port()
    args = php_cgi(tree)["arguments"]
    toml = f"""
[server]
modules = ["handler.fastcgi", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[handlers]]
path = "*.php"
handler = "handler.fastcgi"
resource_type = "file"

[[handlers]]
path = "*"
handler = "handler.static"

[fastcgi.applications.app]
program = "{PHP_CGI}"
arguments = {json.dumps(args)}
max_instances = 2
request_timeout = 600
"""
    (tree / "colonnade.toml").write_text(toml)
    server = Process(["-c", "colonnade.toml", "--no-watch"], tree, port)
    yield server
    server.kill()


MIB = 1024 * 1024


def test_200_mib_upload_streams(served: Process) -> None:
    size = 200 * MIB
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    before = rss(served.proc.pid)
    with (
        Sampler(served.proc.pid) as sampler,
        socket.create_connection(("127.0.0.1", served.port), timeout=PATIENCE) as sock,
    ):
        sock.sendall(
            b"POST /stream.php HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n"
            b"content-length: %d\r\n\r\n" % size
        )
        for _ in range(size // MIB):
            sock.sendall(block)
            digest.update(block)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(digest.hexdigest().encode()):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert reply.endswith(f"{size} {digest.hexdigest()}".encode())
    # Our worker never held the body: it grew by far less than the upload.
    assert sampler.peak - before < 40 * MIB, (before, sampler.peak)


def test_large_download_streams(served: Process) -> None:
    mib = 200
    before = rss(served.proc.pid)
    with (
        Sampler(served.proc.pid) as sampler,
        socket.create_connection(("127.0.0.1", served.port), timeout=PATIENCE) as sock,
    ):
        sock.sendall(f"GET /download.php?mib={mib} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        got = 0
        buffered = b""
        while b"\r\n\r\n" not in buffered:
            buffered += sock.recv(65536)
        head, _, rest = buffered.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
        # Read slowly at first: the server must hold back, not buffer.
        tail = rest
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            got += len(data)
            tail = (tail + data)[-16:]
            if tail.endswith(b"0\r\n\r\n"):
                break
    assert got + len(rest) > mib * MIB
    assert sampler.peak - before < 40 * MIB, (before, sampler.peak)


def pool_server(tree: Path) -> Process:
    """``colonnade serve`` with a master and one worker, serving ``tree``."""
    port = free_port()
    cfg = re.sub(
        r"bindings = .*",
        f'bindings = ["http://127.0.0.1:{port}"]',
        (tree / "colonnade.toml").read_text(),
    )
    (tree / f"pool-{port}.toml").write_text(cfg)
    return Process(["-c", f"pool-{port}.toml", "--no-watch", "--workers", "1"], tree, port)


def served_pids(server: Process) -> set[int]:
    return {json.loads(request(server.port, "/server.php").body)["pid"] for _ in range(3)}


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.usefixtures("served")  # writes colonnade.toml
def test_no_php_cgi_outlives_the_server(tree: Path) -> None:
    server = pool_server(tree)
    try:
        pids = served_pids(server)
        assert pids <= php_pids()
        assert {parent(p) for p in pids} != {server.proc.pid}  # the worker's children
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(PATIENCE)
        wait_for(lambda: not (pids & php_pids()), PATIENCE, "php-cgi ends with the server")
    finally:
        server.kill()


@pytest.mark.usefixtures("served")
def test_php_cgi_dies_with_a_killed_worker(tree: Path) -> None:
    # Not a graceful stop: the worker is killed; the kernel ends its php-cgi
    # (PR_SET_PDEATHSIG), and the master's new worker starts its own.
    server = pool_server(tree)
    try:
        pids = served_pids(server)
        (worker,) = {parent(p) for p in pids}
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not (pids & php_pids()), PATIENCE, "php-cgi ends with its worker")
        again = wait_for(lambda: _served(server), PATIENCE, "the new worker serves PHP")
        assert not (again & pids)
    finally:
        server.kill()
    wait_for(lambda: not (again & php_pids()), PATIENCE, "php-cgi ends with the master")


def _served(server: Process) -> set[int]:
    try:
        return served_pids(server)
    except (OSError, EOFError, ValueError):
        return set()
