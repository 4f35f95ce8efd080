"""Conditional requests (RFC 9110 13) and single byte ranges, for any handler.

Sans-IO at its centre: :func:`collect`, :func:`evaluate`, :func:`range_allowed`
and :func:`decide` see header values, the response's validators and the
representation's length, never a socket or a file. Around them, two ways in:

- :func:`apply_conditions` for a handler that built a whole response (``body``
  or ``file``) with its ``ETag``/``Last-Modified`` headers: it turns that 200
  into the 304, 412, 206 (one range) or 416 the request asks for, as nginx's
  not-modified and range filters do for every content handler.
- :func:`decide` for a handler that answers otherwise (a stream, prepared
  headers, several ranges): the status and the byte spans, the rest is its own.

:func:`collect` makes one pass over the request headers and answers None for the
common request that carries none of the fields (the fast path skips everything
else). :func:`evaluate` applies RFC 9110 13.2.2:

1. ``If-Match`` (strong comparison) fails → 412; only without it,
   ``If-Unmodified-Since``: the representation changed after that date → 412.
2. ``If-None-Match`` (weak comparison) matches → 304 for GET/HEAD, 412 for other
   methods; only without it, and only for GET/HEAD, ``If-Modified-Since`` not older
   than the representation → 304.
3. Otherwise the request proceeds; for GET, :func:`range_allowed` then decides
   whether ``If-Range`` lets ``Range`` apply (:mod:`colonnade.core.ranges`).

A date that does not parse is ignored, as the RFC asks, and so are the date
fields when the response has no ``Last-Modified``. A list field sent on several
lines is one list; a singleton field (a date, ``Range``, ``If-Range``) sent twice
is treated as absent (or, for ``If-Range``, as not matching).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from colonnade.core.httputil import parse_http_date, strong_match, weak_match
from colonnade.core.ranges import Span, content_range, parse_ranges, unsatisfied_range
from colonnade.core.request import Headers, Request
from colonnade.core.response import FileBody, Response

if TYPE_CHECKING:
    from colonnade.core.context import Context

OK = 200
PARTIAL_CONTENT = 206
NOT_MODIFIED = 304
PRECONDITION_FAILED = 412
RANGE_NOT_SATISFIABLE = 416

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
    """What a client may hold about a representation to ask "has it changed?"."""

    etag: bytes | None  # the ETag value as sent (quoted, W/ if weak); None: no ETag
    last_modified: bytes | None  # the Last-Modified value as sent; None: not sent
    mtime: int | None  # Last-Modified in seconds since the epoch; None: unknown


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
        if since is not None and current.mtime is not None and current.mtime > since:
            return PRECONDITION_FAILED
    get_or_head = method == "GET" or method == "HEAD"
    if found.if_none_match is not None:
        if weak_match(found.if_none_match, current.etag):
            return NOT_MODIFIED if get_or_head else PRECONDITION_FAILED
    elif found.if_modified_since is not None and get_or_head:
        since = _date(found.if_modified_since, current)
        if since is not None and current.mtime is not None and current.mtime <= since:
            return NOT_MODIFIED
    return OK


def range_allowed(if_range: bytes | None, current: Validators, now: float) -> bool:
    """True if ``Range`` applies: no ``If-Range``, or it names this very version.

    An entity tag must match strongly (a weak tag, ours or the client's, never
    does); a date must be the ``Last-Modified`` exactly, and that date must be a
    strong validator: at least a second in the past (RFC 9110 8.8.2.2), else a
    second write within the same second could hide behind it.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith((b'"', b"W/")):
        etag = current.etag
        return etag is not None and value == etag and not etag.startswith(b"W/")
    mtime = current.mtime
    if mtime is None or mtime >= now - 1:
        return False
    if value == current.last_modified:
        return True
    when = parse_http_date(value)
    return when is not None and when == mtime


def _date(value: bytes, current: Validators) -> int | None:
    # What browsers send back is our own Last-Modified, byte for byte: skip parsing.
    if value == current.last_modified:
        return current.mtime
    return parse_http_date(value)


# -- the decision ------------------------------------------------------------------------


class Decision(NamedTuple):
    """What a request's preconditions and ``Range`` make of a 200 response.

    ``status`` is OK (send it whole), NOT_MODIFIED, PRECONDITION_FAILED,
    PARTIAL_CONTENT (send ``spans``: sorted, coalesced, at least one) or
    RANGE_NOT_SATISFIABLE.
    """

    status: int
    spans: tuple[Span, ...] = ()


FULL = Decision(OK)
_NOT_MODIFIED = Decision(NOT_MODIFIED)
_PRECONDITION_FAILED = Decision(PRECONDITION_FAILED)
_UNSATISFIABLE = Decision(RANGE_NOT_SATISFIABLE)


