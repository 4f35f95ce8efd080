"""How a compressed variant's headers differ from the original's, and which types qualify."""

from __future__ import annotations

from colonnade.core import conditional
from colonnade.core.httputil import weak_match
from colonnade.core.request import Headers
from colonnade.core.response import Response
from colonnade.modules.compression.codings import Coding

ACCEPT_ENCODING = b"Accept-Encoding"
VARY = (b"vary", ACCEPT_ENCODING)

#: How many distinct Content-Type values keep their verdict.
_TYPES_CACHE_SIZE = 512


class MediaTypes:
    """The ``mime_types`` patterns, compiled; verdicts cached per header value."""

    __slots__ = ("_any", "_cache", "_exact", "_suffixes", "_types")

    def __init__(self, patterns: list[str]) -> None:
        self._any = False
        self._exact: set[str] = set()
        self._types: set[str] = set()  # "text" for "text/*"
        self._suffixes: set[tuple[str, str]] = set()  # ("application", "+json")
        for pattern in patterns:
            kind, _, sub = pattern.lower().partition("/")
            if kind == "*":
                self._any = True
            elif sub == "*":
                self._types.add(kind)
            elif sub.startswith("*+"):
                self._suffixes.add((kind, sub[1:]))
            else:
                self._exact.add(f"{kind}/{sub}")
        self._cache: dict[bytes, bool] = {}

    def match(self, content_type: bytes) -> bool:
        """True if a ``Content-Type`` value names a compressible type."""
        found = self._cache.get(content_type)
        if found is None:
            found = self._match(content_type.split(b";", 1)[0].strip().lower().decode("latin-1"))
            if len(self._cache) >= _TYPES_CACHE_SIZE:
                self._cache.clear()
            self._cache[content_type] = found
        return found

    def _match(self, media_type: str) -> bool:
        kind, slash, sub = media_type.partition("/")
        if not slash or not kind or not sub:
            return False
        if self._any or media_type in self._exact or kind in self._types:
            return True
        plus = sub.rfind("+")
        return plus > 0 and (kind, sub[plus:]) in self._suffixes


def variant_etag(etag: bytes, coding: Coding, *, weak: bool = False) -> bytes | None:
    """``"abc"`` → ``"abc-br"`` (``W/`` kept or added); None for a malformed tag."""
    if etag.startswith(b"W/"):
        weak = True
        etag = etag[2:]
    if len(etag) < 2 or etag[:1] != b'"' or etag[-1:] != b'"':
        return None
    tagged = etag[:-1] + coding.suffix + b'"'
    return b"W/" + tagged if weak else tagged


def encoded_headers(
    headers: Headers, coding: Coding, *, length: int | None, weak: bool = False
) -> Headers:
    """``headers`` for the ``coding`` variant: Content-Encoding added, Content-Length
    set to ``length`` (dropped when None), ETag tagged with the coding.

    ``Accept-Ranges`` goes: a variant is always sent whole, ranges of the coded
    bytes are not offered. Nor is ``Accept-Ranges: none`` sent: the resource does
    take ranges, a Range request gets them of the original (the handler answers
    206 before compression looks, and ``no_compression_for_range`` keeps a
    ranged request's whole 200 uncompressed), as nginx's gzip filter does.
    """
    out: Headers = []
    for name, value in headers:
        if name == b"content-length" or name == b"accept-ranges":
            continue
        if name == b"etag":
            tagged = variant_etag(value, coding, weak=weak)
            if tagged is None:
                continue  # a tag we cannot vary must not name both variants
            value = tagged
        out.append((name, value))
    out.append((b"content-encoding", coding.token))
    if length is not None:
        out.append((b"content-length", b"%d" % length))
    return out


def has_header(headers: Headers, name: bytes) -> bool:
    """True if ``headers`` hold ``name`` (lower case)."""
    return any(key == name for key, _ in headers)


def not_modified(response: Response, if_none_match: bytes | None, etag: bytes | None) -> bool:
    """Turn ``response`` into a 304 if the client holds the variant tagged ``etag``.

    The handler compared ``If-None-Match`` with the original's tag and found no
    match; the client may hold the compressed variant, whose tag only this module
    knows.
    """
    if if_none_match is None or etag is None or not weak_match(if_none_match, etag):
        return False
    conditional.not_modified(response)
    response.headers = [
        (name, etag if name == b"etag" else value) for name, value in response.headers
    ]
    return True
