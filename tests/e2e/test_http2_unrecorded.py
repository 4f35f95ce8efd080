"""HTTP/2 streams that ``h2`` keeps no record of until it must.

The receiving fast path (``transport/h2connection.py``) takes a request that arrives
whole in one HEADERS frame past ``h2``, and leaves ``h2`` without a record of the
stream while the response is sent: most are answered and closed before ``h2`` is
asked anything about them. Whenever ``h2`` must know the stream (a frame it reads,
a reset, a window it is asked for) the record is made as ``h2`` would have kept it.
These tests drive the cases where that must happen, over a real socket, each after
a first request (the fast path starts once the connection is open): a send window
too small for the body, a window grown by SETTINGS (or made negative), a reset by
the client in the middle of the response, a large body, a streamed body ended by an
empty frame, a request with trailers beside such a stream; and that no record stays
behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame, WindowUpdateFrame

from tests.hosting.apps import asgi_apps
from tests.hosting.support import live
from tests.hosting.support import site_config as app_config
from tests.support.wait import PATIENCE, wait_for

from .conftest import LiveServer, site_config
from .h2wire import RawH2, get_headers

BIG = 3 * 1024 * 1024 + 77
HELLO = b"Hello, world!"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, bytes]]:
    root = tmp_path_factory.mktemp("h2unrecorded")
    www = root / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(HELLO)
    big = os.urandom(BIG)
    (www / "big.bin").write_bytes(big)
    config = site_config(modules=["acme.slow", "handler.static"])
    server = LiveServer(config, root).start()
    yield server, big
    server.stop()


def _open(c: RawH2) -> None:
    # A first request, through h2: the connection is open from then on.
    c.send(c.headers(1))
    assert c.response(1) == (200, HELLO)


def _blocked(c: RawH2, window: int) -> None:
    # Stream 3 (the fast path's) sent the first ``window`` bytes of hello.txt, and
    # waits for window.
    c.send(c.settings(INITIAL_WINDOW_SIZE=window))
    _open(c)
    c.send(c.headers(3))
    _read_until(c, 3, lambda f: isinstance(f, DataFrame))
    assert _data(c, 3) == [(window, False)]


def _read_until(c: RawH2, stream: int, test: Any) -> None:
    # Read frames until ``test(frame)`` holds for one on ``stream``.
    end = time.monotonic() + PATIENCE
    while True:
        frame = c.next_frame(end)
        assert frame is not None, c.frames
        if frame.stream_id == stream and test(frame):
            return


def _data(c: RawH2, stream: int) -> list[tuple[int, bool]]:
    return [
        (len(f.data), "END_STREAM" in f.flags)
        for f in c.frames
        if isinstance(f, DataFrame) and f.stream_id == stream
    ]


def _body(c: RawH2, stream: int) -> bytes:
    return b"".join(f.data for f in c.frames if isinstance(f, DataFrame) and f.stream_id == stream)


def _h2_records(server: LiveServer) -> list[tuple[int, int]]:
    # For each HTTP/2 connection: h2's records and the streams it has none of yet.
    return server.look(
        lambda s: [
            (len(conn.h2.streams), len(conn.unrecorded))
            for conn in s.connections
            if hasattr(conn, "unrecorded")
        ]
    )


def test_no_record_stays_behind(server: tuple[LiveServer, bytes]) -> None:
    # Many more requests than the concurrent streams allowed (100), one connection:
    # every stream's record is gone once it is answered, h2 knows how each closed.
    live_server, _ = server
    with RawH2(live_server.port) as c:
        _open(c)
        for stream in range(3, 403, 2):
            c.send(c.headers(stream))
            assert c.response(stream) == (200, HELLO)
        wait_for(lambda: _h2_records(live_server) == [(0, 0)], PATIENCE, "no record left")
        closed = live_server.look(
            lambda s: [
                conn.h2._closed_streams.get(401)
                for conn in s.connections
                if hasattr(conn, "unrecorded")
            ]
        )
        assert [by.name if by else by for by in closed] == ["SEND_END_STREAM"]


def test_a_window_too_small_for_the_body(server: tuple[LiveServer, bytes]) -> None:
    live_server, _ = server
    with RawH2(live_server.port) as c:
        _blocked(c, 5)
        # The window the client gives next is h2's to read: the record is made with
        # what is left of the stream's window (0), then grows by it.
        c.send(c.window_update(0, 5), c.window_update(3, 3))
        _read_until(c, 3, lambda f: isinstance(f, DataFrame))
        assert _data(c, 3) == [(5, False), (3, False)]
        c.send(c.window_update(0, 3), c.window_update(3, 100))
        assert c.response(3)[0] == 200 and _body(c, 3) == HELLO
        assert _data(c, 3) == [(5, False), (3, False), (5, True)]


def test_a_window_grown_by_settings(server: tuple[LiveServer, bytes]) -> None:
    # SETTINGS_INITIAL_WINDOW_SIZE changes the window of every open stream (RFC 9113
    # 6.9.2), also of one h2 had no record of when the SETTINGS frame came.
    live_server, _ = server
    with RawH2(live_server.port) as c:
        _blocked(c, 4)
        c.send(c.window_update(0, 4), c.settings(INITIAL_WINDOW_SIZE=100))
        assert c.response(3)[0] == 200 and _body(c, 3) == HELLO
        assert _data(c, 3) == [(4, False), (9, True)]


def test_a_window_made_negative_by_settings(server: tuple[LiveServer, bytes]) -> None:
    # A smaller SETTINGS_INITIAL_WINDOW_SIZE can leave a stream's window below zero
    # (RFC 9113 6.9.2: 5 sent of a window of 5, now 2: -3). Nothing is sent while it
    # stays at or below zero (H2Connection.pump never asks a stream for a negative
    # size), and what the client gives next counts from there.
    live_server, _ = server
    with RawH2(live_server.port) as c:
        _blocked(c, 5)
        c.send(c.settings(INITIAL_WINDOW_SIZE=2))  # -3
        # Its ACK: the server read it alone (and woke the stream: nothing to send).
        _read_until(c, 0, lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        c.send(c.window_update(3, 3))  # 0
        c.send(c.window_update(3, 4))  # 4
        _read_until(c, 3, lambda f: isinstance(f, DataFrame))
        assert _data(c, 3) == [(5, False), (4, False)]
        c.send(c.window_update(3, 100))
        assert c.response(3)[0] == 200 and _body(c, 3) == HELLO
        assert _data(c, 3) == [(5, False), (4, False), (4, True)]


def test_a_reset_in_the_middle_of_the_response(server: tuple[LiveServer, bytes]) -> None:
    live_server, _ = server
    with RawH2(live_server.port) as c:
        _blocked(c, 6)
        c.send(c.rst(3, ErrorCodes.CANCEL))
        # A window given to the reset stream afterwards is no error (RFC 9113 6.9),
        # and the connection serves on.
        c.send(c.window_update(3, 100), c.window_update(0, 100))
        c.send(c.headers(5))
        assert c.response(5) == (200, HELLO)
        assert _data(c, 3) == [(6, False)]
        assert not [f for f in c.frames if f.stream_id == 3 and "END_STREAM" in f.flags]
        wait_for(
            lambda: _h2_records(live_server) == [(0, 0)], PATIENCE, "the reset stream forgotten"
        )


def test_a_large_body(server: tuple[LiveServer, bytes]) -> None:
    live_server, big = server
    with RawH2(live_server.port) as c:
        _open(c)
        c.send(c.headers(3, get_headers("/big.bin")), c.headers(5))
        assert c.response(3, timeout=4 * PATIENCE) == (200, big)
        # Stream 5's response went out beside stream 3's, not after it.
        assert c.status(5) == 200 and _body(c, 5) == HELLO


async def streamed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # A body of no declared length: it ends with an empty DATA frame.
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ab", "more_body": True})
    await send({"type": "http.response.body", "body": b"cd", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_a_streamed_body_ends_with_an_empty_frame(tmp_path: Path) -> None:
    config = app_config("tests.e2e.test_http2_unrecorded:streamed_app")
    with live(config, tmp_path) as live_server, RawH2(live_server.port) as c:
        c.send(c.headers(1))
        assert c.response(1) == (200, b"abcd")
        c.send(c.headers(3))
        assert c.response(3) == (200, b"abcd")
        assert _data(c, 3) == [(2, False), (2, False), (0, True)]


def test_a_head_stream_that_never_waits_lets_the_worker_serve_others(tmp_path: Path) -> None:
    # A HEAD's body goes nowhere, so no write waits for the window or the socket:
    # each send must still give the loop a turn, or a stream that never waits holds
    # the whole worker (as over HTTP/1.1: tests/handlers/asgi/test_asgi_live.py).
    # The application's 100,000 sends take as many turns of the loop; another
    # stream's request is answered meanwhile, not after them.
    asgi_apps.RESET_GATE.clear()
    asgi_apps.AT_RESET_GATE.clear()
    asgi_apps.EVENTS.clear()
    config = app_config("tests.hosting.apps.asgi_apps:stream_after_reset")
    try:
        with live(config, tmp_path) as live_server, RawH2(live_server.port) as c:
            c.send(c.headers(1, get_headers("/", "HEAD")))
            assert asgi_apps.AT_RESET_GATE.wait(PATIENCE)
            asgi_apps.RESET_GATE.set()  # the application streams, never waiting
            c.send(c.headers(3, get_headers("/probe")))
            assert c.response(3) == (200, b"ok")
            assert not asgi_apps.EVENTS, "answered only once the stream had ended"
            wait_for(lambda: asgi_apps.EVENTS, 10 * PATIENCE, "the stream's end")
    finally:
        asgi_apps.RESET_GATE.set()
        asgi_apps.EVENTS.clear()


def test_trailers_beside_a_stream_without_record(server: tuple[LiveServer, bytes]) -> None:
    # Stream 3 is in flight (slow) when a request with a body and trailers arrives:
    # h2 reads those frames, and knows stream 3 by then.
    live_server, _ = server
    with RawH2(live_server.port) as c:
        _open(c)
        c.send(c.headers(3, get_headers("/slow?ms=300")))
        c.send(
            c.headers(5, get_headers("/slow?ms=10", "POST"), end_stream=False),
            c.data(5, b"some body"),
            c.headers(5, [("x-trailer", "1")], end_stream=True),
        )
        assert c.response(5) == (200, b"slow:some body")
        assert c.response(3) == (200, b"slow:")
        heads = [f for f in c.frames if isinstance(f, HeadersFrame) and f.stream_id == 3]
        assert len(heads) == 1
        assert not [f for f in c.frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 3]


async def header_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # Says the request's header fields, then changes the list (an application may).
    assert scope["type"] == "http"
    body = b"|".join(b"%s=%s" % field for field in scope["headers"])
    scope["headers"].append((b"x-added", b"1"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_a_repeated_request_gets_fields_of_its_own(tmp_path: Path) -> None:
    # The same header block again decodes to the same (shared) list, whose checked
    # fields are remembered: each request must still get a list of its own.
    config = app_config("tests.e2e.test_http2_unrecorded:header_app")
    # hpack's encoder would index the fields (a block that changes the table is not
    # remembered): the same small block each time instead, :method GET, :scheme
    # http and :path / from the static table, the others literals not indexed.
    fields = [(":authority", "t"), ("x-one", "a"), ("cookie", "a=1"), ("cookie", "b=2")]
    block = b"\x82\x86\x84" + b"".join(
        b"\x00" + bytes([len(n)]) + n.encode() + bytes([len(v)]) + v.encode() for n, v in fields
    )
    assert len(block) <= 64  # FieldDecoder remembers blocks this small
    with live(config, tmp_path) as live_server, RawH2(live_server.port) as c:
        answers = []
        for stream in (1, 3, 5, 7):
            c.send(c.headers(stream, block=block))
            answers.append(c.response(stream))
    assert answers == [(200, b"x-one=a|cookie=a=1; b=2|host=t")] * 4
