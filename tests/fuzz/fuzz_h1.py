"""HTTP/1.1 request heads (and whatever follows them): bytes → events.

Properties: ``feed``/``feed_eof`` raise nothing (a bad request is a
``ProtocolError`` event); the events form well-ordered requests with at most one
error, last; feeding in two pieces (or byte by byte, for short inputs) gives
the same events as feeding at once (an error's status aside: see ``_same``);
after an error the connection returns nothing more; a parsed head can be
answered; in the compiled build, the C head reader (``http/_head.c``) changes
nothing: the same events and connection state with it as with llhttp alone.
The first input byte picks the split point, the second the size limits (small
ones reach 414 and 431).
"""

from __future__ import annotations

from colonnade.http import HTTP1Connection, ProtocolError, h1
from colonnade.http.events import Event
from tests.http.test_h1_fuzz import answer_each, check_well_formed, merged

#: (max_target, max_header_size, max_headers): the defaults, and small ones.
Limits = tuple[int, int, int]
DEFAULT_LIMITS: Limits = (8192, 65536, 100)
_LIMITS: tuple[Limits, ...] = (DEFAULT_LIMITS, (16, 64, 3), (4, 24, 1))
_MORE = b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n"
#: Inputs up to this long are also fed one byte at a time.
_BYTEWISE = 300


def _connection(limits: Limits) -> HTTP1Connection:
    target, head, count = limits
    return HTTP1Connection(max_target=target, max_header_size=head, max_headers=count)


def feed_both_ways(data: bytes, split: int, limits: Limits) -> list[Event]:
    """The events of ``data`` fed at once; checks that two pieces give the same."""
    whole = _connection(limits)
    events = whole.feed(data)
    failed = bool(events) and isinstance(events[-1], ProtocolError)
    if failed:
        assert whole.feed(_MORE) == [], "events after a ProtocolError"
    events += whole.feed_eof()
    check_well_formed(events)
    parts = _connection(limits)
    cut = split % (len(data) + 1)
    events2 = parts.feed(data[:cut]) + parts.feed(data[cut:]) + parts.feed_eof()
    check_well_formed(events2)
    assert _same(merged(events2), merged(events)), f"split at {cut} differs"
    if len(data) <= _BYTEWISE:
        drip = _connection(limits)
        events3 = [e for i in range(len(data)) for e in drip.feed(data[i : i + 1])]
        events3 += drip.feed_eof()
        assert _same(merged(events3), merged(events)), "byte by byte differs"
    return events


def _same(a: list[Event], b: list[Event]) -> bool:
    # A request with two faults (a target over the limit with a bad byte past the
    # limit) may be refused for either: which one is seen first depends on where
    # the bytes were cut, as in any streaming parser. Both must refuse it.
    if a and b and isinstance(a[-1], ProtocolError) and isinstance(b[-1], ProtocolError):
        return a[:-1] == b[:-1]
    return a == b


def _seen(data: bytes, limits: Limits) -> tuple[object, ...]:
    conn = _connection(limits)
    events = [conn.feed(data), conn.feed(_MORE), conn.feed_eof()]
    return events, conn.keep_alive, conn.ignored, conn.trailing_data, conn._state


def read_alike(data: bytes, limits: Limits) -> None:
    """The C head reader (compiled build) reads ``data`` as llhttp alone does."""
    read = h1._C_HEAD.read
    if read is None:
        return
    h1._C_HEAD.read = None
    try:
        expected = _seen(data, limits)
    finally:
        h1._C_HEAD.read = read
    assert _seen(data, limits) == expected, "the C head reader and llhttp differ"


def one_input(data: bytes) -> None:
    """Parse ``data[2:]`` as a client's bytes (see the module docstring)."""
    if len(data) < 2:
        return
    limits = _LIMITS[data[1] % len(_LIMITS)]
    feed_both_ways(data[2:], data[0], limits)
    read_alike(data[2:], limits)
    conn = _connection(limits)
    answer_each(conn, conn.feed(data[2:]))
