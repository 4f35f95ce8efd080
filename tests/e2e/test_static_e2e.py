"""Static files over real sockets: a 10 MiB file whole and in ranges (the sendfile
path), multipart ranges, 416, 304 and the small-file cache on a live server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest

from colonnade.pools.single import new_event_loop
from colonnade.transport import connection
from tests.e2e.conftest import LiveServer, win32_statuses
from tests.e2e.wire import Conn, Wire
from tests.support.wait import PATIENCE, wait_for

BIG = 10 * 1024 * 1024
SMALL = b"".join(b"line %04d\n" % i for i in range(300))  # 3000 bytes: cached


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    base = tmp_path_factory.mktemp("static-e2e")
    www = base / "www"
    www.mkdir()
    big = os.urandom(BIG)
    (www / "big.bin").write_bytes(big)
    (www / "small.txt").write_bytes(SMALL)
    (www / "sub").mkdir()
    (www / "sub" / "web.toml").write_text('[static_content]\ncache_control = "no-cache"\n')
    (www / "sub" / "page.html").write_text("<p>sub</p>")
    return base, big


@pytest.fixture(scope="module")
def live(files: tuple[Path, bytes]) -> Iterator[LiveServer]:
    base, _ = files
    config = {
        "server": {"modules": ["security.request_filtering", "handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "static_content": {"cache_control": "max-age", "max_age": 300},
    }
    server = LiveServer(config, base).start()
    yield server
    server.stop()


@pytest.fixture
def big(files: tuple[Path, bytes]) -> bytes:
    return files[1]


def request(conn: Conn, target: str, *headers: str, method: str = "GET") -> Wire:
    extra = "".join(f"{h}\r\n" for h in headers)
    conn.send(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())
    return conn.response(head_only=method == "HEAD")


def once(live: LiveServer, target: str, *headers: str, method: str = "GET") -> Wire:
    with Conn(live.port, timeout=30) as conn:
        return request(conn, target, *headers, method=method)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_big_file_whole(live: LiveServer, big: bytes) -> None:
    response = once(live, "/big.bin")
    assert response.status == 200
    assert response.headers["content-length"] == str(BIG)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "max-age=300"
    assert not response.chunked
    assert digest(response.body) == digest(big)


@pytest.mark.parametrize(
    ("value", "start", "stop"),
    [
        ("bytes=1000000-8999999", 1_000_000, 9_000_000),
        ("bytes=-3000000", BIG - 3_000_000, BIG),
        ("bytes=9000000-", 9_000_000, BIG),
        ("bytes=0-0", 0, 1),
    ],
)
def test_big_file_single_range(
    live: LiveServer, big: bytes, value: str, start: int, stop: int
) -> None:
    response = once(live, "/big.bin", f"Range: {value}")
    assert response.status == 206
    assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/{BIG}"
    assert response.headers["content-length"] == str(stop - start)
    assert digest(response.body) == digest(big[start:stop])


def parts(response: Wire) -> list[tuple[str, bytes]]:
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n"
    message = email.message_from_bytes(raw + response.body, policy=email.policy.HTTP)
    assert isinstance(message, EmailMessage) and message.is_multipart()
    out = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append((str(part["Content-Range"]), payload))
    return out


def test_big_file_multipart(live: LiveServer, big: bytes) -> None:
    # Parts above 64 KiB stream with sendfile inside a body of declared length.
    value = "bytes=0-99999,5000000-5999999,-100,50-150"
    response = once(live, "/big.bin", f"Range: {value}")
    assert response.status == 206
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert response.headers["content-length"] == str(len(response.body))
    assert not response.chunked
    got = parts(response)
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n"
    message = email.message_from_bytes(raw + response.body, policy=email.policy.HTTP)
    assert isinstance(message, EmailMessage)
    assert {p.get_content_type() for p in message.iter_parts()} == {"application/octet-stream"}
    assert [r for r, _ in got] == [
        f"bytes 0-99999/{BIG}",
        f"bytes 5000000-5999999/{BIG}",
        f"bytes {BIG - 100}-{BIG - 1}/{BIG}",
    ]
    assert got[0][1] == big[:100_000]
    assert got[1][1] == big[5_000_000:6_000_000]
    assert got[2][1] == big[-100:]


def test_small_multipart_and_cache_keep_the_connection(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        whole = request(conn, "/small.txt")
        assert whole.status == 200 and whole.body == SMALL
        split = request(conn, "/small.txt", "Range: bytes=0-9,-10")
        assert split.status == 206
        assert parts(split) == [
            ("bytes 0-9/3000", SMALL[:10]),
            ("bytes 2990-2999/3000", SMALL[-10:]),
        ]
        again = request(conn, "/small.txt")
        assert again.body == SMALL
        assert again.headers["etag"] == whole.headers["etag"]


def test_unsatisfiable_range_is_416(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        response = request(conn, "/big.bin", "Range: bytes=20000000-")
        assert response.status == 416
        assert response.headers["content-range"] == f"bytes */{BIG}"
        # The error page is a small buffered answer: the connection carries on.
        assert request(conn, "/small.txt").status == 200


def test_not_modified_has_no_body_and_keeps_the_connection(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        first = request(conn, "/big.bin", method="HEAD")
        assert first.status == 200 and first.headers["content-length"] == str(BIG)
        etag = first.headers["etag"]
        response = request(conn, "/big.bin", f"If-None-Match: {etag}")
        assert response.status == 304
        assert "content-length" not in response.headers
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "max-age=300"
        failed = request(conn, "/big.bin", 'If-Match: "nope"')
        assert failed.status == 412
        assert request(conn, "/small.txt").body == SMALL


def test_pipelined_cache_hits(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
        for _ in range(5):
            response = conn.response()
            assert response.status == 200 and response.body == SMALL


def test_web_toml_sets_the_policy_and_is_never_served(live: LiveServer) -> None:
    assert once(live, "/sub/page.html").headers["cache-control"] == "no-cache"
    assert once(live, "/sub/web.toml").status == 404


def test_connection_survives_sendfile_responses(live: LiveServer, big: bytes) -> None:
    # Whole, single range and streamed multipart: each declared its length and sent
    # big stretches zero-copy; the connection must still carry the next request.
    with Conn(live.port, timeout=30) as conn:
        assert digest(request(conn, "/big.bin").body) == digest(big)
        assert request(conn, "/big.bin", "Range: bytes=0-999999").body == big[:1_000_000]
        split = request(conn, "/big.bin", "Range: bytes=0-199999,-300000")
        assert [data for _, data in parts(split)] == [big[:200_000], big[-300_000:]]
        assert request(conn, "/small.txt").body == SMALL


def test_pipelined_mix_of_buffered_and_sendfile_responses(live: LiveServer, big: bytes) -> None:
    # A sendfile response writes its head on the socket itself: whatever the
    # transport still holds from the responses before it must go out first.
    with Conn(live.port, timeout=30) as conn:
        conn.send(
            b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert conn.response().body == SMALL
        whole = conn.response()
        assert whole.headers["content-length"] == str(len(big))
        assert digest(whole.body) == digest(big)
        head = conn.response(head_only=True)
        assert (head.status, head.headers["content-length"]) == (200, str(len(big)))
        assert conn.response().body == SMALL


def test_a_large_file_changed_between_requests_is_described_anew(tmp_path: Path) -> None:
    # Large files (over the file cache's 256 KiB) are sent from disk: their headers
    # must describe the bytes sent now, not a version seen a moment ago (a grown file
    # truncated under an old length, or new content under the old strong ETag, would
    # corrupt downloads and caches).
    www = tmp_path / "www"
    www.mkdir()
    (www / "f.bin").write_bytes(b"a" * 300_000)
    config = {
        "server": {"modules": ["handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
    }
    with LiveServer(config, tmp_path).start() as server, Conn(server.port, timeout=30) as conn:
        first = request(conn, "/f.bin")
        assert len(first.body) == 300_000
        with open(www / "f.bin", "ab") as f:
            f.write(b"b" * 50_000)
        grown = request(conn, "/f.bin")
        assert grown.headers["content-length"] == "350000"
        assert grown.body == b"a" * 300_000 + b"b" * 50_000
        replacement = www / "new.bin"
        replacement.write_bytes(b"Z" * 350_000)
        os.utime(replacement, ns=(time.time_ns() + 5 * 10**9,) * 2)
        os.replace(replacement, www / "f.bin")
        replaced = request(conn, "/f.bin")
        assert replaced.body == b"Z" * 350_000
        assert replaced.headers["etag"] != grown.headers["etag"]


def _big_file_logged(tmp_path: Path) -> tuple[dict[str, object], Path]:
    """A site serving a 10 MiB www/big.bin by sendfile, its access log unbuffered:
    (its configuration, the log's path)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "big.bin").write_bytes(os.urandom(BIG))
    log = tmp_path / "access.log"
    config: dict[str, object] = {
        "server": {"modules": ["handler.static", "log.http"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "http_logging": {"target": str(log), "buffer_size": 0},
    }
    return config, log


def test_a_client_leaving_mid_file_is_logged_as_gone_not_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A download cut short is the client's doing: no error line with a traceback
    # (nginx logs it at info level; IIS only in the access log, Win32 status 64),
    # and the server keeps serving.
    config, log = _big_file_logged(tmp_path)
    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        # A small receive window from the start: the server cannot have pushed the
        # whole file into the kernel's buffers before the client leaves.
        with Conn(server.port, timeout=30, rcvbuf=4096) as conn:
            conn.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert conn.sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            # Close with unread data: the kernel resets the connection.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_for(
            lambda: log.exists() and " /big.bin " in log.read_text(),
            PATIENCE,
            "the cut-short request logged",
        )
        assert once(server, "/big.bin").headers["content-length"] == str(BIG)
    assert win32_statuses(log, " /big.bin ") == ["64", "0"]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    gone = [r for r in caplog.records if "the client" in r.getMessage()]
    assert gone and all(r.levelno == logging.DEBUG and r.exc_info is None for r in gone)


def test_a_connection_lost_first_mid_file_still_ends_and_logs_the_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The test above on a loaded machine, made certain: the transport learns of the
    # loss (its read meets the client's reset) before the file's writer does. The
    # request must still end as a client's leaving, logged (Win32 status 64), not be
    # cancelled past its LogRequest stage with no line at all.
    config, log = _big_file_logged(tmp_path)

    def lose(state: object) -> int:
        lost = 0
        for conn in list(state.connections):  # type: ignore[attr-defined]
            if conn.sending_file:
                conn._transport.abort()  # connection_lost, at the loop's next turn
                lost += 1
        return lost

    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        with Conn(server.port, timeout=30, rcvbuf=4096) as conn:
            conn.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert conn.sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            wait_for(lambda: server.look(_sending)[1], PATIENCE, "the sendfile waiting")
            assert server.look(lose) == 1
            wait_for(
                lambda: log.exists() and " /big.bin " in log.read_text(),
                PATIENCE,
                "the request logged",
            )
        assert server.look(lambda state: len(state.connections)) == 0  # type: ignore[attr-defined]
        assert once(server, "/big.bin", method="HEAD").status == 200
    assert win32_statuses(log, " /big.bin ") == ["64", "0"]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]


def test_uncorking_a_connection_reset_meanwhile_is_quiet() -> None:
    # The race behind a failure of the test above on a loaded machine: the client's
    # reset closes the transport while a corked file is going out, and uncorking
    # then meets uvloop's stand-in socket with descriptor -1 (a ValueError).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        made: asyncio.Future[asyncio.BaseTransport] = loop.create_future()
        lost: asyncio.Future[None] = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.set_result(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(None)

        server = await loop.create_server(Server, "127.0.0.1", 0)
        try:
            with socket.create_connection(server.sockets[0].getsockname()):
                transport = await made
                sock = transport.get_extra_info("socket")
                transport.close()
                await lost
                connection._cork(sock, 0)
        finally:
            server.close()
            await server.wait_closed()

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


# -- sendfile against memory (issue #24) ---------------------------------------------------


def _without_date(wire: Wire) -> bytes:
    lines = [ln for ln in wire.raw_head.split(b"\r\n") if not ln.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + wire.body


def test_a_10m_file_by_sendfile_is_the_same_bytes_as_from_memory(
    files: tuple[Path, bytes], live: LiveServer
) -> None:
    # The same file and headers, once from disk (sendfile, as by default) and once
    # from a server whose file cache holds 16 MiB files (one writev from memory).
    base, big = files
    config = {
        "server": {"modules": ["security.request_filtering", "handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "static_content": {
            "cache_control": "max-age",
            "max_age": 300,
            "cache_max_file_size": 16 * 1024 * 1024,
        },
    }
    with LiveServer(config, base).start() as memory:
        for method in ("GET", "HEAD"):
            from_disk = once(live, "/big.bin", method=method)
            from_memory = once(memory, "/big.bin", method=method)
            assert _without_date(from_disk) == _without_date(from_memory)
            assert from_disk.body == (big if method == "GET" else b"")


def _sending(state: object) -> tuple[int, bool]:
    """(bytes the transport holds, a sendfile under way) over the server's connections."""
    held, sending = 0, False
    for conn in state.connections:  # type: ignore[attr-defined]
        held += conn.buffered()
        sending = sending or conn.sending_file
    return held, sending


def test_a_slow_reader_of_a_10m_file_holds_no_copy_of_it(live: LiveServer, big: bytes) -> None:
    # Back-pressure on the sendfile path: the kernel's socket buffers hold what the
    # client has not read; the server keeps no copy of the file, only the few bytes
    # (one page) it handed the transport to learn when the socket has room.
    with Conn(live.port, timeout=30, rcvbuf=4096) as conn:
        conn.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        wait_for(lambda: live.look(_sending)[1], PATIENCE, "the sendfile waiting on the client")
        held, sending = live.look(_sending)
        assert sending and held <= connection._NUDGE
        response = conn.response()
        assert response.status == 200 and digest(response.body) == digest(big)
        # The connection goes on after the waits.
        assert request(conn, "/small.txt").body == SMALL


# -- the connection's duplicate of its socket (issue #24) ----------------------------------


def _open_descriptors() -> int:
    """This process's open descriptors (the live server runs in a thread of it)."""
    return len(os.listdir("/proc/self/fd"))


def _no_connections(state: object) -> bool:
    return not state.connections  # type: ignore[attr-defined]


@contextmanager
def _no_descriptor_left(live: LiveServer) -> Iterator[int]:
    """Around a test's connection: every descriptor it made, the server's included,
    is closed once the server let go of it. Yields the count before."""
    wait_for(lambda: live.look(_no_connections), PATIENCE, "earlier connections gone")
    before = _open_descriptors()
    yield before
    wait_for(lambda: live.look(_no_connections), PATIENCE, "the connection closed")
    wait_for(lambda: _open_descriptors() == before, PATIENCE, "every descriptor closed")


@contextmanager
def _after_a_large_file(live: LiveServer, big: bytes) -> Iterator[tuple[int, Conn]]:
    """A connection that was sent the 10 MiB file, with the descriptors counted
    before it (and checked after, see ``_no_descriptor_left``)."""
    with _no_descriptor_left(live) as before, Conn(live.port, timeout=30) as conn:
        assert digest(request(conn, "/big.bin").body) == digest(big)
        yield before, conn


def test_large_files_in_a_row_leave_one_descriptor_per_connection(
    live: LiveServer, big: bytes
) -> None:
    # Between requests a connection holds one descriptor, as the accept's safety
    # check (transport/server.py native_accept_is_safe) counts them: a large file's
    # send closes the file and leaves no other descriptor of the socket behind.
    def one_each() -> bool:
        # The client's socket and the server's. (Read once the send's task ended,
        # which may be just after the client has the last byte.)
        return _open_descriptors() == before + 2

    with _after_a_large_file(live, big) as (before, conn):
        for extra in ("Range: bytes=0-1999999", None, "Connection: keep-alive"):
            wait_for(one_each, PATIENCE, "one descriptor for the connection")
            body = request(conn, "/big.bin", *([extra] if extra else [])).body
            assert digest(body) == digest(big[:2_000_000] if extra and "Range" in extra else big)
        assert request(conn, "/small.txt").body == SMALL
        wait_for(one_each, PATIENCE, "one descriptor for the connection")


def test_a_large_file_with_connection_close_ends_in_a_fin(live: LiveServer, big: bytes) -> None:
    # The server closes after the file: no duplicate may keep the socket open.
    with _no_descriptor_left(live), Conn(live.port, timeout=30) as conn:
        response = request(conn, "/big.bin", "Connection: close")
        assert digest(response.body) == digest(big)
        assert conn.sock.recv(1) == b""


def test_a_reset_mid_file_leaves_no_descriptor(live: LiveServer) -> None:
    with _no_descriptor_left(live) as before, Conn(live.port, timeout=30, rcvbuf=4096) as conn:
        conn.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert conn.sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: live.look(_sending)[1], PATIENCE, "the sendfile waiting")
        # Waiting on the client: its socket, the server's and the file; no
        # duplicate of the server's socket.
        assert _open_descriptors() == before + 3
        # Close with unread data: the kernel resets the connection.
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert once(live, "/small.txt").body == SMALL


def _detach_all(state: object) -> list[int]:
    return [conn.detach() for conn in list(state.connections)]  # type: ignore[attr-defined]


def test_a_connection_detached_after_a_large_file_keeps_no_duplicate(
    live: LiveServer, big: bytes
) -> None:
    # detach hands the socket on (another process): this one must keep no
    # descriptor of it, or the peer's close of it would not end the connection.
    with _after_a_large_file(live, big) as (before, conn):
        [handed] = live.look(_detach_all)
        wait_for(lambda: live.look(_no_connections), PATIENCE, "the connection let go")
        # The client's socket and the handed-on descriptor: nothing else.
        wait_for(lambda: _open_descriptors() == before + 2, PATIENCE, "the transport's closed")
        os.close(handed)  # the new owner closes it: the client sees the end
        assert conn.sock.recv(1) == b""
