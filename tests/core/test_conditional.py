"""The conditional-request and range API any handler calls (RFC 9110 13.2.2, 14).

:func:`decide` is checked as a table (request fields → status and spans); then
:func:`apply_conditions` through the real pipeline, from a small handler that is
not the static one: request header bytes in, status, header and body bytes out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from colonnade.core.conditional import (
    FULL,
    NOT_MODIFIED,
    OK,
    PARTIAL_CONTENT,
    PRECONDITION_FAILED,
    RANGE_NOT_SATISFIABLE,
    Decision,
    Validators,
    apply_conditions,
    decide,
    validators_of,
)
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import format_http_date
from colonnade.core.request import Headers, Request
from colonnade.core.response import FileBody
from colonnade.testing import Client, build_engine

MTIME = 1_600_000_000
LM = format_http_date(MTIME)
EARLIER = format_http_date(MTIME - 60)
LATER = format_http_date(MTIME + 60)
NOW = MTIME + 3600.0  # Last-Modified is an hour old: a strong validator
ETAG = b'"v1"'
CURRENT = Validators(ETAG, LM, MTIME)
LENGTH = 100

# (method, request fields, expected decision); the representation is CURRENT, LENGTH bytes.
DECISIONS: list[tuple[str, Headers, Decision]] = [
    ("GET", [], FULL),
    ("GET", [(b"accept", b"*/*")], FULL),
    # If-None-Match: weak comparison; 304 for GET/HEAD, 412 for the others.
    ("GET", [(b"if-none-match", ETAG)], Decision(NOT_MODIFIED)),
    ("HEAD", [(b"if-none-match", b'W/"v1"')], Decision(NOT_MODIFIED)),
    ("GET", [(b"if-none-match", b'"x", "v1"')], Decision(NOT_MODIFIED)),
    ("GET", [(b"if-none-match", b'"x"'), (b"if-none-match", b'"v1"')], Decision(NOT_MODIFIED)),
    ("GET", [(b"if-none-match", b"*")], Decision(NOT_MODIFIED)),
    ("GET", [(b"if-none-match", b'"v2"')], FULL),
    ("PUT", [(b"if-none-match", ETAG)], Decision(PRECONDITION_FAILED)),
    ("DELETE", [(b"if-none-match", b"*")], Decision(PRECONDITION_FAILED)),
    # If-Match: strong comparison.
    ("PUT", [(b"if-match", ETAG)], FULL),
    ("PUT", [(b"if-match", b'W/"v1"')], Decision(PRECONDITION_FAILED)),
    ("GET", [(b"if-match", b'"v2"')], Decision(PRECONDITION_FAILED)),
    ("GET", [(b"if-match", b"*")], FULL),
    # If-Modified-Since: GET/HEAD only; not after Last-Modified → 304.
    ("GET", [(b"if-modified-since", LM)], Decision(NOT_MODIFIED)),
    ("GET", [(b"if-modified-since", LATER)], Decision(NOT_MODIFIED)),
    ("GET", [(b"if-modified-since", EARLIER)], FULL),
    ("GET", [(b"if-modified-since", b"yesterday")], FULL),  # not a date: ignored
    ("POST", [(b"if-modified-since", LM)], FULL),
    # If-Unmodified-Since: changed after that date → 412.
    ("PUT", [(b"if-unmodified-since", EARLIER)], Decision(PRECONDITION_FAILED)),
    ("PUT", [(b"if-unmodified-since", LM)], FULL),
    # Precedence (RFC 9110 13.2.2): If-Match before If-Unmodified-Since, If-None-Match
    # before If-Modified-Since, and preconditions before Range.
    ("GET", [(b"if-match", ETAG), (b"if-unmodified-since", EARLIER)], FULL),
    ("GET", [(b"if-none-match", b'"v2"'), (b"if-modified-since", LM)], FULL),
    ("GET", [(b"if-match", b'"v2"'), (b"if-none-match", ETAG)], Decision(PRECONDITION_FAILED)),
    ("GET", [(b"if-none-match", ETAG), (b"range", b"bytes=0-9")], Decision(NOT_MODIFIED)),
    # Range: GET only, bytes only, one range (max_ranges defaults to 1).
    ("GET", [(b"range", b"bytes=0-9")], Decision(PARTIAL_CONTENT, ((0, 10),))),
    ("GET", [(b"range", b"bytes=90-")], Decision(PARTIAL_CONTENT, ((90, 100),))),
    ("GET", [(b"range", b"bytes=-5")], Decision(PARTIAL_CONTENT, ((95, 100),))),
    ("GET", [(b"range", b"bytes=95-500")], Decision(PARTIAL_CONTENT, ((95, 100),))),
    ("GET", [(b"range", b"bytes=100-")], Decision(RANGE_NOT_SATISFIABLE)),
    ("GET", [(b"range", b"bytes=-0")], Decision(RANGE_NOT_SATISFIABLE)),
    ("GET", [(b"range", b"bytes=0-1,5-6")], FULL),  # more than max_ranges: ignored
    ("GET", [(b"range", b"bytes=9-3")], FULL),  # invalid: ignored
    ("GET", [(b"range", b"lines=0-9")], FULL),
    ("GET", [(b"range", b"bytes=0-9"), (b"range", b"bytes=0-9")], FULL),  # repeated
    ("HEAD", [(b"range", b"bytes=0-9")], FULL),
    ("POST", [(b"range", b"bytes=0-9")], FULL),
    # If-Range: the range applies only to this very version (strong comparison).
    ("GET", [(b"range", b"bytes=0-9"), (b"if-range", ETAG)], Decision(PARTIAL_CONTENT, ((0, 10),))),
    ("GET", [(b"range", b"bytes=0-9"), (b"if-range", b'W/"v1"')], FULL),
    ("GET", [(b"range", b"bytes=0-9"), (b"if-range", b'"v2"')], FULL),
    ("GET", [(b"range", b"bytes=0-9"), (b"if-range", LM)], Decision(PARTIAL_CONTENT, ((0, 10),))),
    ("GET", [(b"range", b"bytes=0-9"), (b"if-range", EARLIER)], FULL),
]


@pytest.mark.parametrize(("method", "fields", "expected"), DECISIONS)
def test_decide(method: str, fields: Headers, expected: Decision) -> None:
    request = Request(method, "/doc", headers=fields)
    assert decide(request, CURRENT, LENGTH, now=NOW) == expected


def test_decide_several_ranges_when_allowed() -> None:
    request = Request("GET", "/doc", headers=[(b"range", b"bytes=50-59, 0-9, 5-14")])
    assert decide(request, CURRENT, LENGTH, max_ranges=4, now=NOW) == Decision(
        PARTIAL_CONTENT, ((0, 15), (50, 60))
    )
    assert decide(request, CURRENT, LENGTH, max_ranges=0, now=NOW) == FULL


def test_if_range_date_needs_a_last_modified_a_second_old() -> None:
    request = Request("GET", "/doc", headers=[(b"range", b"bytes=0-9"), (b"if-range", LM)])
    assert decide(request, CURRENT, LENGTH, now=MTIME + 0.5) == FULL
    assert decide(request, CURRENT, LENGTH, now=MTIME + 2.0).status == PARTIAL_CONTENT


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([(b"if-match", b"*")], FULL),
        ([(b"if-match", b'"v1"')], Decision(PRECONDITION_FAILED)),
        ([(b"if-none-match", b"*")], Decision(NOT_MODIFIED)),
        ([(b"if-none-match", b'"v1"')], FULL),
        ([(b"if-modified-since", LM)], FULL),  # no Last-Modified: the dates are ignored
        ([(b"if-unmodified-since", EARLIER)], FULL),
        ([(b"range", b"bytes=0-9"), (b"if-range", LM)], FULL),
        ([(b"range", b"bytes=0-9")], Decision(PARTIAL_CONTENT, ((0, 10),))),
    ],
)
def test_decide_without_validators(fields: Headers, expected: Decision) -> None:
    request = Request("GET", "/doc", headers=fields)
    assert decide(request, Validators(None, None, None), LENGTH, now=NOW) == expected


def test_validators_of_reads_the_response_headers() -> None:
    headers = [(b"content-type", b"text/plain"), (b"etag", ETAG), (b"last-modified", LM)]
    assert validators_of(headers) == CURRENT
    assert validators_of([(b"last-modified", b"not a date")]) == Validators(
        None, b"not a date", None
    )
    assert validators_of([]) == Validators(None, None, None)


# -- apply_conditions through the pipeline, from a handler of our own -------------------

BODY = bytes(range(48, 48 + 64))  # 64 printable bytes


class Document(Handler):
    """Not the static handler: a buffered body with validators, then the API."""

    id = "test.document"

    def execute(self, ctx: Context) -> None:
        query = ctx.request.query
        response = ctx.response
        if query == b"missing":
            response.status = 404
        response.headers += [
            (b"content-type", b"text/plain"),
            (b"etag", b'W/"v1"' if query == b"weak" else ETAG),
            (b"last-modified", LM),
            (b"set-cookie", b"seen=1"),
        ]
        response.body = BODY
        apply_conditions(ctx, ranges=query != b"noranges")


class DocumentFile(Handler):
    """The same through ``response.file``: a 206 names a slice of the file."""

    id = "test.document_file"
    path = ""

    def execute(self, ctx: Context) -> None:
        response = ctx.response
        response.headers += [(b"content-type", b"text/plain"), (b"etag", ETAG)]
        response.file = FileBody(self.path, 0, len(BODY))
        apply_conditions(ctx)


@pytest.fixture
def client(tmp_path: Path) -> Any:
    data = tmp_path / "doc.txt"
    data.write_bytes(BODY)
    DocumentFile.path = str(data)
    engine = build_engine(
        {
            "server": {"modules": ["test.document", "test.document_file"]},
            "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"]}],
            "handlers": [
                {"path": "/file", "handler": "test.document_file"},
                {"path": "*", "handler": "test.document"},
            ],
        },
        modules=[Document, DocumentFile],
    )
    with Client(engine) as c:
        yield c


# (request line, request fields, status, response fields that must be there (None:
#  must be absent), body)
WIRE: list[tuple[str, Headers, int, dict[bytes, bytes | None], bytes]] = [
    (
        "GET /doc",
        [],
        200,
        {b"accept-ranges": b"bytes", b"etag": ETAG, b"content-type": b"text/plain"},
        BODY,
    ),
    (
        "GET /doc",
        [(b"if-none-match", ETAG)],
        304,
        {
            b"etag": ETAG,
            b"last-modified": LM,
            b"set-cookie": b"seen=1",
            b"content-type": None,
            b"content-length": None,
            b"accept-ranges": None,
        },
        b"",
    ),
    ("GET /doc", [(b"if-none-match", b'"x", W/"v1"')], 304, {b"etag": ETAG}, b""),
    ("GET /doc", [(b"if-modified-since", LM)], 304, {b"etag": ETAG}, b""),
    ("GET /doc", [(b"if-none-match", b'"v2"')], 200, {b"etag": ETAG}, BODY),
    ("HEAD /doc", [(b"if-none-match", ETAG)], 304, {b"etag": ETAG}, b""),
    ("POST /doc", [(b"if-none-match", ETAG)], 412, {b"etag": None}, None),
    ("GET /doc", [(b"if-match", b'"v2"')], 412, {b"etag": None}, None),
    (
        "GET /doc",
        [(b"range", b"bytes=0-9")],
        206,
        {
            b"content-range": b"bytes 0-9/64",
            b"content-length": b"10",
            b"etag": ETAG,
            b"content-type": b"text/plain",
        },
        BODY[:10],
    ),
    ("GET /doc", [(b"range", b"bytes=-4")], 206, {b"content-range": b"bytes 60-63/64"}, BODY[-4:]),
    (
        "GET /doc",
        [(b"range", b"bytes=60-99")],
        206,
        {b"content-range": b"bytes 60-63/64"},
        BODY[-4:],
    ),
    (
        "GET /doc",
        [(b"range", b"bytes=0-9"), (b"if-range", ETAG)],
        206,
        {b"content-range": b"bytes 0-9/64"},
        BODY[:10],
    ),
    ("GET /doc", [(b"range", b"bytes=0-9"), (b"if-range", b'"v2"')], 200, {}, BODY),
    ("GET /doc", [(b"range", b"bytes=0-1,4-5")], 200, {b"accept-ranges": b"bytes"}, BODY),
    ("GET /doc", [(b"range", b"bytes=64-")], 416, {b"content-range": b"bytes */64"}, None),
    ("HEAD /doc", [(b"range", b"bytes=0-9")], 200, {b"accept-ranges": b"bytes"}, b""),
    # A weak validator never lets a range through If-Range, nor passes If-Match.
    ("GET /doc?weak", [(b"if-none-match", b'"v1"')], 304, {b"etag": b'W/"v1"'}, b""),
    ("GET /doc?weak", [(b"range", b"bytes=0-9"), (b"if-range", b'W/"v1"')], 200, {}, BODY),
    ("GET /doc?weak", [(b"if-match", b'W/"v1"')], 412, {}, None),
    # Ranges turned off: Range is ignored and not announced.
    ("GET /doc?noranges", [(b"range", b"bytes=0-9")], 200, {b"accept-ranges": None}, BODY),
    ("GET /doc?noranges", [(b"if-none-match", ETAG)], 304, {}, b""),
    # Only a 200 is a representation the fields speak about.
    ("GET /doc?missing", [(b"if-none-match", ETAG)], 404, {b"accept-ranges": None}, BODY),
    ("GET /doc?missing", [(b"range", b"bytes=0-9")], 404, {b"content-range": None}, BODY),
    # A file body: the 206 sends a slice of the file.
    (
        "GET /file",
        [(b"range", b"bytes=10-19")],
        206,
        {b"content-range": b"bytes 10-19/64", b"accept-ranges": b"bytes"},
        BODY[10:20],
    ),
    ("GET /file", [(b"if-none-match", ETAG)], 304, {b"etag": ETAG, b"accept-ranges": None}, b""),
    ("GET /file", [], 200, {b"accept-ranges": b"bytes"}, BODY),
]


@pytest.mark.parametrize(("line", "fields", "status", "expected", "body"), WIRE)
def test_apply_conditions(
    client: Client,
    line: str,
    fields: Headers,
    status: int,
    expected: dict[bytes, bytes | None],
    body: bytes | None,
) -> None:
    method, target = line.split(" ")
    r = client.request(method, target, headers=fields)
    assert r.status == status
    got = dict(r.headers)
    assert len(got) == len(r.headers), "a header sent twice"
    for name, value in expected.items():
        assert got.get(name) == value, name
    if body is not None:
        assert r.body == body
    if status == 206:
        assert int(got[b"content-length"]) == len(r.body)


def test_a_partial_file_body_names_the_slice(client: Client) -> None:
    r = client.get("/file", headers={"range": "bytes=10-19"})
    file = r.context.response.file
    assert file is not None and (file.offset, file.length) == (10, 10)


def test_a_response_already_sent_is_left_alone() -> None:
    class Streamer(Handler):
        id = "test.streamer"

        async def execute(self, ctx: Context) -> None:
            ctx.response.headers.append((b"etag", ETAG))
            await ctx.start_response()
            assert apply_conditions(ctx) == OK
            await ctx.write(BODY)

    engine = build_engine(
        {
            "server": {"modules": ["test.streamer"]},
            "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"]}],
            "handlers": [{"path": "*", "handler": "test.streamer"}],
        },
        modules=[Streamer],
    )
    with Client(engine) as c:
        r = c.get("/", headers={"if-none-match": ETAG.decode()})
    assert (r.status, r.body) == (200, BODY)
