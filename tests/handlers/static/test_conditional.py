"""Conditional requests, RFC 9110 13.2.2: every rule and the precedence between them.

The tables run twice: with the file in the small-file cache (answers prepared in
memory) and with the cache off (answers from disk), so both paths obey them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.conditional import (
    NOT_MODIFIED,
    OK,
    PRECONDITION_FAILED,
    Conditions,
    Validators,
    collect,
    evaluate,
    range_allowed,
)
from colonnade.core.httputil import entity_tags, strong_match, weak_match
from colonnade.testing import Client, build_engine
from tests.handlers.static.test_static import config

MTIME = 1_600_000_000  # Sun, 13 Sep 2020 12:26:40 GMT
LM = formatdate(MTIME, usegmt=True)
PAST = formatdate(MTIME - 60, usegmt=True)
FUTURE = formatdate(MTIME + 60, usegmt=True)
RFC850 = "Sunday, 13-Sep-20 12:26:40 GMT"
ASCTIME = "Sun Sep 13 12:26:40 2020"
DATA = b"0123456789" * 10
ETAG = "(the file's ETag)"  # placeholder, replaced by the real tag in each row


@pytest.fixture(params=["cached", "uncached"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    root = tmp_path / "site"
    root.mkdir()
    path = root / "data.txt"
    path.write_bytes(DATA)
    os.utime(path, (MTIME, MTIME))
    settings: dict[str, Any] = {"cache_control": "max-age", "max_age": 60}
    if request.param == "uncached":
        settings["cache_max_file_size"] = 0
    with Client(build_engine(config(root, static_content=settings))) as c:
        yield c


def etag_of(client: Client) -> str:
    etag = client.get("/data.txt").header("etag")
    assert etag is not None and etag.startswith('"')
    return etag


# (request headers, method, status). ETAG in a value stands for the file's tag.
ROWS: list[tuple[dict[str, str], str, int]] = [
    ({}, "GET", 200),
    # If-Match: strong comparison, 412 when it fails
    ({"if-match": ETAG}, "GET", 200),
    ({"if-match": "*"}, "GET", 200),
    ({"if-match": f'"other", {ETAG}'}, "GET", 200),
    ({"if-match": '"other"'}, "GET", 412),
    ({"if-match": f"W/{ETAG}"}, "GET", 412),
    ({"if-match": '"other"'}, "HEAD", 412),
    # If-Unmodified-Since: only without If-Match; malformed dates are ignored
    ({"if-unmodified-since": LM}, "GET", 200),
    ({"if-unmodified-since": FUTURE}, "GET", 200),
    ({"if-unmodified-since": PAST}, "GET", 412),
    ({"if-unmodified-since": "yesterday"}, "GET", 200),
    ({"if-match": ETAG, "if-unmodified-since": PAST}, "GET", 200),
    ({"if-match": '"other"', "if-unmodified-since": FUTURE}, "GET", 412),
    # If-None-Match: weak comparison, 304 for GET/HEAD
    ({"if-none-match": ETAG}, "GET", 304),
    ({"if-none-match": f"W/{ETAG}"}, "GET", 304),
    ({"if-none-match": f'"a", W/"b", {ETAG}'}, "GET", 304),
    ({"if-none-match": "*"}, "GET", 304),
    ({"if-none-match": ETAG}, "HEAD", 304),
    ({"if-none-match": '"other"'}, "GET", 200),
    ({"if-none-match": '"other, with comma"'}, "GET", 200),
    # If-Modified-Since: only without If-None-Match, any of the three date formats
    ({"if-modified-since": LM}, "GET", 304),
    ({"if-modified-since": RFC850}, "GET", 304),
    ({"if-modified-since": ASCTIME}, "GET", 304),
    ({"if-modified-since": FUTURE}, "GET", 304),
    ({"if-modified-since": PAST}, "GET", 200),
    ({"if-modified-since": "not a date"}, "GET", 200),
    ({"if-modified-since": LM}, "HEAD", 304),
    # precedence
    ({"if-match": '"other"', "if-none-match": ETAG}, "GET", 412),
    ({"if-unmodified-since": PAST, "if-none-match": ETAG}, "GET", 412),
    ({"if-unmodified-since": PAST, "if-modified-since": LM}, "GET", 412),
    ({"if-match": ETAG, "if-none-match": ETAG}, "GET", 304),
    ({"if-none-match": '"other"', "if-modified-since": LM}, "GET", 200),
    ({"if-none-match": ETAG, "if-modified-since": PAST}, "GET", 304),
    # conditionals come before Range
    ({"if-none-match": ETAG, "range": "bytes=0-9"}, "GET", 304),
    ({"if-match": '"other"', "range": "bytes=0-9"}, "GET", 412),
    ({"if-match": ETAG, "range": "bytes=0-9"}, "GET", 206),
    ({"if-none-match": '"other"', "range": "bytes=0-9"}, "GET", 206),
]


def _ids() -> list[str]:
    return [
        f"{method}-{'+'.join(h) or 'plain'}-{status}-{i}"
        for i, (h, method, status) in enumerate(ROWS)
    ]


@pytest.mark.parametrize(("headers", "method", "status"), ROWS, ids=_ids())
def test_precondition_table(
    client: Client, headers: dict[str, str], method: str, status: int
) -> None:
    etag = etag_of(client)
    sent = {name: value.replace(ETAG, etag) for name, value in headers.items()}
    response = client.request(method, "/data.txt", headers=sent)
    assert response.status == status
    if status == 304:
        assert response.body == b""
        assert response.header("etag") == etag
        assert response.header("last-modified") == LM
        assert response.header("cache-control") == "max-age=60"
        assert response.header("content-length") is None
        assert response.header("content-type") is None
    elif status == 412:
        assert DATA not in response.body
        assert response.header("etag") is None
    elif status == 200:
        assert response.body == (DATA if method == "GET" else b"")
        assert response.header("etag") == etag
    else:
        assert response.body == DATA[:10]


def test_list_fields_on_several_lines_are_one_list(client: Client) -> None:
    etag = etag_of(client)
    headers = [(b"if-none-match", b'"a"'), (b"if-none-match", etag.encode())]
    assert client.get("/data.txt", headers=headers).status == 304
    headers = [(b"if-match", b'"a"'), (b"if-match", etag.encode())]
    assert client.get("/data.txt", headers=headers).status == 200


def test_a_repeated_date_is_ignored(client: Client) -> None:
    headers = [(b"if-modified-since", LM.encode()), (b"if-modified-since", LM.encode())]
    assert client.get("/data.txt", headers=headers).status == 200
    headers = [(b"if-unmodified-since", PAST.encode()), (b"if-unmodified-since", PAST.encode())]
    assert client.get("/data.txt", headers=headers).status == 200


# -- the functions themselves, for the methods the handler never sees -------------------

V = Validators(b'"abc"', LM.encode(), MTIME)


@pytest.mark.parametrize(
    ("found", "method", "status"),
    [
        (Conditions(if_none_match=b'"abc"'), "GET", NOT_MODIFIED),
        (Conditions(if_none_match=b'"abc"'), "DELETE", PRECONDITION_FAILED),
        (Conditions(if_none_match=b"*"), "PUT", PRECONDITION_FAILED),
        (Conditions(if_none_match=b'"x"'), "PUT", OK),
        (Conditions(if_modified_since=LM.encode()), "POST", OK),  # GET/HEAD only
        (Conditions(if_modified_since=LM.encode()), "HEAD", NOT_MODIFIED),
        (Conditions(if_match=b'"abc"'), "PUT", OK),
        (Conditions(if_match=b'W/"abc"'), "PUT", PRECONDITION_FAILED),
        (Conditions(if_unmodified_since=PAST.encode()), "DELETE", PRECONDITION_FAILED),
        (Conditions(range=b"bytes=0-1"), "GET", OK),
    ],
)
def test_evaluate(found: Conditions, method: str, status: int) -> None:
    assert evaluate(found, method, V) == status


def test_evaluate_without_an_etag() -> None:
    none = Validators(None, LM.encode(), MTIME)
    assert evaluate(Conditions(if_match=b'"abc"'), "GET", none) == PRECONDITION_FAILED
    assert evaluate(Conditions(if_match=b"*"), "GET", none) == OK
    assert evaluate(Conditions(if_none_match=b'"abc"'), "GET", none) == OK
    assert evaluate(Conditions(if_none_match=b"*"), "GET", none) == NOT_MODIFIED


@pytest.mark.parametrize(
    ("if_range", "allowed"),
    [
        (None, True),
        (b'"abc"', True),
        (b' "abc" ', True),
        (b'W/"abc"', False),  # a weak tag never matches (strong comparison)
        (b'"abd"', False),
        (LM.encode(), True),
        (RFC850.encode(), True),  # the same instant in another format
        (PAST.encode(), False),
        (FUTURE.encode(), False),
        (b"garbage", False),
        (b"", False),  # a repeated If-Range
    ],
)
def test_range_allowed(if_range: bytes | None, allowed: bool) -> None:
    assert range_allowed(if_range, V, now=MTIME + 3600) is allowed


def test_if_range_date_of_a_file_changed_this_second_is_weak() -> None:
    # Last-Modified within the last second is a weak validator (RFC 9110 8.8.2.2).
    assert not range_allowed(LM.encode(), V, now=MTIME + 0.5)
    assert range_allowed(b'"abc"', V, now=MTIME + 0.5)


def test_collect() -> None:
    assert collect([(b"host", b"x"), (b"accept", b"*/*")]) is None
    found = collect(
        [
            (b"if-none-match", b'"a"'),
            (b"range", b"bytes=0-1"),
            (b"if-none-match", b'"b"'),
            (b"if-range", b'"a"'),
            (b"if-range", b'"a"'),
        ]
    )
    assert found == Conditions(if_none_match=b'"a", "b"', range=b"bytes=0-1", if_range=b"")


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        (b'"a"', [(False, b'"a"')]),
        (b'W/"a", "b,c" ,"d"', [(True, b'"a"'), (False, b'"b,c"'), (False, b'"d"')]),
        (b'"a", garbage, "b"', [(False, b'"a"')]),
        (b'"unterminated', []),
        (b", ,", []),
    ],
)
def test_entity_tags(header: bytes, tags: list[tuple[bool, bytes]]) -> None:
    assert list(entity_tags(header)) == tags


def test_matches() -> None:
    assert strong_match(b'"a", "b"', b'"b"')
    assert not strong_match(b'W/"b"', b'"b"')
    assert weak_match(b'W/"b"', b'"b"')
    assert not weak_match(b'"ab"', b'"a"')
    assert not strong_match(b'"a"', None)
    assert strong_match(b" * ", None)
