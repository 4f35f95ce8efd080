"""Accepted requests: raw bytes in, events out, whatever the packet boundaries."""

from __future__ import annotations

import pytest

from colonnade.http import (
    Body,
    EndOfMessage,
    Event,
    HTTP1Connection,
    RequestHead,
    UpgradePending,
    h1,
)

END = EndOfMessage()
UPGRADE = UpgradePending()


def merged(events: list[Event]) -> list[Event]:
    """Consecutive Body events joined: how the body is split depends on the feeds."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def head(
    target: bytes = b"/",
    *,
    method: bytes = b"GET",
    path: bytes | None = None,
    query: bytes = b"",
    version: bytes = b"1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes = b"a",
    keep_alive: bool = True,
    expect_continue: bool = False,
    content_length: int | None = None,
    chunked: bool = False,
    particular: bool = False,
) -> RequestHead:
    return RequestHead(
        method,
        target,
        target if path is None else path,
        query,
        version,
        [(b"host", b"a")] if headers is None else headers,
        host,
        keep_alive,
        expect_continue,
        content_length,
        chunked,
        particular,
    )


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED_POST = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'3;name=value;q="a \\"b\\""\r\nabc\r\n'
    b"A\r\n0123456789\r\n"
    b"0\r\nTrailer-One: 1\r\nTrailer-Two: 2\r\n\r\n"
)
TE_HEADERS = [(b"host", b"a"), (b"transfer-encoding", b"chunked")]
CL5_HEADERS = [(b"host", b"a"), (b"content-length", b"5")]
# Every tchar (RFC 9110 5.6.2): a method llhttp has never heard of.
TCHAR_METHOD = b"!#$%&'*+-.^_`|~09AZaz"
# RFC 9112 7.1.1: BWS around ";" and "=" in chunk extensions, values token or quoted.
BWS_CHUNKS = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1; a=b\r\na\r\n"
    b"1 ;a=b\r\nb\r\n"
    b"1\t;\ta=b\r\nc\r\n"
    b'1 ; a = b ; c\t=\t"d e" ;f\r\nd\r\n'
    b"0 ; last = chunk\r\n\r\n"
)


def cl_events(method: bytes) -> list[Event]:
    return [head(method=method, headers=CL5_HEADERS, content_length=5), Body(b"hello"), END]


def chunked_events(method: bytes) -> list[Event]:
    return [head(b"/up", method=method, headers=TE_HEADERS, chunked=True), Body(b"hello"), END]


def cl_post(method: bytes, target: bytes = b"/") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"


def chunked_post(method: bytes) -> bytes:
    return (
        method + b" /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5; x = y\r\nhello\r\n0\r\n\r\n"
    )


# (id, request bytes, expected events)
CASES: list[tuple[str, bytes, list[Event]]] = [
    ("get", GET, [head(), END]),
    (
        "headers-kept-in-order-lowercased-stripped",
        b"GET /p?q=1&r HTTP/1.1\r\nHost: a\r\nX-B:\t two \t\r\nx-a:one\r\nX-B: 3\r\n\r\n",
        [
            head(
                b"/p?q=1&r",
                path=b"/p",
                query=b"q=1&r",
                headers=[(b"host", b"a"), (b"x-b", b"two"), (b"x-a", b"one"), (b"x-b", b"3")],
            ),
            END,
        ],
    ),
    (
        "raw-path-not-decoded",
        b"GET /a%20b//c? HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(b"/a%20b//c?", path=b"/a%20b//c"), END],
    ),
    (
        "close",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        [head(headers=[(b"host", b"a"), (b"connection", b"close")], keep_alive=False), END],
    ),
    (
        # llhttp reads Proxy-Connection as Connection: a close there closes too
        "proxy-connection-close",
        b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
        [head(headers=[(b"host", b"a"), (b"proxy-connection", b"close")], keep_alive=False), END],
    ),
    (
        "close-in-capitals-among-tokens",
        b"GET / HTTP/1.1\r\nHost: a\r\nCONNECTION: TE, Close\r\n\r\n",
        [head(headers=[(b"host", b"a"), (b"connection", b"TE, Close")], keep_alive=False), END],
    ),
    (
        "http10",
        b"GET / HTTP/1.0\r\n\r\n",
        [head(version=b"1.0", headers=[], host=b"", keep_alive=False), END],
    ),
    (
        "http10-keep-alive",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        [
            head(
                version=b"1.0", headers=[(b"connection", b"keep-alive")], host=b"", keep_alive=True
            ),
            END,
        ],
    ),
    (
        # RFC 9112 9.3: "close" wins, HTTP/1.0's "keep-alive" beside it or not
        # (llhttp reads only keep-alive in an HTTP/1.0 head)
        "http10-keep-alive-and-close",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n",
        [
            head(
                version=b"1.0",
                headers=[(b"connection", b"Keep-Alive, close")],
                host=b"",
                keep_alive=False,
            ),
            END,
        ],
    ),
    (
        # ... in two fields too; and nothing after it is read (RFC 9112 9.6)
        "http10-close-in-a-second-field-then-pipelined",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nproxy-connection: CLOSE\r\n\r\n" + GET,
        [
            head(
                version=b"1.0",
                headers=[(b"connection", b"keep-alive"), (b"proxy-connection", b"CLOSE")],
                host=b"",
                keep_alive=False,
            ),
            END,
        ],
    ),
    (
        "pipelined",
        GET + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n" + GET,
        [head(), END, head(b"/2"), END, head(), END],
    ),
    (
        "pipelined-with-bodies",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + CHUNKED_POST + GET,
        [
            head(
                method=b"POST",
                headers=[(b"host", b"a"), (b"content-length", b"5")],
                content_length=5,
            ),
            Body(b"hello"),
            END,
            head(b"/up", method=b"POST", headers=TE_HEADERS, chunked=True),
            Body(b"abc0123456789"),
            END,
            head(),
            END,
        ],
    ),
    (
        "chunked-extensions-trailers",
        CHUNKED_POST,
        [
            head(b"/up", method=b"POST", headers=TE_HEADERS, chunked=True),
            Body(b"abc0123456789"),
            END,
        ],
    ),
    (
        "content-length-zero",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        [
            head(
                method=b"POST",
                headers=[(b"host", b"a"), (b"content-length", b"0")],
                content_length=0,
            ),
            END,
        ],
    ),
    (
        "absolute-form",
        b"GET http://example.com:8080/x/y?z=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        [
            head(
                b"http://example.com:8080/x/y?z=1",
                path=b"/x/y",
                query=b"z=1",
                headers=[(b"host", b"other")],
                host=b"example.com:8080",
            ),
            END,
        ],
    ),
    (
        "absolute-form-no-path",
        b"GET HTTPS://[::1]?q HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(b"HTTPS://[::1]?q", path=b"/", query=b"q", host=b"[::1]"), END],
    ),
    ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", [head(b"*", method=b"OPTIONS"), END]),
    (
        "expect-continue",
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
        [
            head(
                method=b"PUT",
                headers=[(b"host", b"a"), (b"expect", b"100-Continue"), (b"content-length", b"2")],
                expect_continue=True,
                content_length=2,
            ),
            Body(b"hi"),
            END,
        ],
    ),
    (
        "expect-continue-ignored-for-http10",
        b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
        [
            head(
                version=b"1.0", headers=[(b"expect", b"100-continue")], host=b"", keep_alive=False
            ),
            END,
        ],
    ),
    ("leading-empty-lines", b"\r\n\r\n" + GET, [head(), END]),
    (
        "empty-host",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        [head(headers=[(b"host", b"")], host=b""), END],
    ),
    (
        "obs-text-in-value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n",
        [head(headers=[(b"host", b"a"), (b"x", b"caf\xe9")]), END],
    ),
    (
        "bytes-after-close-ignored",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET,
        [head(headers=[(b"host", b"a"), (b"connection", b"close")], keep_alive=False), END],
    ),
    (
        "bytes-after-http10-ignored",
        b"GET / HTTP/1.0\r\n\r\nGARBAGE",
        [head(version=b"1.0", headers=[], host=b"", keep_alive=False), END],
    ),
    (
        "upgrade-passes-through",
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
        [
            head(
                b"/ws",
                headers=[(b"host", b"a"), (b"connection", b"Upgrade"), (b"upgrade", b"websocket")],
                particular=True,
            ),
            END,
            UPGRADE,
        ],
    ),
    # Any token is a method (RFC 9110 9.1), also those llhttp does not know.
    (
        "unknown-method",
        b"FROBNICATE / HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(method=b"FROBNICATE"), END],
    ),
    ("lowercase-method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", [head(method=b"get"), END]),
    (
        "every-tchar-method",
        TCHAR_METHOD + b" / HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(method=TCHAR_METHOD), END],
    ),
    (
        "longest-method",
        b"M" * 64 + b" / HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(method=b"M" * 64), END],
    ),
    ("known-method-prefix", b"GETTER / HTTP/1.1\r\nHost: a\r\n\r\n", [head(method=b"GETTER"), END]),
    ("rtsp-method-on-http", b"PLAY / HTTP/1.1\r\nHost: a\r\n\r\n", [head(method=b"PLAY"), END]),
    (
        "rtsp-method-long-target",
        b"SETUP /" + b"t" * 100 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(b"/" + b"t" * 100, method=b"SETUP"), END],
    ),
    (
        "rtsp-method-on-http10",
        b"DESCRIBE /x HTTP/1.0\r\n\r\n",
        [
            head(b"/x", method=b"DESCRIBE", version=b"1.0", headers=[], host=b"", keep_alive=False),
            END,
        ],
    ),
    (
        "unknown-method-spaces-absolute-form",
        b"FROB   http://h/p?q HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(b"http://h/p?q", method=b"FROB", path=b"/p", query=b"q", host=b"h"), END],
    ),
    ("unknown-method-with-body", cl_post(b"FROBNICATE"), cl_events(b"FROBNICATE")),
    ("unknown-method-chunked", chunked_post(b"QUUX"), chunked_events(b"QUUX")),
    (
        "unknown-methods-pipelined",
        b"\r\n"
        + GET
        + cl_post(b"FROB")
        + b"\r\n"
        + chunked_post(b"get")
        + cl_post(b"POST")
        + b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n"
        + chunked_post(b"PUT")
        + cl_post(b"x")
        + GET,
        [
            head(),
            END,
            *cl_events(b"FROB"),
            *chunked_events(b"get"),
            *cl_events(b"POST"),
            head(b"/pot", method=b"BREW"),
            END,
            *chunked_events(b"PUT"),
            *cl_events(b"x"),
            head(),
            END,
        ],
    ),
    (
        "unknown-method-upgrade",
        b"FROB /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nFROB",
        [
            head(
                b"/ws",
                method=b"FROB",
                headers=[(b"host", b"a"), (b"connection", b"Upgrade"), (b"upgrade", b"x")],
                particular=True,
            ),
            END,
            UPGRADE,
        ],
    ),
    (
        "chunk-extensions-with-whitespace",
        BWS_CHUNKS,
        [head(b"/up", method=b"POST", headers=TE_HEADERS, chunked=True), Body(b"abcd"), END],
    ),
    (
        "longest-chunk-size-line",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"0" * 4090
        + b"3;a=b\r\nabc\r\n0\r\n\r\n",
        [head(b"/up", method=b"POST", headers=TE_HEADERS, chunked=True), Body(b"abc"), END],
    ),
    (
        "chunked-then-close",
        chunked_post(b"POST")[: -len(b"5; x = y\r\nhello\r\n0\r\n\r\n") - 2]
        + b"Connection: close\r\n\r\n0\r\n\r\n"
        + GET,
        [
            head(
                b"/up",
                method=b"POST",
                headers=[*TE_HEADERS, (b"connection", b"close")],
                keep_alive=False,
                chunked=True,
            ),
            END,
        ],
    ),
    (
        "upgrade-with-body",
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 3\r\n\r\nabcPRI",
        [
            head(
                method=b"POST",
                headers=[
                    (b"host", b"a"),
                    (b"connection", b"Upgrade"),
                    (b"upgrade", b"h2c"),
                    (b"content-length", b"3"),
                ],
                content_length=3,
                particular=True,
            ),
            UPGRADE,
            Body(b"abc"),
            END,
        ],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_whole(data: bytes, expected: list[Event]) -> None:
    conn = HTTP1Connection()
    assert merged(conn.feed(data)) == expected
    assert conn.feed_eof() == []


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_byte_by_byte(data: bytes, expected: list[Event]) -> None:
    conn = HTTP1Connection()
    events: list[Event] = []
    for i in range(len(data)):
        events += conn.feed(data[i : i + 1])
    assert merged(events) == expected
    assert conn.feed_eof() == []


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_split_point(data: bytes, expected: list[Event]) -> None:
    for i in range(len(data) + 1):
        conn = HTTP1Connection()
        assert merged(conn.feed(data[:i]) + conn.feed(data[i:])) == expected, i


def test_content_length_body_across_feeds() -> None:
    conn = HTTP1Connection()
    first = conn.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    assert [type(e) for e in first] == [RequestHead, Body]
    assert conn.feed(b"567") == [Body(b"567")]
    assert conn.feed(b"89" + GET) == [Body(b"89"), END, head(), END]


def test_large_feeds_are_sliced_transparently() -> None:
    # Feeds over 64 KiB go to llhttp in slices; nothing about the events may change.
    body = bytes(range(256)) * 1024
    data = b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body + GET
    events = merged(HTTP1Connection().feed(data * 3))
    assert [type(e) for e in events] == [
        RequestHead,
        Body,
        EndOfMessage,
        RequestHead,
        EndOfMessage,
    ] * 3
    assert all(e.data == body for e in events if isinstance(e, Body))


UPGRADE_GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"


def test_upgrade_keeps_the_rest_for_the_new_protocol() -> None:
    conn = HTTP1Connection()
    events = conn.feed(UPGRADE_GET + b"ab")
    assert events[-2:] == [END, UPGRADE]
    assert conn.feed(b"cd") == []
    assert conn.trailing_data == b"abcd"
    response = conn.start_response(events[0], 101, [(b"upgrade", b"x")])  # type: ignore[arg-type]
    assert response.startswith(b"HTTP/1.1 101 ")
    assert not conn.keep_alive
    assert conn.http_again() == b""
    assert conn.trailing_data == b"abcd"


@pytest.mark.parametrize("sized", [True, False])
def test_an_upgrade_not_taken_keeps_the_connection_and_parses_http_again(sized: bool) -> None:
    # RFC 9110 7.8: the server may ignore Upgrade; the bytes held since are HTTP.
    conn = HTTP1Connection()
    events = conn.feed(UPGRADE_GET + GET[:10])
    assert conn.feed(GET[10:]) == []  # held: whose they are, the answer says
    length = 0 if sized else None
    response = conn.start_response(events[0], 426, [], content_length=length)  # type: ignore[arg-type]
    assert b"connection: close" not in response
    assert conn.keep_alive
    assert conn.feed(GET) == []  # still held until the transport takes them back
    assert conn.http_again() == GET + GET
    assert conn.trailing_data == b""
    assert conn.feed(b"") == []
    assert merged(conn.feed(b"\r\n")) == []
    assert conn.http_again() == b""


@pytest.mark.parametrize("more", [0, 1], ids=["at-the-limit", "past-it"])
def test_an_upgrade_not_taken_closes_past_a_reads_worth_of_held_bytes(more: int) -> None:
    # Held while the answer was made, they would all become requests at once.
    conn = HTTP1Connection()
    events = conn.feed(UPGRADE_GET)
    held = GET * (h1.HELD_MAX // len(GET) + more)
    assert conn.feed(held) == []
    response = conn.start_response(events[0], 200, [], content_length=0)  # type: ignore[arg-type]
    assert (b"connection: close" in response) == bool(more)
    assert conn.keep_alive == (not more)
    assert conn.http_again() == (b"" if more else held)


@pytest.mark.parametrize("before", [True, False], ids=["fin-before-answer", "fin-after-head"])
def test_a_fin_behind_an_upgrade_not_taken_leaves_the_held_requests_to_answer(
    before: bool,
) -> None:
    # The client's FIN while requests are held: they are still HTTP once the answer
    # ignores the upgrade (the caller feeds the FIN again after them), and the last
    # of them closes, as nginx answers every request received before the FIN.
    conn = HTTP1Connection()
    events = conn.feed(UPGRADE_GET + GET)
    if before:
        assert conn.feed_eof() == []
    response = conn.start_response(events[0], 200, [], content_length=0)  # type: ignore[arg-type]
    assert b"connection: close" not in response and conn.keep_alive
    if not before:
        assert conn.feed_eof() == []
    assert conn.http_again() == GET
    head = merged(conn.feed(GET))[0]
    assert conn.feed_eof() == []
    last = conn.start_response(head, 200, [], content_length=0)  # type: ignore[arg-type]
    assert b"connection: close" in last and not conn.keep_alive


def test_a_fin_after_an_upgrade_request_alone_closes_after_its_answer() -> None:
    conn = HTTP1Connection()
    events = conn.feed(UPGRADE_GET)
    assert conn.feed_eof() == []
    response = conn.start_response(events[0], 200, [], content_length=0)  # type: ignore[arg-type]
    assert b"connection: close" in response and not conn.keep_alive


def test_an_upgrade_answered_before_its_body_came_closes() -> None:
    conn = HTTP1Connection()
    events = conn.feed(UPGRADE_GET.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\nab"))
    response = conn.start_response(events[0], 200, [], content_length=0)  # type: ignore[arg-type]
    assert b"connection: close" in response and not conn.keep_alive
    assert conn.http_again() == b""


@pytest.mark.parametrize(
    ("fields", "version"),
    [(b"Connection: close, upgrade\r\n", b"1.1"), (b"Connection: keep-alive, upgrade\r\n", b"1.0")],
    ids=["connection-close", "http10-close-delimited"],
)
def test_an_upgrade_not_taken_still_closes_when_the_answer_must(
    fields: bytes, version: bytes
) -> None:
    data = UPGRADE_GET.replace(b"Connection: upgrade\r\n", fields)
    conn = HTTP1Connection()
    events = conn.feed(data.replace(b"HTTP/1.1", b"HTTP/" + version))
    head = events[0]
    assert isinstance(head, RequestHead) and events[-1] == UPGRADE
    assert head.keep_alive == (version == b"1.0")
    response = conn.start_response(head, 200, [])  # no length: 1.0 closes to end it
    assert not conn.keep_alive
    assert conn.http_again() == b""
    assert b"connection: close" in response or version == b"1.0"


def test_header_section_at_the_limit_is_accepted() -> None:
    # name + value + 4 (": " and CRLF) per field, as counted against max_header_size.
    data = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 14 + b"\r\n\r\n"
    assert merged(HTTP1Connection(max_header_size=9 + 19).feed(data))[-1] == END
    assert HTTP1Connection(max_header_size=9 + 18).feed(data)[-1] != END


def test_eof_between_requests_is_clean() -> None:
    conn = HTTP1Connection()
    assert conn.feed(GET + b"\r\n") == [head(), END]
    assert conn.feed_eof() == []


def test_many_pipelined_unknown_methods_in_one_feed() -> None:
    # Each one is found again from the one before, not from the start of the feed.
    request = b"BREW /pot HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
    events = merged(HTTP1Connection().feed(request * 2000))
    assert len(events) == 3 * 2000
    assert all(e.method == b"BREW" for e in events if isinstance(e, RequestHead))
    assert all(e == Body(b"hi") for e in events[1::3])


def test_unknown_method_waits_for_its_end() -> None:
    conn = HTTP1Connection()
    assert conn.feed(b"FROBNI") == []
    assert conn.feed(b"CA") == []
    assert conn.feed(b"TE / HTTP/1.1\r\nHost: a\r\n\r\n") == [head(method=b"FROBNICATE"), END]
    assert conn.feed(GET) == [head(), END]


@pytest.mark.parametrize(
    "name",
    [
        b"Range",
        b"If-Range",
        b"If-Match",
        b"IF-NONE-MATCH",
        b"if-modified-since",
        b"If-Unmodified-Since",
        b"Authorization",
        b"Upgrade",
    ],
)
def test_a_field_that_makes_the_answer_particular_is_noted(name: bytes) -> None:
    # What the response cache reads instead of scanning the headers again: each such
    # field, however spelled, marks its own request, and only that one.
    conn = HTTP1Connection()
    events = conn.feed(
        b"GET /a HTTP/1.1\r\nHost: a\r\n" + name + b": x\r\nAccept: */*\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
    )
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [h.particular for h in heads] == [True, False]
    assert (name.lower(), b"x") in heads[0].headers


@pytest.mark.parametrize(
    "name", [b"Host", b"host", b"HOST", b"Accept", b"Cookie", b"X-Range", b"Ranges", b"If"]
)
def test_other_fields_leave_the_answer_shared(name: bytes) -> None:
    conn = HTTP1Connection()
    host = b"" if name.lower() == b"host" else b"Host: a\r\n"
    events = conn.feed(b"GET / HTTP/1.1\r\n" + host + name + b": a\r\n\r\n")
    (first,) = [e for e in events if isinstance(e, RequestHead)]
    assert not first.particular
    assert first.headers == (
        [(b"host", b"a")] if not host else [(b"host", b"a"), (name.lower(), b"a")]
    )
    assert first.host == b"a"


def test_a_second_host_field_in_any_spelling_is_refused() -> None:
    for second in (b"Host", b"host", b"HoSt"):
        conn = HTTP1Connection()
        events = conn.feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + second + b": b\r\n\r\n")
        assert [type(e).__name__ for e in events] == ["ProtocolError"]
        assert events[0].status == 400  # type: ignore[attr-defined]
