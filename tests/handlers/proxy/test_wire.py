"""The upstream response parser, from raw bytes: framing, limits, bad input."""

from __future__ import annotations

import pytest

from colonnade.handlers.proxy.wire import (
    LAST_CHUNK,
    Data,
    End,
    Head,
    Interim,
    ResponseParser,
    UpstreamProtocolError,
    chunk,
)


def parse(raw: bytes, method: str = "GET", *, step: int = 0, eof: bool = False) -> list[object]:
    """Events of ``raw`` fed whole, or ``step`` bytes at a time; ``eof`` then."""
    parser = ResponseParser(max_head=1024)
    parser.start(method)
    events: list[object] = []
    if step:
        for i in range(0, len(raw), step):
            events += parser.feed(raw[i : i + step])
    else:
        events += parser.feed(raw)
    if eof:
        events += parser.eof()
    return events


def shape(events: list[object]) -> list[object]:
    out: list[object] = []
    for e in events:
        if isinstance(e, Head):
            out.append(("head", e.status, e.reason, e.headers, e.keep_alive))
        elif isinstance(e, Interim):
            out.append(("interim", e.status))
        elif isinstance(e, Data):
            if out and isinstance(out[-1], bytes):
                out[-1] += e.data
            else:
                out.append(e.data)
        elif isinstance(e, End):
            out.append("end")
    return out


@pytest.mark.parametrize("step", [0, 1, 3])
def test_content_length(step: int) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b c\r\n\r\nhello"
    assert shape(parse(raw, step=step)) == [
        ("head", 200, b"OK", [(b"content-length", b"5"), (b"x-a", b"b c")], True),
        b"hello",
        "end",
    ]


@pytest.mark.parametrize("step", [0, 1, 2, 7])
def test_chunked_with_extensions_and_trailers(step: int) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    events = shape(parse(raw, step=step))
    assert events[1:] == [b"hello world", "end"]


def test_reusable_after_clean_end_only() -> None:
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert parser.idle and parser.reusable
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert parser.idle and not parser.reusable


def test_bytes_after_the_response_make_it_unusable() -> None:
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxGARBAGE")
    assert not parser.reusable
    with pytest.raises(UpstreamProtocolError):
        parser.start("GET")


def test_head_and_304_have_no_body() -> None:
    assert shape(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD"))[-1] == "end"
    assert shape(parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"))[-1] == "end"


def test_until_close() -> None:
    raw = b"HTTP/1.1 200 OK\r\n\r\nsome bytes"
    assert shape(parse(raw, eof=True))[1:] == [b"some bytes", "end"]


def test_http10_closes_unless_keep_alive() -> None:
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not parser.reusable
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    assert parser.reusable


def test_interim_then_final() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    assert shape(parse(raw)) == [
        ("interim", 100),
        ("head", 201, b"Created", [(b"content-length", b"0")], True),
        "end",
    ]


def test_switching_protocols_keeps_what_follows() -> None:
    parser = ResponseParser()
    parser.start("GET")
    events = parser.feed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"
    )
    assert isinstance(events[0], Head) and events[0].status == 101
    assert parser.leftover() == b"\x81\x02hi"
    assert not parser.reusable


def test_both_framings_close_after_the_response() -> None:
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert parser.idle and not parser.reusable


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",  # no reason phrase: allowed
        b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_lenient_where_harmless(raw: bytes) -> None:
    assert shape(parse(raw))[-1] == "end"


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000,
    ],
)
def test_invalid_responses(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        parse(raw)


def test_oversized_head_is_refused_without_its_end() -> None:
    parser = ResponseParser(max_head=1024)
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(UpstreamProtocolError, match="longer than 1024"):
        for _ in range(100):
            parser.feed(b"X-Filler: " + b"a" * 50 + b"\r\n")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "without answering"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "before its response ended"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", "before its response ended"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "before"),
    ],
)
def test_a_close_before_the_end_is_an_error(raw: bytes, message: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=message):
        parse(raw, eof=True)


def test_body_is_passed_through_not_collected() -> None:
    parser = ResponseParser()
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n")
    block = b"x" * 1_000_000
    for _ in range(3):
        (event,) = [e for e in parser.feed(block) if isinstance(e, Data)]
        assert event.data is block  # no copy
    assert parser.idle


def test_chunk_encoding() -> None:
    assert chunk(b"hello") + LAST_CHUNK == b"5\r\nhello\r\n0\r\n\r\n"


def _second(parser: ResponseParser, method: str = "GET") -> None:
    # The parser read one answer (its head remembered) and a request follows.
    parser.start("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
    parser.start(method)


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nyo",
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 3\r\n\r\nnot",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n!",
    ],
)
def test_whole_takes_an_answer_with_its_exact_body_as_feed_would(first: bool, data: bytes) -> None:
    # The first answer of a connection, or one after another (remembered head).
    taker, feeder = ResponseParser(), ResponseParser()
    for parser in (taker, feeder):
        if first:
            parser.start("GET")
        else:
            _second(parser)
    parsed = taker.whole(data)
    assert parsed is not None
    events = feeder.feed(data)
    head = events[0]
    assert isinstance(head, Head)
    assert (parsed.status, parsed.reason, parsed.bare, parsed.plain) == (
        head.status,
        head.reason,
        head.bare,
        head.plain,
    )
    assert data[parsed.end :] == b"".join(e.data for e in events if isinstance(e, Data))
    assert isinstance(events[-1], End)
    assert (taker.idle, taker.reusable) == (feeder.idle, feeder.reusable)
    if taker.reusable:
        # The next exchange starts as after feed, and the same answer is taken again.
        taker.start("GET")
        assert taker.whole(data) is not None


def test_whole_declines_what_it_does_not_take_and_feed_reads_it_as_ever() -> None:
    raw_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
    declined = [
        raw_head + b"h",  # the body not whole yet
        raw_head + b"hiHTTP/1.1",  # bytes past the response
        raw_head[:-2],  # the head not whole
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhi",  # short
        b"HTTP/1.1 100 Continue\r\n\r\n" + raw_head + b"hi",  # an interim answer first
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-framed",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 2000 + b"\r\nContent-Length: 0\r\n\r\n",
    ]
    for first in (True, False):
        for data in declined:
            parser, reference = ResponseParser(max_head=1024), ResponseParser(max_head=1024)
            for p in (parser, reference):
                if first:
                    p.start("GET")
                else:
                    _second(p)
            assert parser.whole(data) is None, data
            # feed reads it as if whole had not been asked.
            try:
                expected: object = shape(reference.feed(data))
            except UpstreamProtocolError as exc:
                expected = str(exc)
            try:
                got: object = shape(parser.feed(data))
            except UpstreamProtocolError as exc:
                got = str(exc)
            assert got == expected, data
    # A HEAD request's answer has no body whatever its length says.
    parser = ResponseParser()
    _second(parser, "HEAD")
    assert parser.whole(raw_head + b"hi") is None
