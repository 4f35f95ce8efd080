"""The proxy's field block: an upstream head whose bytes are already as the HTTP/1
writer would write them is handed over as those bytes (``core.response.FieldBlock``)
— the same bytes the writer makes of the response's status, reason and fields — and
only while no module changed those (``FieldBlock.holds``)."""

from __future__ import annotations

import pytest

from colonnade.core.response import FieldBlock, Response
from colonnade.handlers.proxy.wire import ResponseParser
from colonnade.http.events import RequestHead
from colonnade.http.h1 import HTTP1Connection, PreparedHead

DATE = b"date: Mon, 07 Dec 2026 00:00:00 GMT\r\n"

#: Heads written as the writer writes them: each hands over a block.
WRITTEN = [
    b"HTTP/1.1 200 OK\r\n" + DATE + b"server: uvicorn\r\ncontent-type: text/plain\r\n"
    b"content-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\n" + DATE + b"server: uvicorn\r\ncontent-length: 5\r\n"
    b"content-type: text/plain\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\nx-a: 2\r\n\r\nhello",
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno",
    b"HTTP/1.1 299 Some Reason\r\nx-y: a b c\r\nvary: accept\r\ncontent-length: 0\r\n\r\n",
    b'HTTP/1.1 200 OK\r\nserver: up\r\netag: "x"\r\ncontent-length: 3\r\n\r\nabc',
]

#: Heads that are not (a name's case, spaces, an empty value, HTTP/1.0, no
#: reason, a field the proxy changes or drops, two lengths): none.
NOT_WRITTEN = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-type:text/plain\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-type:  text/plain\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain \r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-type:\ttext/plain\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nserver:\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nx-a: 1\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length:5\r\n\r\nhello",
    b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 \r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
]


def taken(data: bytes) -> tuple[Response, FieldBlock | None]:
    # The answer taken whole, as the proxy takes it: the response and its block.
    parser = ResponseParser()
    parser.start("GET")
    parsed = parser.whole(data)
    assert parsed is not None
    response = Response()
    response.status = parsed.status
    response.reason = parsed.reason or None
    response.headers = parsed.bare
    response.body = data[parsed.end :]
    block = parsed.block(data, response, response.body)
    assert response.block is block
    return response, block


@pytest.mark.parametrize("data", WRITTEN)
def test_a_written_head_is_handed_over_as_its_bytes(data: bytes) -> None:
    response, block = taken(data)
    assert block is not None
    # What the writer makes of the response's status, reason and fields.
    made = PreparedHead(response.status, response.headers, response.reason, None)
    assert block.lines == made.lines
    assert block.date is not made.add_date
    assert block.server is not made.add_server
    assert block.holds(response)


@pytest.mark.parametrize("data", NOT_WRITTEN)
def test_a_head_written_otherwise_is_not(data: bytes) -> None:
    assert taken(data)[1] is None


def test_two_heads_on_one_connection() -> None:
    # The parser's block is filled again for the next head on its connection
    # (that response may be answered while the former is still on its way): the
    # former response then no longer holds it, and goes out from its fields.
    parser = ResponseParser()
    seen = []
    for data in WRITTEN[:3]:
        parser.start("GET")
        parsed = parser.whole(data)
        assert parsed is not None
        response = Response()
        response.status = parsed.status
        response.reason = parsed.reason
        response.headers = parsed.bare
        parsed.block(data, response)
        assert response.block is not None and response.block.holds(response)
        assert response.answer is None  # (no body given: no whole answer)
        made = PreparedHead(response.status, response.headers, response.reason, None)
        assert response.block.lines == made.lines
        seen.append(response)
    assert [r.block is not None and r.block.holds(r) for r in seen] == [False, False, True]


