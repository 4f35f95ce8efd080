"""Decoding request paths: one canonical form, never above the root."""

from __future__ import annotations

import itertools
import urllib.parse

import pytest

from colonnade.core.urlpath import covers, decode_path, quote, unquote_to_bytes
from colonnade.errors import HttpError

GOOD = [
    (b"/", "/"),
    (b"/a/b.txt", "/a/b.txt"),
    (b"/a/./b", "/a/b"),
    (b"/a/../b", "/b"),
    (b"/a//b", "/a/b"),
    (b"/dir/", "/dir/"),
    (b"/a/b/..", "/a/"),
    (b"/%7Euser/x%20y", "/~user/x y"),
    (b"/caf%C3%A9", "/caf\u00e9"),
    (b"/a%2fb", "/a/b"),  # an encoded slash is a slash: no second meaning
    (b"/a/%2e%2e/b", "/b"),
    (b"*", "*"),
]

BAD = [
    b"/..",
    b"/../etc/passwd",
    b"/%2e%2e/etc",
    b"/a/../../etc",
    b"/..%2f..%2fetc",
    b"/%00",
    b"/a%00.txt",
    b"/%zz",
    b"/%4",
    b"/%c0%ae%c0%ae/",  # overlong UTF-8 dots are not UTF-8
    b"/%ff",
    b"relative",
    b"/caf\xc3\xa9",  # raw non-ASCII bytes
]


@pytest.mark.parametrize(("raw", "expected"), GOOD)
def test_decodes(raw: bytes, expected: str) -> None:
    assert decode_path(raw) == expected


@pytest.mark.parametrize("raw", BAD)
def test_refuses(raw: bytes) -> None:
    with pytest.raises(HttpError) as info:
        decode_path(raw)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/", "/", True),
        ("/", "/anything/below", True),
        ("/app", "/app", True),
        ("/app", "/app/", True),
        ("/app", "/app/x/y", True),
        ("/app", "/apple", False),  # whole segments only
        ("/app", "/ap", False),
        ("/app", "/", False),
        ("/app", "/other/app", False),
        ("/a/b", "/a", False),
        ("/a/b", "/a/b/c", True),
    ],
)
def test_covers(prefix: str, path: str, expected: bool) -> None:
    assert covers(prefix, path) is expected


#: Every string of up to three of these: escapes whole, cut short, malformed, in a row.
UNQUOTE_ALPHABET = b"%0aF/gZ \x00\xff"


def test_unquote_to_bytes_answers_as_urllib_does() -> None:
    # core.urlpath's own, so that a worker does not import urllib.parse for it.
    for n in range(5):
        for chars in itertools.product(UNQUOTE_ALPHABET, repeat=n):
            raw = bytes(chars)
            assert unquote_to_bytes(raw) == urllib.parse.unquote_to_bytes(raw), raw
    for raw in (b"", b"/a%2Fb%2fc", b"%%41", b"%E2%82%AC%", b"100%", b"%%%"):
        assert unquote_to_bytes(raw) == urllib.parse.unquote_to_bytes(raw), raw


@pytest.mark.parametrize("safe", ["/", "", "/!$&'()*+,;=:@-._~", "\u00e9/%"])
def test_quote_answers_as_urllib_does(safe: str) -> None:
    for chars in itertools.product("a~ /%?\u00e9\u20ac\U0001f600\x00", repeat=3):
        text = "".join(chars)
        assert quote(text, safe=safe) == urllib.parse.quote(text, safe=safe), (text, safe)
    assert quote("/caf\u00e9 x/") == urllib.parse.quote("/caf\u00e9 x/") == "/caf%C3%A9%20x/"
