"""HTTP/2 protocol errors and defences, table-driven, over a real socket (h2c).

Each row opens a connection with the preface and a SETTINGS frame, sends its
frames (built by hand, valid or not) and names what the server must answer: a
GOAWAY or RST_STREAM with RFC 9113's error code, or a response's status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from h2.errors import ErrorCodes as E
from hyperframe.frame import Frame

from tests.support.wait import PATIENCE, wait_for

from .conftest import LiveServer, site_config
from .h2wire import PREFACE, RawH2, get_headers

# Small limits, so that the floods and oversized blocks of the rows stay small.
LIMITS = {
    "max_concurrent_streams": 8,
    "max_header_list_size": 16384,
    "max_resets": 40,
    "max_pings": 40,
    "max_settings": 40,
    "max_empty_frames": 40,
}
HEADERS, PRIORITY, RST, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW = 1, 2, 3, 4, 5, 6, 7, 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("h2")
    (root / "www").mkdir()
    (root / "www" / "hello.txt").write_text("Hello, world!")
    live = LiveServer(site_config(http2=LIMITS), root).start()
    yield live
    live.stop()


@dataclass
class Row:
    name: str
    send: Callable[[RawH2], None]
    expect: tuple[str, int]
    preface: bytes | None = PREFACE
    settings: bool = True
    stream: int = 1  # the stream whose response counts


NO_AUTHORITY = [(":method", "GET"), (":scheme", "http"), (":path", "/hello.txt")]


def post(path: str = "/slow?ms=3000", **extra: str) -> list[tuple[str, str]]:
    return [*get_headers(path, "POST"), *extra.items()]


def _hpack_bomb(c: RawH2, stream: int = 1) -> None:
    # A 4000-byte value enters the dynamic table with the first request; the second
    # names it 100 times, one byte each: 400 KB decoded from about 100 bytes.
    c.send(c.headers(stream, [*get_headers(), ("x-big", "b" * 4000)]))
    # x-big filled the 4096-byte table alone: it is entry 62. Named first, before
    # anything else enters the table (the size bound bites while decoding, before
    # the order of the fields is checked).
    index = bytes([0x80 | 62])
    c.send(c.headers(stream + 2, block=index * 100 + c.block(get_headers())))


def _too_many_streams(c: RawH2) -> None:
    for i in range(LIMITS["max_concurrent_streams"] + 1):
        c.send(c.headers(1 + 2 * i, get_headers("/slow?ms=5000")))


def _rapid_reset(c: RawH2) -> None:
    for i in range(LIMITS["max_resets"] + 1):
        c.send(c.headers(1 + 2 * i, get_headers("/slow?ms=5000")), c.rst(1 + 2 * i))


def _over_window(c: RawH2) -> None:
    # The server announced a stream window of 256 KiB (the default) and read nothing.
    c.send(c.headers(1, post(), end_stream=False))
    chunk = b"x" * 16384
    for _ in range(17):
        c.send(c.data(1, chunk))


ROWS = [
    Row("good GET", lambda c: c.send(c.headers(1)), ("status", 200)),
    Row(
        "bad preface",
        lambda c: None,
        ("goaway", E.PROTOCOL_ERROR),
        preface=b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
    ),
    Row(
        "first frame is not SETTINGS",
        lambda c: c.send(c.ping()),
        ("goaway", E.PROTOCOL_ERROR),
        settings=False,
    ),
    Row("DATA on an idle stream", lambda c: c.send(c.data(1, b"x")), ("goaway", E.PROTOCOL_ERROR)),
    Row("DATA on stream 0", lambda c: c.send(c.raw(0, 0, 0, b"x")), ("goaway", E.PROTOCOL_ERROR)),
    Row(
        "HEADERS on stream 0",
        lambda c: c.send(c.raw(HEADERS, 5, 0, c.block(get_headers()))),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "HEADERS on an even (server) stream id",
        lambda c: c.send(c.headers(2)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "stream id lower than one used",
        lambda c: c.send(c.headers(5, get_headers("/slow?ms=3000")), c.headers(3)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "DATA after END_STREAM (half-closed stream)",
        lambda c: c.send(c.headers(1, get_headers("/slow?ms=3000")), c.data(1, b"late")),
        ("rst", E.STREAM_CLOSED),
    ),
    Row(
        "RST_STREAM on an idle stream",
        lambda c: c.send(c.rst(1)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "WINDOW_UPDATE of 0 on the connection",
        lambda c: c.send(c.raw(WINDOW, 0, 0, (0).to_bytes(4, "big"))),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        # A stream error by RFC 9113 6.9, which h2 makes a connection error (5.4.1
        # allows it).
        "WINDOW_UPDATE of 0 on a stream",
        lambda c: c.send(
            c.headers(1, get_headers("/slow?ms=3000")),
            c.raw(WINDOW, 0, 1, (0).to_bytes(4, "big")),
        ),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "connection window overflow",
        lambda c: c.send(c.window_update(0, 2**31 - 1)),
        ("goaway", E.FLOW_CONTROL_ERROR),
    ),
    Row(
        "stream window overflow",
        lambda c: c.send(c.headers(1, get_headers("/slow?ms=3000")), c.window_update(1, 2**31 - 1)),
        ("rst", E.FLOW_CONTROL_ERROR),
    ),
    Row("DATA beyond the stream window", _over_window, ("goaway", E.FLOW_CONTROL_ERROR)),
    Row(
        "frame over SETTINGS_MAX_FRAME_SIZE",
        lambda c: c.send(c.headers(1, post(), end_stream=False), c.data(1, b"x" * 20000)),
        ("goaway", E.FRAME_SIZE_ERROR),
    ),
    Row(
        "SETTINGS of a length not a multiple of 6",
        lambda c: c.send(c.raw(SETTINGS, 0, 0, b"\x00\x01\x00")),
        ("goaway", E.FRAME_SIZE_ERROR),
    ),
    Row(
        "SETTINGS ACK with a payload",
        lambda c: c.send(c.raw(SETTINGS, 1, 0, b"\x00\x01\x00\x00\x00\x01")),
        ("goaway", E.FRAME_SIZE_ERROR),
    ),
    Row(
        "SETTINGS_ENABLE_PUSH of 2",
        lambda c: c.send(c.settings(ENABLE_PUSH=2)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
        lambda c: c.send(c.settings(INITIAL_WINDOW_SIZE=2**31)),
        ("goaway", E.FLOW_CONTROL_ERROR),
    ),
    Row(
        "SETTINGS_MAX_FRAME_SIZE under 16384",
        lambda c: c.send(c.settings(MAX_FRAME_SIZE=100)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "SETTINGS on a stream",
        lambda c: c.send(c.raw(SETTINGS, 0, 1, b"")),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "PING of 4 bytes",
        lambda c: c.send(c.raw(PING, 0, 0, b"1234")),
        ("goaway", E.FRAME_SIZE_ERROR),
    ),
    Row(
        "PING on a stream",
        lambda c: c.send(c.raw(PING, 0, 1, b"12345678")),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "PUSH_PROMISE from a client",
        lambda c: c.send(c.raw(PUSH_PROMISE, 4, 1, b"\x00\x00\x00\x02" + c.block(get_headers()))),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "padding longer than the frame",
        lambda c: c.send(c.headers(1, post(), end_stream=False), c.raw(0, 0x8, 1, b"\x09abc")),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "missing :method",
        lambda c: c.send(c.headers(1, get_headers()[1:])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "empty :path",
        lambda c: c.send(c.headers(1, [*get_headers()[:3], (":path", "")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "duplicate :path",
        lambda c: c.send(c.headers(1, [*get_headers(), (":path", "/other")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "unknown pseudo-header",
        lambda c: c.send(c.headers(1, [*get_headers(), (":foo", "bar")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "response pseudo-header :status in a request",
        lambda c: c.send(c.headers(1, [*get_headers(), (":status", "200")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "pseudo-header after a regular field",
        lambda c: c.send(c.headers(1, [*get_headers()[:3], ("x-a", "1"), get_headers()[3]])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "uppercase header name",
        lambda c: c.send(c.headers(1, [*get_headers(), ("X-Upper", "1")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "connection-specific field: connection",
        lambda c: c.send(c.headers(1, [*get_headers(), ("connection", "keep-alive")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "connection-specific field: transfer-encoding",
        lambda c: c.send(c.headers(1, [*post(), ("transfer-encoding", "chunked")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "te other than trailers",
        lambda c: c.send(c.headers(1, [*get_headers(), ("te", "gzip")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "NUL in a field value",
        lambda c: c.send(c.headers(1, [*get_headers(), ("x-a", "a\x00b")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "CR in a field value",
        lambda c: c.send(c.headers(1, [*get_headers(), ("x-a", "a\rb")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "field value starting with a space",
        lambda c: c.send(c.headers(1, [*get_headers(), ("x-a", " a")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "field value ending with a tab",
        lambda c: c.send(c.headers(1, [*get_headers()[:3], (":path", "/hello.txt\t")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "colon inside a field name",
        lambda c: c.send(c.headers(1, [*get_headers(), ("x:a", "1")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "empty field name",
        lambda c: c.send(c.headers(1, [*get_headers(), ("", "1")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "host twice",
        lambda c: c.send(c.headers(1, [*get_headers(), ("host", "t"), ("host", "t")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        ":authority and host differ",
        lambda c: c.send(c.headers(1, [*get_headers(), ("host", "other")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        ":protocol without CONNECT",
        lambda c: c.send(c.headers(1, [*get_headers(), (":protocol", "websocket")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "pseudo-header field in trailers",
        lambda c: c.send(
            c.headers(1, post("/slow"), end_stream=False), c.headers(1, [(":path", "/x")])
        ),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "uppercase name in trailers",
        lambda c: c.send(
            c.headers(1, post("/slow"), end_stream=False), c.headers(1, [("X-A", "1")])
        ),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "valid trailers",
        lambda c: c.send(
            c.headers(1, post("/slow"), end_stream=False),
            c.data(1, b"body"),
            c.headers(1, [("x-checksum", "1")]),
        ),
        ("status", 200),
    ),
    Row(
        "content-length larger than the body",
        lambda c: c.send(
            c.headers(1, post("/slow", **{"content-length": "10"}), end_stream=False),
            c.data(1, b"12345", end_stream=True),
        ),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "content-length smaller than the body",
        lambda c: c.send(
            c.headers(1, post("/slow", **{"content-length": "2"}), end_stream=False),
            c.data(1, b"12345", end_stream=True),
        ),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "CONTINUATION without HEADERS",
        lambda c: c.send(c.continuation(1, c.block(get_headers()), end=True)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "HEADERS without END_HEADERS, then another frame",
        lambda c: c.send(c.headers(1, end_headers=False), c.ping()),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "CONTINUATION on another stream",
        lambda c: c.send(
            c.headers(1, end_headers=False, block=b""),
            c.continuation(3, c.block(get_headers()), end=True),
        ),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "CONTINUATION flood (no END_HEADERS)",
        lambda c: c.send(
            c.headers(1, end_headers=False, block=c.block(get_headers())),
            *[c.continuation(1, b"\x00" * 1000) for _ in range(20)],
        ),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    Row(
        "empty CONTINUATION flood",
        lambda c: c.send(
            c.headers(1, end_headers=False, block=c.block(get_headers())),
            *[c.continuation(1, b"") for _ in range(2000)],
        ),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    Row(
        "header list over max_header_list_size",
        # Huffman-coded, the block stays under the bound; decoded, the list does not.
        lambda c: c.send(_split_headers(c, [*get_headers(), ("x-big", "a" * 20000)])),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    Row("HPACK bomb", _hpack_bomb, ("goaway", E.ENHANCE_YOUR_CALM), stream=3),
    Row(
        "invalid HPACK index",
        lambda c: c.send(c.headers(1, block=b"\xff\xff\xff\x0f")),
        ("goaway", E.COMPRESSION_ERROR),
    ),
    Row(
        "more streams than SETTINGS_MAX_CONCURRENT_STREAMS",
        _too_many_streams,
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row("rapid reset", _rapid_reset, ("goaway", E.ENHANCE_YOUR_CALM)),
    Row(
        "SETTINGS flood",
        lambda c: c.send(*[c.settings() for _ in range(LIMITS["max_settings"] + 1)]),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    Row(
        "PING flood",
        lambda c: c.send(*[c.ping() for _ in range(LIMITS["max_pings"] + 1)]),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    Row(
        "empty DATA frame flood",
        lambda c: c.send(
            c.headers(1, post(), end_stream=False),
            *[c.data(1, b"") for _ in range(LIMITS["max_empty_frames"] + 1)],
        ),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    Row(
        "unknown frame type is ignored",
        lambda c: c.send(c.raw(0xEE, 0, 0, b"whatever"), c.headers(1)),
        ("status", 200),
    ),
    Row(
        "POST with a body",
        lambda c: c.send(
            c.headers(1, post("/slow"), end_stream=False), c.data(1, b"hi", end_stream=True)
        ),
        ("status", 200),
    ),
    Row(
        "host field instead of :authority",
        lambda c: c.send(
            c.headers(
                1, [(":method", "GET"), (":scheme", "http"), (":path", "/hello.txt"), ("host", "t")]
            )
        ),
        ("status", 200),
    ),
    Row(
        # RFC 9110 7.2: a user agent sends one or the other; h2 holds a request with
        # neither malformed (HTTP/1.1 answers a Host-less request 400 likewise).
        "neither :authority nor host",
        lambda c: c.send(c.headers(1, NO_AUTHORITY)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "path above the root",
        lambda c: c.send(c.headers(1, get_headers("/%2e%2e/x"))),
        ("status", 400),
    ),
    Row(
        "target over max_request_target",
        lambda c: c.send(_split_headers(c, get_headers("/" + "a" * 9000), end_stream=True)),
        ("status", 414),
    ),
    Row(
        "CONNECT",
        lambda c: c.send(c.headers(1, [(":method", "CONNECT"), (":authority", "example:443")])),
        ("status", 501),
    ),
    Row("client GOAWAY", lambda c: c.send(c.goaway()), ("eof", 0)),
]


def _split_headers(c: RawH2, headers: list[tuple[str, str]], *, end_stream: bool = True) -> bytes:
    """A header list as HEADERS plus CONTINUATION frames of 4000 bytes each."""
    block = c.block(headers)
    pieces = [block[i : i + 4000] for i in range(0, len(block), 4000)]
    frames = [c.headers(1, end_stream=end_stream, end_headers=len(pieces) == 1, block=pieces[0])]
    frames += [
        c.continuation(1, piece, end=i == len(pieces) - 1) for i, piece in enumerate(pieces[1:], 1)
    ]
    return b"".join(f.serialize() for f in frames)


# -- after a first request: the frames take the receiving fast path ----------------------
#
# Once a connection served a request, a HEADERS frame with END_STREAM and END_HEADERS
# on a new stream skips h2's parser (transport/h2connection.py _receive_fast): these
# rows send their frames after one complete request on stream 1, each send arriving on
# its own, so that the fast path meets them; its answers must be h2's.


def _priority_headers(c: RawH2, stream: int) -> bytes:
    # PRIORITY flag: 5 bytes of dependency and weight before the block (h2's path).
    return c.raw(HEADERS, 0x25, stream, bytes(5) + c.block(get_headers()))


def _padded_headers(c: RawH2, stream: int) -> bytes:
    # PADDED flag: a pad length byte, the block, 3 bytes of padding (h2's path).
    return c.raw(HEADERS, 0x0D, stream, b"\x03" + c.block(get_headers()) + bytes(3))


def _table_in_step(c: RawH2) -> None:
    # hpack's Encoder indexes most fields: requests on the fast path and on h2's (a
    # POST, a padded GET) add entries in turn; a decoder out of step with the client's
    # table would read another :path (a 404) or fail to decode.
    paths = ("/hello.txt", "/missing")
    for i in range(12):
        stream = 3 + 2 * i
        path = paths[i % 2]
        fields = [*get_headers(path), ("x-n", str(i))]
        if i % 4 == 1:
            c.send(c.headers(stream, [*post(path), ("x-n", str(i))], end_stream=False))
            c.send(c.data(stream, b"", end_stream=True))
        elif i % 4 == 3:
            c.send(c.raw(HEADERS, 0x0D, stream, b"\x01" + c.block(fields) + b"\x00"))
        else:
            c.send(c.headers(stream, fields))
        status, _ = c.response(stream)
        assert status == (200 if path == "/hello.txt" else 404 if i % 4 != 1 else 405), (i, status)


def _many_one_by_one(c: RawH2) -> None:
    # More requests, one after another, than streams may be open at once: h2's records
    # of the closed ones must be forgotten as h2 forgets them.
    for i in range(3 * LIMITS["max_concurrent_streams"]):
        c.send(c.headers(3 + 2 * i))
        assert c.response(3 + 2 * i)[0] == 200


def _answered(c: RawH2, *late: bytes | Frame) -> None:
    # Stream 3 answered on the fast path (h2 never had its record), then ``late``
    # frames on it: h2 answers them as for a stream it closed and forgot.
    c.send(c.headers(3))
    assert c.response(3)[0] == 200
    c.send(*late)


def _reset_by_the_server(c: RawH2, *late: bytes | Frame) -> None:
    # Stream 3 answered before its body came (a POST to a static file: 405), so reset
    # by the server, NO_ERROR (RFC 9113 8.1); then ``late`` frames on it, as a client
    # sends them when they were in flight before the reset reached it.
    c.send(c.headers(3, post("/hello.txt"), end_stream=False))
    assert (c.outcome(3).kind, c.status(3)) == ("status", 405)
    rst = c.outcome(3)
    assert (rst.kind, rst.stream, rst.code) == ("rst", 3, E.NO_ERROR)
    c.send(*late, c.headers(5))


def _trailers_after_reset(c: RawH2) -> None:
    # As _reset_by_the_server, the late frames ending with trailers (HEADERS), whose
    # block the server must decode all the same: the HPACK table stays in step
    # (stream 5's request repeats the field, indexed). Each block is encoded when
    # sent, in the order the server decodes them.
    c.send(c.headers(3, post("/hello.txt"), end_stream=False))
    assert (c.outcome(3).kind, c.status(3)) == ("status", 405)
    rst = c.outcome(3)
    assert (rst.kind, rst.stream, rst.code) == ("rst", 3, E.NO_ERROR)
    c.send(c.data(3, b"late"))
    c.send(c.headers(3, [("x-trailer", "1")], end_stream=True))
    c.send(c.headers(5, [*get_headers(), ("x-trailer", "1")]))


AFTER_FIRST = [
    Row(
        # RFC 9113 5.1: "An endpoint MUST ignore frames that it receives on closed
        # streams after it has sent a RST_STREAM frame" (no RST_STREAM STREAM_CLOSED
        # for each DATA frame that was in flight).
        "DATA on a stream the server reset: ignored",
        lambda c: _reset_by_the_server(c, c.data(3, b"late"), c.data(3, b"", end_stream=True)),
        ("status", 200),
        stream=5,
    ),
    Row(
        "trailers on a stream the server reset: ignored",
        _trailers_after_reset,
        ("status", 200),
        stream=5,
    ),
    Row(
        "DATA on a stream answered",
        lambda c: _answered(c, c.data(3, b"late")),
        ("rst", E.STREAM_CLOSED),
        stream=3,
    ),
    Row(
        "a stream answered opened again",
        lambda c: _answered(c, c.headers(3)),
        ("goaway", E.STREAM_CLOSED),
    ),
    Row(
        "RST_STREAM, WINDOW_UPDATE, PRIORITY on a stream answered: ignored",
        lambda c: _answered(
            c, c.rst(3), c.window_update(3, 10), c.raw(2, 0, 3, bytes(4) + b"\x10"), c.headers(5)
        ),
        ("status", 200),
        stream=5,
    ),
    Row("good GET", lambda c: c.send(c.headers(3)), ("status", 200), stream=3),
    Row("GETs one after another", _many_one_by_one, ("eof", 0), stream=0),
    Row("the HPACK table stays in step", _table_in_step, ("eof", 0), stream=0),
    Row(
        "several GETs in one write",
        lambda c: c.send(*[c.headers(3 + 2 * i) for i in range(5)]),
        ("status", 200),
        stream=11,
    ),
    Row(
        "a GET beside a PING in one write",
        lambda c: c.send(c.headers(3), c.ping(), c.headers(5)),
        ("status", 200),
        stream=5,
    ),
    Row(
        "HEADERS with PRIORITY",
        lambda c: c.send(_priority_headers(c, 3)),
        ("status", 200),
        stream=3,
    ),
    Row("padded HEADERS", lambda c: c.send(_padded_headers(c, 3)), ("status", 200), stream=3),
    Row(
        "invalid HPACK index",
        lambda c: c.send(c.headers(3, block=b"\xff\xff\xff\x0f")),
        ("goaway", E.COMPRESSION_ERROR),
    ),
    Row(
        "header list over max_header_list_size",
        lambda c: c.send(c.headers(3, [*get_headers(), ("x-big", "a" * 20000)])),
        ("goaway", E.ENHANCE_YOUR_CALM),
    ),
    Row(
        "HPACK bomb",
        lambda c: _hpack_bomb(c, 3),
        ("goaway", E.ENHANCE_YOUR_CALM),
        stream=5,
    ),
    Row(
        "informational :status in a request",
        lambda c: c.send(c.headers(3, [(":status", "101"), *get_headers()])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "content-length not a number",
        lambda c: c.send(c.headers(3, [*get_headers(), ("content-length", "1x")])),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "content-length twice, different",
        lambda c: c.send(
            c.headers(3, [*get_headers(), ("content-length", "1"), ("content-length", "2")])
        ),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "neither :authority nor host",
        lambda c: c.send(c.headers(3, NO_AUTHORITY)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "HEADERS on an even (server) stream id",
        lambda c: c.send(c.headers(4)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row("stream 1 again", lambda c: c.send(c.headers(1)), ("goaway", E.STREAM_CLOSED)),
    Row(
        "stream id lower than one used",
        lambda c: c.send(c.headers(7, get_headers("/slow?ms=3000")), c.headers(5)),
        ("goaway", E.PROTOCOL_ERROR),
    ),
    Row(
        "more streams than SETTINGS_MAX_CONCURRENT_STREAMS",
        lambda c: [
            c.send(c.headers(3 + 2 * i, get_headers("/slow?ms=5000")))
            for i in range(LIMITS["max_concurrent_streams"] + 1)
        ],
        ("goaway", E.PROTOCOL_ERROR),
    ),
]


@pytest.mark.parametrize("row", AFTER_FIRST, ids=[row.name for row in AFTER_FIRST])
def test_protocol_row_after_a_first_request(server: LiveServer, row: Row) -> None:
    with RawH2(server.port) as c:
        c.send(c.headers(1))
        assert c.response(1)[0] == 200
        row.send(c)
        if row.expect[0] == "eof":  # the row's own asserts said it; then say goodbye
            c.send(c.goaway())
        outcome = c.outcome(row.stream)
    assert (outcome.kind, outcome.code) == row.expect, outcome


def test_the_table_has_enough_rows() -> None:
    assert len(ROWS) >= 30
    assert len({row.name for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_protocol_row(server: LiveServer, row: Row) -> None:
    with RawH2(server.port, preface=row.preface, settings=row.settings) as c:
        row.send(c)
        outcome = c.outcome(row.stream)
    kind, code = row.expect
    assert (outcome.kind, outcome.code) == (kind, code), outcome
    if kind == "goaway":
        # A connection error ends the connection, and no connection slot stays taken.
        wait_for(
            lambda: server.look(lambda s: not any(c for c in s.connections if c.busy)),
            PATIENCE,
            "no connection busy",
        )


def test_defences_are_counted(server: LiveServer) -> None:
    before = server.look(lambda s: dict(s.http2_errors))
    with RawH2(server.port) as c:
        c.send(*[c.ping() for _ in range(LIMITS["max_pings"] + 1)])
        assert c.outcome().kind == "goaway"
    after = wait_for(
        lambda: server.look(
            lambda s: s.http2_errors["ping_flood"] > before.get("ping_flood", 0) and s.http2_errors
        ),
        PATIENCE,
        "the PING flood counted",
    )
    assert after["ping_flood"] == before.get("ping_flood", 0) + 1


def test_flood_is_logged_once_without_traceback(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="colonnade.transport"), RawH2(server.port) as c:
        _rapid_reset(c)
        assert c.outcome().kind == "goaway"
        wait_for(
            lambda: any("rapid reset" in r.getMessage() for r in caplog.records),
            PATIENCE,
            "the rapid reset logged",
        )
    lines = [r for r in caplog.records if r.name == "colonnade.transport"]
    assert len(lines) == 1 and lines[0].levelname == "WARNING" and lines[0].exc_info is None
    assert "ENHANCE_YOUR_CALM" in lines[0].getMessage()


def test_http2_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    with (
        LiveServer(site_config(http2={"enabled": False}), tmp_path).start() as live,
        RawH2(live.port, settings=False) as c,
    ):
        c.sock.settimeout(PATIENCE)
        data = c.sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 400 ")
