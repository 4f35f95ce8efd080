"""Conditional requests (RFC 9110 13): the order the preconditions are evaluated in.

Sans-IO: these functions see header values and the file's validators, never a
socket or a file. :func:`collect` makes one pass over the request headers and
answers None for the common request that carries none of the fields (the fast
path skips everything else). :func:`evaluate` applies RFC 9110 13.2.2:

1. ``If-Match`` (strong comparison) fails → 412; only without it,
   ``If-Unmodified-Since``: the file changed after that date → 412.
2. ``If-None-Match`` (weak comparison) matches → 304 for GET/HEAD, 412 for other
   methods; only without it, and only for GET/HEAD, ``If-Modified-Since`` not older
   than the file → 304.
3. Otherwise the request proceeds; for GET, :func:`range_allowed` then decides
   whether ``If-Range`` lets ``Range`` apply.

A date that does not parse is ignored, as the RFC asks. A list field sent on
several lines is one list; a singleton field (a date, ``Range``, ``If-Range``) sent
twice is treated as absent (or, for ``If-Range``, as not matching).
"""

from __future__ import annotations

from typing import NamedTuple

from colonnade.core.httputil import parse_http_date, strong_match, weak_match
from colonnade.core.request import Headers

OK = 200
NOT_MODIFIED = 304
PRECONDITION_FAILED = 412

#: Every request header this module (and Range handling) reads.
FIELDS = frozenset(
    {
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"range",
        b"if-range",
    }
)
#: A repeated singleton field: never a valid date, range or validator.
_REPEATED = b""


class Conditions(NamedTuple):
    """The conditional and range fields of one request (None: not sent)."""

    if_match: bytes | None = None
    if_unmodified_since: bytes | None = None
    if_none_match: bytes | None = None
    if_modified_since: bytes | None = None
    range: bytes | None = None
    if_range: bytes | None = None


class Validators(NamedTuple):
    """What a client may hold about a file version to ask "has it changed?"."""

    etag: bytes | None  # strong, quoted; None when ETags are off
    last_modified: bytes  # the Last-Modified header value as sent
    mtime: int  # whole seconds, the precision of Last-Modified


def collect(headers: Headers) -> Conditions | None:
    """The request's conditional and range fields, or None if it sent none."""
    if_match = if_unmodified_since = if_none_match = if_modified_since = None
    range_ = if_range = None
    for name, value in headers:
        if name not in FIELDS:
            continue
        # Plain comparisons, most common first (what browsers revalidate with).
        if name == b"if-none-match":
            if_none_match = value if if_none_match is None else if_none_match + b", " + value
        elif name == b"if-modified-since":
            if_modified_since = value if if_modified_since is None else _REPEATED
        elif name == b"range":
            range_ = value if range_ is None else _REPEATED
        elif name == b"if-range":
            if_range = value if if_range is None else _REPEATED
        elif name == b"if-match":
            if_match = value if if_match is None else if_match + b", " + value
        else:
            if_unmodified_since = value if if_unmodified_since is None else _REPEATED
    if (
        if_none_match is None
        and if_modified_since is None
        and range_ is None
        and if_range is None
        and if_match is None
        and if_unmodified_since is None
    ):
        return None
    return Conditions(
        if_match, if_unmodified_since, if_none_match, if_modified_since, range_, if_range
    )


def evaluate(found: Conditions, method: str, current: Validators) -> int:
    """200 (go on), 304 (not modified) or 412 (precondition failed), RFC 9110 13.2.2."""
    if found.if_match is not None:
        if not strong_match(found.if_match, current.etag):
            return PRECONDITION_FAILED
    elif found.if_unmodified_since is not None:
        since = _date(found.if_unmodified_since, current)
        if since is not None and current.mtime > since:
            return PRECONDITION_FAILED
    get_or_head = method == "GET" or method == "HEAD"
    if found.if_none_match is not None:
        if weak_match(found.if_none_match, current.etag):
            return NOT_MODIFIED if get_or_head else PRECONDITION_FAILED
    elif found.if_modified_since is not None and get_or_head:
        since = _date(found.if_modified_since, current)
        if since is not None and current.mtime <= since:
            return NOT_MODIFIED
    return OK


def range_allowed(if_range: bytes | None, current: Validators, now: float) -> bool:
    """True if ``Range`` applies: no ``If-Range``, or it names this very version.

    An entity tag must match strongly (a weak tag never does); a date must be the
    file's ``Last-Modified`` exactly, and that date must be a strong validator:
    at least a second in the past (RFC 9110 8.8.2.2), else a second write within
    the same second could hide behind it.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith((b'"', b"W/")):
        etag = current.etag
        return etag is not None and value == etag
    if current.mtime >= now - 1:
        return False
    if value == current.last_modified:
        return True
    when = parse_http_date(value)
    return when is not None and when == current.mtime


def _date(value: bytes, current: Validators) -> int | None:
    # What browsers send back is our own Last-Modified, byte for byte: skip parsing.
    if value == current.last_modified:
        return current.mtime
    return parse_http_date(value)
