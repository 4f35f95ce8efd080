"""HTTP/1.1 over real sockets: keep-alive, pipelining, bodies, 100-continue, limits."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from colonnade.transport.server import ServerState
from tests.support.wait import PATIENCE, wait_for

from .conftest import LiveServer, site_config
from .wire import Conn


def reading_a_body(state: ServerState) -> bool:
    """A request's head is in and its body is awaited."""
    return any(conn.current is not None for conn in state.connections)


def get(path: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: t", *extra, "", ""]
    return "\r\n".join(lines).encode()


def test_keep_alive_serves_many_requests_on_one_connection(live: LiveServer) -> None:
    with Conn(live.port) as c:
        for i in range(5):
            c.send(get(f"/slow?n={i}"))
            r = c.response()
            assert r.status == 200 and r.body == b"slow:"
            assert "connection" not in r.headers
            assert r.headers["server"] == "colonnade" and "date" in r.headers


def test_pipelined_requests_are_answered_in_order(live: LiveServer) -> None:
    with Conn(live.port) as c:
        # The first is the slowest: order must still be kept.
        c.send(get("/slow?ms=150&id=1") + get("/slow?id=2") + get("/slow?stream=2&id=3"))
        first, second, third = c.response(), c.response(), c.response()
        assert (first.status, second.status, third.status) == (200, 200, 200)
        assert third.chunked and third.body == b"chunk0;chunk1;"


def test_pipelined_requests_then_a_half_close_are_all_answered(live: LiveServer) -> None:
    # A client that sends its requests and then closes its side (shutdown(SHUT_WR),
    # as `printf ... | nc -N` does) still reads every answer: the server answers what
    # it received, the last answer says close, then the server closes.
    with Conn(live.port) as c:
        c.send(get("/slow?ms=100&id=1") + get("/slow?id=2") + get("/slow?id=3"))
        c.sock.shutdown(socket.SHUT_WR)
        answers = [c.response(), c.response(), c.response()]
        assert [r.status for r in answers] == [200, 200, 200]
        assert [r.headers.get("connection") for r in answers] == [None, None, "close"]
        assert c.closed()


def test_chunked_request_body(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(
            b"POST /slow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        r = c.response()
        assert r.body == b"slow:hello world"
        c.send(get("/slow"))  # the connection is still in a sane state
        assert c.response().status == 200


def test_content_length_body_sent_in_pieces(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        # The second half must arrive on its own, after the server read the first.
        wait_for(lambda: live.look(reading_a_body), PATIENCE, "the head read, the body awaited")
        c.send(b"56789")
        assert c.response().body == b"slow:0123456789"


def test_chunked_response(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(get("/slow?stream=3"))
        r = c.response()
        assert r.chunked and r.body == b"chunk0;chunk1;chunk2;"


def test_expect_100_continue(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(
            b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = c.response()
        assert interim.status == 100
        c.send(b"data")
        assert c.response().body == b"slow:data"


def test_http_1_0_closes_after_the_response(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(get("/slow", version="1.0"))
        r = c.response()
        assert r.status == 200 and r.raw_head.startswith(b"HTTP/1.1 200")
        assert c.closed()


def test_http_1_0_keep_alive(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(get("/slow", "Connection: keep-alive", version="1.0"))
        r = c.response()
        assert r.headers.get("connection", "").lower() == "keep-alive"
        c.send(get("/slow", "Connection: keep-alive", version="1.0"))
        assert c.response().status == 200


def test_connection_close_is_honoured(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(get("/slow", "Connection: close"))
        assert c.response().headers["connection"] == "close"
        assert c.closed()


def test_absolute_form_target(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(b"GET http://example.com/slow?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert c.response().status == 200


REJECTIONS = [
    ("no host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (
        "cl and te",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("bad cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400),
    ("listed cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    (
        "two cl",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        400,
    ),
    ("negative cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("obs fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("bad name char", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400),
    ("ctl in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x01\r\n\r\n", 400),
    ("nul in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n", 400),
    ("unknown te", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (
        "chunked not last",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    (
        "bad chunk size",
        b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    ("long target", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("big headers", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + b"b" * 70000 + b"\r\n\r\n", 431),
    ("many headers", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: 1\r\n" * 150 + b"\r\n", 431),
    ("http/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("http/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    ("bad request line", b"GET/HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("path above root", b"GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("nul in path", b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad expect", b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
]


@pytest.mark.parametrize(("name", "data", "status"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_answer_and_close(live: LiveServer, name: str, data: bytes, status: int) -> None:
    with Conn(live.port) as c:
        c.send(data)
        r = c.response()
        assert r.status == status, (name, r.raw_head)
        assert r.headers.get("connection") == "close"
        assert c.closed(), "the connection must be closed after a rejection"


def test_a_good_request_before_a_bad_one_is_still_answered(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(get("/slow?ms=50") + b"GET / HTTP/1.1\r\n\r\n")
        assert c.response().status == 200
        assert c.response().status == 400
        assert c.closed()


def test_405_carries_allow(live: LiveServer) -> None:
    with Conn(live.port) as c:
        c.send(b"DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.response()
        assert r.status == 405 and r.headers["allow"] == "GET, HEAD"


def timeouts_server(www: Path, **timeouts: float) -> LiveServer:
    return LiveServer(site_config(timeouts=timeouts), www).start()


def test_header_timeout_answers_408_and_closes(www: Path) -> None:
    with timeouts_server(www, header=0.3) as server:
        with Conn(server.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost:")
            r = c.response()
            assert r.status == 408 and c.closed()
        with Conn(server.port) as c:  # connected, sent nothing: closed quietly
            assert c.closed() and c.buf == b""


def test_header_timeout_runs_for_a_later_request_of_the_connection(www: Path) -> None:
    # The timer is armed after the feed that did not complete the head: on a
    # kept-alive connection too, whose keep-alive timer it replaces.
    with timeouts_server(www, header=0.3) as server, Conn(server.port) as c:
        c.send(get("/slow"))
        assert c.response().status == 200
        c.send(b"GET / HTTP/1.1\r\nHost:")
        r = c.response()
        assert r.status == 408 and c.closed()


def test_keep_alive_timeout_closes_idle_connections(www: Path) -> None:
    with timeouts_server(www, keep_alive=0.3) as server, Conn(server.port) as c:
        c.send(get("/slow"))
        assert c.response().status == 200
        assert c.closed()  # within 10 s: not the default keep-alive timeout (15 s)


def test_body_timeout_answers_408(www: Path) -> None:
    with timeouts_server(www, body=0.3) as server, Conn(server.port) as c:
        c.send(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12")
        r = c.response()
        assert r.status == 408 and r.headers["connection"] == "close"
        assert c.closed()


def test_connection_cap(www: Path) -> None:
    server = LiveServer(site_config(limits={"max_connections": 2}), www).start()
    with server, Conn(server.port) as a, Conn(server.port) as b:
        for c in (a, b):
            c.send(get("/slow"))
            assert c.response().status == 200
        with Conn(server.port) as third:
            assert third.response().status == 503
            assert third.closed()


def test_slow_reader_back_pressure(live: LiveServer) -> None:
    # 40 MiB streamed to a client that does not read: the server must hold only
    # a bounded amount in memory, then deliver everything once the client reads.
    # The bound is the one piece the writer waits on: a write returns once the
    # transport handed all it had to the kernel (no high-water mark of bytes
    # waiting beside it, which a proxy with many slow clients would pay per client).
    chunks, pad = 640, 65536
    with Conn(live.port) as c:
        c.send(get(f"/slow?stream={chunks}&pad={pad}"))
        wait_for(
            lambda: live.look(lambda state: any(conn.write_paused for conn in state.connections)),
            PATIENCE,
            "the server's writes paused by the full socket",
        )
        # A writer that went on regardless would have added a chunk per turn.
        buffered = live.look(
            lambda state: [
                conn.buffered()  # type: ignore[attr-defined]
                for conn in state.connections
                if not conn.gone()  # type: ignore[attr-defined]
            ],
            turns=100,
        )
        assert buffered and max(buffered) <= pad + 64, buffered
        r = c.response()
        assert len(r.body) == sum(len(b"chunk%d;" % i) + pad for i in range(chunks))


def test_large_file_sendfile_keeps_the_connection_alive(live: LiveServer, www: Path) -> None:
    # Larger than the copy threshold: goes out with zero-copy sendfile.
    data = bytes(range(256)) * 4096  # 1 MiB
    (www / "www" / "big.bin").write_bytes(data)
    with Conn(live.port, timeout=10) as c:
        for _ in range(3):
            c.send(get("/big.bin"))
            r = c.response()
            assert r.status == 200 and r.body == data
            assert "connection" not in r.headers
        c.send(get("/slow"))
        assert c.response().status == 200


def _answered_before_the_body(c: Conn, declared: int) -> None:
    """A POST the server answers (405) without reading its body, sent in part."""
    c.send(b"POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % declared)
    c.send(b"x" * 256 * 1024)
    r = c.response()
    assert r.status == 405 and r.headers["connection"] == "close"


def test_an_answer_before_the_body_is_read_outlives_the_rest_of_the_body(
    live: LiveServer,
) -> None:
    # The client reads the answer only after it has sent its whole body, as most
    # clients do. A server that closed with input unread would reset the connection
    # and the rest of the upload would fail (EPIPE or ECONNRESET), possibly taking
    # the answer with it; lingering, the server drops the rest and closes after it.
    declared = 8 * 1024 * 1024
    with Conn(live.port) as c:
        _answered_before_the_body(c, declared)
        piece = b"y" * 64 * 1024
        for _ in range((declared - 256 * 1024) // len(piece)):
            c.send(piece)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed()
        assert c.buf == b""


def test_lingering_ends_when_the_client_is_silent(www: Path) -> None:
    with timeouts_server(www, lingering=0.3) as server, Conn(server.port) as c:
        _answered_before_the_body(c, 1024 * 1024)
        started = time.monotonic()
        # The FIN comes with the answer; the socket closes after 0.3 s of silence,
        # and a byte sent after that meets a reset.
        assert c.closed()
        wait_for(
            lambda: server.look(lambda state: not state.connections),
            PATIENCE,
            "the lingering connection closed",
        )
        assert time.monotonic() - started >= 0.25


def test_lingering_is_bounded_however_much_the_client_sends(www: Path) -> None:
    timeouts = {"lingering": 0.5, "lingering_total": 1.0}
    with timeouts_server(www, **timeouts) as server, Conn(server.port) as c:
        _answered_before_the_body(c, 1024 * 1024 * 1024)
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() - started < PATIENCE:
                c.send(b"z" * 1024)
                time.sleep(0.05)  # never silent for 0.5 s
        elapsed = time.monotonic() - started
        assert elapsed >= 0.9, elapsed


def test_lingering_0_closes_at_once(www: Path) -> None:
    with timeouts_server(www, lingering=0) as server, Conn(server.port) as c:
        _answered_before_the_body(c, 1024 * 1024)
        wait_for(
            lambda: server.look(lambda state: not state.connections),
            PATIENCE,
            "the connection closed without lingering",
        )