def changed(response: Response, how: str) -> None:
    headers = response.headers
    if how == "replace":
        headers[1] = (headers[1][0], b"other")
    elif how == "same-value-new-pair":
        headers[1] = (headers[1][0], headers[1][1])
    elif how == "append":
        headers.append((b"x-new", b"1"))
    elif how == "remove":
        del headers[0]
    elif how == "reverse":
        headers.reverse()
    elif how == "set_header":
        response.set_header(b"content-type", b"text/html")
    elif how == "status":
        response.status = 500
    elif how == "reason":
        response.reason = b"Other"
    elif how == "clear":
        response.clear()


@pytest.mark.parametrize(
    "how",
    [
        "replace",
        "same-value-new-pair",
        "append",
        "remove",
        "reverse",
        "set_header",
        "status",
        "reason",
        "clear",
    ],
)
def test_a_change_by_a_module_lets_the_block_go(how: str) -> None:
    response, block = taken(WRITTEN[0])
    assert block is not None and block.holds(response)
    changed(response, how)
    assert not block.holds(response)
    if how == "clear":
        assert response.block is None
        assert response.answer is None and response.answer_body == b""


def test_the_same_fields_in_a_new_list_still_hold() -> None:
    # A module that made a new list of the very same fields changed nothing: the
    # block still says it all. (One that made new pairs of the same values, as
    # remove_header does, lets it go: the writer then formats the head itself.)
    response, block = taken(WRITTEN[0])
    assert block is not None
    response.headers = list(response.headers)
    assert block.holds(response)
    response.remove_header(b"x-absent")
    assert not block.holds(response)


#: Whole answers as the writer would send them (HTTP/1.1, kept alive): a Date
#: and a Server among the fields, the Content-Length line last, its length in
#: decimal as the writer writes it. The response carries them as its ``answer``.
AS_SENT = [
    WRITTEN[0],
    b"HTTP/1.1 200 OK\r\n" + DATE + b"server: uvicorn\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nserver: up\r\n" + DATE + b"content-length: 2\r\n\r\nno",
]

#: Written heads whose whole answer the writer would send otherwise: the length
#: before another field, no Date, no Server, a leading zero.
NOT_AS_SENT = [
    *WRITTEN[1:],
    b"HTTP/1.1 200 OK\r\n" + DATE + b"content-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\n" + DATE + b"server: up\r\ncontent-length: 02\r\n\r\nok",
]


def written(
    block: FieldBlock, response: Response, *, answer: bool, keep_alive: bool = True
) -> tuple[bytes, bool]:
    # What the HTTP/1 writer sends of the response for a kept GET (as the
    # transport's send_all asks it, with the response's answer or without it),
    # and whether the connection stays open after it.
    conn = HTTP1Connection()
    head = conn.feed(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")[0]
    assert isinstance(head, RequestHead)
    body = response.body
    prepared = conn.checked_head(response.status, block.lines, not block.date, not block.server)
    data = conn.start_response(
        head,
        response.status,
        response.headers,
        response.reason,
        len(body),
        keep_alive,
        body,
        prepared,
        response.answer if answer else None,
    )
    return data, conn.keep_alive


@pytest.mark.parametrize("data", AS_SENT + NOT_AS_SENT)
def test_the_answer_as_it_came_is_what_the_writer_makes(data: bytes) -> None:
    # The general way (the head formatted from the block's lines, the length and
    # the body joined) and the answer as it came give the same bytes; the answer
    # is used exactly where it is one.
    response, block = taken(data)
    assert block is not None and block.holds(response)
    assert (response.answer is data) == (data in AS_SENT)
    assert response.answer is None or response.answer_body is response.body
    general, kept = written(block, response, answer=False)
    fast, kept_too = written(block, response, answer=True)
    assert fast == general and kept_too == kept
    if data in AS_SENT:
        assert fast is data  # sent as it came, not joined again
        assert general == data
    # A connection that closes after it: the writer's own Connection line.
    closing, open_after = written(block, response, answer=True, keep_alive=False)
    assert closing == written(block, response, answer=False, keep_alive=False)[0]
    assert b"connection: close\r\n" in closing and not open_after
