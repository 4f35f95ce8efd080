"""Cache keys (modules/output_cache/keys.py): every part counts, no part can be
crafted to read as another, bytes that are not UTF-8 are keyed too, and a key
is the same in every process (the nodes of a farm share entries in Redis)."""

from __future__ import annotations

import subprocess
import sys

from colonnade.core.request import Request
from colonnade.modules.output_cache.config import OutputCacheSection
from colonnade.modules.output_cache.keys import base_key, full_key

RULE = OutputCacheSection(policy="for_time_period", vary_by_headers=["X-Lang"]).own_rule


def key(path: str = "/a", query: bytes = b"", **kw: object) -> bytes:
    headers = kw.pop("headers", [(b"host", b"example.com")])
    request = Request("GET", path, query=query, headers=headers, **kw)  # type: ignore[arg-type]
    return base_key(request, RULE)


def test_every_part_counts_and_boundaries_cannot_shift() -> None:
    keys = {
        key(),
        key("/ab"),
        key("/a", b"b"),  # not /ab with no query
        key(host="example.com"),
        key(scheme="https"),
        key(version="1.0"),
        key(headers=[(b"accept-encoding", b"gzip")]),
        key(headers=[(b"x-lang", b"en")]),
        key(headers=[(b"x-lang", b"en"), (b"x-lang", b"fr")]),
        key(headers=[(b"x-lang", b"en,fr")]),
    }
    assert len(keys) == 10 and all(len(k) == 16 for k in keys)
    # What does not vary a response does not make another key.
    assert key(headers=[(b"accept-encoding", b"gzip, foo")]) == key(
        headers=[(b"accept-encoding", b"GZIP")]
    )


def test_a_path_that_is_not_utf8_is_keyed() -> None:
    odd = "/\udcff"  # the byte 0xff, kept by surrogateescape
    assert key(odd, raw_path=b"/\xff") != key("/\xff") and len(key(odd, raw_path=b"/\xff")) == 16


def test_the_full_key_adds_the_varying_headers() -> None:
    request = Request("GET", "/a", headers=[(b"accept-language", b"en")])
    base = base_key(request, RULE)
    assert full_key(base, request, ()) == base
    other = Request("GET", "/a", headers=[(b"accept-language", b"fr")])
    assert full_key(base, request, (b"accept-language",)) != full_key(
        base, other, (b"accept-language",)
    )


def test_a_key_is_the_same_in_every_process() -> None:
    code = (
        "from tests.modules.output_cache.test_keys import key;"
        "print(key('/a', b'x=1', headers=[(b'x-lang', b'en')]).hex())"
    )
    seeds = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert seeds == {key("/a", b"x=1", headers=[(b"x-lang", b"en")]).hex()}
