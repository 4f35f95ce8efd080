"""The minimum data rate (``limits.min_bytes_per_second``) over real sockets.

A request body trickled below the rate is answered 408 once a window has passed,
while other clients are served; a client that pauses but keeps the average is
not cut; a client reading a large response slower than the rate is disconnected,
and its connection, its handler and what was queued for it are gone. The same
over HTTP/2, per stream and per connection. And the per-client connection cap
(``limits.max_connections_per_client``).

A request in flight on a connection the server drops itself (a body or a reading
below the rate, a send that does not move within ``timeouts.body``, an HTTP/2
client's protocol error) is logged as the server's abort: Win32 status 1236
(ERROR_CONNECTION_ABORTED, as IIS logs a connection HTTP.sys drops on a timer),
not 64 (the client's leaving).
"""

from __future__ import annotations

import select
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from colonnade.transport.connection import RateWindow
from colonnade.transport.server import ServerState
from tests.e2e.conftest import LiveServer, site_config, win32_statuses
from tests.e2e.h2wire import RawH2, get_headers
from tests.e2e.wire import Conn
from tests.support.tls import client_context, tls_socket
from tests.support.wait import PATIENCE, wait_for
from tests.transport.test_tls import serve_www

pytestmark = pytest.mark.e2e

#: How much earlier than a window's end, by the client's clock, a cut may come:
#: the server measures windows on the event loop's clock, which uvloop keeps in
#: whole milliseconds (libuv's, truncated, read once per loop iteration), so a
#: window can end up to a millisecond before a second of the client's clock has
#: passed. The compiled suite of a fresh clone saw a cut 6.5 µs "early".
CLOCK_SLACK = 0.01


def rate_server(
    www: Path, *, rate: int, window: float, body: float = 60.0, **limits: Any
) -> LiveServer:
    config = site_config(
        modules=["acme.stamp", "acme.slow", "handler.static", "log.http"],
        limits={"min_bytes_per_second": rate, "min_rate_window": window, **limits},
        # A client cut for its body lingers this long at most to read the 408.
        timeouts={"lingering": 0.5, "body": body},
    )
    config["http_logging"] = {"target": str(www / "access.log"), "buffer_size": 0}
    return LiveServer(config, www).start()


def logged_as_aborted(www: Path, stem: str) -> None:
    """The request to ``stem`` is logged once, as the server's abort (Win32 1236)."""
    log, needle = www / "access.log", f" {stem} "
    wait_for(lambda: log.exists() and needle in log.read_text(), PATIENCE, "the request logged")
    assert win32_statuses(log, needle) == ["1236"]


def post_head(length: int) -> bytes:
    return b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length


def trickle(conn: Conn, head: bytes, length: int, pace: list[tuple[int, float]]) -> float | None:
    """Send ``head``, then ``length`` body bytes as ``pace`` says, cycling through
    (bytes, then seconds of quiet) pairs, until all is sent or the server answers:
    the time since before the head (the server's first window begins after it) its
    answer began to arrive, None if it only came at the end."""
    start = time.monotonic()
    conn.send(head)
    left, step = length, 0
    while left > 0:
        size, quiet = pace[step % len(pace)]
        step += 1
        piece = min(size, left)
        conn.send(b"x" * piece)
        left -= piece
        if not left:
            break
        # The pause is a wait for the server's answer: it ends early if one comes.
        readable, _, _ = select.select([conn.sock], [], [], quiet)
        if readable:
            return time.monotonic() - start
    return None


def served(port: int) -> bool:
    with Conn(port) as other:
        other.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        reply = other.response()
        return reply.status == 200 and reply.body == b"Hello, world!"


def test_a_body_trickled_at_50_bytes_a_second_is_cut_and_others_are_served(www: Path) -> None:
    with rate_server(www, rate=240, window=1.0) as server, Conn(server.port) as c:
        answered = trickle(c, post_head(100_000), 100_000, [(5, 0.1)])  # 50 B/s
        assert answered is not None, "the body was read to the end at 50 B/s"
        # The first window is the grace period: no cut before it; the cut comes at
        # its end (a loaded machine's timer may be late, never early).
        assert 1.0 - CLOCK_SLACK <= answered < 1.0 + PATIENCE / 3
        reply = c.response()
        assert reply.status == 408 and reply.headers["connection"] == "close"
        assert c.closed()
        assert served(server.port)
        assert server.look(lambda state: state.slow_clients["request_body"]) == 1


