"""Cache keys: fixed-size digests of what a request varies on.

A key is built in two halves. The *base* key covers what is known before any
response exists: scheme, host, URL path (as served and, after a rewrite, as
asked for), the query string (all of it, the
listed keys, or none: the rule's ``vary_by_query_string``), the rule's
``vary_by_headers`` and ``Accept-Encoding``. The *full* key adds the values of
the request headers a stored response named in its own ``Vary`` (the tier
remembers those names per base key). Each half is a 16-byte BLAKE2b digest of
length-prefixed parts, so no value can be crafted to read as another part, and
a key costs the same whatever the client sent.

``Accept-Encoding`` is reduced to its elements that name a content coding
someone could produce (lower case, blanks removed, in the client's order):
clients that ask the same thing share the entry, and no compression decision
can differ between two requests with the same reduced value.
"""

from __future__ import annotations

from hashlib import blake2b
from urllib.parse import unquote_to_bytes

from colonnade.core.request import Request
from colonnade.modules.output_cache.config import CacheRule

#: Content codings whose presence (and q-value) in Accept-Encoding may change a
#: response; other elements cannot, and are left out of the key.
_CODINGS = frozenset(
    {b"br", b"zstd", b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress", b"identity", b"*"}
)


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


def _add(digest: blake2b, part: bytes) -> None:
    digest.update(len(part).to_bytes(4, "big"))
    digest.update(part)


def _header(digest: blake2b, request: Request, name: bytes) -> None:
    _add(digest, name)
    values = request.header_values(name)
    digest.update(len(values).to_bytes(4, "big"))
    for value in values:
        _add(digest, value)


def base_key(request: Request, rule: CacheRule) -> bytes:
    """The first half of ``request``'s key under ``rule``."""
    digest = blake2b(digest_size=16)
    _add(digest, request.scheme.encode("latin-1", "replace"))
    _add(digest, request.host.lower().encode("utf-8", "surrogateescape"))
    _add(digest, request.path.encode("utf-8", "surrogateescape"))
    # The URL the client asked for as well: a rewrite that sends /de/x and /fr/x
    # to /x may have set a header (a server variable) the response depends on.
    original = request.original_path
    _add(digest, b"" if original == request.path else original.encode("utf-8", "surrogateescape"))
    # HTTP/1.0 clients may be answered otherwise (no compression by default).
    _add(digest, b"1.0" if request.version == "1.0" else b"")
    _add(digest, _query(request.query, rule.query_keys))
    _add(digest, accept_encoding(request.header_values(b"accept-encoding")))
    for name in rule.header_names:
        _header(digest, request, name)
    return digest.digest()


def full_key(base: bytes, request: Request, varies: tuple[bytes, ...]) -> bytes:
    """``base`` completed with the request's values of the ``varies`` headers."""
    if not varies:
        return base
    digest = blake2b(base, digest_size=16)
    for name in varies:
        _header(digest, request, name)
    return digest.digest()
