"""Every way a request is refused: raw bytes in, the status of the ProtocolError out.

Each case is also fed one byte at a time (the parser must reach the same verdict
whatever the packet boundaries), and after the error the connection is dead.
"""

from __future__ import annotations

from typing import Any

import pytest

from colonnade.http import EndOfMessage, HTTP1Connection, ProtocolError, RequestHead

H = b"Host: a\r\n"
POST = b"POST / HTTP/1.1\r\n" + H
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
SMALL = {"max_header_size": 256}

# (id, request bytes, expected status, HTTP1Connection keyword arguments)
CASES: list[tuple[str, bytes, int, dict[str, Any]]] = [
    # Host (RFC 9112 3.2)
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400, {}),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, {}),
    ("host-with-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, {}),
    ("host-with-slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, {}),
    # Content-Length
    ("cl-and-te", POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, {}),
    ("te-and-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, {}),
    ("cl-letters", POST + b"Content-Length: abc\r\n\r\n", 400, {}),
    ("cl-plus", POST + b"Content-Length: +5\r\n\r\nhello", 400, {}),
    ("cl-minus", POST + b"Content-Length: -5\r\n\r\n", 400, {}),
    ("cl-empty", POST + b"Content-Length: \r\n\r\n", 400, {}),
    ("cl-hex", POST + b"Content-Length: 0x5\r\n\r\n", 400, {}),
    ("cl-inner-space", POST + b"Content-Length: 1 2\r\n\r\n", 400, {}),
    ("cl-overflow", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", 400, {}),
    ("cl-list", POST + b"Content-Length: 5, 5\r\n\r\nhello", 400, {}),
    ("cl-twice-same", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, {}),
    ("cl-twice-differ", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400, {}),
    # header syntax
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, {}),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, {}),
    ("tab-before-colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, {}),
    ("name-at-sign", b"GET / HTTP/1.1\r\nHost: a\r\nX@Y: 1\r\n\r\n", 400, {}),
    ("name-non-ascii", b"GET / HTTP/1.1\r\nHost: a\r\nX\xffY: 1\r\n\r\n", 400, {}),
    ("name-empty", b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400, {}),
    ("no-colon", b"GET / HTTP/1.1\r\nHost: a\r\nfoo\r\n\r\n", 400, {}),
    ("value-nul", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, {}),
    ("value-ctl", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400, {}),
    ("value-del", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400, {}),
    ("value-bare-cr", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, {}),
    ("value-bare-lf", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb: c\r\n\r\n", 400, {}),
    ("space-before-first-header", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, {}),
    # Transfer-Encoding (RFC 9112 6.1)
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, {}),
    ("te-identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 501, {}),
    ("te-unknown", POST + b"Transfer-Encoding: foo\r\n\r\n", 501, {}),
    (
        "te-two-fields",
        POST + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
        {},
    ),
    ("te-chunked-not-last", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400, {}),
    ("te-chunked-twice", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400, {}),
    ("te-empty", POST + b"Transfer-Encoding: \r\n\r\n", 400, {}),
    ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, {}),
    # limits
    (
        "target-too-long",
        b"GET /" + b"a" * 64 + b" HTTP/1.1\r\n" + H + b"\r\n",
        414,
        {"max_target": 64},
    ),
    (
        "headers-too-large",
        b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 300 + b"\r\n\r\n",
        431,
        SMALL,
    ),
    ("many-small-headers", b"GET / HTTP/1.1\r\n" + H + b"X: aaaa\r\n" * 40 + b"\r\n", 431, SMALL),
    (
        "too-many-headers",
        b"GET / HTTP/1.1\r\n" + H + b"X: 1\r\n" * 5 + b"\r\n",
        431,
        {"max_headers": 5},
    ),
    ("trailers-too-large", CHUNKED + b"0\r\nT: " + b"a" * 300 + b"\r\n\r\n", 431, SMALL),
    # versions
    ("http-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, {}),
    ("http-0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505, {}),
    ("http-1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505, {}),
    ("http-3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505, {}),
    ("no-version", b"GET /\r\n" + H + b"\r\n", 505, {}),  # llhttp reads it as HTTP/0.9
    ("version-letters", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400, {}),
    ("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400, {}),
    # request line; any token is a method (RFC 9110 9.1), nothing else is
    ("method-bad-char", b"G@T / HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-unknown-bad-char", b"FROB(1) / HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-nul", b"FROB\x00 / HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-non-ascii", b"FR\xc3\x96B / HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-tab", b"FROB\t/ HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-known-then-bad-char", b"GET\x01 / HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-empty", b" / HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-then-crlf", b"FROBNICATE\r\n" + H + b"\r\n", 400, {}),
    ("method-too-long", b"F" * 65 + b" / HTTP/1.1\r\n" + H + b"\r\n", 501, {}),
    ("method-too-long-bad-char-after", b"F" * 65 + b"\x00 / HTTP/1.1\r\n\r\n", 501, {}),
    ("method-unknown-rtsp", b"FROB / RTSP/1.0\r\n" + H + b"\r\n", 400, {}),
    ("method-unknown-asterisk", b"FROB * HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-unknown-connect-form", b"FROB a:80 HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("method-unknown-http-2.0", b"FROB / HTTP/2.0\r\n" + H + b"\r\n", 505, {}),
    (
        "method-unknown-chunked-upgrade",
        b"FROB / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\nUpgrade: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        {},
    ),
    ("rtsp-method", b"SETUP / RTSP/1.0\r\n" + H + b"\r\n", 400, {}),
    ("ice-source", b"SOURCE / ICE/1.0\r\n" + H + b"\r\n", 400, {}),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("ctl-in-target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("space-after-version", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400, {}),
    ("lf-line-ends", b"GET / HTTP/1.1\nHost: a\n\n", 400, {}),
    ("method-only", b"GET\r\n\r\n", 400, {}),
    # request-target forms (RFC 9112 3.2)
    ("fragment", b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("relative-target", b"GET a HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("authority-form-get", b"GET a:80 HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400, {}),
    ("asterisk-not-options", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("absolute-userinfo", b"GET http://u:p@a/ HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("absolute-ftp", b"GET ftp://a/x HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    ("absolute-fragment", b"GET http://a/x#y HTTP/1.1\r\n" + H + b"\r\n", 400, {}),
    # chunked framing
    ("chunk-size-letters", CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-size-negative", CHUNKED + b"-3\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-size-empty", CHUNKED + b"\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-size-space", CHUNKED + b"3 \r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-size-overflow", CHUNKED + b"ffffffffffffffffff\r\n", 400, {}),
    ("chunk-size-lf", CHUNKED + b"3\nabc\n0\n\n", 400, {}),
    ("chunk-ext-bad-name", CHUNKED + b"3;@\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-no-name", CHUNKED + b"3;\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-empty-name", CHUNKED + b"3;=b\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-no-value", CHUNKED + b"3;a=\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-space-in-value", CHUNKED + b"3;a=b c\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-trailing-semicolon", CHUNKED + b"3;a=b;\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-trailing-space", CHUNKED + b"3;a=b \r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-open-quote", CHUNKED + b'3;a="b\r\nabc\r\n0\r\n\r\n', 400, {}),
    ("chunk-ext-nul", CHUNKED + b"3;a=\x00\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-comma", CHUNKED + b"3,a=b\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-too-long", CHUNKED + b"3;a=" + b"b" * 4093 + b"\r\nabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-ext-endless", CHUNKED + b"3;a=" + b"b" * 5000, 400, {}),
    ("last-chunk-ext-bad", CHUNKED + b"0;a b\r\n\r\n", 400, {}),
    ("chunk-ext-ctl-quoted", CHUNKED + b'3;a="\x01"\r\nabc\r\n0\r\n\r\n', 400, {}),
    ("chunk-ext-bare-cr", CHUNKED + b"3;a\rabc\r\n0\r\n\r\n", 400, {}),
    ("chunk-data-too-long", CHUNKED + b"3\r\nabcX\r\n0\r\n\r\n", 400, {}),
    ("trailer-bad-name", CHUNKED + b"0\r\nX : y\r\n\r\n", 400, {}),
    ("trailer-no-colon", CHUNKED + b"0\r\nXy\r\n\r\n", 400, {}),
    ("trailer-obs-fold", CHUNKED + b"0\r\nX: a\r\n b\r\n\r\n", 400, {}),
    ("trailer-ctl", CHUNKED + b"0\r\nX: a\x01\r\n\r\n", 400, {}),
    ("trailer-bare-lf", CHUNKED + b"0\r\nX: a\n\r\n", 400, {}),
    ("trailer-endless", CHUNKED + b"0\r\nX: " + b"a" * 300, 431, SMALL),
    ("chunk-data-bare-lf", CHUNKED + b"3\r\nabc\n0\r\n\r\n", 400, {}),
    # Expect (RFC 9110 10.1.1)
    ("expect-other", b"GET / HTTP/1.1\r\n" + H + b"Expect: something\r\n\r\n", 417, {}),
    ("expect-list", b"GET / HTTP/1.1\r\n" + H + b"Expect: 100-continue, x\r\n\r\n", 417, {}),
]


def _check(conn: HTTP1Connection, events: list[object], status: int) -> None:
    assert events, "no ProtocolError"
    error = events[-1]
    assert isinstance(error, ProtocolError)
    assert error.status == status, error.reason
    # Only whole requests may come before the error (the bad one never yields a head).
    assert not any(isinstance(e, ProtocolError) for e in events[:-1])
    # The connection is dead from now on.
    assert conn.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []
    assert conn.feed_eof() == []
    response = conn.error_response(error.status, error.reason)
    assert response.startswith(b"HTTP/1.1 %d " % status)
    assert b"\r\nconnection: close\r\n" in response
    assert not conn.keep_alive


@pytest.mark.parametrize(
    ("data", "status", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rejected_whole(data: bytes, status: int, kwargs: dict[str, Any]) -> None:
    conn = HTTP1Connection(**kwargs)
    events: list[object] = list(conn.feed(data))
    if not any(isinstance(e, ProtocolError) for e in events):
        events += conn.feed_eof()
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert heads == [] or data.startswith(CHUNKED)  # body errors come after the head
    _check(conn, events, status)


@pytest.mark.parametrize(
    ("data", "status", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rejected_byte_by_byte(data: bytes, status: int, kwargs: dict[str, Any]) -> None:
    conn = HTTP1Connection(**kwargs)
    events: list[object] = []
    for i in range(len(data)):
        events += conn.feed(data[i : i + 1])
    if not any(isinstance(e, ProtocolError) for e in events):
        events += conn.feed_eof()
    _check(conn, events, status)


def test_endless_header_line_is_bounded() -> None:
    # httptools buffers a header line until it ends; the stall guard caps it.
    conn = HTTP1Connection(max_target=64, max_header_size=1024)
    assert conn.feed(b"GET / HTTP/1.1\r\nX: ") == []
    events: list[object] = []
    for _ in range(100):
        events += conn.feed(b"a" * 4096)
        if events:
            break
    assert events == [ProtocolError(431, "header section too large")]


def test_error_after_good_pipelined_request() -> None:
    conn = HTTP1Connection()
    events = conn.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
    assert [type(e) for e in events] == [RequestHead, EndOfMessage, ProtocolError]
    head = events[0]
    assert isinstance(head, RequestHead)
    # The good request is still answered on a live connection, then the error closes it.
    first = conn.start_response(head, 200, [], content_length=0)
    assert b"connection:" not in first
    assert conn.keep_alive
    assert b"connection: close" in conn.error_response(400, "missing Host header")
    assert not conn.keep_alive


@pytest.mark.parametrize(
    "data",
    [
        b"G",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel",
        CHUNKED + b"3\r\nabc\r\n",
        CHUNKED + b"0\r\nTrailer: x\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2",
    ],
)
def test_eof_mid_request(data: bytes) -> None:
    conn = HTTP1Connection()
    conn.feed(data)
    assert conn.feed_eof() == [ProtocolError(400, "connection closed in the middle of a request")]
    assert conn.feed(b"more") == []
