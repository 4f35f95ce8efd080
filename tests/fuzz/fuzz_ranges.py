"""``Range`` header values (RFC 9110 14.2) against files of any size.

The first two input bytes give the file size, the rest is the header value.
Properties: ``parse_ranges`` raises nothing; what it returns is None (ignore
the header) or sorted, disjoint, non-empty spans inside the file, at most
``max_ranges`` of them; the multipart body of several spans frames each part.
"""

from __future__ import annotations

from colonnade.core.ranges import content_range, multipart, parse_ranges
from tests.fuzz.harness import expand

_MAX_RANGES = 5


def one_input(data: bytes) -> None:
    """``data[2:]`` as a Range value for a file of ``data[0:2]`` bytes."""
    if len(data) < 2:
        return
    size = int.from_bytes(data[:2], "big") % 5000
    spans = parse_ranges(expand(data[2:]), size, _MAX_RANGES)
    if spans is None:
        return
    assert len(spans) <= _MAX_RANGES
    previous = -1
    for start, stop in spans:
        assert previous < start < stop <= size or previous < start == 0 < stop <= size, spans
        previous = stop
        assert content_range((start, stop), size).startswith(b"bytes ")
    if len(spans) > 1:
        body = multipart(spans, size, b"text/plain")
        joined = body.join(bytes(size))
        assert joined.count(b"Content-Range: bytes ") == len(spans)
