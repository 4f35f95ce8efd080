"""Fuzzing: whatever the bytes and however they are split, ``feed`` only returns events.

Besides "no exception escapes", two invariants: the events form well-ordered
requests (head, bodies, end) with at most one ProtocolError, last; and feeding in
two pieces gives the same events as feeding at once.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonnade.http import Body, EndOfMessage, Event, HTTP1Connection, ProtocolError, RequestHead

VALID = [
    b"GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"GET http://h:1/p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ws\r\n"
    b"Content-Length: 2\r\n\r\nab",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
]

ALPHABET = b' \t\r\n:;,"=/?#*@%+-0123456789abcfAHTPGETPOSchunked\x00\x7f\xff'
special = st.binary(max_size=8) | st.lists(st.sampled_from(list(ALPHABET)), max_size=8).map(bytes)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 4))
        data[at : at + cut] = draw(special)
    return bytes(data)


requests = st.binary(max_size=300) | mutated()
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def merged(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        if isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def check_well_formed(events: list[Event]) -> None:
    in_request = False
    for i, event in enumerate(events):
        if isinstance(event, ProtocolError):
            assert i == len(events) - 1, "events after a ProtocolError"
            assert 400 <= event.status <= 505
        elif isinstance(event, RequestHead):
            assert not in_request
            assert event.version in (b"1.0", b"1.1")
            in_request = True
        else:
            assert isinstance(event, Body | EndOfMessage)
            assert in_request
            in_request = not isinstance(event, EndOfMessage)


@FUZZ
@given(data=requests, split=st.integers(0, 300))
def test_feed_never_raises(data: bytes, split: int) -> None:
    whole = HTTP1Connection()
    events = whole.feed(data)
    events += whole.feed_eof()
    check_well_formed(events)

    parts = HTTP1Connection()
    events2 = parts.feed(data[:split]) + parts.feed(data[split:]) + parts.feed_eof()
    check_well_formed(events2)
    assert merged(events2) == merged(events)


@FUZZ
@given(data=requests)
def test_responses_never_raise_for_parsed_heads(data: bytes) -> None:
    conn = HTTP1Connection()
    for event in conn.feed(data):
        if isinstance(event, RequestHead):
            out = conn.start_response(event, 200, [(b"content-type", b"text/plain")])
            out += conn.body(b"x") + conn.end_response()
            assert out.startswith(b"HTTP/1.1 200 OK\r\n")
        elif isinstance(event, ProtocolError):
            assert conn.error_response(event.status, event.reason).endswith(b"\n")
