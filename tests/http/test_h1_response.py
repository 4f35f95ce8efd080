"""Response framing: what start_response / body / end_response put on the wire."""

from __future__ import annotations

import re
from typing import Any

import pytest

from colonnade.http import Body, HTTP1Connection, RequestHead, error_response, reason_phrase


def request(data: bytes, **kwargs: object) -> tuple[HTTP1Connection, RequestHead]:
    conn = HTTP1Connection(**kwargs)  # type: ignore[arg-type]
    head = conn.feed(data)[0]
    assert isinstance(head, RequestHead)
    return conn, head


GET11 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
GET10 = b"GET / HTTP/1.0\r\n\r\n"
GET10_KA = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
HEAD11 = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
CLOSE11 = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
DATE = re.compile(rb"date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


def fields(head_bytes: bytes) -> dict[bytes, bytes]:
    assert head_bytes.endswith(b"\r\n\r\n")
    lines = head_bytes[:-4].split(b"\r\n")[1:]
    return {k.lower(): v for k, v in (line.split(b": ", 1) for line in lines)}


# (id, request, status, content_length, body written, expected framing headers,
#  expected bytes on the wire after the head, connection kept alive)
CASES = [
    ("length", GET11, 200, 5, b"hello", {b"content-length": b"5"}, b"hello", True),
    (
        "chunked",
        GET11,
        200,
        None,
        b"hello",
        {b"transfer-encoding": b"chunked"},
        b"5\r\nhello\r\n0\r\n\r\n",
        True,
    ),
    (
        "http10-close-delimited",
        GET10,
        200,
        None,
        b"hello",
        {b"connection": b"close"},
        b"hello",
        False,
    ),
    (
        "http10-length",
        GET10,
        200,
        5,
        b"hello",
        {b"content-length": b"5", b"connection": b"close"},
        b"hello",
        False,
    ),
    (
        "http10-keep-alive",
        GET10_KA,
        200,
        5,
        b"hello",
        {b"content-length": b"5", b"connection": b"keep-alive"},
        b"hello",
        True,
    ),
    (
        "http10-keep-alive-no-length",
        GET10_KA,
        200,
        None,
        b"hello",
        {b"connection": b"close"},
        b"hello",
        False,
    ),
    ("head-with-length", HEAD11, 200, 1234, b"ignored", {b"content-length": b"1234"}, b"", True),
    ("head-without-length", HEAD11, 200, None, b"ignored", {}, b"", True),
    ("no-content", GET11, 204, 5, b"ignored", {}, b"", True),
    ("not-modified", GET11, 304, None, b"ignored", {}, b"", True),
    ("not-modified-with-length", GET11, 304, 99, b"", {b"content-length": b"99"}, b"", True),
    (
        "client-close",
        CLOSE11,
        200,
        2,
        b"ok",
        {b"content-length": b"2", b"connection": b"close"},
        b"ok",
        False,
    ),
    (
        "empty-chunked",
        GET11,
        500,
        None,
        b"",
        {b"transfer-encoding": b"chunked"},
        b"0\r\n\r\n",
        True,
    ),
]


@pytest.mark.parametrize(
    ("data", "status", "length", "body", "framing", "wire", "alive"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_framing(
    data: bytes,
    status: int,
    length: int | None,
    body: bytes,
    framing: dict[bytes, bytes],
    wire: bytes,
    alive: bool,
) -> None:
    conn, head = request(data)
    out = conn.start_response(
        head, status, [(b"content-type", b"text/plain")], content_length=length
    )
    assert out.startswith(b"HTTP/1.1 %d %b\r\n" % (status, reason_phrase(status)))
    got = fields(out)
    assert got.pop(b"content-type") == b"text/plain"
    assert got.pop(b"server") == b"colonnade"
    assert DATE.search(out)
    got.pop(b"date")
    assert got == framing
    assert conn.body(body) + conn.body(b"") + conn.end_response() == wire
    assert conn.keep_alive is alive


def test_caller_options() -> None:
    conn, head = request(GET11, server=None)
    out = conn.start_response(
        head,
        299,
        [(b"Content-Length", b"3"), (b"Date", b"yesterday"), (b"Transfer-Encoding", b"gzip")],
        reason=b"Fine",
        keep_alive=False,
    )
    assert out == (
        b"HTTP/1.1 299 Fine\r\ndate: yesterday\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
    )
    assert not conn.keep_alive


def test_caller_server_header_wins() -> None:
    conn, head = request(GET11)
    out = conn.start_response(head, 200, [(b"server", b"app")], content_length=0)
    assert fields(out)[b"server"] == b"app"
    assert out.count(b"erver:") == 1


def test_empty_server_header_means_none() -> None:
    conn, head = request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    out = conn.start_response(head, 200, [(b"server", b"")], content_length=0)
    assert b"server:" not in out.lower()


def test_unknown_status_has_an_empty_reason() -> None:
    conn, head = request(GET11)
    assert conn.start_response(head, 599, [], content_length=0).startswith(b"HTTP/1.1 599 \r\n")
    assert reason_phrase(404) == b"Not Found"
    assert reason_phrase(599) == b""


def test_caller_connection_close_is_honoured() -> None:
    conn, head = request(GET11)
    out = conn.start_response(head, 200, [(b"Connection", b"Close")], content_length=0)
    assert out.count(b"onnection:") == 1
    assert not conn.keep_alive


def test_switching_protocols() -> None:
    conn, head = request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
    out = conn.start_response(head, 101, [(b"connection", b"Upgrade"), (b"upgrade", b"x")])
    got = fields(out)
    assert got[b"connection"] == b"Upgrade"
    assert b"content-length" not in got and b"transfer-encoding" not in got
    assert not conn.keep_alive


def test_interim_response_leaves_the_final_one_alone() -> None:
    conn, head = request(GET11)
    early = conn.start_response(head, 103, [(b"link", b"</s.css>; rel=preload")])
    assert early.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n")
    assert b"content-length" not in early and b"connection" not in early
    assert b"content-length: 0" in conn.start_response(head, 200, [], content_length=0)
    assert conn.keep_alive


EXPECT = b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"


def test_continue_response() -> None:
    conn, head = request(EXPECT)
    assert conn.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.feed(b"x")[0] == Body(b"x")
    assert b"connection" not in conn.start_response(head, 200, [], content_length=0)
    assert conn.keep_alive


def test_final_answer_without_continue_closes() -> None:
    # The client may or may not send the body now: the connection cannot be reused.
    conn, head = request(EXPECT)
    assert b"connection: close" in conn.start_response(head, 417, [], content_length=0)
    assert not conn.keep_alive


def test_no_interim_response_to_http10() -> None:
    conn, head = request(GET10_KA)
    assert conn.start_response(head, 103, [(b"link", b"</a>")]) == b""


def test_eof_makes_the_last_pending_response_close() -> None:
    conn = HTTP1Connection()
    first, _, second, _ = conn.feed(GET11 + GET11)
    assert conn.feed_eof() == []
    assert isinstance(first, RequestHead) and isinstance(second, RequestHead)
    assert b"connection" not in conn.start_response(first, 200, [], content_length=0)
    assert b"connection: close" in conn.start_response(second, 200, [], content_length=0)


def test_error_response() -> None:
    conn = HTTP1Connection()
    out = conn.error_response(431, "header section too large")
    head, body = out.split(b"\r\n\r\n", 1)
    got = fields(head + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert got[b"connection"] == b"close"
    assert got[b"content-length"] == b"%d" % len(body)
    assert got[b"content-type"].startswith(b"text/plain")
    assert b"server" in got and b"date" in got
    assert b"431" in body and b"header section too large" in body
    assert not conn.keep_alive


def test_error_response_outside_a_connection() -> None:
    out = error_response(503, "the queue is full", headers=[(b"Retry-After", b"5")])
    head, body = out.split(b"\r\n\r\n", 1)
    got = fields(head + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert got[b"connection"] == b"close" and got[b"retry-after"] == b"5"
    assert got[b"content-length"] == b"%d" % len(body)
    assert got[b"server"] == b"colonnade" and b"date" in got
    assert body == b"503 Service Unavailable\n\nthe queue is full\n"
    assert b"server" not in error_response(503, "x", server=None)
    # The same bytes as a connection's own error response (the Date aside).
    conn = HTTP1Connection(server=b"s")
    ours = DATE.sub(b"", conn.error_response(400, "bad"))
    assert ours == DATE.sub(b"", error_response(400, "bad", server=b"s"))


@pytest.mark.parametrize(
    "header",
    [(b"Content-Length", b"0"), (b"connection", b"keep-alive"), (b"x", b"a\r\nb"), (b"a b", b"v")],
)
def test_error_response_refuses_headers_it_cannot_send(header: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError):
        error_response(503, "x", headers=[header])


def test_pipelined_responses_close_only_after_the_last() -> None:
    conn = HTTP1Connection()
    events = conn.feed(GET11 + CLOSE11)
    first, second = (e for e in events if isinstance(e, RequestHead))
    assert b"connection" not in conn.start_response(first, 200, [], content_length=0)
    assert conn.keep_alive
    assert b"connection: close" in conn.start_response(second, 200, [], content_length=0)
    assert not conn.keep_alive


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x", b"a\r\nSet-Cookie: evil=1")],
        [(b"x", b"a\nb")],
        [(b"x", b"a\rb")],
        [(b"x", b"a\x00b")],
        [(b"bad name", b"v")],
        [(b"x:y", b"v")],
        [(b"", b"v")],
        [(b"content-length", b"5"), (b"content-length", b"6")],
    ],
)
def test_unsendable_headers_raise(headers: list[tuple[bytes, bytes]]) -> None:
    conn, head = request(GET11)
    with pytest.raises(ValueError):
        conn.start_response(head, 200, headers)


def test_bad_reason_and_status_raise() -> None:
    conn, head = request(GET11)
    with pytest.raises(ValueError):
        conn.start_response(head, 200, [], reason=b"OK\r\nX: y")
    with pytest.raises(ValueError):
        conn.start_response(head, 1000, [])


def test_body_longer_than_content_length_raises() -> None:
    conn, head = request(GET11)
    conn.start_response(head, 200, [], content_length=3)
    assert conn.body(b"ab") == b"ab"
    with pytest.raises(ValueError):
        conn.body(b"cd")


def test_body_shorter_than_content_length_closes() -> None:
    conn, head = request(GET11)
    conn.start_response(head, 200, [], content_length=3)
    conn.body(b"ab")
    assert conn.end_response() == b""
    assert not conn.keep_alive


# -- prepared heads: made once per response shape, found again by value --------------


def answer(
    status: int,
    headers: Any,
    reason: bytes | None = None,
    content_length: int | None = None,
) -> bytes:
    """The head of a response to a fresh GET, without its Date line."""
    conn, head = request(GET11)
    data = conn.start_response(head, status, headers, reason=reason, content_length=content_length)
    return DATE.sub(b"", data)


TAIL = b"content-length: %b\r\nserver: colonnade\r\n\r\n"


def kept() -> list[Any]:
    """The prepared heads kept, by shape, in the order they were made."""
    from colonnade.http import h1

    return list(h1._PREPARED.values())


def test_a_recurring_response_shape_reuses_its_prepared_head() -> None:
    from colonnade.http import h1

    h1._PREPARED.clear()
    headers = [(b"Content-Type", b"text/plain"), (b"X-A", b"1")]
    assert answer(200, headers, content_length=13) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\n"
        b"content-length: 13\r\nserver: colonnade\r\n\r\n"
    )
    [first] = kept()
    assert first.lines == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\n"
    # Equal values in new objects (what an application sends per request) find it.
    answer(200, [(b"Content-Type", b"text/plain"), (b"X-A", b"1")], content_length=13)
    assert kept() == [first]
    # Any difference (a value, the status, the reason) is another head.
    answer(200, [(b"Content-Type", b"text/html"), (b"X-A", b"1")], content_length=13)
    answer(201, headers, content_length=13)
    assert answer(200, headers, b"Fine", 13).startswith(b"HTTP/1.1 200 Fine\r\n")
    assert len(kept()) == 4
    # The length is not part of the shape: bodies of any size share the head,
    # given as an argument or as a Content-Length header named in lower case (as
    # ASGI applications, the WSGI handler and the modules send it), wherever it is.
    h1._PREPARED.clear()
    answer(200, headers, content_length=14)
    [first] = kept()
    assert b"transfer-encoding: chunked\r\n" in answer(200, headers)
    for size in (b"7", b"12345"):
        for at in range(3):
            sized = list(headers)
            sized.insert(at, (b"content-length", size))
            for given in (None, int(size)):
                data = answer(200, sized, content_length=given)
                assert data == first.lines + TAIL % size
    assert kept() == [first]
    # Named in another case, it stays in the shape (one head per length): the
    # same lines and length all the same.
    for size in (b"7", b"12345"):
        for given in (None, int(size)):
            other = [(b"Content-Type", b"text/plain"), (b"Content-Length", size), (b"X-A", b"1")]
            data = answer(200, other, content_length=given)
            assert data == first.lines + TAIL % size
    assert len(kept()) == 3


@pytest.mark.parametrize(
    "value",
    [b"", b"1x", b"+1", b"1_0", b" 1", b"1 ", b"1\r\nx-b: 2", b"-1", b"\xd9\xa1", b"1" * 18 + b"x"],
)
def test_a_content_length_header_that_is_not_digits_is_refused(value: bytes) -> None:
    for name in (b"content-length", b"Content-Length"):
        for _ in range(2):  # refused again: a refused value is never kept
            with pytest.raises(ValueError, match="Content-Length"):
                answer(200, [(name, value)])


def test_a_content_length_header_must_agree_with_the_length() -> None:
    def length(headers: Any, given: int | None = None) -> bytes:
        found = re.search(rb"content-length: (\d+)\r\n", answer(200, headers, content_length=given))
        assert found is not None
        return found.group(1)

    with pytest.raises(ValueError, match="conflicting Content-Length"):
        answer(200, [(b"content-length", b"3")], content_length=4)
    with pytest.raises(ValueError, match="conflicting Content-Length"):
        answer(200, [(b"content-length", b"3"), (b"Content-Length", b"4")])
    assert length([(b"content-length", b"3")] * 2) == b"3"
    for mixed in ((b"Content-Length", b"4"), (b"CONTENT-LENGTH", b"+3")):
        with pytest.raises(ValueError, match="Content-Length"):
            answer(200, [(b"content-length", b"3"), mixed])
        with pytest.raises(ValueError, match="Content-Length"):
            answer(200, [mixed, (b"content-length", b"3"), (b"content-length", b"3")])
    assert length([(b"Content-Length", b"3")] * 3, 3) == b"3"
    for digits in (b"0", b"007", b"9" * 18, b"12345678901234567890123"):
        assert int(length([(b"content-length", digits)])) == int(digits)


def test_the_content_lengths_kept_are_short() -> None:
    # The interpreted build keeps Content-Length values it has read (compiled, the
    # digits are read each time): never one longer than any body's length can be,
    # so 4,096 values cannot hold megabytes of an application's digits.
    from colonnade.http import h1

    h1._DECLARED.clear()
    for digits in (b"1" * 18, b"1" * 19, b"9" * 4300):
        answer(200, [(b"content-length", digits)])
    assert all(len(value) <= 18 for value in h1._DECLARED)
    if not h1._COMPILED:
        assert b"1" * 18 in h1._DECLARED


def test_prepared_heads_stay_bounded_and_refuse_what_cannot_be_sent() -> None:
    from colonnade.http import h1

    for n in range(h1._PREPARED_MAX * 2):
        answer(200, [(b"etag", b'"%d"' % n)], content_length=0)
    assert len(h1._PREPARED) <= h1._PREPARED_MAX
    h1._PREPARED.clear()
    big = [(b"x-big", b"v" * (h1._PREPARED_LINES_MAX + 1))]
    assert answer(200, big, content_length=0) == answer(200, big, content_length=0)
    assert not h1._PREPARED
    # Headers as lists (unhashable) are never kept, and fare as without the cache:
    # sent by the interpreted build, refused by the compiled one (declared types).
    listed: Any = [[b"x-a", b"1"]]
    try:
        expected = h1.PreparedHead(200, listed, None, 0).lines
    except TypeError:
        with pytest.raises(TypeError):
            answer(200, listed, content_length=0)
    else:
        assert answer(200, listed, content_length=0).startswith(expected)
        assert expected == b"HTTP/1.1 200 OK\r\nx-a: 1\r\n"
        assert not h1._PREPARED
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        answer(200, [(b"x-a", b"1\r\nx-b: 2")], content_length=0)
    with pytest.raises(ValueError, match="CR, LF or NUL"):  # never cached: refused again
        answer(200, [(b"x-a", b"1\r\nx-b: 2")], content_length=0)


def test_start_response_is_the_same_with_a_prepared_head_found_again() -> None:
    heads = []
    for _ in range(2):
        conn, head = request(GET11)
        heads.append(
            DATE.sub(
                b"", conn.start_response(head, 200, [(b"content-type", b"a/b")], content_length=3)
            )
        )
    assert heads[0] == heads[1]
    assert heads[0] == (
        b"HTTP/1.1 200 OK\r\ncontent-type: a/b\r\ncontent-length: 3\r\nserver: colonnade\r\n\r\n"
    )


@pytest.fixture
def date_line() -> Any:
    """The shared Date line pinned to a made-up current one (restored after): what a
    response carries is then known, whatever the clock does meanwhile."""
    from colonnade.http import h1

    date = h1._DATE
    saved = (date.line, date.next)
    date.line, date.next = b"date: Sat, 01 Jan 2000 00:00:00 GMT\r\n", float("inf")
    yield date
    date.line, date.next = saved


@pytest.mark.parametrize("data", [GET11, HEAD11, GET10_KA, CLOSE11], ids=repr)
@pytest.mark.parametrize("keep_alive", [True, False])
def test_start_again_is_start_prepared_byte_for_byte(
    date_line: Any, data: bytes, keep_alive: bool
) -> None:
    # The response cache's hit (start_again) against the writer's own answer, for
    # the framed common case and every other; the state after it the same too.
    from colonnade.http import h1

    prepared = h1.PreparedHead(200, [(b"content-type", b"a/b")], None, 5)
    framed = h1.Framed()
    for _ in range(3):  # made, then taken from `framed`
        expected_conn, expected_head = request(data)
        expected = expected_conn.start_prepared(expected_head, prepared, keep_alive, b"hello")
        conn, head = request(data)
        assert conn.start_again(head, prepared, keep_alive, b"hello", framed, 0.0) == expected
        assert conn.end_response() == expected_conn.end_response() == b""
        assert conn.keep_alive == expected_conn.keep_alive
    common = data == GET11 and keep_alive
    assert (framed.data == expected) is common
    if common:
        assert date_line.line in expected and b"connection" not in expected


def test_start_again_makes_the_answer_again_for_a_new_date_head_or_server(
    date_line: Any,
) -> None:
    from colonnade.http import h1

    prepared = h1.PreparedHead(200, [], None, 5)
    framed = h1.Framed()
    conn, head = request(GET11 * 4)
    first = conn.start_again(head, prepared, True, b"hello", framed, 0.0)
    assert date_line.line in first
    # The next second: its Date line, not the one kept.
    date_line.line = b"date: Sat, 01 Jan 2000 00:00:01 GMT\r\n"
    second = conn.start_again(head, prepared, True, b"hello", framed, 0.0)
    assert second == first.replace(b"00:00:00", b"00:00:01")
    # A stale line (the clock went past it) is made afresh, and so is the answer.
    date_line.next = 0.0
    third = conn.start_again(head, prepared, True, b"hello", framed, float("inf"))
    assert b"2000" not in third and DATE.search(third)
    assert DATE.sub(b"", third) == DATE.sub(b"", first)
    # Another head (an entry's new Age) or Server line: made from them.
    aged = h1.PreparedHead(200, [(b"age", b"1")], None, 5)
    assert b"age: 1\r\n" in conn.start_again(head, aged, True, b"hello", framed, 0.0)
    other, head = request(GET11, server=b"other")
    assert b"server: other\r\n" in other.start_again(head, aged, True, b"hello", framed, 0.0)


def test_start_again_keeps_its_answer_until_the_dates_second_ends() -> None:
    # No clock read per answer: the caller's monotonic reading against the end of
    # the second the kept answer's Date line names, worked out when it was made.
    import time

    from colonnade.http import h1

    prepared = h1.PreparedHead(200, [], None, 5)
    framed = h1.Framed()
    conn, head = request(GET11 * 4)
    now = time.monotonic()
    first = conn.start_again(head, prepared, True, b"hello", framed, now)
    assert framed.until - now <= 1.0  # (at most: the second may end meanwhile)
    assert h1._DATE.line in first
    kept = conn.start_again(head, prepared, True, b"hello", framed, framed.until - 1e-6)
    assert kept is first
    # That second over by the monotonic clock: made again (a copy of equal bytes
    # within the same wall second, a new Date line after it), not the one kept.
    again = conn.start_again(head, prepared, True, b"hello", framed, framed.until)
    assert again is not first and DATE.sub(b"", again) == DATE.sub(b"", first)


def test_start_again_closes_at_the_connections_last_response(date_line: Any) -> None:
    # A request limit's last answer says close, framed answer kept or not.
    from colonnade.http import h1

    prepared = h1.PreparedHead(200, [], None, 5)
    framed = h1.Framed()
    conn, head = request(GET11)
    conn.start_again(head, prepared, True, b"hello", framed, 0.0)
    conn, head = request(GET11)
    conn._final = 1
    assert b"connection: close\r\n" in conn.start_again(head, prepared, True, b"hello", framed, 0.0)
    assert not conn.keep_alive


EXPECT11 = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"


@pytest.mark.parametrize("data", [GET11, GET10, GET10_KA, HEAD11, CLOSE11, EXPECT11])
@pytest.mark.parametrize(
    "fields",
    [
        [(b"content-type", b"text/plain")],
        [(b"date", b"Mon, 07 Dec 2026 00:00:00 GMT"), (b"server", b"up"), (b"x", b"1")],
        [(b"server", b"up")],
        [(b"date", b"yesterday")],
        [],
    ],
)
@pytest.mark.parametrize(("status", "reason"), [(200, b"OK"), (299, b"Fine"), (404, None)])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_checked_head_writes_what_its_fields_would(
    data: bytes,
    fields: list[tuple[bytes, bytes]],
    status: int,
    reason: bytes | None,
    keep_alive: bool,
) -> None:
    # A head whose lines its maker formatted (the proxy's, from the upstream's
    # bytes: CheckedHead) goes out as the same fields given as a list would, and
    # leaves the connection in the same state.
    from colonnade.http.h1 import CheckedHead, PreparedHead

    names = {name for name, _ in fields}
    lines = PreparedHead(status, fields, reason, None).lines
    checked = CheckedHead(status, lines, b"date" not in names, b"server" not in names)
    for length in (5, None):
        listed, head = request(data)
        by_list = listed.start_response(head, status, fields, reason, length, keep_alive, b"ab")
        given, head = request(data)
        by_lines = given.start_response(head, status, [], None, length, keep_alive, b"ab", checked)
        assert DATE.sub(b"DATE", by_lines) == DATE.sub(b"DATE", by_list)
        assert given.body(b"cde") == listed.body(b"cde")
        assert given.end_response() == listed.end_response()
        assert given.keep_alive == listed.keep_alive