def test_a_body_trickled_after_the_response_began_is_cut_with_a_close(www: Path) -> None:
    with rate_server(www, rate=240, window=1.0) as server, Conn(server.port) as c:
        # ``head=1``: the response head goes out before the handler reads the body.
        start = time.monotonic()  # the server's first window begins after this
        c.send(b"POST /slow?head=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        c.await_head()
        closed = False
        while not closed and time.monotonic() - start < PATIENCE:
            try:
                c.send(b"x" * 5)  # 50 B/s
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if select.select([c.sock], [], [], 0.1)[0]:
                try:
                    closed = not c.sock.recv(65536)
                except ConnectionResetError:
                    closed = True
        assert closed and time.monotonic() - start >= 1.0 - CLOCK_SLACK
        assert c.buf.startswith(b"HTTP/1.1 200 ")  # no 408 after a 200 began
        assert server.look(lambda state: state.slow_clients["request_body"]) == 1
        assert served(server.port)
        logged_as_aborted(www, "/slow")


def test_a_client_that_pauses_but_keeps_the_average_is_not_cut(www: Path) -> None:
    # 1,000 B/s needed per 3 s window: bursts of 4,000 B in 0.5 s, each followed by
    # a second of silence (a check per read would cut at the first). Every window
    # holds two bursts, 8,000 B: room for a loaded machine's late turns.
    length = 16_000
    with rate_server(www, rate=1000, window=3.0) as server, Conn(server.port) as c:
        pace = [(400, 0.05)] * 9 + [(400, 1.0)]
        assert trickle(c, post_head(length), length, pace) is None
        reply = c.response()
        assert reply.status == 200 and reply.body == b"slow:" + b"x" * length
        assert server.look(lambda state: state.slow_clients["request_body"]) == 0


def test_a_body_that_waits_for_100_continue_is_measured_from_the_continue(www: Path) -> None:
    # The app reads after 2.5 s (over two windows): the client, waiting for 100 Continue,
    # sent nothing meanwhile and must not be cut for it.
    with rate_server(www, rate=240, window=1.0) as server, Conn(server.port) as c:
        c.send(
            b"POST /slow?ms=2500 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert c.response().status == 100
        c.send(b"hello")
        reply = c.response()
        assert reply.status == 200 and reply.body == b"slow:hello"
        assert server.look(lambda state: state.slow_clients["request_body"]) == 0


def nothing_left(state: ServerState) -> bool:
    return not state.connections and not state.engine.executing


@pytest.mark.parametrize(
    "target",
    [
        "/slow?stream=640&pad=65536",  # 40 MiB streamed by a handler (drain)
        "/big.bin",  # a static file going out by sendfile
    ],
)
def test_a_slow_reader_of_a_large_response_is_closed_and_released(www: Path, target: str) -> None:
    (www / "www" / "big.bin").write_bytes(b"b" * (32 * 1024 * 1024))
    with rate_server(www, rate=240, window=1.0) as server:
        c = Conn(server.port, rcvbuf=4096)
        try:
            c.send(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode())
            c.sock.settimeout(PATIENCE)
            got = b""
            end = time.monotonic() + PATIENCE
            # 100 B/s: 100 bytes every second, until the server gives up on us.
            while time.monotonic() < end:
                try:
                    data = c.sock.recv(100)
                except ConnectionResetError:
                    break
                if not data:
                    break
                got += data
                if server.look(lambda state: state.slow_clients["response"]) == 1:
                    break
                select.select([], [], [], 1.0)  # the client's pace, not a wait for the server
            assert got.startswith(b"HTTP/1.1 200 ")
            assert server.look(lambda state: state.slow_clients["response"]) == 1
            # The connection, its handler and what was queued for it are gone.
            wait_for(lambda: server.look(nothing_left), PATIENCE, "the slow reader released")
            # Whatever the kernel still held comes, then the end: no more than that.
            c.sock.settimeout(PATIENCE)
            rest = 0
            try:
                while data := c.sock.recv(1 << 20):
                    rest += len(data)
            except ConnectionResetError:
                pass
            assert len(got) + rest < 32 * 1024 * 1024
        finally:
            c.close()
        assert served(server.port)
        logged_as_aborted(www, target.partition("?")[0])


def test_a_file_send_the_client_stops_taking_is_dropped_after_the_body_timeout(
    www: Path,
) -> None:
    # No minimum rate: the send's own timeout (timeouts.body from the last time the
    # socket had room) ends it.
    (www / "www" / "big.bin").write_bytes(b"b" * (32 * 1024 * 1024))
    with rate_server(www, rate=0, window=1.0, body=0.5) as server:
        with Conn(server.port, rcvbuf=4096) as c:
            c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            # ... and the client reads nothing.
            wait_for(lambda: server.look(nothing_left), PATIENCE, "the send given up")
        logged_as_aborted(www, "/big.bin")
        assert served(server.port)


def test_a_file_send_that_keeps_moving_outlasts_the_body_timeout(www: Path) -> None:
    # timeouts.body runs from the last time the socket had room, not from the start:
    # a client that reads steadily, for several times the timeout in all, gets it all.
    size = 10 * 1024 * 1024
    (www / "www" / "big.bin").write_bytes(b"b" * size)
    with rate_server(www, rate=0, window=1.0, body=1.0) as server:
        with Conn(server.port, rcvbuf=65536) as c:
            c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            got = 0
            started = time.monotonic()
            while got < size:  # head and body: ~5 MiB/s, over two seconds
                data = c.sock.recv(128 * 1024)
                assert data, f"cut after {got} bytes"
                got += len(data)
                select.select([], [], [], 0.025)  # the client's pace
            assert time.monotonic() - started > 2.0
            c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            while b"\r\n\r\n" not in (data := c.sock.recv(65536)):
                pass
        assert server.look(lambda state: state.slow_clients["response"]) == 0


def test_a_fast_reader_of_a_large_response_is_not_cut(www: Path) -> None:
    (www / "www" / "big.bin").write_bytes(b"b" * (8 * 1024 * 1024))
    with rate_server(www, rate=240, window=1.0) as server, Conn(server.port) as c:
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        reply = c.response()
        assert reply.status == 200 and len(reply.body) == 8 * 1024 * 1024
        assert server.look(lambda state: state.slow_clients["response"]) == 0


def test_zero_switches_the_minimum_rate_off(www: Path) -> None:
    with rate_server(www, rate=0, window=1.0) as server, Conn(server.port) as c:
        assert trickle(c, post_head(20), 10, [(5, 0.8)]) is None  # 6 B/s over 1.6 s
        c.send(b"y" * 10)
        assert c.response().status == 200
        assert server.look(lambda state: state.slow_clients["request_body"]) == 0


def test_the_per_client_cap_refuses_the_next_connection_and_accepts_after_one_closes(
    www: Path,
) -> None:
    server = LiveServer(site_config(limits={"max_connections_per_client": 2}), www).start()
    with server, Conn(server.port) as a:
        b = Conn(server.port)
        try:
            for c in (a, b):  # both admitted and served
                c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                assert c.response().status == 200
            with Conn(server.port) as third:
                reply = third.response()
                assert reply.status == 503 and reply.headers["connection"] == "close"
                assert third.closed()
            assert server.look(lambda state: state.slow_clients["per_client"]) == 1
        finally:
            b.close()
        wait_for(
            lambda: server.look(lambda state: state.per_client.get("127.0.0.1")) == 1,
            PATIENCE,
            "the closed connection uncounted",
        )
        assert served(server.port)  # a third connection again, now under the cap
        # Everything closed: nothing is left counted.
        a.close()
        wait_for(
            lambda: server.look(lambda state: not state.per_client),
            PATIENCE,
            "every connection uncounted",
        )


def test_the_per_client_cap_is_off_by_default(www: Path) -> None:
    with LiveServer(site_config(), www).start() as server:
        conns = [Conn(server.port) for _ in range(12)]
        try:
            for c in conns:
                c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                assert c.response().status == 200
            assert server.look(lambda state: state.per_client) == {}
        finally:
            for c in conns:
                c.close()


# -- HTTP/2 ----------------------------------------------------------------------------


def h2_trickle(c: RawH2, path: str, until: type[Frame]) -> float | None:
    """POST to ``path`` on stream 1, its body at 50 B/s, until the server sends an
    ``until`` frame on stream 1: the time since before the head it came (None if
    it did not come in time)."""
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", path)]
    start = time.monotonic()  # the server's first window begins after this
    c.send(c.headers(1, post, end_stream=False))
    while time.monotonic() - start < PATIENCE:
        c.send(c.data(1, b"x" * 5))  # 50 B/s
        pause = time.monotonic() + 0.1
        # The pause is spent reading what the server says (its SETTINGS, window
        # updates), until the awaited frame comes.
        while (left := pause - time.monotonic()) > 0:
            if not select.select([c.sock], [], [], left)[0]:
                break
            frame = c.next_frame(time.monotonic() + PATIENCE)
            assert frame is not None, "the connection was closed"
            if isinstance(frame, until) and frame.stream_id == 1:
                return time.monotonic() - start
    return None


def test_an_http2_stream_trickling_its_body_is_answered_408_and_others_are_served(
    www: Path,
) -> None:
    with rate_server(www, rate=240, window=1.0) as server, RawH2(server.port) as c:
        answered = h2_trickle(c, "/slow", HeadersFrame)
        assert answered is not None and answered >= 1.0 - CLOCK_SLACK
        assert (c.outcome(stream=1).kind, c.status(1)) == ("status", 408)
        # The body is not wanted any more: RST_STREAM NO_ERROR (RFC 9113 8.1).
        rst = c.outcome(stream=1)
        assert (rst.kind, rst.stream, rst.code) == ("rst", 1, ErrorCodes.NO_ERROR)
        # The connection and its other streams go on.
        c.send(c.headers(3, get_headers("/hello.txt")))
        assert c.response(3) == (200, b"Hello, world!")
        assert server.look(lambda state: state.slow_clients["request_body"]) == 1


def test_an_http2_client_that_stops_reading_is_closed_and_released(www: Path) -> None:
    (www / "www" / "big.bin").write_bytes(b"b" * (32 * 1024 * 1024))
    with rate_server(www, rate=240, window=1.0) as server, RawH2(server.port) as c:
        # Windows wide open: what holds the server back is the socket alone.
        c.send(c.settings(INITIAL_WINDOW_SIZE=2**31 - 1), c.window_update(0, 2**31 - 65_536))
        c.send(c.headers(1, get_headers("/big.bin")))
        # ... and the client reads nothing more.
        wait_for(
            lambda: server.look(lambda state: state.slow_clients["response"]) == 1,
            PATIENCE,
            "the client that stopped reading cut",
        )
        wait_for(lambda: server.look(nothing_left), PATIENCE, "its connection and stream released")
        logged_as_aborted(www, "/big.bin")
    with rate_server(www, rate=240, window=1.0) as server:
        assert served(server.port)


def test_an_http2_stream_trickling_its_body_after_its_answer_began_is_reset(
    www: Path,
) -> None:
    with rate_server(www, rate=240, window=1.0) as server, RawH2(server.port) as c:
        reset = h2_trickle(c, "/slow?head=1", RstStreamFrame)
        assert reset is not None and reset >= 1.0 - CLOCK_SLACK
        rst = c.frames[-1]
        assert isinstance(rst, RstStreamFrame) and rst.error_code == ErrorCodes.CANCEL
        assert c.status(1) == 200  # no 408 after a 200 began
        logged_as_aborted(www, "/slow")


def test_an_http2_stream_whose_window_stays_shut_is_reset_after_the_body_timeout(
    www: Path,
) -> None:
    (www / "www" / "big.bin").write_bytes(b"b" * (1024 * 1024))
    with rate_server(www, rate=0, window=1.0, body=0.5) as server, RawH2(server.port) as c:
        c.send(c.headers(1, get_headers("/big.bin")))
        # ... and the client opens no window past the first 64 KiB.
        rst = c.outcome(stream=1)
        assert (rst.kind, rst.stream, rst.code) == ("rst", 1, ErrorCodes.CANCEL)
        logged_as_aborted(www, "/big.bin")
        # The connection goes on (its window, which stream 1 used up, reopened).
        c.send(c.window_update(0, 1 << 20), c.headers(3, get_headers("/hello.txt")))
        assert c.response(3) == (200, b"Hello, world!")


def in_flight(state: ServerState) -> bool:
    return bool(state.engine.executing)


def test_an_http2_protocol_error_ends_the_streams_in_flight_as_the_servers_abort(
    www: Path,
) -> None:
    with rate_server(www, rate=0, window=1.0) as server, RawH2(server.port) as c:
        c.send(c.headers(1, get_headers("/slow?ms=60000")))
        wait_for(lambda: server.look(in_flight), PATIENCE, "the request in flight")
        c.send(c.raw(0x6, 0, 1, b"12345678"))  # PING on a stream: a connection error
        goaway = c.outcome(stream=0)
        assert (goaway.kind, goaway.code) == ("goaway", ErrorCodes.PROTOCOL_ERROR)
        wait_for(lambda: server.look(nothing_left), PATIENCE, "the connection ended")
        logged_as_aborted(www, "/slow")


# -- the measure itself ------------------------------------------------------------------


def test_a_window_is_judged_only_once_it_is_over() -> None:
    measure = RateWindow()
    measure.begin(10.0, 0)
    assert measure.judge(14.9, 5.0, 240, True, 0)  # not over yet: nothing happens
    assert measure.since == 10.0
    assert measure.due(5.0, -1.0) == 15.0 and measure.due(5.0, 12.0) == 12.0


def test_a_window_that_brought_enough_begins_the_next_and_one_short_is_kept() -> None:
    measure = RateWindow()
    measure.begin(10.0, 100)
    # 1,200 bytes in 5 s is 240 B/s: enough, however they were spread.
    assert measure.judge(15.0, 5.0, 240, True, 1300)
    assert (measure.since, measure.mark) == (15.0, 1300)
    # A late look asks for the rate over the whole time since.
    assert not measure.judge(21.0, 5.0, 240, True, 1300 + 1200)
    assert (measure.since, measure.mark) == (15.0, 1300)  # kept for the report


def test_a_measure_with_nothing_waiting_on_the_client_stops() -> None:
    measure = RateWindow()
    measure.begin(0.0, 0)
    assert measure.judge(5.0, 5.0, 240, False, 0)
    assert measure.since < 0 and measure.due(5.0, -1.0) == -1.0


def test_over_tls_a_client_at_its_cap_is_refused_before_the_handshake(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer]
) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("Hello over TLS")
    port, _ = serve_www(ca, tmp_path, servers, limits={"max_connections_per_client": 1})
    ctx = client_context(ca, alpn=["http/1.1"])
    with tls_socket(port, "www.example.test", ctx) as first:
        first.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        assert first.recv(65536).startswith(b"HTTP/1.1 200 ")
        # The first one is served and held: the second gets no handshake at all.
        # (ssl.SSLError and a reset are both OSErrors.)
        with pytest.raises(OSError), tls_socket(port, "www.example.test", ctx):
            pass
        assert servers[0].look(lambda state: state.slow_clients["per_client"]) == 1
    wait_for(
        lambda: servers[0].look(lambda state: not state.per_client),
        PATIENCE,
        "the first connection uncounted",
    )
    with tls_socket(port, "www.example.test", ctx) as again:
        again.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        assert again.recv(65536).startswith(b"HTTP/1.1 200 ")
