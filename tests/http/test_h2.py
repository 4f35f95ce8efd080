"""The HTTP/2 protocol layer's own parts, from bytes: the frame watch, the field lists."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
import h2.stream
import h2.utilities
import hpack
import pytest
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

from colonnade.http import HTTP1Connection, Preface
from colonnade.http.h2 import (
    ENHANCE_YOUR_CALM,
    FIELD_CACHE,
    FRAME_SIZE_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    FieldDecoder,
    FieldEncoder,
    FrameError,
    FrameWatch,
    check_trailers,
    data_frame_head,
    encode_field,
    headers_frames,
    request_fields,
    response_headers,
)


def frame(kind: int, flags: int = 0, stream: int = 0, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


SETTINGS = frame(4)
PING = frame(6, payload=b"12345678")
RST = frame(3, stream=1, payload=b"\x00\x00\x00\x08")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watch(clock: Clock | None = None, **limits: int) -> FrameWatch:
    values = {
        "max_header_block": 100,
        "max_resets": 3,
        "max_pings": 3,
        "max_settings": 3,
        "max_empty": 3,
    }
    values.update(limits)
    return FrameWatch(**values, window=10.0, clock=clock or Clock())


def refused(w: FrameWatch, data: bytes, *, bytewise: bool = False) -> FrameError | None:
    try:
        if bytewise:
            for i in range(len(data)):
                w.feed(data[i : i + 1])
        else:
            w.feed(data)
    except FrameError as exc:
        return exc
    return None


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize(
    ("data", "kind", "code"),
    [
        (SETTINGS + PING * 4, "ping_flood", ENHANCE_YOUR_CALM),
        (SETTINGS + RST * 4, "rapid_reset", ENHANCE_YOUR_CALM),
        (SETTINGS * 4, "settings_flood", ENHANCE_YOUR_CALM),
        (SETTINGS + frame(0, 0, 1) * 4, "empty_frames", ENHANCE_YOUR_CALM),
        (
            SETTINGS + frame(1, 0, 1, b"x" * 60) + frame(9, 0, 1, b"y" * 40),
            "header_block",
            ENHANCE_YOUR_CALM,
        ),
        (SETTINGS + frame(1, 0, 1) + frame(9, 0, 1) * 12, "header_block", ENHANCE_YOUR_CALM),
        (PING, "preface", PROTOCOL_ERROR),
        (frame(4, 1), "preface", PROTOCOL_ERROR),
        (SETTINGS + frame(4, 1, 0, b"\x00" * 6), "frame_size", FRAME_SIZE_ERROR),
    ],
)
def test_watch_refuses(data: bytes, kind: str, code: int, bytewise: bool) -> None:
    error = refused(watch(), data, bytewise=bytewise)
    assert error is not None and (error.kind, error.code) == (kind, code)


@pytest.mark.parametrize(
    "data",
    [
        SETTINGS + PING * 3 + frame(6, 1, payload=b"12345678") * 10,  # ACKs are answers
        SETTINGS + frame(1, 4, 1, b"x" * 91),  # one block at the bound
        SETTINGS + (frame(1, 0, 1, b"x" * 40) + frame(9, 4, 1, b"y" * 30)) * 5,  # blocks end
        SETTINGS + frame(0, 0, 1, b"\x01\x09\x06\x04" * 100),  # DATA that looks like frames
        SETTINGS + frame(0, 0, 1) * 3 + frame(0, 1, 3) * 10,  # empty, but ending streams
    ],
)
def test_watch_lets_pass(data: bytes) -> None:
    assert refused(watch(), data) is None
    assert refused(watch(), data, bytewise=True) is None


def test_watch_counts_per_window() -> None:
    clock = Clock()
    w = watch(clock)
    w.feed(SETTINGS + PING * 3)
    clock.now += 10.0  # a new period: counted from zero again
    w.feed(PING * 3)
    error = refused(w, PING)
    assert error is not None and error.kind == "ping_flood"


def test_preface_is_an_event_of_the_http1_parser_on_a_first_request_only() -> None:
    data = PREFACE + SETTINGS
    for cut in range(1, len(data)):
        parser = HTTP1Connection()
        events = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert events == [Preface()] and parser.trailing_data == data
    parser = HTTP1Connection()
    events = parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + data)
    assert Preface() not in events and events[-1].status == 400  # type: ignore[union-attr]


def test_request_fields() -> None:
    fields = request_fields(
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"example.org"),
            (b":path", b"/a?b"),
            (b"cookie", b"a=1"),
            (b"accept", b"*/*"),
            (b"cookie", b"b=2"),
        ]
    )
    assert (fields.method, fields.scheme, fields.authority, fields.path) == (
        b"GET",
        b"https",
        b"example.org",
        b"/a?b",
    )
    assert fields.headers == [
        (b"accept", b"*/*"),
        (b"cookie", b"a=1; b=2"),
        (b"host", b"example.org"),
    ]
    start = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")]
    with_host = request_fields([*start, (b":authority", b"a"), (b"host", b"a")])
    assert with_host.headers == [(b"host", b"a")] and with_host.authority == b"a"
    host_only = request_fields([*start, (b"host", b"b")])
    assert host_only.authority == b"b" and host_only.headers == [(b"host", b"b")]
    connect = request_fields([(b":method", b"CONNECT"), (b":authority", b"h:443")])
    assert (connect.method, connect.path, connect.scheme) == (b"CONNECT", b"", b"")


GOOD = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


@pytest.mark.parametrize(
    "fields",
    [
        [*GOOD, (b"X-Upper", b"1")],
        [*GOOD, (b"x:a", b"1")],
        [*GOOD, (b"", b"1")],
        [*GOOD, (b"x a", b"1")],
        [*GOOD, (b"x\x7f", b"1")],
        [*GOOD, (b"x-\xc3\xa9", b"1")],
        [*GOOD, (b"x-a", b"a\x00b")],
        [*GOOD, (b"x-a", b"a\nb")],
        [*GOOD, (b"x-a", b"\ta")],
        [*GOOD, (b"x-a", b"a ")],
        [*GOOD[:2], (b":path", b"/ ")],
        [*GOOD, (b"connection", b"close")],
        [*GOOD, (b"keep-alive", b"1")],
        [*GOOD, (b"upgrade", b"h2c")],
        [*GOOD, (b"te", b"gzip")],
        [*GOOD, (b":path", b"/b")],
        [*GOOD, (b":method", b"GET")],
        [*GOOD, (b":scheme", b"http")],
        [*GOOD, (b":authority", b"a")],
        [*GOOD, (b":status", b"200")],
        [*GOOD, (b":foo", b"1")],
        [*GOOD, (b":protocol", b"websocket")],
        [*GOOD[:3], (b"x-a", b"1"), GOOD[3]],
        [*GOOD[:3], (b"cookie", b"a=1"), GOOD[3]],
        GOOD[1:],
        [GOOD[0], GOOD[2], GOOD[3]],
        [GOOD[0], GOOD[1], GOOD[3]],
        [*GOOD[:2], (b":path", b""), GOOD[3]],
        GOOD[:3],
        [*GOOD, (b"host", b"b")],
        [*GOOD[:3], (b"host", b"b"), (b"host", b"b")],
        [(b":method", b"CONNECT"), (b":authority", b"h:443"), (b":path", b"/")],
        [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":authority", b"h")],
    ],
)
def test_malformed_requests(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(FrameError) as caught:
        request_fields(fields)
    assert (caught.value.code, caught.value.kind) == (PROTOCOL_ERROR, "protocol_error")


def test_field_checks_that_pass() -> None:
    fields = request_fields(
        [*GOOD, (b"te", b"Trailers"), (b"x-empty", b""), (b"x-a", b"a b\t\x80c"), (b"~!#", b"1")]
    )
    assert len(fields.headers) == 5  # and host, from :authority
    extended = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), *GOOD[1:]]
    assert request_fields(extended).method == b"CONNECT"
    check_trailers([(b"x-checksum", b"1"), (b"x-empty", b"")])
    for bad in ([(b":path", b"/")], [(b"X-A", b"1")], [(b"x-a", b"\r")], [(b"te", b"x")]):
        with pytest.raises(FrameError):
            check_trailers(bad)


def test_response_headers() -> None:
    out = response_headers(
        200,
        [
            (b"Content-Type", b"text/plain"),
            (b"connection", b"close"),
            (b"transfer-encoding", b"chunked"),
            (b"content-length", b"99"),
            (b"server", b"app"),
        ],
        5,
        b"colonnade",
    )
    assert out[0] == (b":status", b"200")
    names = [name for name, _ in out]
    assert names == [b":status", b"content-type", b"server", b"content-length", b"date"]
    assert (b"content-length", b"5") in out and (b"server", b"app") in out
    assert [n for n, _ in response_headers(204, [], 0, None)] == [b":status", b"date"]
    assert (b"server", b"") not in response_headers(200, [(b"server", b"")], None, b"x")
    with pytest.raises(ValueError):
        response_headers(200, [(b"x", b"a\r\nb")], None, None)
    with pytest.raises(ValueError):
        response_headers(200, [(b"bad name", b"v")], None, None)


# -- FieldEncoder: HPACK without the dynamic table ----------------------------------

FIELDS = [
    (b":status", b"200"),  # the static table has it whole: one byte
    (b":status", b"418"),  # its name only
    (b"content-type", b"text/plain"),
    (b"date", b"Sat, 05 Dec 2026 09:33:21 GMT"),
    (b"server", b"Colonnade"),
    (b"x-empty", b""),
    (b"x-" + b"n" * 300, b"v" * 5000),  # lengths over every integer prefix
    (b"x-random", os.urandom(200)),  # Huffman would make it longer: sent as it is
    (b"set-cookie", b"id=secret"),
]


def test_field_encoder_blocks_decode_and_leave_the_table_empty() -> None:
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    for _ in range(3):
        assert decoder.decode(encoder.encode(FIELDS), raw=True) == FIELDS
        assert not decoder.header_table.dynamic_entries
    decoded = decoder.decode(encoder.encode(FIELDS), raw=True)
    # set-cookie is "never indexed" for whoever re-encodes it, the rest indexable.
    assert [isinstance(f, NeverIndexedHeaderTuple) for f in decoded] == [False] * 8 + [True]
    assert encoder.encode(FIELDS[:1]) == b"\x88"
    assert (b"set-cookie", b"id=secret") not in FIELD_CACHE


def test_field_encoder_says_its_table_size_is_zero_first_and_after_settings() -> None:
    encoder = FieldEncoder()
    # A decoder told to keep no table at all (SETTINGS_HEADER_TABLE_SIZE 0) accepts it.
    decoder = hpack.Decoder(max_header_list_size=1 << 20)
    decoder.max_allowed_table_size = 0
    first = encoder.encode(FIELDS[:3])
    assert first[:1] == b"\x20"  # dynamic table size update: 0
    assert decoder.decode(first, raw=True) == FIELDS[:3]
    again = encoder.encode(FIELDS[:3])
    assert again == first[1:]
    encoder.header_table_size = 0  # what h2 does on the client's SETTINGS
    assert encoder.encode(FIELDS[:3]) == first
    assert encoder.header_table_size == 0


# -- FieldDecoder: repeated blocks of indexed fields remembered ------------------------


def test_field_decoder_remembers_a_repeated_block_that_changes_no_table() -> None:
    client, decoder = hpack.Encoder(), FieldDecoder(65536)
    request = [(b":method", b"GET"), (b"user-agent", b"t/1")]
    first = client.encode(request)  # adds user-agent to the tables: not remembered
    assert decoder.decode(first, raw=True) == request
    assert not decoder._blocks
    # Now every field is in the tables; :path a literal not indexed, as nghttp2 sends it.
    repeat = client.encode(request) + encode_field(b":path", b"/x")
    for _ in range(2):
        got = decoder.decode(repeat, raw=True)
        assert got == [*request, (b":path", b"/x")]
        got.append((b"x", b"y"))  # the caller's list: what is remembered stays whole
    assert decoder._blocks == {repeat: [*request, (b":path", b"/x")]}


def test_field_decoder_forgets_when_the_table_changes() -> None:
    client, decoder = hpack.Encoder(), FieldDecoder(65536)
    decoder.decode(client.encode([(b"x-a", b"1")]), raw=True)  # x-a: 1 is entry 62
    assert decoder.decode(b"\xbe", raw=True) == [(b"x-a", b"1")]
    decoder.decode(client.encode([(b"x-b", b"2")]), raw=True)  # now x-b: 2 is 62
    assert decoder.decode(b"\xbe", raw=True) == [(b"x-b", b"2")]
    # A size update evicting everything: index 62 is no more.
    decoder.decode(b"\x20\x88", raw=True)
    with pytest.raises(hpack.HPACKDecodingError):
        decoder.decode(b"\xbe", raw=True)


def test_field_decoder_remembers_no_error_and_keeps_the_limits() -> None:
    decoder = FieldDecoder(200)
    with pytest.raises(hpack.HPACKDecodingError):  # index 0
        decoder.decode(b"\x80", raw=True)
    assert not decoder._blocks
    # An HPACK bomb: one large entry, then a block of a few bytes naming it often.
    big = hpack.Encoder().encode([(b"x-big", b"v" * 100)])
    decoder.decode(big, raw=True)
    bomb = b"\xbe" * 3
    for _ in range(2):
        with pytest.raises(hpack.OversizedHeaderListError):
            decoder.decode(bomb, raw=True)
    # Within the limit it is remembered; a lower limit later is applied all the same.
    assert decoder.decode(b"\xbe", raw=True) == [(b"x-big", b"v" * 100)]
    decoder.max_header_list_size = 50
    with pytest.raises(hpack.OversizedHeaderListError):
        decoder.decode(b"\xbe", raw=True)


# -- frames of a response --------------------------------------------------------------


def parse_frames(data: bytes) -> list[Frame]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def test_headers_frames() -> None:
    (one,) = parse_frames(headers_frames(5, b"abc", True, 16384))
    assert isinstance(one, HeadersFrame) and one.stream_id == 5 and one.data == b"abc"
    assert one.flags == {"END_STREAM", "END_HEADERS"}
    block = os.urandom(40000)
    frames = parse_frames(headers_frames(7, block, False, 16384))
    assert [type(f) for f in frames] == [HeadersFrame, ContinuationFrame, ContinuationFrame]
    assert [f.flags for f in frames] == [set(), set(), {"END_HEADERS"}]
    assert b"".join(f.data for f in frames) == block
    ended = parse_frames(headers_frames(9, block[:32768], True, 16384))
    assert [f.flags for f in ended] == [{"END_STREAM"}, {"END_HEADERS"}]


def test_data_frame_head() -> None:
    (frame,) = parse_frames(data_frame_head(3, 70000, True) + b"y" * 70000)
    assert isinstance(frame, DataFrame) and frame.stream_id == 3
    assert frame.data == b"y" * 70000 and frame.flags == {"END_STREAM"}
    (frame,) = parse_frames(data_frame_head(1, 5, False) + b"hello")
    assert frame.flags == set() and frame.data == b"hello"


def test_the_h2_internals_the_transport_writes_beside() -> None:
    # transport/h2connection.py writes response frames into h2's output buffer and
    # takes the state machine steps h2's send_headers/send_data would: an h2 that
    # changed these must fail here, not on the wire.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    assert isinstance(conn._data_to_send, bytearray)
    assert {"SEND_HEADERS", "SEND_DATA"} <= set(h2.connection.ConnectionInputs.__members__)
    assert {"SEND_HEADERS", "SEND_DATA", "SEND_END_STREAM"} <= set(
        h2.stream.StreamInputs.__members__
    )
    assert isinstance(conn.outbound_flow_control_window, int)
    # How closed streams were closed: an OrderedDict of the newest MAX_CLOSED_STREAMS.
    assert isinstance(conn._closed_streams, collections.OrderedDict)
    assert conn._closed_streams._size_limit == conn.MAX_CLOSED_STREAMS  # type: ignore[attr-defined]


def test_closed_streams_are_kept_as_h2_keeps_them() -> None:
    from colonnade.transport.h2connection import closed_stream

    theirs, mine = h2.connection.H2Connection(), h2.connection.H2Connection()
    for conn in (theirs, mine):
        conn.MAX_CLOSED_STREAMS = 3  # type: ignore[misc]
        conn._closed_streams = h2.utilities.SizeLimitDict(size_limit=3)
    for stream_id in range(1, 11, 2):
        by = h2.stream.StreamClosedBy.SEND_END_STREAM if stream_id % 3 else None
        theirs._closed_streams[stream_id] = by
        closed_stream(mine, stream_id, by)
    assert list(mine._closed_streams.items()) == list(theirs._closed_streams.items())
    assert list(mine._closed_streams) == [5, 7, 9]


def _server_and_client() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server.initiate_connection()
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return server, client


def _fields(record: h2.stream.H2Stream) -> dict[str, object]:
    out = {k: v for k, v in vars(record).items() if k != "config"}
    out["state_machine"] = vars(record.state_machine)
    out["_inbound_window_manager"] = vars(record._inbound_window_manager)
    return out


def test_the_fast_path_makes_the_stream_record_h2_makes() -> None:
    # transport/h2connection.py's receiving fast path makes h2's record of a stream
    # opened by HEADERS with END_STREAM itself: it must be the record h2 makes, with
    # the connection's count of streams as h2 leaves it, and h2 must go on from it
    # (the response sent through h2, the record forgotten when counted).
    from colonnade.transport.h2connection import open_request_record, stream_windows

    request = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
    pairs = [_server_and_client(), _server_and_client()]
    for server, client in pairs:
        # Settings that differ from the defaults, acknowledged; a first request (the
        # fast path starts once the connection is open).
        server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2000})
        client.send_headers(1, request, end_stream=True)
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        server.receive_data(client.data_to_send())
        assert server.state_machine.state is h2.connection.ConnectionState.SERVER_OPEN
    (theirs, client), (mine, _) = pairs
    client.send_headers(3, request, end_stream=True)
    theirs.receive_data(client.data_to_send())
    record = open_request_record(mine, 3, *stream_windows(mine))
    assert mine.streams[3] is record
    assert _fields(record) == _fields(theirs.streams[3])
    assert record.inbound_flow_control_window == 1000
    assert record.outbound_flow_control_window == 2000
    assert mine.highest_inbound_stream_id == theirs.highest_inbound_stream_id == 3
    assert record.state_machine.state is h2.stream.StreamState.HALF_CLOSED_REMOTE
    for stream in (1, 3):
        mine.send_headers(stream, [(b":status", b"200")])
        mine.send_data(stream, b"hi", end_stream=True)
    assert record.closed and mine.open_inbound_streams == 0 and 3 not in mine.streams


@pytest.mark.parametrize("head_sent", [False, True])
def test_a_record_made_late_is_the_record_h2_keeps(head_sent: bool) -> None:
    # The fast path leaves a stream without h2's record while the response goes out
    # and makes it when h2 must know the stream: with the send window left and the
    # head marked sent, it must be the record h2 keeps after sending the same.
    from colonnade.transport.h2connection import request_record, stream_windows

    request = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
    (theirs, client), (mine, other) = _server_and_client(), _server_and_client()
    for server, peer in ((theirs, client), (mine, other)):
        peer.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2000})
        server.receive_data(peer.data_to_send())
        peer.receive_data(server.data_to_send())
    client.send_headers(1, request, end_stream=True)
    theirs.receive_data(client.data_to_send())
    inbound, outbound = stream_windows(mine)
    if head_sent:
        theirs.send_headers(1, [(b":status", b"200")])
        theirs.send_data(1, b"x" * 700)
        outbound -= 700
    record = request_record(mine, 1, inbound, outbound)
    if head_sent:  # as H2Connection.record() does
        record.state_machine.headers_sent = True
    assert mine.streams[1] is record
    assert _fields(record) == _fields(theirs.streams[1])
    assert record.outbound_flow_control_window == (1300 if head_sent else 2000)


def _received(
    state: h2.stream.StreamState, *, head_sent: bool = False
) -> h2.stream.H2StreamStateMachine:
    # A server's stream machine that received a request (and END_STREAM: half-closed).
    machine = h2.stream.H2StreamStateMachine(1)
    machine.process_input(h2.stream.StreamInputs.RECV_HEADERS)
    if state is h2.stream.StreamState.HALF_CLOSED_REMOTE:
        machine.process_input(h2.stream.StreamInputs.RECV_END_STREAM)
    if head_sent:
        machine.process_input(h2.stream.StreamInputs.SEND_HEADERS)
    return machine


@pytest.mark.parametrize("end", [False, True])
@pytest.mark.parametrize(
    ("state", "head_sent"),
    [
        (h2.stream.StreamState.HALF_CLOSED_REMOTE, False),
        (h2.stream.StreamState.HALF_CLOSED_REMOTE, True),
        (h2.stream.StreamState.OPEN, False),
        (h2.stream.StreamState.OPEN, True),
    ],
)
def test_the_steps_taken_for_h2_are_its_own(
    state: h2.stream.StreamState, head_sent: bool, end: bool
) -> None:
    # transport/h2connection.py takes h2's stream state machine's steps for a sent
    # head or DATA frame itself where it can: they must leave the machine as h2's do.
    from colonnade.transport.h2connection import sent

    steps = [h2.stream.StreamInputs.SEND_DATA]
    if not head_sent:
        steps.append(h2.stream.StreamInputs.SEND_HEADERS)
    for step in steps:
        theirs, ours = _received(state, head_sent=head_sent), _received(state, head_sent=head_sent)
        theirs.process_input(step)
        if end:
            theirs.process_input(h2.stream.StreamInputs.SEND_END_STREAM)
        sent(ours, step, end)
        assert vars(ours) == vars(theirs), step


@pytest.mark.parametrize(
    "block",
    [
        b"\xff\xff\xff\x0f",  # an index far beyond both tables
        b"\x82\x86\x84\x41",  # a literal without its value
        b"\x82\x86\x84\x41\x85",  # a value cut short
        b"\x82\x86\x84\x40\x01a\x05" + b"b" * 5,  # fine, then a list too long
        b"\x82\x86\x84",  # fine
    ],
)
def test_the_fast_path_decodes_and_fails_as_h2(block: bytes) -> None:
    from colonnade.transport.h2connection import decode_block

    def outcome(decode: Callable[[], object]) -> object:
        try:
            return list(decode())  # type: ignore[call-overload]
        except h2.exceptions.ProtocolError as exc:
            return type(exc), str(exc), type(exc.__cause__)

    theirs, mine = h2.connection.H2Connection(), h2.connection.H2Connection()
    for conn in (theirs, mine):
        conn.decoder = FieldDecoder(150)
    assert outcome(lambda: decode_block(mine, block)) == outcome(
        lambda: h2.connection._decode_headers(theirs.decoder, block)
    )
