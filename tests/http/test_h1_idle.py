"""What an idle HTTP/1.1 connection holds: no buffers of its own until it needs
them, none once a request is complete, and (compiled) no callbacks of its own:
its parser calls the thread's shared ones, which find the connection being fed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from colonnade.http import Body, EndOfMessage, HTTP1Connection, RequestHead, h1

GET = b"GET /%d HTTP/1.1\r\nHost: example.test\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture(params=["own", "shared"])
def callbacks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways a parser calls back, whichever the build uses by default (the
    interpreted build can be made to share; the compiled one always does)."""
    if request.param == "shared" and not h1._SHARE_CALLBACKS:
        monkeypatch.setattr(h1, "_SHARE_CALLBACKS", True)
    elif request.param == "own" and h1._SHARE_CALLBACKS:
        if h1._COMPILED:
            pytest.skip("compiled, the callbacks are always shared")
        monkeypatch.setattr(h1, "_SHARE_CALLBACKS", False)
    yield request.param


def summary(events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        if isinstance(event, RequestHead):
            out.append(event.target)
        elif isinstance(event, Body):
            out.append(event.data)
        else:
            assert isinstance(event, EndOfMessage)
            out.append("end")
    return out


def test_connections_fed_in_turn_on_one_thread_each_get_their_events(callbacks: str) -> None:
    # Each connection's message arrives in pieces, the feeds of the two interleaved
    # at every byte: what each sees is what it would see alone.
    a, b = HTTP1Connection(), HTTP1Connection()
    first, second = GET % 1 + POST, POST + GET % 2
    seen: dict[str, list[Any]] = {"a": [], "b": []}
    for i in range(max(len(first), len(second))):
        seen["a"] += summary(a.feed(first[i : i + 1]))
        seen["b"] += summary(b.feed(second[i : i + 1]))
    assert seen["a"] == [b"/1", "end", b"/p", b"h", b"e", b"l", b"l", b"o", "end"]
    assert seen["b"] == [b"/p", b"h", b"e", b"l", b"l", b"o", "end", b"/2", "end"]
    if callbacks == "shared":
        shared = h1._thread_shared()
        assert a._shared is shared and b._shared is shared
        assert shared.conn is None  # no connection kept by the thread between feeds


def test_each_thread_has_its_own_shared_callbacks(callbacks: str) -> None:
    found: list[Any] = []

    def run() -> None:
        conn = HTTP1Connection()
        found.append((conn._shared, summary(conn.feed(GET % 3))))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    here = HTTP1Connection()
    [(there, events)] = found
    assert events == [b"/3", "end"]
    if callbacks == "shared":
        assert there is not None and here._shared is not None and there is not here._shared
    else:
        assert there is None and here._shared is None


def test_an_idle_connection_keeps_no_buffer_of_its_own(callbacks: str) -> None:
    conn = HTTP1Connection()
    assert conn._carry is h1._NO_BYTES and conn._trailing is h1._NO_BYTES
    assert conn._events is h1._NO_EVENTS
    # A head in pieces is carried while it comes, and dropped once complete.
    data = GET % 4 + POST
    for cut in (5, 20):
        assert conn.feed(data[:cut]) == []
        assert conn._carry is not h1._NO_BYTES
        assert summary(conn.feed(data[cut:])) == [b"/4", "end", b"/p", b"hello", "end"]
        assert conn._carry is h1._NO_BYTES
        conn = HTTP1Connection()
    # A chunked body's unfinished line, too.
    conn.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5")
    conn.feed(b"\r\nhello\r\n0\r\n\r\n")
    assert conn._carry is h1._NO_BYTES
    # What stays shared never grows.
    assert h1._NO_BYTES == b"" and h1._NO_EVENTS == []
    # Its last good Host is the one shared object for that name.
    one, two = HTTP1Connection(), HTTP1Connection()
    one.feed(GET % 5)
    two.feed(GET % 6)
    assert one._good_host is two._good_host
    conn.release()
    one.feed_eof()
    assert h1._NO_EVENTS == []


def test_a_head_in_pieces_completed_by_a_feed_of_several_slices_is_not_kept(
    callbacks: str,
) -> None:
    # A head cut mid-field, then its end and pipelined requests in a feed larger
    # than one slice whose first slice ends exactly between two messages: parsed in
    # slices (_feed_rest), not by feed's common path. Idle afterwards, the connection
    # keeps none of the head's pieces, and neither does a plain head read after it
    # (by _head.c in the compiled build, which never looks at them). (Found by
    # review17: ~50 KB kept by an idle keep-alive connection.)
    conn = HTTP1Connection()
    first = b"GET /a HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 50000
    plain = b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n"
    rest = b"\r\n\r\n"
    while len(rest) + len(plain) + 200 < h1._SLICE:
        rest += plain
    last = b"GET /p HTTP/1.1\r\nHost: x\r\nP: "
    rest += last + b"z" * (h1._SLICE - len(rest) - len(last) - 4) + b"\r\n\r\n"
    assert len(rest) == h1._SLICE
    assert conn.feed(first) == []
    events = conn.feed(rest + plain)
    assert sum(isinstance(e, RequestHead) for e in events) == rest.count(b"GET ") + 2
    assert conn._carry is h1._NO_BYTES
    assert len(conn.feed(GET % 1)) == 2
    assert conn._carry is h1._NO_BYTES
