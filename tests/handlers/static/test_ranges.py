"""Byte ranges: single, suffix, open, multipart (parsed back by the stdlib ``email``
parser), coalescing, the cap, 416, If-Range, HEAD; cached and uncached files."""

from __future__ import annotations

import email
import email.policy
import os
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.ranges import coalesce, multipart, parse_ranges
from colonnade.testing import Client, RecordingWriter, TestResponse, build_engine
from tests.handlers.static.test_static import config

SIZE = 10_000
# Every byte value, CR and LF included, at positions that make each range distinct.
DATA = bytes((i * 7 + (i >> 8)) % 256 for i in range(SIZE))
MTIME = 1_600_000_000
BIG = 300_000  # above the file cache and the in-memory multipart limit: streamed


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    for name, data in (("data.bin", DATA), ("big.bin", os.urandom(BIG)), ("empty.bin", b"")):
        (root / name).write_bytes(data)
        os.utime(root / name, (MTIME, MTIME))
    return root


@pytest.fixture(params=["cached", "uncached"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    settings: dict[str, Any] = {}
    if request.param == "uncached":
        settings["cache_max_file_size"] = 0
    with Client(build_engine(config(make_root(tmp_path), static_content=settings))) as c:
        yield c


def get(client: Client, value: str, target: str = "/data.bin", **headers: str) -> TestResponse:
    return client.get(target, headers={"range": value, **headers})


def parse_multipart(response: TestResponse) -> EmailMessage:
    """What a real multipart parser makes of the response."""
    content_type = response.header("content-type")
    assert content_type is not None and content_type.startswith("multipart/byteranges; boundary=")
    raw = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + response.body
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    assert isinstance(message, EmailMessage) and message.is_multipart()
    assert not message.defects
    return message


def parts_of(response: TestResponse, data: bytes = DATA) -> list[tuple[str, str, bool]]:
    """(Content-Range, Content-Type, bytes correct) for each part."""
    out = []
    for part in parse_multipart(response).iter_parts():
        content_range = str(part["Content-Range"])
        first, last = content_range.split(" ")[1].split("/")[0].split("-")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append(
            (content_range, part.get_content_type(), payload == data[int(first) : int(last) + 1])
        )
    return out


# (Range value, status, Content-Range of a single 206 or the parts' ranges)
SINGLE: list[tuple[str, int, str | None]] = [
    ("bytes=0-99", 206, "bytes 0-99/10000"),
    ("bytes=0-0", 206, "bytes 0-0/10000"),
    ("bytes=9999-9999", 206, "bytes 9999-9999/10000"),
    ("bytes=100-", 206, "bytes 100-9999/10000"),
    ("bytes=-500", 206, "bytes 9500-9999/10000"),
    ("bytes=-20000", 206, "bytes 0-9999/10000"),  # a suffix longer than the file
    ("bytes=9990-20000", 206, "bytes 9990-9999/10000"),  # clamped to the end
    ("BYTES=0-9", 206, "bytes 0-9/10000"),  # the unit is case-insensitive
    ("bytes=0-9,5-19", 206, "bytes 0-19/10000"),  # overlapping: coalesced
    ("bytes=0-9,10-19", 206, "bytes 0-19/10000"),  # adjacent: coalesced
    ("bytes=0-9,0-9,0-9", 206, "bytes 0-9/10000"),
    ("bytes=0-9,20000-", 206, "bytes 0-9/10000"),  # the unsatisfiable one dropped
    ("bytes=0-", 206, "bytes 0-9999/10000"),
    ("bytes=10000-", 416, "bytes */10000"),
    ("bytes=20000-30000", 416, "bytes */10000"),
    ("bytes=-0", 416, "bytes */10000"),
    ("bytes=10000-,-0", 416, "bytes */10000"),
    # ignored (a full 200): malformed, another unit, an invalid range
    ("bytes=9-0", 200, None),
    ("bytes=abc", 200, None),
    ("bytes=", 200, None),
    ("bytes=,", 200, None),
    ("bytes=1-2-3", 200, None),
    ("bytes=+1-2", 200, None),
    ("bytes=0x10-20", 200, None),
    ("bytes=-", 200, None),
    ("bytes 0-9", 200, None),
    ("items=0-9", 200, None),
    ("bytes=0-9,x", 200, None),
    (",".join(["bytes=0-0"] + [f"{i * 2}-{i * 2}" for i in range(1, 17)]), 200, None),  # 17
]


@pytest.mark.parametrize(("value", "status", "content_range"), SINGLE)
def test_single_ranges(client: Client, value: str, status: int, content_range: str | None) -> None:
    response = get(client, value)
    assert response.status == status
    assert response.header("content-range") == content_range
    if status == 206:
        assert content_range is not None
        first, last = content_range.split(" ")[1].split("/")[0].split("-")
        assert response.body == DATA[int(first) : int(last) + 1]
        assert response.header("content-length") == str(len(response.body))
        assert response.header("content-type") == "application/octet-stream"
        assert response.header("etag") is not None
        assert response.header("last-modified") is not None
        assert response.header("accept-ranges") == "bytes"  # as on the 200
    elif status == 200:
        assert response.body == DATA
        assert response.header("accept-ranges") == "bytes"
    else:
        assert DATA[:100] not in response.body


MULTI: list[tuple[str, list[str]]] = [
    ("bytes=0-9,20-29", ["bytes 0-9/10000", "bytes 20-29/10000"]),
    ("bytes= 0-9 , 20-29 ", ["bytes 0-9/10000", "bytes 20-29/10000"]),
    ("bytes=0-9,,20-29", ["bytes 0-9/10000", "bytes 20-29/10000"]),
    ("bytes=20-29,0-9", ["bytes 0-9/10000", "bytes 20-29/10000"]),  # sorted
    ("bytes=0-99,-100", ["bytes 0-99/10000", "bytes 9900-9999/10000"]),
    ("bytes=500-,0-0", ["bytes 0-0/10000", "bytes 500-9999/10000"]),
    ("bytes=0-9,5-14,100-199,150-249", ["bytes 0-14/10000", "bytes 100-249/10000"]),
    ("bytes=0-1,20000-,30-31", ["bytes 0-1/10000", "bytes 30-31/10000"]),
    (
        "bytes=" + ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(16)),  # 16: the cap
        [f"bytes {i * 100}-{i * 100 + 9}/10000" for i in range(16)],
    ),
]


@pytest.mark.parametrize(("value", "expected"), MULTI)
def test_multipart_ranges_parse_back(client: Client, value: str, expected: list[str]) -> None:
    response = get(client, value)
    assert response.status == 206
    assert response.header("content-range") is None
    assert response.header("content-length") == str(len(response.body))
    assert response.header("etag") is not None
    assert response.header("accept-ranges") == "bytes"
    parts = parts_of(response)
    assert parts == [(r, "application/octet-stream", True) for r in expected]


def test_multipart_boundary_is_random(client: Client) -> None:
    first = get(client, "bytes=0-1,5-6").header("content-type")
    second = get(client, "bytes=0-1,5-6").header("content-type")
    assert first != second


def test_large_multipart_streams_with_its_length_declared(client: Client, tmp_path: Path) -> None:
    data = (tmp_path / "site" / "big.bin").read_bytes()
    response = get(client, "bytes=0-99999,150000-", "/big.bin")
    assert response.status == 206
    assert parts_of(response, data) == [
        (f"bytes 0-99999/{BIG}", "application/octet-stream", True),
        (f"bytes 150000-{BIG - 1}/{BIG}", "application/octet-stream", True),
    ]
    assert response.context is not None
    writer = response.context.writer
    assert isinstance(writer, RecordingWriter)
    # Sized: the transport may sendfile the big parts.
    assert writer.content_length == len(response.body)
    assert response.header("content-length") == str(len(response.body))


def test_small_multipart_of_an_uncached_file_is_one_write(client: Client, tmp_path: Path) -> None:
    data = (tmp_path / "site" / "big.bin").read_bytes()
    response = get(client, "bytes=0-9,-10", "/big.bin")
    assert response.status == 206
    assert [p[2] for p in parts_of(response, data)] == [True, True]
    assert response.context is not None
    assert response.context.response.body == response.body  # buffered, not streamed


def test_large_single_range_goes_by_file_body(client: Client) -> None:
    response = get(client, "bytes=1000-", "/big.bin")
    assert response.status == 206
    assert response.context is not None
    body_file = response.context.response.file
    assert body_file is not None and (body_file.offset, body_file.length) == (1000, BIG - 1000)


def test_empty_file(client: Client) -> None:
    assert get(client, "bytes=0-", "/empty.bin").status == 416
    assert get(client, "bytes=-1", "/empty.bin").header("content-range") == "bytes */0"
    assert client.get("/empty.bin").status == 200


def test_head_ignores_range(client: Client) -> None:
    response = client.head("/data.bin", headers={"range": "bytes=0-9"})
    assert response.status == 200
    assert response.header("content-length") == str(SIZE)
    assert response.header("accept-ranges") == "bytes"  # what a GET would say
    assert response.body == b""


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        ("ETAG", 206),
        ('"other"', 200),
        ("W/ETAG", 200),
        (formatdate(MTIME, usegmt=True), 206),
        (formatdate(MTIME - 1, usegmt=True), 200),
        ("not a date", 200),
    ],
)
def test_if_range(client: Client, if_range: str, status: int) -> None:
    etag = client.get("/data.bin").header("etag")
    assert etag is not None
    response = get(client, "bytes=0-9", **{"if-range": if_range.replace("ETAG", etag)})
    assert response.status == status
    assert response.body == (DATA[:10] if status == 206 else DATA)


