"""``If-Match``, ``If-None-Match``, ``If-Modified-Since``, ``If-Unmodified-Since``,
``If-Range`` and ``Range`` fields together (RFC 9110 13): what the static handler
and the output cache decide from them.

The input is header lines (``name: value``, one a line) as a client sends them.
Properties: nothing raises; the decision is 200, 304 or 412; ``If-Range`` is a
yes or no; every date parses to None or an int.
"""

from __future__ import annotations

from colonnade.core.conditional import Validators, collect, evaluate, range_allowed
from colonnade.core.httputil import entity_tags, parse_http_date
from colonnade.core.ranges import parse_ranges
from tests.fuzz.harness import expand

_CURRENT = (
    Validators(b'"5f3a-1b2c"', b"Sat, 05 Dec 2026 10:00:00 GMT", 1796464800),
    Validators(b'W/"weak"', None, None),
    Validators(None, b"Thu, 01 Jan 1970 00:00:00 GMT", 0),
)
_NOW = 1796468400.0


def one_input(data: bytes) -> None:
    """Header lines in ``data[1:]``; ``data[0]`` picks the method and validators."""
    if not data:
        return
    method = ("GET", "HEAD", "PUT", "DELETE")[data[0] % 4]
    current = _CURRENT[data[0] // 4 % len(_CURRENT)]
    headers = []
    for line in expand(data[1:]).split(b"\n"):
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip(b" \t\r")))
    found = collect(headers)
    if found is None:
        return
    assert evaluate(found, method, current) in (200, 304, 412)
    assert range_allowed(found.if_range, current, _NOW) in (True, False)
    for field in found:
        if field is None:
            continue
        when = parse_http_date(field)
        assert when is None or isinstance(when, int)
        for weak, tag in entity_tags(field):
            assert isinstance(weak, bool) and isinstance(tag, bytes)
    if found.range is not None:
        parse_ranges(found.range, 1000, 5)
