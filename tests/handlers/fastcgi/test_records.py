"""The FastCGI record codec from raw bytes: encodings written out by hand,
every split point of a response, malformed records, and a fuzz pass."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonnade.handlers.fastcgi import records as r
from colonnade.handlers.fastcgi.records import (
    EndRequest,
    FastCgiProtocolError,
    GetValuesResult,
    Record,
    RecordReader,
    ResponseReader,
    Stderr,
    Stdout,
    UnknownType,
)

pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

# -- encoding, byte for byte ---------------------------------------------------------------


def test_begin_request_bytes() -> None:
    assert r.begin_request(1) == bytes([1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
    assert r.begin_request(0x1234, keep_conn=False) == bytes(
        [1, 1, 0x12, 0x34, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    )
    assert r.parse_begin_request(r.begin_request(7)[8:]) == (r.RESPONDER, True)


def test_record_is_padded_to_eight() -> None:
    out = r.record(r.STDIN, 1, b"abc")
    assert out == bytes([1, 5, 0, 1, 0, 3, 5, 0]) + b"abc" + bytes(5)
    assert len(r.record(r.STDIN, 1, b"12345678")) == 16  # no padding needed
    assert r.record(r.STDIN, 1) == bytes([1, 5, 0, 1, 0, 0, 0, 0])


def test_record_limits() -> None:
    with pytest.raises(ValueError, match="at most 65535"):
        r.record(r.STDIN, 1, bytes(65536))
    with pytest.raises(ValueError, match="out of range"):
        r.record(r.STDIN, 65536)
    assert len(r.record(r.STDIN, 1, bytes(65535))) == 8 + 65535 + 1


def test_pairs_short_and_long_lengths() -> None:
    assert r.encode_pairs([(b"A", b"xy")]) == b"\x01\x02Axy"
    long = b"v" * 200
    encoded = r.encode_pairs([(b"N" * 127, long)])
    assert encoded[:5] == b"\x7f\x80\x00\x00\xc8"
    assert r.decode_pairs(encoded) == [(b"N" * 127, long)]
    assert r.decode_pairs(r.encode_pairs([(b"E", b""), (b"", b"x")])) == [(b"E", b""), (b"", b"x")]


def test_text_pairs_are_the_same_bytes() -> None:
    # latin-1 text standing for bytes (the CGI variables), short and long lengths
    pairs = [("A", "xy"), ("N" * 127, "\xe9" * 200), ("E", ""), ("", "x"), ("L" * 300, "\xff")]
    encoded = r.encode_text_pairs(pairs)
    as_bytes = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    assert encoded == r.encode_pairs(as_bytes)
    assert r.decode_pairs(encoded) == as_bytes
    with pytest.raises(UnicodeEncodeError):
        r.encode_text_pairs([("A", "\u20ac")])
    assert r.params_stream(1, encoded) == r.params(1, as_bytes)


@pytest.mark.parametrize(
    "data",
    [b"\x01", b"\x80\x00\x00", b"\x01\x05Aab", b"\x01\x80\x00\x01"],
)
def test_pairs_cut_short(data: bytes) -> None:
    with pytest.raises(FastCgiProtocolError, match=r"cut short|longer than"):
        r.decode_pairs(data)


def test_params_stream_ends_with_empty_record() -> None:
    out = r.params(3, [(b"SCRIPT_FILENAME", b"/srv/x.php")])
    recs = RecordReader().feed(out)
    assert [(x.type, x.request_id) for x in recs] == [(r.PARAMS, 3), (r.PARAMS, 3)]
    assert recs[1].content == b""
    assert r.decode_pairs(recs[0].content) == [(b"SCRIPT_FILENAME", b"/srv/x.php")]


def test_large_params_span_records() -> None:
    big = [(b"HTTP_X_%d" % i, b"v" * 1000) for i in range(100)]
    recs = RecordReader().feed(r.params(1, big))
    assert len(recs) == 3 and all(len(x.content) <= r.MAX_CONTENT for x in recs)
    assert r.decode_pairs(b"".join(x.content for x in recs)) == big


def test_stream_cuts_into_chunks() -> None:
    data = bytes(range(256)) * 600  # 153600 bytes
    recs = RecordReader().feed(r.stdin(1, data))
    assert [len(x.content) for x in recs] == [r.CHUNK, r.CHUNK, len(data) - 2 * r.CHUNK]
    assert b"".join(x.content for x in recs) == data
    assert r.stdin(1, b"") == b""
    assert r.stdin_end(1) == bytes([1, 5, 0, 1, 0, 0, 0, 0])


def test_management_records() -> None:
    rec = RecordReader().feed(r.get_values())[0]
    assert (rec.type, rec.request_id) == (r.GET_VALUES, 0)
    assert [n for n, _ in r.decode_pairs(rec.content)] == [r.MAX_CONNS, r.MAX_REQS, r.MPXS_CONNS]
    assert r.abort_request(5) == bytes([1, 2, 0, 5, 0, 0, 0, 0])


# -- the web server's reader --------------------------------------------------------------

RESPONSE = (
    r.stderr(1, b"PHP Notice: x\n")
    + r.stdout(1, b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\nhel")
    + r.stdout(1, b"lo")
    + r.stdout(1, b"")
    + r.stderr(1, b"")
    + r.end_request(1, 3)
)
EXPECTED = [
    Stderr(b"PHP Notice: x\n"),
    Stdout(b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\nhel"),
    Stdout(b"lo"),
    EndRequest(3, r.REQUEST_COMPLETE),
]


def test_response_events() -> None:
    reader = ResponseReader(1)
    assert reader.feed(RESPONSE) == EXPECTED
    assert reader.done and reader.pending == 0
    assert reader.feed(b"") == []


def _merged(events: list[r.Event]) -> list[r.Event]:
    out: list[r.Event] = []
    for e in events:
        if out and type(e) is type(out[-1]) and isinstance(e, Stdout | Stderr):
            out[-1] = type(e)(out[-1].data + e.data)  # type: ignore[union-attr]
        else:
            out.append(e)
    return out


def test_every_split_point() -> None:
    for cut in range(len(RESPONSE) + 1):
        reader = ResponseReader(1)
        events = reader.feed(RESPONSE[:cut]) + reader.feed(RESPONSE[cut:])
        assert events == EXPECTED, cut


def test_byte_at_a_time() -> None:
    reader = ResponseReader(1)
    events = [e for i in range(len(RESPONSE)) for e in reader.feed(RESPONSE[i : i + 1])]
    assert events == EXPECTED
    assert reader.pending == 0


def test_management_answers() -> None:
    reader = ResponseReader(1)
    data = r.get_values_result([(r.MAX_CONNS, b"1"), (r.MPXS_CONNS, b"0")]) + r.unknown_type(42)
    assert reader.feed(data) == [
        GetValuesResult({r.MAX_CONNS: b"1", r.MPXS_CONNS: b"0"}),
        UnknownType(42),
    ]
    assert not reader.done


def test_overloaded_is_reported() -> None:
    assert ResponseReader(1).feed(r.end_request(1, 0, r.OVERLOADED)) == [
        EndRequest(0, r.OVERLOADED)
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes([2, 6, 0, 1, 0, 0, 0, 0]), "version 2"),
        (r.stdout(2, b"x"), "for request 2, not 1"),
        (r.record(r.STDIN, 1, b"x"), "a STDIN record from the application"),
        (r.record(r.BEGIN_REQUEST, 1, bytes(8)), "BEGIN_REQUEST record from the application"),
        (r.record(99, 1, b""), "a type-99 record from the application"),
        (r.record(r.STDOUT, 0, b"x"), "STDOUT record as a management record"),
        (r.stdout(1, b"") + r.stdout(1, b"late"), "STDOUT data after the stream ended"),
        (r.stderr(1, b"") + r.stderr(1, b"late"), "STDERR data after the stream ended"),
        (r.record(r.END_REQUEST, 1, bytes(4)), "END_REQUEST body of 4 bytes"),
        (r.record(r.UNKNOWN_TYPE, 0, bytes(3)), "UNKNOWN_TYPE body of 3 bytes"),
        (r.end_request(1) + r.stdout(1, b"x"), "data after END_REQUEST"),
        (r.end_request(1) + b"\x01", "data after END_REQUEST"),
        (r.record(r.GET_VALUES_RESULT, 0, b"\x05"), "cut short"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(FastCgiProtocolError, match=message):
        ResponseReader(1).feed(data)


def test_data_after_done_is_refused_later_too() -> None:
    reader = ResponseReader(1)
    reader.feed(r.end_request(1))
    with pytest.raises(FastCgiProtocolError, match="after END_REQUEST"):
        reader.feed(b"x")


def test_reader_holds_at_most_one_record() -> None:
    reader = RecordReader()
    big = r.record(r.STDOUT, 1, bytes(65535))
    assert reader.feed(big[:-1]) == []
    assert reader.pending == len(big) - 1
    assert reader.feed(big[-1:]) == [Record(r.STDOUT, 1, bytes(65535))]
    assert reader.pending == 0


# -- fuzzing ------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pieces = st.sampled_from(
    [
        r.stdout(1, b"Content-Type: text/html\r\n\r\n"),
        r.stdout(1, b"x" * 70),
        r.stderr(1, b"warn"),
        r.stdout(1, b""),
        r.stderr(1, b""),
        r.end_request(1),
        r.get_values_result([(r.MAX_CONNS, b"1")]),
        r.unknown_type(7),
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(pieces, min_size=1, max_size=6))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=4))
    return bytes(data)


def _run(chunks: list[bytes]) -> tuple[list[r.Event], str | None]:
    reader = ResponseReader(1)
    events: list[r.Event] = []
    for chunk in chunks:
        try:
            events += reader.feed(chunk)
        except FastCgiProtocolError as exc:
            return events, str(exc)
    return events, None


@FUZZ
@given(data=st.binary(max_size=200) | mutated(), cut=st.integers(0, 400))
def test_fuzz_only_events_or_protocol_errors(data: bytes, cut: int) -> None:
    whole, error = _run([data])
    split, split_error = _run([data[:cut], data[cut:]])
    # However the bytes are split: the same error, or the same events.
    assert split_error == error
    if error is None:
        assert _merged(split) == _merged(whole)
    for event in whole:
        assert isinstance(event, Stdout | Stderr | EndRequest | GetValuesResult | UnknownType)
    ends = [i for i, e in enumerate(whole) if isinstance(e, EndRequest)]
    assert ends in ([], [len(whole) - 1])


@FUZZ
@given(pairs=st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=8))
def test_fuzz_pairs_round_trip(pairs: list[tuple[bytes, bytes]]) -> None:
    assert r.decode_pairs(r.encode_pairs(pairs)) == pairs
    recs = RecordReader().feed(r.params(9, pairs))
    assert r.decode_pairs(b"".join(x.content for x in recs)) == pairs


@pytest.mark.parametrize("v", [0, 5, 127, 128, 200])
def test_a_pair_head_and_its_value_are_the_encoded_pair(v: int) -> None:
    value = b"x" * v
    assert r.pair_head(b"SCRIPT_NAME", v) + value == r.encode_pairs([(b"SCRIPT_NAME", value)])
    long_name = b"N" * 130
    assert r.pair_head(long_name, v) + value == r.encode_pairs([(long_name, value)])


def test_a_reset_reader_reads_the_next_response_as_a_new_one() -> None:
    reader = ResponseReader(1)
    reader.take(r.stdout(1, b"one") + r.stdout(1, b"") + r.end_request(1, 0, r.OVERLOADED))
    assert reader.done and reader.protocol_status == r.OVERLOADED
    with pytest.raises(r.FastCgiProtocolError):
        reader.take(r.stdout(1, b"x"))
    reader.reset()
    assert not reader.done and reader.out == [] and reader.pending == 0
    second = r.stdout(1, b"two") + r.stderr(1, b"e") + r.stdout(1, b"") + r.end_request(1, 3)
    reader.take(second[:5])
    reader.take(second[5:])
    assert reader.out == [b"two"] and reader.err == [b"e"]
    assert reader.done and (reader.app_status, reader.protocol_status) == (3, r.REQUEST_COMPLETE)
