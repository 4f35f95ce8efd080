"""HTTP field syntax every module and handler shares (RFC 9110 5.6, 8.8, 5.6.7).

One implementation each of what handlers and modules read from and write into
header fields: token lists, entity tags and their two comparisons, HTTP dates,
field-name and field-value validity, and the ``405`` answer with its ``Allow``
list. Header names are lower-case bytes here, as everywhere in ``core``.

Conditional requests and byte ranges, built on these, are in
:mod:`colonnade.core.conditional` and :mod:`colonnade.core.ranges`; URL path
coverage is :func:`colonnade.core.urlpath.covers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from colonnade.errors import HttpError

# Re-exported: core's callers format dates through httputil.
from colonnade.http.dates import format_http_date as format_http_date

# -- tokens and field values ---------------------------------------------------------

#: The characters of a token (RFC 9110 5.6.2): field names, methods, codings.
TCHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def is_token(value: bytes) -> bool:
    """True if ``value`` is a non-empty token (a valid field name, for one)."""
    return bool(value) and not value.translate(None, TCHARS)


def split_host(host: str) -> str:
    """The host name of a ``Host`` value (``[::1]:8080`` → ``::1``, ``a:80`` → ``a``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if ":" in host else host


def is_field_value(value: bytes) -> bool:
    """True if ``value`` can be sent as a field value: no CR, LF or NUL, and no
    whitespace at either end (RFC 9110 5.5; obs-text is allowed)."""
    if 13 in value or 10 in value or 0 in value:
        return False
    return value == value.strip(b" \t")


def has_token(value: bytes, token: bytes) -> bool:
    """True if the comma-separated list ``value`` holds ``token`` (lower case),
    compared without regard to case (``Connection``, ``Upgrade``, ``Vary``)."""
    return any(part.strip(b" \t").lower() == token for part in value.split(b","))


# -- entity tags -----------------------------------------------------------------------


def entity_tags(header: bytes) -> Iterator[tuple[bool, bytes]]:
    """``(weak, tag)`` for each entity tag of a list (tags keep their quotes).

    A tag may contain commas (RFC 9110 8.8.3), so this scans quoted strings
    instead of splitting; anything malformed ends the list.
    """
    i = 0
    n = len(header)
    while i < n:
        c = header[i]
        if c in b" \t,":
            i += 1
            continue
        weak = header.startswith(b"W/", i)
        if weak:
            i += 2
        if i >= n or header[i] != 0x22:  # '"'
            return
        end = header.find(b'"', i + 1)
        if end < 0:
            return
        yield weak, header[i : end + 1]
        i = end + 1


def strong_match(header: bytes, etag: bytes | None) -> bool:
    """``If-Match`` and ``If-Range`` (RFC 9110 8.8.3.2): ``*``, or a listed tag
    equal to ``etag`` with neither of the two weak."""
    return _matches(header, etag, weak_allowed=False)


def weak_match(header: bytes, etag: bytes | None) -> bool:
    """``If-None-Match`` (RFC 9110 8.8.3.2): ``*``, or a listed tag equal to
    ``etag`` once ``W/`` is set aside on both sides."""
    return _matches(header, etag, weak_allowed=True)


def _matches(header: bytes, etag: bytes | None, *, weak_allowed: bool) -> bool:
    if etag is None:
        return header.strip() == b"*"
    ours_weak = etag.startswith(b"W/")
    if header == etag:  # one tag, sent back as we sent it: the common case
        return weak_allowed or not ours_weak
    if header.strip() == b"*":
        return True
    if ours_weak:
        if not weak_allowed:
            return False
        etag = etag[2:]
    return any(tag == etag and (weak_allowed or not weak) for weak, tag in entity_tags(header))


# -- HTTP dates ------------------------------------------------------------------------

#: Formatted dates by whole second: files share modification seconds often (a
#: deploy), and formatting costs more than the lookup.
_HTTP_DATES: dict[int, bytes] = {}
_HTTP_DATES_MAX = 4096


def http_date(seconds: int) -> bytes:
    """:func:`format_http_date`, remembered per second (for headers sent often)."""
    found = _HTTP_DATES.get(seconds)
    if found is None:
        found = format_http_date(seconds)
        if len(_HTTP_DATES) >= _HTTP_DATES_MAX:
            _HTTP_DATES.clear()
        _HTTP_DATES[seconds] = found
    return found


def parse_http_date(value: str | bytes) -> int | None:
    """Seconds since the epoch for an HTTP date (any of the three formats), or None
    for anything else, an impossible time of day included."""
    # Here, not at the top: email.utils brings the email package, calendar, locale
    # and random (~0.9 MiB) into every worker for requests that rarely carry a date.
    import calendar
    from email.utils import parsedate_tz

    text = value.decode("latin-1") if isinstance(value, bytes) else value
    try:
        parsed = parsedate_tz(text)
    except (ValueError, IndexError, OverflowError):  # pragma: no cover - defensive
        return None
    if parsed is None:
        return None
    _, _, day, hour, minute, second = parsed[:6]
    if not (1 <= day <= 31 and 0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 60):
        return None  # parsedate_tz reads "25:00:00"; timegm would roll it over
    offset = parsed[9] or 0
    try:
        return calendar.timegm((*parsed[:6], 0, 0, 0)) - offset
    except (ValueError, OverflowError):
        return None


# -- answers -----------------------------------------------------------------------------


def method_not_allowed(allowed: Iterable[str]) -> HttpError:
    """The ``405`` for a method outside ``allowed``, with the ``Allow`` list (sorted).

    Raise it: ``raise method_not_allowed(handler.verbs)``.
    """
    return HttpError(405, 0, headers=[(b"allow", ", ".join(sorted(allowed)).encode())])


_COOKIE_BREAKS = b"; \t"


def cookie_values(
    headers: Iterable[tuple[bytes, bytes]], name_eq: bytes, limit: int
) -> list[bytes]:
    """The values of the cookies ``name_eq`` (``b"name="``) names in the request's
    ``Cookie`` headers, in order, ``limit`` at most (a client may send several
    cookies of one name: for other paths or domains, or forged)."""
    found: list[bytes] = []
    for key, value in headers:
        if key != b"cookie":
            continue
        at = value.find(name_eq)
        while at != -1:
            # A whole cookie name: at the start, or after "; " (or a bare ";").
            if at == 0 or value[at - 1] in _COOKIE_BREAKS:
                start = at + len(name_eq)
                end = value.find(b";", start)
                found.append(value[start : end if end != -1 else len(value)].strip())
                if len(found) == limit:
                    return found
            at = value.find(name_eq, at + 1)
    return found


#: What follows a cookie's name, ``=`` and attributes to delete it.
COOKIE_DELETED = b"; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


def cookie_attributes(path: str, domain: str, secure: bool, same_site: str) -> bytes:
    """``; Path=…[; Domain=…][; Secure]; HttpOnly; SameSite=…``: the attributes
    of a cookie the server sets for itself (a ticket, a session id), never
    readable by scripts."""
    attributes = f"; Path={path}"
    if domain:
        attributes += f"; Domain={domain}"
    if secure:
        attributes += "; Secure"
    attributes += f"; HttpOnly; SameSite={same_site}"
    return attributes.encode("ascii")
