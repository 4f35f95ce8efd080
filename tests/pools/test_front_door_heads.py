"""The master's front door on a port one pool serves: it waits for the end of a
request head and delivers the bytes unparsed; the pool's worker parses them (the
same parser and limits), so an idle master needs no HTTP parser. A head that
exceeds the limits without ending is still refused by the master, which then
starts no worker for it."""

from __future__ import annotations

import socket
from pathlib import Path

from colonnade.management import operations
from tests.e2e.wire import Conn
from tests.support.wait import PATIENCE, wait_for

from .test_master_memory import held, serve


def answer(port: int, *pieces: bytes) -> bytes:
    """Send ``pieces`` (each its own write), then read the whole answer (the
    connection is closed by the server: every request here asks for it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        for piece in pieces:
            sock.sendall(piece)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def without_date(response: bytes) -> bytes:
    return b"\r\n".join(x for x in response.split(b"\r\n") if not x.lower().startswith(b"date:"))


def test_a_head_in_pieces_is_delivered_once_it_ends(tmp_path: Path) -> None:
    master = serve(tmp_path)
    try:
        assert master.pool("default")["workers"] == []
        with Conn(master.port) as c:
            c.send(b"GET /hello.txt HTTP/1.1\r\nHo")
            c.send(b"st: t\r\n")
            c.send(b"\r\n")
            response = c.response()
            assert (response.status, response.body) == (200, b"hello\n")
            # The same connection goes on with the worker that got it.
            c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.response().status == 200
        imports = operations.call(master.control, "imports")["modules"]
        assert held(imports) == []
        assert "colonnade.http.h1" not in imports
    finally:
        master.stop()


def test_a_malformed_head_is_answered_by_the_worker_as_the_master_would(
    tmp_path: Path,
) -> None:
    master = serve(tmp_path)
    try:
        bad = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n"
        # No worker yet: the master delivers the bytes, a worker starts and refuses them.
        first = answer(master.port, bad)
        assert first.startswith(b"HTTP/1.1 400 ")
        assert len(master.pids("default")) == 1
        # Now the worker accepts the port itself: the same bytes, the same answer.
        assert without_date(answer(master.port, bad)) == without_date(first)
    finally:
        master.stop()


def test_a_head_past_the_limits_is_refused_by_the_master(tmp_path: Path) -> None:
    master = serve(tmp_path)
    try:
        # Past what the parser buffers of a head (~8 KiB + 64 KiB and a slice) with no end
        # in sight: the parser judges the head, and the master answers.
        endless = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n" + b"X-Long: %s\r\n" % (b"a" * 990) * 300
        response = answer(master.port, endless)
        assert response.startswith(b"HTTP/1.1 431 "), response[:80]
        assert "rejected request on port" in master.log()
        # ...and started no worker for it.
        assert master.pool("default")["workers"] == []
        # A good request still starts one and is served.
        wait_for(lambda: master.get("/hello.txt").status == 200, PATIENCE, "served")
    finally:
        master.stop()
