"""``[server] tcp_notsent_lowat`` over real sockets: the bound on the unsent bytes the
kernel queues for a client (Linux's ``TCP_NOTSENT_LOWAT``).

The option is set on the listening socket and every accepted connection has it
(read back from the server's own accepted socket); it is configurable, and 0 puts
the kernel's default back, also on a socket that had a value. A client that reads
nothing leaves no more than about the mark unsent in the server's socket (the
kernel's SIOCOUTQNSD), where without it the kernel queues megabytes; a client that
reads as fast as it can still gets the whole file, byte for byte.
"""

from __future__ import annotations

import array
import fcntl
import hashlib
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from colonnade.transport.sockets import limit_unsent
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.support.wait import PATIENCE, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="TCP_NOTSENT_LOWAT and SIOCOUTQNSD: Linux"
    ),
]

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
#: linux/sockios.h: the bytes in a socket's send queue not sent yet.
SIOCOUTQNSD = 0x894B
DEFAULT = 128 * 1024
#: A large file, served by sendfile: far more than any send buffer holds.
SIZE = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unsent")
    (root / "www").mkdir()
    (root / "www" / "hello.txt").write_text("Hello, world!")
    (root / "www" / "big.bin").write_bytes(os.urandom(1024 * 1024) * (SIZE // (1024 * 1024)))
    return root


def config(**server: object) -> dict[str, object]:
    return {
        "server": {"modules": ["handler.static"], **server},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
    }


def serve(root: Path, **server: object) -> LiveServer:
    return LiveServer(config(**server), root).start()


def accepted(client: socket.socket) -> socket.socket:
    """The server's end of ``client``'s connection (the server runs in this process):
    a duplicate of its descriptor, found by its addresses."""
    want = (client.getpeername(), client.getsockname())
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if sock.type == socket.SOCK_STREAM and (sock.getsockname(), sock.getpeername()) == want:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError("the server's end of the connection not found")


def server_end(port: int, conn: Conn) -> socket.socket:
    # Accepted once the server answered a request on it.
    conn.send(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.response().status == 200
    return accepted(conn.sock)


def lowat(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT)


def unsent(sock: socket.socket) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, buf)
    return buf[0]


def settled_unsent(sock: socket.socket) -> int:
    """The server socket's unsent bytes once they stopped growing (the server wrote
    all it could: its next write waits for the socket to become writable)."""
    seen: list[int] = []

    def still() -> bool:
        seen.append(unsent(sock))
        time.sleep(0.05)
        return len(seen) >= 10 and seen[-1] > 0 and len(set(seen[-10:])) == 1

    wait_for(still, PATIENCE, "the server's send queue to stop growing")
    return seen[-1]


def test_the_default_bounds_every_accepted_connection(big: Path) -> None:
    with serve(big) as live, Conn(live.port) as conn, server_end(live.port, conn) as end:
        assert lowat(end) == DEFAULT


def test_configured_and_zero_is_the_kernels_default(big: Path) -> None:
    with (
        serve(big, tcp_notsent_lowat=65536) as live,
        Conn(live.port) as conn,
        server_end(live.port, conn) as end,
    ):
        assert lowat(end) == 65536
    live = LiveServer(config(tcp_notsent_lowat=0), big)
    # A listening socket that had a value (a previous configuration's, a passed
    # socket's): 0 takes it back.
    assert limit_unsent(live.sock, 65536)
    with live.start(), Conn(live.port) as conn, server_end(live.port, conn) as end:
        assert lowat(end) == 0


def test_limit_unsent_leaves_a_unix_socket_alone(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        assert not limit_unsent(sock, 65536)


def slow_reader_unsent(root: Path, **server: object) -> int:
    """What a client that reads nothing of a large file leaves unsent in the server's
    socket (a small receive window: little is in flight)."""
    with serve(root, **server) as live, Conn(live.port, rcvbuf=65536) as conn:
        end = server_end(live.port, conn)
        with end:
            conn.send(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            return settled_unsent(end)


def test_a_slow_reader_pins_about_the_mark(big: Path) -> None:
    bounded = slow_reader_unsent(big)
    # The kernel checks the mark before each piece it queues: past it by at most one
    # piece (up to 64 KiB on loopback).
    assert bounded <= DEFAULT + 128 * 1024, bounded
    # Without the bound the same client pins megabytes (the check can fail).
    unbounded = slow_reader_unsent(big, tcp_notsent_lowat=0)
    assert unbounded > 4 * bounded, (unbounded, bounded)


def fetch(sock: socket.socket, path: str) -> tuple[int, bytes]:
    """GET ``path`` on ``sock``: status and body (Content-Length), read as fast as
    the socket gives it."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        piece = sock.recv(65536)
        assert piece, "closed before the head's end"
        head += piece
    head, _, rest = head.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = dict(line.split(b":", 1) for line in lines[1:])
    length = int(next(v for k, v in fields.items() if k.lower() == b"content-length"))
    body = bytearray(length)
    body[: len(rest)] = rest
    view, got = memoryview(body), len(rest)
    while got < length:
        n = sock.recv_into(view[got:])
        assert n, "closed mid-body"
        got += n
    return int(lines[0].split()[1]), bytes(body)


@pytest.mark.parametrize("mark", [16 * 1024, DEFAULT])
def test_a_fast_reader_gets_the_whole_file(big: Path, mark: int) -> None:
    want = hashlib.sha256((big / "www" / "big.bin").read_bytes()).hexdigest()
    with (
        serve(big, tcp_notsent_lowat=mark) as live,
        socket.create_connection(("127.0.0.1", live.port), timeout=PATIENCE) as sock,
    ):
        for _ in range(2):  # and the connection goes on
            status, body = fetch(sock, "/big.bin")
            assert status == 200
            assert len(body) == SIZE
            assert hashlib.sha256(body).hexdigest() == want
