"""Gateway response heads: WSGI status strings and CGI header lines, byte for byte."""

from __future__ import annotations

import itertools

import pytest

from colonnade.core import cgihead
from colonnade.core.cgihead import MAX_HEAD, CgiHead, parse_head, parse_status, split_head
from colonnade.core.request import Headers

# -- status strings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("200 OK", (200, None)),
        ("404 Not Found", (404, None)),
        ("418 I'm a Teapot", (418, None)),
        ("299 Quite Fine", (299, b"Quite Fine")),
        ("404 not found", (404, b"not found")),  # not the standard phrase: kept as sent
        ("200 Caf\u00e9", (200, b"Caf\xe9")),
        ("100 Continue", (100, None)),
        ("599 ", (599, b"")),
        ("204", (204, b"")),
    ],
)
def test_parse_status(status: str, expected: tuple[int, bytes | None]) -> None:
    assert parse_status(status) == expected


@pytest.mark.parametrize(
    "status", ["", "OK", "2000 nope", "20 OK", "099 Low", "abc Letters", " 200 OK", "200OK"]
)
def test_parse_status_refuses(status: str) -> None:
    with pytest.raises(ValueError):
        parse_status(status)


# -- where the head ends -------------------------------------------------------------------

SPLITS: list[tuple[bytes, tuple[bytes, bytes] | None]] = [
    (b"Content-Type: text/plain\r\n\r\nbody", (b"Content-Type: text/plain\r\n", b"body")),
    (b"Content-Type: text/plain\n\nbody", (b"Content-Type: text/plain\n", b"body")),
    (b"A: 1\nB: 2\r\n\r\n", (b"A: 1\nB: 2\r\n", b"")),  # mixed line ends
    (b"A: 1\r\n\nrest\r\n\r\n", (b"A: 1\r\n", b"rest\r\n\r\n")),  # the first blank line
    (b"A: 1\n\r\nrest\n\n", (b"A: 1\n", b"rest\n\n")),
    (b"\r\nbody", (b"", b"body")),  # no header at all
    (b"\nbody", (b"", b"body")),
    (b"Content-Type: text/plain\r\n", None),  # the blank line has not come yet
    (b"Content-Type: text/plain\r\n\r", None),
    (b"", None),
]


@pytest.mark.parametrize(("data", "expected"), SPLITS)
def test_split_head(data: bytes, expected: tuple[bytes, bytes] | None) -> None:
    assert split_head(data) == expected


def test_split_head_is_bounded() -> None:
    line = b"X-Filler: " + b"a" * 100 + b"\r\n"
    waiting = line * (MAX_HEAD // len(line))
    assert split_head(waiting) is None
    with pytest.raises(ValueError, match="larger than"):
        split_head(waiting + line * 2)
    with pytest.raises(ValueError, match="larger than"):
        split_head(waiting + line * 2 + b"\r\nbody")
    lines = b"A: 1\r\n" * 16  # 96 bytes
    assert split_head(lines, limit=100) is None
    assert split_head(lines + b"\r\n", limit=100) == (lines, b"")
    with pytest.raises(ValueError):
        split_head(lines + b"A: 1\r\n\r\n", limit=100)


# -- header lines --------------------------------------------------------------------------

HEADS: list[tuple[bytes, CgiHead]] = [
    (b"", CgiHead(200, None, [])),
    (
        b"Content-Type: text/html\r\n",
        CgiHead(200, None, [(b"content-type", b"text/html")]),
    ),
    (
        b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n",
        CgiHead(404, None, [(b"content-type", b"text/plain")]),
    ),
    (b"status:201 Made\n", CgiHead(201, b"Made", [])),
    (b"STATUS:   302 Found  \n", CgiHead(302, None, [])),
    (
        b"Set-Cookie: a=1\nSet-Cookie: b=2\nX-Empty:\n",
        CgiHead(200, None, [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-empty", b"")]),
    ),
    (b"X-Spaces: \t a  b \t\r\n", CgiHead(200, None, [(b"x-spaces", b"a  b")])),
    (b"X-Colon: a: b\n", CgiHead(200, None, [(b"x-colon", b"a: b")])),
    (b"X-Latin: caf\xe9\n", CgiHead(200, None, [(b"x-latin", b"caf\xe9")])),
    (
        b"Location: /elsewhere\r\n",  # not interpreted (yet): passed on as a header
        CgiHead(200, None, [(b"location", b"/elsewhere")]),
    ),
]


@pytest.mark.parametrize(("block", "expected"), HEADS)
def test_parse_head(block: bytes, expected: CgiHead) -> None:
    assert parse_head(block) == expected


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"no colon here\n", "without a colon"),
        (b": empty name\n", "invalid header name"),
        (b"Bad Name: x\n", "invalid header name"),
        (b"Bad\x00Name: x\n", "invalid header name"),
        (b"X-A : spaced\n", "invalid header name"),
        (b"X-A: one\n  folded\n", "obs-fold"),
        (b"X-A: one\n\tfolded\n", "obs-fold"),
        (b"X-A: a\rb\n", "CR, LF or NUL"),
        (b"X-A: a\x00b\n", "CR, LF or NUL"),
        (b"Status: 200 OK\nStatus: 404 Not Found\n", "twice"),
        (b"Status: OK\n", "invalid status"),
        (b"Status: 20 OK\n", "invalid status"),
        (b"Status:\n", "invalid status"),
    ],
)
def test_parse_head_refuses(block: bytes, message: str) -> None:
    for _ in range(2):  # a refused line is refused again: never kept as read
        with pytest.raises(ValueError, match=message):
            parse_head(block)


