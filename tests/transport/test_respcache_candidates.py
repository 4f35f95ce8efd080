"""Which requests the response cache may answer (``respcache.request_encoding``),
from heads as the HTTP/1.1 layer parses them: the fields that make an answer the
client's own send the request to the pipeline, however they are spelled."""

from __future__ import annotations

import pytest

from colonnade.http import HTTP1Connection, RequestHead
from colonnade.transport.respcache import BYPASS, request_encoding


def parsed(*fields: bytes, method: bytes = b"GET") -> RequestHead:
    data = b"%s /f HTTP/1.1\r\nHost: a\r\n%s\r\n" % (method, b"".join(f + b"\r\n" for f in fields))
    (head, *_) = HTTP1Connection().feed(data)
    assert isinstance(head, RequestHead)
    return head


@pytest.mark.parametrize("name", sorted(BYPASS))
@pytest.mark.parametrize("spelling", [bytes.lower, bytes.title, bytes.upper])
def test_a_bypassing_field_takes_the_pipeline(name: bytes, spelling: object) -> None:
    field = spelling(name) + b": x"  # type: ignore[operator]
    assert request_encoding(parsed(field)) is None
    assert request_encoding(parsed(b"Accept-Encoding: gzip", field, b"Accept: */*")) is None


def test_the_bypassing_fields() -> None:
    # The conditional and range fields, credentials and a protocol switch; no more.
    names = b"range if-range if-match if-none-match if-modified-since if-unmodified-since"
    assert frozenset([*names.split(), b"authorization", b"upgrade"]) == BYPASS


def test_a_candidates_encoding_is_its_accept_encoding_fields_joined() -> None:
    assert request_encoding(parsed()) == b""
    assert request_encoding(parsed(b"Cookie: a=b", b"Accept: */*")) == b""
    assert request_encoding(parsed(b"Accept-Encoding: gzip")) == b"gzip"
    assert request_encoding(parsed(b"accept-encoding: gzip", b"ACCEPT-ENCODING: br")) == b"gzip,br"
    assert request_encoding(parsed(method=b"HEAD")) == b""
    assert request_encoding(parsed(method=b"POST")) is None
    assert request_encoding(parsed(b"Content-Length: 1", method=b"GET")) is None