def test_range_settings(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with Client(build_engine(config(root, static_content={"max_ranges": 0}))) as c:
        response = get(c, "bytes=0-9")
        assert response.status == 200 and response.body == DATA
        assert response.header("accept-ranges") is None
    with Client(build_engine(config(root, static_content={"max_ranges": 2}))) as c:
        assert get(c, "bytes=0-9,20-29").status == 206
        assert get(c, "bytes=0-9,20-29,40-49").status == 200
        assert get(c, "bytes=0-9,,,20-29").status == 206  # empty elements do not count


# -- the parser on its own -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size", "spans"),
    [
        (b"bytes=0-4", 10, [(0, 5)]),
        (b"bytes=5-", 10, [(5, 10)]),
        (b"bytes=-3", 10, [(7, 10)]),
        (b"bytes=-3", 0, []),
        (b"bytes=0-", 0, []),
        (b"bytes=8-100,0-1", 10, [(0, 2), (8, 10)]),
        (b"bytes=0-99999999999999999999999", 10, [(0, 10)]),
        (b"bytes=99999999999999999999999-", 10, []),
        (b"bytes=1-0", 10, None),
        (b"bytes=0-1;x", 10, None),
        (b"bytes=\xff", 10, None),
        (b"bytes=\xd9\xa1-2", 10, None),  # non-ASCII digits are not digits
        # Positions of thousands of digits (found by fuzzing: int() refused them
        # with a ValueError, a 500): beyond the file, and leading zeros count for
        # nothing.
        (b"bytes=" + b"1" * 5000 + b"-", 10, []),
        (b"bytes=0-" + b"9" * 5000, 10, [(0, 10)]),
        (b"bytes=-" + b"9" * 5000, 10, [(0, 10)]),
        (b"bytes=" + b"0" * 5000 + b"5-" + b"0" * 5000 + b"7", 10, [(5, 8)]),
    ],
)
def test_parse_ranges(value: bytes, size: int, spans: list[tuple[int, int]] | None) -> None:
    assert parse_ranges(value, size, 16) == spans


def test_positions_of_thousands_of_digits_are_answered_not_failed(client: Client) -> None:
    # Found by fuzzing (tests/fuzz): a 500 and a logged traceback before.
    assert get(client, "bytes=" + "1" * 5000 + "-").status == 416
    whole = get(client, "bytes=0-" + "9" * 5000)
    assert (whole.status, whole.body) == (206, DATA)


def test_coalesce() -> None:
    assert coalesce([(5, 10), (0, 5)]) == [(0, 10)]
    assert coalesce([(0, 10), (2, 3)]) == [(0, 10)]
    assert coalesce([(0, 1), (2, 3)]) == [(0, 1), (2, 3)]


def test_multipart_length_is_exact() -> None:
    data = bytes(range(256)) * 4
    framed = multipart([(0, 1), (100, 300), (1000, 1024)], len(data), b"image/png")
    assert len(framed.join(data)) == framed.length