def decide(
    request: Request,
    current: Validators,
    length: int,
    *,
    max_ranges: int = 1,
    now: float | None = None,
) -> Decision:
    """The answer to ``request`` for a representation of ``length`` bytes whose
    validators are ``current``, per RFC 9110 13.2.2.

    Ranges apply to GET only, and only up to ``max_ranges`` of them (more, or a
    ``Range`` that does not parse, and the whole representation is sent);
    ``max_ranges=0`` turns them off. ``now`` (seconds since the epoch) is the
    clock ``If-Range`` dates are judged by; the current time when None.
    """
    found = collect(request.headers)
    if found is None:
        return FULL
    return _decide(found, request.method, current, length, max_ranges, now)


def _decide(
    found: Conditions,
    method: str,
    current: Validators,
    length: int,
    max_ranges: int,
    now: float | None = None,
) -> Decision:
    status = evaluate(found, method, current)
    if status == NOT_MODIFIED:
        return _NOT_MODIFIED
    if status == PRECONDITION_FAILED:
        return _PRECONDITION_FAILED
    if (
        found.range is not None
        and method == "GET"
        and max_ranges
        and range_allowed(found.if_range, current, time.time() if now is None else now)
    ):
        spans = parse_ranges(found.range, length, max_ranges)
        if spans is not None:
            return Decision(PARTIAL_CONTENT, tuple(spans)) if spans else _UNSATISFIABLE
    return FULL


def validators_of(headers: Headers) -> Validators:
    """The validators a response's headers declare (``ETag``, ``Last-Modified``)."""
    etag = last_modified = None
    for name, value in headers:
        if name == b"etag":
            if etag is None:
                etag = value
        elif name == b"last-modified" and last_modified is None:
            last_modified = value
    mtime = None if last_modified is None else parse_http_date(last_modified)
    return Validators(etag, last_modified, mtime)


# -- applying it to a response -------------------------------------------------------

#: Representation metadata a 304 leaves out (RFC 9110 15.4.5; nginx drops these).
_NOT_IN_304 = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"content-range", b"accept-ranges"}
)
_ACCEPT_RANGES = (b"accept-ranges", b"bytes")


def apply_conditions(ctx: Context, *, ranges: bool = True) -> int:
    """Answer ``ctx.request``'s preconditions and ``Range`` from ``ctx.response``.

    Call it at the end of a handler that built a whole 200 response — ``body``
    or ``file``, with its ``ETag`` and/or ``Last-Modified`` headers — before
    anything was written. The response becomes a 304, a 412, a 206 of one range
    (``Content-Range``, the body or file cut to it), a 416, or stays the 200 it
    was; with ``ranges`` the 200 and the 206 say ``Accept-Ranges: bytes``.
    Another status, or a response whose head went out, is left alone. Returns
    the final status.
    """
    response = ctx.response
    if response.status != OK or response.headers_sent:
        return response.status
    request = ctx.request
    method = request.method
    if (
        ranges
        and (method == "GET" or method == "HEAD")
        and response.header(b"accept-ranges") is None
    ):
        response.headers.append(_ACCEPT_RANGES)
    found = collect(request.headers)
    if found is None:
        return OK
    file = response.file
    length = file.length if file is not None else len(response.body)
    decision = _decide(found, method, validators_of(response.headers), length, 1 if ranges else 0)
    status = decision.status
    if status == NOT_MODIFIED:
        not_modified(response)
    elif status == PRECONDITION_FAILED:
        precondition_failed(ctx)
    elif status == RANGE_NOT_SATISFIABLE:
        range_not_satisfiable(ctx, length)
    elif status == PARTIAL_CONTENT:
        start, stop = span = decision.spans[0]
        response.status = PARTIAL_CONTENT
        if file is not None:
            response.file = FileBody(file.path, file.offset + start, stop - start)
        else:
            response.body = response.body[start:stop]
        response.source = None  # a part is no longer the whole file
        response.set_header(b"content-length", b"%d" % (stop - start))
        response.headers.append((b"content-range", content_range(span, length)))
    return status


def not_modified(response: Response) -> None:
    """Turn ``response`` into a 304: no body, no representation metadata; the
    validators, caching fields and the rest (``Set-Cookie``, ``Vary``) stay."""
    response.status = NOT_MODIFIED
    response.body = b""
    response.file = None
    response.source = None
    response.headers = [(n, v) for n, v in response.headers if n not in _NOT_IN_304]


def precondition_failed(ctx: Context) -> None:
    """Answer 412: a precondition of the request failed."""
    ctx.error_response(PRECONDITION_FAILED, 0, "a precondition of the request failed")


def range_not_satisfiable(ctx: Context, length: int) -> None:
    """Answer 416 with ``Content-Range: bytes */length``."""
    ctx.error_response(RANGE_NOT_SATISFIABLE, 0, "the requested range is not satisfiable")
    ctx.response.headers.append((b"content-range", unsatisfied_range(length)))
