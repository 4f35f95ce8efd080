"""A client's RST_STREAM over a real socket: the request it cancels stops.

A browser cancelling a request (RST_STREAM CANCEL) must stop the work behind it,
on the connection's first stream (read through ``h2``) as on a later one (past it,
on the receiving fast path, which keeps no record of the stream in ``h2``), whether
or not the response's head went out. The application here never waits for
the client (the windows are opened wide and the client reads all it is sent): the
reset is in the socket before it sends again, and the server must get to read it.
And a ``receive`` waiting for the rest of the body when the stream is reset or the
connection lost hears ``http.disconnect`` (the ASGI spec).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from tests.hosting.apps import asgi_apps
from tests.hosting.support import live
from tests.hosting.support import site_config as app_config
from tests.support.wait import PATIENCE, wait_for

from .h2wire import PREFACE, RawH2, get_headers

# The largest window (RFC 9113 6.9.1): the application's 100,000 sends of 512 bytes
# never wait for one.
WIDE = 2**31 - 1
APP = "tests.hosting.apps.asgi_apps:stream_after_reset"


def _opening(c: RawH2) -> bytes:
    return (
        PREFACE
        + c.settings(INITIAL_WINDOW_SIZE=WIDE).serialize()
        + c.window_update(0, WIDE - 65_535).serialize()
    )


def _read_until_stopped(c: RawH2) -> None:
    # Everything the server sends is read (and dropped), so that no socket buffer
    # holds it back, until the application says what stopped it.
    end = time.monotonic() + 10 * PATIENCE
    while not asgi_apps.EVENTS and time.monotonic() < end:
        with contextlib.suppress(AssertionError):  # nothing within the turn
            assert c.next_frame(time.monotonic() + 0.2) is not None
        c.frames.clear()


@pytest.mark.parametrize("path", ["/early", "/"], ids=["before-the-head", "after-the-head"])
@pytest.mark.parametrize("stream", ["first", "later"])
def test_a_reset_stops_the_request(stream: str, path: str, tmp_path: Path) -> None:
    # stream_after_reset holds the loop (before its head for /early, after it for
    # /) until the reset is in the server's socket, then sends without waiting.
    asgi_apps.RESET_GATE.clear()
    asgi_apps.AT_RESET_GATE.clear()
    asgi_apps.EVENTS.clear()
    try:
        with (
            live(app_config(APP), tmp_path) as server,
            RawH2(server.port, preface=None, settings=False) as c,
        ):
            c.send(_opening(c))
            stream_id = 1
            if stream == "later":
                c.send(c.headers(1, get_headers("/probe")))
                assert c.response(1) == (200, b"ok")
                stream_id = 3
            c.send(c.headers(stream_id, get_headers(path)))
            assert asgi_apps.AT_RESET_GATE.wait(PATIENCE)
            c.send(c.rst(stream_id))
            time.sleep(0.2)  # the reset reaches the server's socket
            asgi_apps.RESET_GATE.set()
            _read_until_stopped(c)
            # Stopped at the loop's first turn after the reset was read (the
            # request's task cancelled), or at its next send (the stream closed).
            assert asgi_apps.EVENTS in (
                [("stopped by", "CancelledError")],
                [("stopped by", "ClientDisconnectedError")],
            )
            # The connection serves on.
            c.send(c.headers(stream_id + 2, get_headers("/probe")))
            assert c.response(stream_id + 2) == (200, b"ok")
    finally:
        asgi_apps.RESET_GATE.set()
        asgi_apps.EVENTS.clear()


@pytest.mark.parametrize("how", ["reset", "connection-lost"])
def test_a_receive_waiting_for_the_body_gets_the_disconnect(how: str, tmp_path: Path) -> None:
    # As over HTTP/1.1 (tests/handlers/asgi/test_asgi_live.py): the reader is a task
    # of its own; it raised the transport's ClientDisconnectedError.
    asgi_apps.GATE.clear()
    asgi_apps.EVENTS.clear()
    try:
        with live(app_config("tests.hosting.apps.asgi_apps:body_reader"), tmp_path) as server:
            with RawH2(server.port) as c:
                post = get_headers("/elsewhere", "POST")
                c.send(c.headers(1, post, end_stream=False), c.data(1, b"0123456789"))
                wait_for(lambda: asgi_apps.EVENTS, PATIENCE, "the body's first part received")
                if how == "reset":
                    c.send(c.rst(1))
                    wait_for(lambda: len(asgi_apps.EVENTS) > 1, PATIENCE, "the reader's next")
            wait_for(lambda: len(asgi_apps.EVENTS) > 1, PATIENCE, "what the reader heard next")
        assert asgi_apps.EVENTS == ["http.request", "http.disconnect"]
    finally:
        asgi_apps.GATE.set()
        asgi_apps.EVENTS.clear()
