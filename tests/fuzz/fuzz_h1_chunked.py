"""HTTP/1.1 chunked request bodies (the framing Colonnade reads itself, not llhttp).

The input is what follows a chunked request's head: chunk-size lines with
extensions, chunk data, trailers, and the next request. Properties as in
``fuzz_h1`` (no exception, well-formed events, split-invariant), and: a body
that completed is no longer than the bytes it came in.
"""

from __future__ import annotations

from colonnade.http import Body, EndOfMessage
from tests.fuzz.fuzz_h1 import DEFAULT_LIMITS, feed_both_ways

HEAD = b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def one_input(data: bytes) -> None:
    """``data[1:]`` after a chunked head; ``data[0]`` picks the split point."""
    if not data:
        return
    events = feed_both_ways(HEAD + data[1:], len(HEAD) + data[0], DEFAULT_LIMITS)
    size = 0
    for event in events:
        if isinstance(event, Body):
            size += len(event.data)
        elif isinstance(event, EndOfMessage):
            assert size <= len(data), "a body longer than its chunked encoding"
            break
