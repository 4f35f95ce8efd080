"""The parser's shortcuts give what the long way gives: the version read from the
feed's bytes (else asked of httptools), header names lowered through a cache, a
connection's Host checked once."""

from __future__ import annotations

import pytest

from colonnade.http import EndOfMessage, HTTP1Connection, ProtocolError, RequestHead


def heads(conn: HTTP1Connection, *feeds: bytes) -> list[RequestHead | ProtocolError]:
    out: list[RequestHead | ProtocolError] = []
    for data in feeds:
        for event in conn.feed(data):
            if isinstance(event, RequestHead | ProtocolError):
                out.append(event)
            else:
                assert isinstance(event, EndOfMessage)
    return out


@pytest.mark.parametrize(
    "feeds",
    [
        # Each first in its feed: read from the bytes.
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /q?x=HTTP/1.0 HTTP/1.0\r\n\r\n"),
        # Pipelined in one feed: the second is asked of httptools.
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /q?x=HTTP/1.0 HTTP/1.0\r\n\r\n",),
        # A CRLF llhttp skips before the second request: the bytes are not read.
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\nGET /q?x=HTTP/1.0 HTTP/1.0\r\n\r\n"),
        # A request line split over feeds.
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /q?x=HTTP/1.0 HT", b"TP/1.0\r\n\r\n"),
    ],
)
def test_versions(feeds: tuple[bytes, ...]) -> None:
    found = heads(HTTP1Connection(), *feeds)
    assert [h.version for h in found if isinstance(h, RequestHead)] == [b"1.1", b"1.0"]
    second = found[1]
    assert isinstance(second, RequestHead)
    assert (second.path, second.query, second.keep_alive) == (b"/q", b"x=HTTP/1.0", False)


def test_unknown_method_and_unsupported_version_are_still_seen() -> None:
    found = heads(HTTP1Connection(), b"FROB /x HTTP/1.0\r\n\r\n")
    assert isinstance(found[0], RequestHead)
    assert (found[0].method, found[0].version) == (b"FROB", b"1.0")
    refused = heads(HTTP1Connection(), b"GET / HTTP/1.2\r\nHost: a\r\n\r\n")
    assert isinstance(refused[0], ProtocolError) and refused[0].status == 505


def test_header_names_lowered_whatever_the_spelling() -> None:
    conn = HTTP1Connection()
    found = heads(
        conn,
        b"GET / HTTP/1.1\r\nHOST: a\r\nX-Odd-Name: 1 \r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nx-odd-name:\t2\t\r\nX-ODD-NAME: 3\r\n\r\n",
    )
    assert [h.headers for h in found if isinstance(h, RequestHead)] == [
        [(b"host", b"a"), (b"x-odd-name", b"1")],
        [(b"host", b"a"), (b"x-odd-name", b"2"), (b"x-odd-name", b"3")],
    ]


@pytest.mark.parametrize("order", ["good-first", "bad-first"])
def test_host_checked_on_every_request_of_a_connection(order: str) -> None:
    good = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"
    bad = b"GET / HTTP/1.1\r\nHost: exa mple.test\r\n\r\n"
    conn = HTTP1Connection()
    if order == "good-first":
        found = heads(conn, good, good, bad)
        assert [type(h) for h in found] == [RequestHead, RequestHead, ProtocolError]
    else:
        found = heads(conn, bad)
        assert [type(h) for h in found] == [ProtocolError]
    error = found[-1]
    assert isinstance(error, ProtocolError) and error.status == 400