def test_lines_read_before_read_the_same() -> None:
    # Repeated lines come from what was kept: the same result every time, with
    # the Status line still counted once per head.
    block = b"Status: 404 Not Found\r\nX-Powered-By: PHP/8.2\r\nX-A: 1\r\nX-A: 1\r\n"
    first = parse_head(block)
    assert first == CgiHead(
        404, None, [(b"x-powered-by", b"PHP/8.2"), (b"x-a", b"1"), (b"x-a", b"1")]
    )
    assert parse_head(block) == first
    with pytest.raises(ValueError, match="twice"):
        parse_head(block + b"Status: 404 Not Found\r\n")


def test_lines_kept_are_bounded() -> None:
    for i in range(2000):
        parse_head(b"Set-Cookie: id=%d\r\nX-Long: %s\r\n" % (i, b"v" * 300))
    assert len(cgihead._LINES) <= 512
    assert not any(len(line) > 256 for line in cgihead._LINES)


def test_a_whole_response_from_bytes() -> None:
    data = b"Status: 206 Partial\r\nContent-Range: bytes 0-3/10\r\n\r\nbody"
    found = split_head(data)
    assert found is not None
    block, body = found
    head = parse_head(block)
    expected: Headers = [(b"content-range", b"bytes 0-3/10")]
    assert (head.status, head.reason, head.headers, body) == (206, b"Partial", expected, b"body")


# -- parse_response: RFC 3875 6.2's reading of Location -----------------------------------


def test_a_url_path_without_status_is_a_local_redirect() -> None:
    parsed = cgihead.parse_response(b"Location: /next?x=1\n")
    assert parsed.local_redirect == b"/next?x=1"


def test_an_absolute_uri_without_status_is_a_302() -> None:
    parsed = cgihead.parse_response(b"Location: https://a.test/\nContent-Type: text/plain\n")
    assert parsed.local_redirect is None
    assert parsed.head.status == 302
    assert (b"location", b"https://a.test/") in parsed.head.headers


def test_a_network_path_is_no_local_redirect() -> None:
    parsed = cgihead.parse_response(b"Location: //evil.test/x\n")
    assert parsed.local_redirect is None
    assert parsed.head.status == 302


def test_with_status_location_is_just_a_header() -> None:
    parsed = cgihead.parse_response(b"Status: 301 Moved\nLocation: /new\n")
    assert parsed.local_redirect is None
    assert parsed.head.status == 301
    parsed = cgihead.parse_response(b"Status: 200 OK\nLocation: /new\n")
    assert (parsed.local_redirect, parsed.head.status) == (None, 200)


def test_no_location_is_a_document() -> None:
    parsed = cgihead.parse_response(b"Content-Type: text/plain\n")
    assert (parsed.local_redirect, parsed.head.status) == (None, 200)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([(b"content-type", b"text/plain")], None),
        ([(b"content-length", b"0")], 0),
        ([(b"content-length", b"12"), (b"content-length", b"12")], 12),
        ([(b"content-length", b"9" * 18)], 10**18 - 1),
    ],
)
def test_content_length(headers: Headers, expected: int | None) -> None:
    assert cgihead.content_length(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"")],
        [(b"content-length", b"-1")],
        [(b"content-length", b"1 2")],
        [(b"content-length", b"\xd9\xa1")],  # no ASCII digit
        [(b"content-length", b"1"), (b"content-length", b"2")],
        # Thousands of digits (found by fuzzing: int() raised its own ValueError
        # outside the gateways' error handling, a 500 instead of a 502).
        [(b"content-length", b"1" * 5000)],
        [(b"content-length", b"1" * 19)],
    ],
)
def test_content_length_refuses(headers: Headers) -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        cgihead.content_length(headers)


def _head_end_spec(data: bytes) -> tuple[int, int] | None:
    # The head ends at the first blank line, bare (LF LF) or with CR (LF CR LF),
    # or at once when the data starts with one.
    if data.startswith(b"\n"):
        return 0, 1
    if data.startswith(b"\r\n"):
        return 0, 2
    i = data.find(b"\n\n")
    j = data.find(b"\n\r\n")
    if i < 0 and j < 0:
        return None
    if j < 0 or 0 <= i < j:
        return i + 1, i + 2
    return j + 1, j + 3


def test_the_head_ends_where_the_first_blank_line_is_for_every_short_input() -> None:
    # Every string of CR, LF and one other byte up to 8 long: split_head agrees
    # with the plain reading of where the head ends.
    for length in range(9):
        for chars in itertools.product(b"\r\na", repeat=length):
            data = bytes(chars)
            end = _head_end_spec(data)
            assert cgihead.split_head(data) == (
                None if end is None else (data[: end[0]], data[end[1] :])
            ), data
