"""Cache keys: fixed-size digests of what a request varies on.

A key is built in two halves. The *base* key covers what is known before any
response exists: scheme, host, URL path (as served and, after a rewrite, as
asked for), the query string (all of it, the
listed keys, or none: the rule's ``vary_by_query_string``), the rule's
``vary_by_headers`` and ``Accept-Encoding``. The *full* key adds the values of
the request headers a stored response named in its own ``Vary`` (the tier
remembers those names per base key). Each half is a 16-byte BLAKE2b digest of
its parts packed as one MessagePack array (every string and byte string in it
length-prefixed), so no value can be crafted to read as another part, and a
key costs the same whatever the client sent. One C call packs the parts and
one hashes them: the key is built on every lookup, a cache hit included.

``Accept-Encoding`` is reduced to its elements that name a content coding
someone could produce (lower case, blanks removed, in the client's order):
clients that ask the same thing share the entry, and no compression decision
can differ between two requests with the same reduced value.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b
from urllib.parse import unquote_to_bytes

import msgspec

from colonnade.core.request import Request
from colonnade.modules.output_cache.config import CacheRule

#: Content codings whose presence (and q-value) in Accept-Encoding may change a
#: response; other elements cannot, and are left out of the key.
_CODINGS = frozenset(
    {b"br", b"zstd", b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress", b"identity", b"*"}
)


_pack = msgspec.msgpack.Encoder().encode


def accept_encoding(values: list[bytes]) -> bytes:
    """The part of ``Accept-Encoding`` (every line of it) that can vary a response."""
    kept: list[bytes] = []
    for value in values:
        for element in value.split(b","):
            element = element.translate(None, b" \t").lower()
            name = element.partition(b";")[0]
            if name in _CODINGS:
                kept.append(element)
    return b",".join(kept)


def _query(query: bytes, keys: frozenset[bytes] | None) -> bytes:
    if keys is None:
        return query
    if not keys or not query:
        return b""
    # Keys are compared decoded (an application reads ``%61`` as ``a``); pairs
    # keep their order, so that ``a=1&a=2`` and ``a=2&a=1`` stay two variants.
    kept = [
        pair
        for pair in query.split(b"&")
        if unquote_to_bytes(pair.partition(b"=")[0].replace(b"+", b" ")) in keys
    ]
    return b"&".join(kept)


def _headers(request: Request, names: Iterable[bytes]) -> list[tuple[bytes, list[bytes]]]:
    return [(name, request.header_values(name)) for name in names]


def _digest(parts: tuple[object, ...]) -> bytes:
    try:
        packed = _pack(parts)
    except UnicodeEncodeError:
        # A path with bytes that are not UTF-8 (kept as surrogates): packed as
        # bytes, which no str packs to (MessagePack tells str from bin).
        packed = _pack(
            tuple(p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p for p in parts)
        )
    return blake2b(packed, digest_size=16).digest()


def base_key(request: Request, rule: CacheRule, encodings: list[bytes] | None = None) -> bytes:
    """The first half of ``request``'s key under ``rule`` (``encodings``: its
    ``Accept-Encoding`` values, where the caller found them already)."""
    path = request.path
    original = request.original_path
    keys = rule.query_keys
    if encodings is None:
        encodings = request.header_values(b"accept-encoding")
    names = rule.header_names
    return _digest(
        (
            request.scheme,
            request.host.lower(),
            path,
            # The URL the client asked for as well: a rewrite that sends /de/x
            # and /fr/x to /x may have set a header (a server variable) the
            # response depends on.
            "" if original == path else original,
            # HTTP/1.0 clients may be answered otherwise (no compression by default).
            request.version == "1.0",
            request.query if keys is None else _query(request.query, keys),
            accept_encoding(encodings) if encodings else b"",
            _headers(request, names) if names else None,
        )
    )


def full_key(base: bytes, request: Request, varies: tuple[bytes, ...]) -> bytes:
    """``base`` completed with the request's values of the ``varies`` headers."""
    if not varies:
        return base
    return _digest((base, _headers(request, varies)))
