"""A feed that repeats the last one llhttp read whole as one request without a
body is not parsed again (``HTTP1Connection._repeat``): whatever the bytes, the
events and what follows them are exactly what llhttp's way gives. llhttp's way is
forced by feeding the same bytes in two pieces (only a whole equal feed repeats)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonnade.http import Event, HTTP1Connection, RequestHead

NEXT = b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n"
Seen = tuple[list[Event], list[Event], list[Event], bool]


def by_llhttp(data: bytes, **limits: int) -> Seen:
    conn = HTTP1Connection(**limits)
    first = conn.feed(data)
    again = conn.feed(data[:1]) + conn.feed(data[1:])
    return first, again, conn.feed(NEXT), conn.keep_alive


def repeated(data: bytes, **limits: int) -> Seen:
    conn = HTTP1Connection(**limits)
    first = conn.feed(data)
    again = conn.feed(data)
    return first, again, conn.feed(NEXT), conn.keep_alive


# Heads llhttp reads, then the same bytes again: repeated or not, as they come.
HEADS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /a/b?c=d&e HTTP/1.1\r\nHost: x:80\r\nAccept: */*\r\nUser-Agent: t/1\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Pad: \t v \t \r\n\r\n",
    b"GET /%41?q=%20 HTTP/1.1\r\nhost: x\r\nCookie: a=b; c=d\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # no Host: 400
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",  # two: 400
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",  # invalid Host: 400
    b"GET /#f HTTP/1.1\r\nHost: x\r\n\r\n",  # fragment: 400
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n",  # bare CR
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\nc\r\n\r\n",  # bare LF
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nA: \xff\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",  # two heads
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n",  # a CRLF llhttp skips after it
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGE",  # the next one begun
    b"FROB /f HTTP/1.1\r\nHost: x\r\n\r\n",  # a method llhttp does not know
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("data", HEADS)
def test_same_as_llhttp(data: bytes) -> None:
    assert repeated(data) == by_llhttp(data)


@pytest.mark.parametrize(
    "limits",
    [{"max_target": 3}, {"max_headers": 1}, {"max_header_size": 30}],
)
def test_limits_same_as_llhttp(limits: dict[str, int]) -> None:
    data = b"GET /abcd HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    assert repeated(data, **limits) == by_llhttp(data, **limits)


NAMES = [b"Host", b"host", b"HOST", b"Accept", b"X-A", b"Connection", b"Upgrade", b"Expect"]
NAMES += [b"Content-Length", b"Transfer-Encoding", b"Proxy-Connection", b"A B", b"", b"a\x7f"]
VALUES = st.lists(st.sampled_from(list(b' \t:;,=/x09aZ-"\x7f\x80\x00\r\n')), max_size=6).map(
    bytes
) | st.sampled_from([b"x", b" close", b"keep-alive ", b"Close", b"upgrade", b"0", b"a b"])
TARGETS = st.lists(
    st.sampled_from(list(b"/?#%aZ09-._~!$&'()*+,;=:@ \"<>\\^`{|}\t\x7f\x80\r\n")), max_size=8
)


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"get", b"POST"]))
    target = b"/" + bytes(draw(TARGETS))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2"]))
    fields = draw(st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=4))
    lines = [method + b" " + target + b" " + version]
    lines += [name + b":" + value for name, value in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heads())
def test_any_head_same_as_llhttp(data: bytes) -> None:
    assert repeated(data) == by_llhttp(data)


def test_a_repeated_head_is_a_new_head_with_headers_of_its_own() -> None:
    conn = HTTP1Connection()
    data = HEADS[1]
    first = conn.feed(data)[0]
    again = conn.feed(data)[0]
    assert isinstance(first, RequestHead) and isinstance(again, RequestHead)
    assert again == first and again is not first
    first.headers.append((b"x-added", b"by a module"))
    assert again.headers != first.headers
    assert conn.feed(data)[0] == again


def test_a_released_connection_is_not_fed_from_its_memory() -> None:
    conn = HTTP1Connection()
    conn.feed(HEADS[0])
    conn.release()
    with pytest.raises(AttributeError):
        conn.feed(HEADS[0])
