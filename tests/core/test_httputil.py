"""HTTP field syntax: token lists, entity tags and their comparisons, dates, 405."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from colonnade.core.httputil import (
    entity_tags,
    format_http_date,
    has_token,
    http_date,
    is_field_value,
    is_token,
    method_not_allowed,
    parse_http_date,
    strong_match,
    weak_match,
)

# -- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "token", "expected"),
    [
        (b"close", b"close", True),
        (b"Keep-Alive, Upgrade", b"upgrade", True),
        (b"keep-alive,upgrade", b"upgrade", True),
        (b" \tUPGRADE\t ", b"upgrade", True),
        (b"upgrade-insecure", b"upgrade", False),  # whole elements, not substrings
        (b"x-accept-encoding", b"accept-encoding", False),
        (b"Origin, Accept-Encoding", b"accept-encoding", True),
        (b"*", b"*", True),
        (b"", b"close", False),
        (b",,", b"close", False),
    ],
)
def test_has_token(value: bytes, token: bytes, expected: bool) -> None:
    assert has_token(value, token) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Content-Type", True),
        (b"x-a!#$%&'*+.^_`|~9", True),
        (b"", False),
        (b"two words", False),
        (b"colon:", False),
        (b"caf\xe9", False),
        (b"tab\t", False),
    ],
)
def test_is_token(value: bytes, expected: bool) -> None:
    assert is_token(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"text/html; charset=utf-8", True),
        (b"", True),
        (b"a\tb c", True),
        (b"caf\xe9", True),  # obs-text
        (b"a\r\nSet-Cookie: x=1", False),
        (b"a\nb", False),
        (b"a\rb", False),
        (b"a\x00b", False),
        (b" leading", False),
        (b"trailing\t", False),
    ],
)
def test_is_field_value(value: bytes, expected: bool) -> None:
    assert is_field_value(value) is expected


# -- entity tags -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        (b'"a"', [(False, b'"a"')]),
        (b'W/"a"', [(True, b'"a"')]),
        (b'"a", W/"b" ,"c"', [(False, b'"a"'), (True, b'"b"'), (False, b'"c"')]),
        # A comma inside a tag is part of it (RFC 9110 8.8.3): no splitting on commas.
        (b'"a,b", "c"', [(False, b'"a,b"'), (False, b'"c"')]),
        (b'W/"x, y"', [(True, b'"x, y"')]),
        (b"", []),
        (b" , ,", []),
        (b'"a", unquoted, "b"', [(False, b'"a"')]),  # malformed: the list ends there
        (b'"a", "open', [(False, b'"a"')]),
        (b'w/"a"', []),  # W/ is case-sensitive
    ],
)
def test_entity_tags(header: bytes, tags: list[tuple[bool, bytes]]) -> None:
    assert list(entity_tags(header)) == tags


# (If-Match / If-None-Match value, our ETag, strong comparison, weak comparison)
COMPARISONS = [
    (b'"v1"', b'"v1"', True, True),
    (b'"v1"', b'"v2"', False, False),
    (b'W/"v1"', b'"v1"', False, True),
    (b'"v1"', b'W/"v1"', False, True),
    (b'W/"v1"', b'W/"v1"', False, True),  # equal bytes, but weak: never strong
    (b'"x", "v1"', b'"v1"', True, True),
    (b'"x", W/"v1"', b'"v1"', False, True),
    (b'"a,b"', b'"a,b"', True, True),
    (b'"a,b", "c"', b'"a,b"', True, True),
    (b'"a", "b"', b'"a,b"', False, False),  # split on commas, this would match
    (b"*", b'"v1"', True, True),
    (b" * ", b'W/"v1"', True, True),
    (b"*", None, True, True),  # the representation exists, whatever its tags
    (b'"v1"', None, False, False),
    (b'"V1"', b'"v1"', False, False),  # opaque tags compare case-sensitively
]


@pytest.mark.parametrize(("header", "etag", "strong", "weak"), COMPARISONS)
def test_strong_and_weak_comparison(
    header: bytes, etag: bytes | None, strong: bool, weak: bool
) -> None:
    assert strong_match(header, etag) is strong
    assert weak_match(header, etag) is weak


# -- dates -------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 784111777, 1_600_000_000, 2_000_000_000, 4_102_444_800])
def test_format_http_date_is_the_imf_fixdate(seconds: int) -> None:
    expected = formatdate(seconds, usegmt=True).encode()
    assert format_http_date(seconds) == expected
    assert http_date(seconds) == expected
    assert http_date(seconds) is http_date(seconds)  # remembered per second
    assert parse_http_date(expected) == seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
        (b"Sunday, 06-Nov-94 08:49:37 GMT", 784111777),  # RFC 850
        (b"Sun Nov  6 08:49:37 1994", 784111777),  # asctime
        (b"garbage", None),
        (b"", None),
        (b"Sun, 06 Nov 1994 25:49:37 GMT", None),  # no rolling over into the next day
        (b"Sun, 06 Nov 1994 08:60:37 GMT", None),
        (b"Sun, 06 Nov 1994 08:49:61 GMT", None),
    ],
)
def test_parse_http_date(value: bytes | str, expected: int | None) -> None:
    assert parse_http_date(value) == expected


# -- 405 ---------------------------------------------------------------------------------


def test_method_not_allowed_lists_the_methods_sorted() -> None:
    error = method_not_allowed(frozenset({"HEAD", "GET", "POST"}))
    assert (error.status, error.substatus) == (405, 0)
    assert error.headers == [(b"allow", b"GET, HEAD, POST")]
    assert method_not_allowed(iter(["GET"])).headers == [(b"allow", b"GET")]
