"""Request filtering (IIS RequestFilteringModule): refuse bad requests first.

The hook runs at BEGIN_REQUEST with priority FIRST, so a refused request reaches no
other module's logic; the refusal is an ordinary error response with IIS's
status.substatus, so the access log records which rule fired. All the work that
depends only on the settings is done once per effective section
(:class:`~colonnade.modules.request_filtering.config.Rules`); per request the hook
does length comparisons, set lookups, at most one regex scan of the path and at
most one pass over the headers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.request import EMPTY_BODY, Body, Request
from colonnade.core.stages import Stage
from colonnade.core.urlpath import unquote_to_bytes
from colonnade.errors import HttpError
from colonnade.modules.request_filtering.config import (
    CONTENT_LENGTH,
    RequestFilteringSection,
    Rules,
)
from colonnade.modules.request_filtering.fast import begin_request_hook

Refusal = tuple[int, int, str]

_VERB = (404, 6, "the request method is denied")
_URL_TOO_LONG = (404, 14, "the URL is too long")
_QUERY_TOO_LONG = (404, 15, "the query string is too long")
_QUERY_NUL = (400, 0, "NUL in the query string")
_QUERY_SEQUENCE = (404, 18, "the query string contains a denied sequence")
_HIGH_BIT = (404, 12, "the URL contains non-ASCII characters")
_DOUBLE_ESCAPING = (404, 11, "the URL is double-escaped")
_URL_SEQUENCE = (404, 5, "the URL contains a denied sequence")
_EXTENSION = (404, 7, "the file extension is denied")
_HEADER_TOO_LARGE = (431, 0, "a request header is too large or not allowed")
_BAD_LENGTH = (400, 0, "the Content-Length is not a number")
_BODY_TOO_LARGE = (413, 1, "the request body is too large")
_HIDDEN_SEGMENT = (404, 8, "the URL contains a hidden segment")
_FILTERING_RULE = (404, 19, "denied by a filtering rule")

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
#: Raw paths remembered as having passed the path rules, per section, at most.
_CLEAN_PATHS_MAX = 4096
#: How much of an unbounded body a limited read pulls from the transport at once.
_READ_CHUNK = 65536


class RequestFiltering(Module):
    """``security.request_filtering``: IIS request filtering at BEGIN_REQUEST."""

    id = "security.request_filtering"
    section = RequestFilteringSection

    def __init__(self) -> None:
        # The hook as the plan calls it (fast.py, compiled): the common request is
        # let through there in one test, the others come to the method.
        self.__dict__["begin_request"] = begin_request_hook(
            RequestFiltering.begin_request.__get__(self)
        )

    @hook(Stage.BEGIN_REQUEST, priority=Priority.FIRST)
    def begin_request(self, ctx: Context) -> Outcome | None:
        """Refuse the request with the first rule it breaks, or let it through."""
        request = ctx.request
        sections = ctx.sections
        rules = (
            sections.decoded.get(RequestFilteringSection) or sections.get(RequestFilteringSection)
        ).rules
        refusal = refuse(rules, request)
        if refusal is None:
            return CONTINUE
        status, substatus, message = refusal
        detail = ""
        if status == 413:
            # The body was not read; dropping the connection saves draining it.
            request.keep_alive = False
            detail = body_limit_detail(rules)
        ctx.error_response(status, substatus, message, detail)
        return FINISH


def body_limit_detail(rules: Rules) -> str:
    """What to change for a 413.1: the setting and its value here."""
    return (
        f"the limit is request_filtering.max_allowed_content_length = "
        f"{rules.max_content_length} (bytes) for this URL: raise it to accept larger bodies"
    )


def refuse(rules: Rules, request: Request) -> Refusal | None:
    """The first rule of ``rules`` that ``request`` breaks, or None.

    A request with a body and no declared length gets its ``body`` wrapped so that
    reading past the limit raises ``HttpError(413, 1)``.
    """
    verbs = rules.verbs
    if verbs:
        # Any token is a method, and methods are case-sensitive; a rule is not: a
        # deny rule for TRACE must not let "trace" through to an application that
        # upper-cases the method itself.
        if (request.method.upper() in verbs) is rules.reject_listed_verbs:
            return _VERB
    elif not rules.reject_listed_verbs:
        return _VERB  # only listed verbs are allowed, and none is listed
    raw = request.raw_path
    if len(raw) > rules.max_url:
        return _URL_TOO_LONG
    query = request.query
    if query:
        if len(query) > rules.max_query_string:
            return _QUERY_TOO_LONG
        # find, not "in" (cheaper on CPython 3.11: see core.urlpath).
        if query.find(b"%00") >= 0 or query.find(b"\x00") >= 0:
            return _QUERY_NUL
        query_scan = rules.query_scan
        if query_scan is not None and _query_denied(query_scan, rules.unescape_query, query):
            return _QUERY_SEQUENCE
    if rules.check_high_bit and not query.isascii():
        return _HIGH_BIT
    # The path rules depend on the raw path alone: a path that passed them once
    # passes again without the scans.
    clean = rules.clean_paths
    if raw not in clean:
        refusal = _path_refusal(rules, request.path, raw)
        if refusal is not None:
            return refusal
        if len(clean) >= _CLEAN_PATHS_MAX:
            clean.clear()
        clean.add(raw)
    if rules.filtering and _filtered(rules, request, query):
        return _FILTERING_RULE
    body = request.body
    if body is EMPTY_BODY and not rules.limits_headers:
        return None
    return _check_headers(rules, request, body)


def _path_refusal(rules: Rules, path: str, raw: bytes) -> Refusal | None:
    if rules.check_high_bit and not path.isascii():
        return _HIGH_BIT
    # The canonical path was decoded once; if it still holds an escape (or a '+',
    # which a second, form-style decoding would turn into a space), some later
    # decoder could see a different path than the rules did.
    if rules.check_double_escaping and (
        "+" in path or ("%" in path and _ESCAPE.search(path) is not None)
    ):
        return _DOUBLE_ESCAPING
    segment_scan = rules.segment_scan
    if segment_scan is not None and segment_scan.search(path) is not None:
        return _HIDDEN_SEGMENT
    sequence_scans = rules.sequence_scans
    if sequence_scans is not None and _has_sequence(*sequence_scans, path, raw):
        return _URL_SEQUENCE
    extensions = rules.extensions
    if extensions is not None:
        allowed = extensions.get(_extension(path))
        if not (rules.unlisted_extension_allowed if allowed is None else allowed):
            return _EXTENSION
    return None


def _extension(path: str) -> str:
    """The lower-cased extension of the URL's last segment, ``.`` when it has none."""
    name = path[path.rfind("/") + 1 :]
    dot = name.rfind(".")
    return name[dot:].lower() if dot >= 0 else "."


