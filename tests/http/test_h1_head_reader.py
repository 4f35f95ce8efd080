"""The C head reader (http/_head.c) changes nothing a client can see: a connection
that reads a feed's one plain request head in C gives the events, errors and
connection state that a connection giving every feed to llhttp gives, whatever
the bytes (nasty pieces included: bare CR and LF, CTLs, DEL, obs-text, obs-fold,
space before the colon, empty names, framing fields, other target forms and
versions, huge lines, pipelining) and however they are split.

Only a build with the C reader (the compiled one) has both ways to compare; the
pure build has llhttp's alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from colonnade.http import (
    Body,
    EndOfMessage,
    HTTP1Connection,
    ProtocolError,
    RequestHead,
    h1,
)

READ = h1._C_HEAD.read
pytestmark = [
    pytest.mark.skipif(READ is None, reason="a pure-Python build has no C head reader"),
    # As in test_h1_fuzz.py: a warning about the global ``random`` state that
    # something else in the process may advance mid-draw; nothing to do with these.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def llhttp_only() -> Iterator[None]:
    """Every feed goes to llhttp (the C reader switched off) inside the block."""
    h1._C_HEAD.read = None
    try:
        yield
    finally:
        h1._C_HEAD.read = READ


LIMITS = [
    {},
    {"max_target": 8, "max_header_size": 48, "max_headers": 2},
    {"max_target": 64, "max_header_size": 1024, "max_headers": 200},
]


def run(feeds: list[bytes], limits: dict[str, int], eof: bool) -> tuple[object, ...]:
    """What a connection makes of ``feeds``: events per feed, and its state after."""
    conn = HTTP1Connection(**limits)
    seen = [conn.feed(data) for data in feeds]
    if eof:
        seen.append(conn.feed_eof())
    return (
        seen,
        conn.keep_alive,
        conn.ignored,
        conn.trailing_data,
        conn._state,
        conn._requests,
        conn._final,
    )


def both(feeds: list[bytes], limits: dict[str, int], eof: bool = True) -> tuple[object, ...]:
    """The same feeds read with the C reader and without: they must agree."""
    with llhttp_only():
        expected = run(feeds, limits, eof)
    got = run(feeds, limits, eof)
    assert got == expected, feeds
    return got


# -- pieces, good ones first and most often -------------------------------------------
GOOD_METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]
METHODS = [*GOOD_METHODS, b"CONNECT", b"PRI", b"get", b"FROB", b"PLAY", b"SOURCE", b"G\x00T", b""]
GOOD_TARGETS = [b"/", b"/a?b=c&d", b"/%7e/x.y", b"/a/../b;p", b"//x", b"/?", b"/~!$&'()*+,;=:@[]"]
TARGETS = [
    *GOOD_TARGETS,
    b"/a#f",
    b"/#",
    b"*",
    b"http://h/p",
    b"https://u@h/",
    b"h:80",
    b"/\x7f",
    b"/\x80",
    b"/a\tb",
    b"/a b",
    b"/" + b"x" * 300,
    b"",
    b"/\x00",
]
GOOD_VERSIONS = [b"HTTP/1.1", b"HTTP/1.0"]
VERSIONS = [
    *GOOD_VERSIONS,
    b"HTTP/1.2",
    b"HTTP/2.0",
    b"HTTP/0.9",
    b"http/1.1",
    b"HTTP/1.1 ",
    b"RTSP/1.0",
    b"ICE/1.0",
    b"HTTP/11",
    b"",
]
GOOD_NAMES = [b"Host", b"host", b"HOST", b"User-Agent", b"Accept", b"X-A", b"x", b"Cookie"]
NAMES = [
    *GOOD_NAMES,
    b"Content-Length",
    b"content-length",
    b"CONTENT-LENGTH",
    b"Transfer-Encoding",
    b"Connection",
    b"connection",
    b"Proxy-Connection",
    b"Upgrade",
    b"Expect",
    b"Keep-Alive",
    b"Range",
    b"Authorization",
    b"If-None-Match",
    b"",
    b"X A",
    b"X\x00",
    b"X\x7f",
    b"X\x80",
    b"X(",
    b"X\r",
    b" X",
    b"\tX",
    b"Connectionx",
    b"content-lengthx",
]
GOOD_COLONS = [b": ", b":", b":\t", b":  \t "]
COLONS = [*GOOD_COLONS, b" :", b"\t:", b"::", b""]
GOOD_VALUES = [b"x", b"example.test", b"a b", b"a\tb", b"a ", b"a \t", b"", b"\x80\xff", b"1.2.3.4"]
VALUES = [
    *GOOD_VALUES,
    b"\x00",
    b"a\x01b",
    b"a\x7fb",
    b"a\rb",
    b"a\nb",
    b"a\r",
    b"5",
    b"-1",
    b"5, 5",
    b"0x5",
    b"chunked",
    b"gzip, chunked",
    b"close",
    b"keep-alive",
    b"Upgrade",
    b"websocket",
    b"100-continue",
    b"bytes=0-1",
    b"exa mple",
    b"x" * 500,
]
GOOD_EOLS = [b"\r\n"]
EOLS = [*GOOD_EOLS, b"\n", b"\r", b"\r\r\n", b"\n\r", b""]
TAILS = [
    b"",
    b"",
    b"",
    b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    b"abc",
    b"\r\n",
    b"\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
]
# What may come in later feeds: another request of any framing, or junk.
LATER = [
    b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /3 HTTP/1.0\r\n\r\n",
    b"POST /4 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
    b"GET /6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /7 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\n",
    b"FROB /8 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n",
    b"junk\x00",
]


# Fields llhttp reads itself (and Expect and Host, which the callbacks read), with
# values either side reads: one of each goes into every head the fuzz test draws.
SPECIAL_LINES = [
    *(
        name + b": " + value + b"\r\n"
        for name in (b"Connection", b"connection", b"Proxy-Connection", b"PROXY-CONNECTION")
        for value in (b"close", b"keep-alive", b"Keep-Alive", b"upgrade", b"x, close")
    ),
    *(
        name + b": " + value + b"\r\n"
        for name in (b"Content-Length", b"content-length", b"CONTENT-LENGTH")
        for value in (b"0", b"5", b"-1", b"01", b"5, 5", b"")
    ),
    b"Transfer-Encoding: chunked\r\n",
    b"transfer-encoding: gzip\r\n",
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    b"Upgrade: h2c\r\n",
    b"Expect: 100-continue\r\n",
    b"Expect: x\r\n",
    b"Host: \r\n",
]
# Field lines: the clean ones, and the nasty ones (each clean but for one piece;
# the fields llhttp reads itself, with values it reads; odd lines).
GOOD_LINES = [n + c + v + b"\r\n" for n in GOOD_NAMES for c in GOOD_COLONS for v in GOOD_VALUES]
NASTY_LINES = [
    *(n + b": x\r\n" for n in NAMES),
    *(b"X-A" + c + b"x\r\n" for c in COLONS),
    *(b"X-A: " + v + b"\r\n" for v in VALUES),
    *(b"X-A: x" + e for e in EOLS),
    *SPECIAL_LINES,
    b" folded\r\n",
    b"\tfolded\r\n",
    b"\r\n",
    b"\n",
    b"X\r\n",
    b"X:\n",
]
SPACES = [b"  ", b"\t", b"", b"\x00", b"\r", b"\n"]
LEADS = [b"\r\n", b"\n", b" ", b"\t", b"\x00"]
# Bytes put anywhere into a head, one now and then.
NASTY_BYTES = [0, 1, 9, 10, 13, 32, 35, 58, 127, 128, 255]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    # A clean head (what the C reader takes, bar the limits and the callbacks'
    # checks) with a nasty piece or two in place of clean ones, anywhere (each
    # piece a slot of clean choices and every choice), and maybe a nasty byte.
    slots = [
        ([b""], LEADS),
        (GOOD_METHODS, METHODS),
        ([b" "], SPACES),
        (GOOD_TARGETS, TARGETS),
        ([b" "], SPACES),
        (GOOD_VERSIONS, VERSIONS),
        (GOOD_EOLS, EOLS),
    ]
    slots += [(GOOD_LINES, NASTY_LINES)] * draw(st.integers(0, 5))
    slots += [(GOOD_EOLS, EOLS), ([b""], TAILS)]
    nasty = draw(st.lists(st.integers(0, len(slots) - 1), max_size=2))
    head = bytearray().join(
        draw(st.sampled_from(every if at in nasty else good))
        for at, (good, every) in enumerate(slots)
    )
    if draw(st.booleans()):
        at = draw(st.integers(0, len(head)))
        head[at : at + draw(st.integers(0, 1))] = bytes((draw(st.sampled_from(NASTY_BYTES)),))
    return bytes(head)


@FUZZ
@given(
    first=heads(),
    at=st.integers(0, 1 << 16),
    line_at=st.integers(0, 16),
    later=st.lists(st.sampled_from(LATER) | heads(), max_size=2),
    limits=st.sampled_from(LIMITS),
    eof=st.booleans(),
)
def test_each_feed_one_head_reads_as_llhttp_reads_it(
    first: bytes, at: int, line_at: int, later: list[bytes], limits: dict[str, int], eof: bool
) -> None:
    # The common case: each request in a feed of its own (the C reader's only case).
    # The head drawn, and variants of it: each nasty byte put in (and in place of
    # the byte) at one place, each field llhttp reads itself put in at a line's
    # start, each method in place of its own: a one-byte, one-field or one-method
    # difference from a head the reader takes.
    assert READ is not None
    event(f"first feed read in C: {READ(first) is not None}")
    at %= len(first) + 1
    variants = [first]
    for byte in NASTY_BYTES:
        variants += [first[:at] + bytes((byte,)) + first[at + k :] for k in (0, 1)]
    starts = [found.end() for found in re.finditer(b"\r\n", first)] or [len(first)]
    pos = starts[line_at % len(starts)]
    variants += [first[:pos] + line + first[pos:] for line in SPECIAL_LINES]
    space = first.find(b" ")
    variants += [method + first[space:] for method in METHODS if space >= 0]
    for head in variants:
        both([head, *later], limits, eof)


@FUZZ
@given(
    stream=st.lists(heads() | st.sampled_from(LATER), min_size=1, max_size=4).map(b"".join),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
    limits=st.sampled_from(LIMITS),
)
def test_any_split_reads_as_llhttp_reads_it(
    stream: bytes, cuts: list[int], limits: dict[str, int]
) -> None:
    # Heads cut anywhere: a piece that happens to be one whole head (or not quite)
    # after a message boundary, pipelined heads, heads that end a feed.
    bounds = [0, *sorted(min(cut, len(stream)) for cut in cuts), len(stream)]
    both([stream[a:b] for a, b in pairwise(bounds)], limits)


@FUZZ
@given(data=st.binary(max_size=200), limits=st.sampled_from(LIMITS))
def test_random_bytes_read_as_llhttp_reads_them(data: bytes, limits: dict[str, int]) -> None:
    both([data], limits)
    both([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", data], limits)


# -- what the reader takes and what it leaves to llhttp --------------------------------

TAKEN = [
    # What the benchmarks send, and a browser-like head.
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:22001\r\n\r\n",
    b"GET /1k.bin HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0 (X11)\r\n"
    b"Accept: text/html,*/*;q=0.8\r\nAccept-Language: en\r\nAccept-Encoding: gzip, br\r\n"
    b'Cookie: a=b; c=d\r\nIf-None-Match: "x"\r\nReferer: http://h/\r\n\r\n',
    *(m + b" /m HTTP/1.1\r\nHost: x\r\n\r\n" for m in GOOD_METHODS),
    b"GET /a?b HTTP/1.0\r\n\r\n",  # HTTP/1.0: not kept alive, parsing ends
    b"GET / HTTP/1.1\r\nHost: x\r\nX:\r\nY: \t \r\nZ: a \t\r\n\r\n",  # empty values, OWS
    b"GET / HTTP/1.1\r\nHost: x\r\nX: \x80\xff\r\n\r\n",  # obs-text
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n",
    # Read in C, refused by the callbacks' own checks.
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: exa mple\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: nothing\r\n\r\n",
    b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # 414
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 101 + b"\r\n",  # 431
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 66000 + b"\r\n\r\n",  # over a slice: llhttp
]
LEFT = [
    b"GET / HTTP/1.1\nHost: x\r\n\r\n",  # bare LF
    b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\n",
    b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",  # CR inside a value
    b"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n",  # NUL, other CTLs, DEL
    b"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",  # space before the colon
    b"GET / HTTP/1.1\r\n: x\r\n\r\n",  # empty name
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",  # framing fields
    b"GET / HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nPROXY-CONNECTION: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
    b"GET http://h/ HTTP/1.1\r\nHost: x\r\n\r\n",  # other target forms
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",  # other versions
    b"GET / HTTP/2.0\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",  # two spaces
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a CRLF first
    b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n",  # other methods
    b"FROB / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n",  # not all of it yet
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",  # pipelined
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 129 + b"\r\n",  # many fields
]


@pytest.mark.parametrize("head", TAKEN)
def test_plain_heads_are_read_in_c(head: bytes) -> None:
    assert READ is not None
    if len(head) <= h1._SLICE:
        parsed = READ(head)
        assert parsed is not None
        assert parsed[0] == head.split(b" ")[0]
    for limits in LIMITS:
        both([head, *LATER], limits)
        both([head], limits, eof=False)


@pytest.mark.parametrize("head", LEFT)
def test_other_heads_are_left_to_llhttp(head: bytes) -> None:
    assert READ is not None
    assert READ(head) is None
    for limits in LIMITS:
        both([head, *LATER], limits)


def test_a_head_read_in_c_leaves_llhttp_ready_for_the_next_feed() -> None:
    conn = HTTP1Connection()
    first = conn.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in first] == [RequestHead, EndOfMessage]
    # llhttp never saw it: the next message, one llhttp reads, starts afresh.
    second = conn.feed(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
    assert isinstance(second[0], RequestHead) and second[0].target == b"/b"
    assert second[1:] == [Body(b"ok"), EndOfMessage()]
    assert conn.keep_alive and not conn.ignored


@pytest.mark.parametrize(
    "head",
    [b"GET / HTTP/1.0\r\n\r\n", b"HEAD /x HTTP/1.0\r\nHost: x\r\nAccept: */*\r\n\r\n"],
)
def test_an_http10_head_read_in_c_ends_parsing(head: bytes) -> None:
    assert READ is not None and READ(head) is not None
    conn = HTTP1Connection()
    events = conn.feed(head)
    assert isinstance(events[0], RequestHead) and not events[0].keep_alive
    assert events[1:] == [EndOfMessage()]
    # RFC 9112 9.6: nothing after a request that closes is read.
    assert conn.feed(b"GET /more HTTP/1.1\r\nHost: x\r\n\r\n") == []
    assert conn.ignored


def test_a_refusal_from_the_callbacks_checks_ends_the_connection() -> None:
    conn = HTTP1Connection()
    events = conn.feed(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert events == [ProtocolError(400, "more than one Host header")]
    assert conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []


# Every byte in every place of a plain head where the grammar decides on a byte: in
# the method, the target, the version, a field's name, before and after its colon,
# inside, at the start and at the end of its value, and at the head's end.
EVERY_PLACE = [
    (b"G", b"T / HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET /a", b"b HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET /", b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET / HTTP/1.", b"\r\nHost: x\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHo", b"st: x\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHost", b": x\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHost:", b"x\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a", b"b\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ", b"\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a", b"\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", b"X: y\r\n\r\n"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r", b"\n"),
]


@pytest.mark.parametrize(("before", "after"), EVERY_PLACE)
def test_every_byte_in_every_place_reads_as_llhttp_reads_it(before: bytes, after: bytes) -> None:
    # Exhaustive where the fuzz tests sample: the reader's byte classes (target,
    # token, value) and its fixed bytes against llhttp's, one byte at a time, put
    # in and put in place of the byte after it.
    for byte in range(256):
        for head in (before + bytes((byte,)) + after, before + bytes((byte,)) + after[1:]):
            both([head, *LATER[:2]], {})