def _filtered(rules: Rules, request: Request, query: bytes) -> bool:
    """True when a filtering rule finds one of its strings. Per rule: at most three
    scans of the path, two of the query and one of each header it names."""
    path = request.path
    extension: str | None = None
    for rule in rules.filtering:
        if rule.extensions is not None:
            if extension is None:
                extension = _extension(path)
            if extension not in rule.extensions:
                continue
        if rule.scan_url and _has_sequence(rule.text, rule.raw, path, request.raw_path):
            return True
        if rule.scan_query and query and _query_denied(rule.raw, rules.unescape_query, query):
            return True
        if rule.headers:
            for name, value in request.headers:
                if name in rule.headers and rule.raw.search(value) is not None:
                    return True
    return False


def _has_sequence(
    scan: re.Pattern[str], raw_scan: re.Pattern[bytes], path: str, raw: bytes
) -> bool:
    return (
        scan.search(path) is not None
        or raw_scan.search(raw) is not None
        or (b"%" in raw and raw_scan.search(unquote_to_bytes(raw)) is not None)
    )


def _query_denied(scan: re.Pattern[bytes], unescape: bool, query: bytes) -> bool:
    if scan.search(query) is not None:
        return True
    if unescape and (b"%" in query or b"+" in query):
        return scan.search(unquote_to_bytes(query.replace(b"+", b" "))) is not None
    return False


def _check_headers(rules: Rules, request: Request, body: Body) -> Refusal | None:
    # One pass serves the header limits and finds the framing headers.
    watch = rules.header_watch
    declared: bytes | None = None
    chunked = False
    used: dict[bytes, int] | None = None
    for name, value in request.headers:
        limit = watch.get(name)
        if limit is None:
            continue
        if limit < 0:
            if limit == CONTENT_LENGTH:
                declared = value
            else:
                chunked = True
            continue
        size = len(value)
        # A header repeated on several lines counts as one value.
        if used is None:
            used = {name: size}
        else:
            size = used[name] = used.get(name, 0) + size
        if limit == 0 or size > limit:
            return _HEADER_TOO_LARGE
    if declared is not None and not chunked:
        try:
            length = int(declared)
        except ValueError:
            return _BAD_LENGTH
        if length > rules.max_content_length:
            return _BODY_TOO_LARGE
    elif body is not EMPTY_BODY:
        request.body = LimitedBody(body, rules, request)
    return None


class LimitedBody:
    """A request body that raises ``HttpError(413, 1)`` once it grows past a limit.

    Used for bodies whose size was not declared up front (chunked), so the limit
    holds however the handler reads: all at once, by size, or by iteration.
    """

    __slots__ = ("_body", "_left", "_request", "_rules")

    def __init__(self, body: Body, rules: Rules, request: Request) -> None:
        self._body = body
        self._left = rules.max_content_length
        self._request = request
        self._rules = rules

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if -1), counted against the limit."""
        if size >= 0:
            return self._count(await self._body.read(size))
        # Read "everything" in bounded pieces so an oversized body fails before it
        # is all in memory.
        parts = []
        while chunk := await self._body.read(_READ_CHUNK):
            parts.append(self._count(chunk))
        return b"".join(parts)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            yield self._count(chunk)

    def _count(self, chunk: bytes) -> bytes:
        self._left -= len(chunk)
        if self._left < 0:
            self._request.keep_alive = False  # the rest of the body is never read
            raise HttpError(*_BODY_TOO_LARGE, detail=body_limit_detail(self._rules))
        return chunk
