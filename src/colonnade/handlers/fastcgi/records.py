"""The FastCGI 1.0 record layer, sans I/O: bytes in → events, requests → bytes.

How this works. Every FastCGI message is a record: an 8-byte header (version 1,
type, request id, content length, padding length, a reserved byte), then at
most 65535 bytes of content and at most 255 of padding. The web server (we)
sends BEGIN_REQUEST, the PARAMS stream (name-value pairs, ended by an empty
PARAMS record) and the STDIN stream (ended by an empty STDIN record); the
application answers with the STDOUT and STDERR streams and one END_REQUEST.
Management records (request id 0) ask and answer GET_VALUES; an application
answers a management type it does not know with UNKNOWN_TYPE.

- The encoders (:func:`begin_request`, :func:`params`, :func:`stdin`, ...) make
  the bytes to send: stream data is cut into records of at most
  :data:`MAX_CONTENT` bytes, each padded to a multiple of 8 as the
  specification recommends.
- :class:`RecordReader` cuts bytes, in any split, into :class:`Record` s. It
  keeps at most one record's worth of bytes (the format bounds a record at
  8 + 65535 + 255 bytes) and refuses a wrong version.
- :class:`ResponseReader` is the web server's side of one request on top of
  it: it yields :class:`Stdout`, :class:`Stderr`, :class:`EndRequest`,
  :class:`GetValuesResult` and :class:`UnknownType` events and refuses, with a
  :class:`FastCgiProtocolError` naming the fault, whatever the specification
  does not allow an application to send: another request's id, a type only a
  web server sends, stream data after its stream ended, a malformed
  END_REQUEST, bytes after END_REQUEST. It accumulates nothing: the caller
  bounds what it keeps of STDOUT (the response head) and STDERR.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final, NamedTuple

VERSION: Final = 1

# Record types (FastCGI 1.0, section 8).
BEGIN_REQUEST: Final = 1
ABORT_REQUEST: Final = 2
END_REQUEST: Final = 3
PARAMS: Final = 4
STDIN: Final = 5
STDOUT: Final = 6
STDERR: Final = 7
DATA: Final = 8
GET_VALUES: Final = 9
GET_VALUES_RESULT: Final = 10
UNKNOWN_TYPE: Final = 11

TYPE_NAMES = {
    BEGIN_REQUEST: "BEGIN_REQUEST",
    ABORT_REQUEST: "ABORT_REQUEST",
    END_REQUEST: "END_REQUEST",
    PARAMS: "PARAMS",
    STDIN: "STDIN",
    STDOUT: "STDOUT",
    STDERR: "STDERR",
    DATA: "DATA",
    GET_VALUES: "GET_VALUES",
    GET_VALUES_RESULT: "GET_VALUES_RESULT",
    UNKNOWN_TYPE: "UNKNOWN_TYPE",
}

# Roles, and the one flag of BEGIN_REQUEST.
RESPONDER: Final = 1
AUTHORIZER: Final = 2
FILTER: Final = 3
KEEP_CONN: Final = 1

# END_REQUEST protocol statuses.
REQUEST_COMPLETE: Final = 0
CANT_MPX_CONN: Final = 1
OVERLOADED: Final = 2
UNKNOWN_ROLE: Final = 3

PROTOCOL_STATUS_NAMES = {
    REQUEST_COMPLETE: "REQUEST_COMPLETE",
    CANT_MPX_CONN: "CANT_MPX_CONN",
    OVERLOADED: "OVERLOADED",
    UNKNOWN_ROLE: "UNKNOWN_ROLE",
}

# GET_VALUES variable names.
MAX_CONNS = b"FCGI_MAX_CONNS"
MAX_REQS = b"FCGI_MAX_REQS"
MPXS_CONNS = b"FCGI_MPXS_CONNS"

HEADER_LEN: Final = 8
#: The largest content of one record (a 16-bit length).
MAX_CONTENT: Final = 0xFFFF
#: Stream data is cut into records this long: the largest multiple of 8, so that
#: a full record needs no padding.
CHUNK: Final = MAX_CONTENT - MAX_CONTENT % 8
#: The largest name or value length a pair may declare (31 bits).
MAX_PAIR_LENGTH: Final = 0x7FFFFFFF

_HEADER = struct.Struct("!BBHHBx")
_BEGIN_BODY = struct.Struct("!HB5x")
_END_BODY = struct.Struct("!IB3x")
_PADDING = bytes(7)


class FastCgiProtocolError(ValueError):
    """The bytes are not FastCGI the other side may send; the message says why."""


class Record(NamedTuple):
    """One decoded record (padding dropped)."""

    type: int
    request_id: int
    content: bytes


# -- encoding -------------------------------------------------------------------------------


def record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    """One record of ``content`` (at most :data:`MAX_CONTENT` bytes), padded to 8."""
    length = len(content)
    if length > MAX_CONTENT:
        raise ValueError(f"a record holds at most {MAX_CONTENT} bytes, not {length}")
    if not 0 <= request_id <= 0xFFFF:
        raise ValueError(f"request id {request_id} is out of range")
    padding = -length % 8
    return _HEADER.pack(VERSION, rtype, request_id, length, padding) + content + _PADDING[:padding]


def stream(rtype: int, request_id: int, data: bytes) -> bytes:
    """``data`` as records of one stream, without the empty record that ends it
    (nothing for empty ``data``: an empty record would end the stream)."""
    if len(data) <= CHUNK:
        return record(rtype, request_id, data) if data else b""
    view = memoryview(data)
    return b"".join(
        record(rtype, request_id, bytes(view[i : i + CHUNK])) for i in range(0, len(data), CHUNK)
    )


def begin_request(request_id: int, *, role: int = RESPONDER, keep_conn: bool = True) -> bytes:
    """BEGIN_REQUEST: ``keep_conn`` asks the application to leave the connection
    open after END_REQUEST (we own it then)."""
    return record(BEGIN_REQUEST, request_id, _BEGIN_BODY.pack(role, KEEP_CONN if keep_conn else 0))


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n > MAX_PAIR_LENGTH:
        raise ValueError(f"a name or value of {n} bytes is longer than FastCGI allows")
    return (n | 0x80000000).to_bytes(4, "big")


def encode_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Name-value pairs as FastCGI writes them: each length in 1 byte below 128,
    else in 4 with the high bit set, then the name and the value."""
    out: list[bytes] = []
    add = out.append
    for name, value in pairs:
        n = len(name)
        v = len(value)
        # Nearly every CGI name and value is shorter than 128 bytes: two bytes.
        add(bytes((n, v)) if n < 0x80 and v < 0x80 else _length(n) + _length(v))
        add(name)
        add(value)
    return b"".join(out)


#: The one-byte lengths, as latin-1 text (see :func:`encode_text_pairs`).
_TEXT_LENGTHS: Final = [chr(n) for n in range(0x80)]


def _text_length(n: int) -> str:
    return _length(n).decode("latin-1")


def pair_head(name: bytes, value_length: int) -> bytes:
    """What comes before a value in :func:`encode_pairs`: both lengths, then ``name``
    (a pair of a known name is then its head, made once per value length, and
    its value)."""
    n = len(name)
    if n < 0x80 and value_length < 0x80:
        return bytes((n, value_length)) + name
    return _length(n) + _length(value_length) + name


def encode_text_pairs(pairs: Iterable[tuple[str, str]]) -> bytes:
    """:func:`encode_pairs` of names and values given as latin-1 text (each
    character stands for one byte, as the CGI variables hold them): the stream
    is built as text and encoded once, instead of encoding each name and value
    and joining their pieces; ``UnicodeEncodeError`` for a character past 255."""
    return text_pairs(pairs).encode("latin-1")


def text_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """:func:`encode_text_pairs` before its encoding: the stream as latin-1 text
    (to be joined with more such text, then encoded once)."""
    short = _TEXT_LENGTHS
    out: list[str] = []
    # Every piece into one list, joined once: no string made per pair (and no
    # call per pair: measured dearer, compiled).
    for name, value in pairs:
        n = len(name)
        v = len(value)
        if n < 0x80 and v < 0x80:
            out.append(short[n])
            out.append(short[v])
        else:
            out.append(_text_length(n))
            out.append(_text_length(v))
        out.append(name)
        out.append(value)
    return "".join(out)


def decode_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """The name-value pairs of ``data`` (a whole PARAMS stream or a GET_VALUES
    record); :class:`FastCgiProtocolError` for a truncated one."""
    pairs: list[tuple[bytes, bytes]] = []
    i = 0
    end = len(data)
    while i < end:
        lengths = []
        for _ in range(2):
            if i >= end:
                raise FastCgiProtocolError("a name-value pair is cut short in its lengths")
            first = data[i]
            if first < 0x80:
                lengths.append(first)
                i += 1
            else:
                if i + 4 > end:
                    raise FastCgiProtocolError("a name-value pair is cut short in its lengths")
                lengths.append(int.from_bytes(data[i : i + 4], "big") & MAX_PAIR_LENGTH)
                i += 4
        name_len, value_len = lengths
        if i + name_len + value_len > end:
            raise FastCgiProtocolError("a name-value pair is longer than the data holding it")
        name = data[i : i + name_len]
        i += name_len
        pairs.append((name, data[i : i + value_len]))
        i += value_len
    return pairs


def params(request_id: int, pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The whole PARAMS stream, ended by its empty record."""
    return params_stream(request_id, encode_pairs(pairs))


def params_stream(
    request_id: int, encoded: bytes, before: bytes = b"", after: bytes = b""
) -> bytes:
    """The whole PARAMS stream of pairs already encoded (:func:`encode_pairs`,
    :func:`encode_text_pairs`), ended by its empty record; between ``before`` and
    ``after`` (the records that go with it: BEGIN_REQUEST, the end of STDIN), all
    in one join."""
    length = len(encoded)
    if 0 < length <= CHUNK and 0 <= request_id <= 0xFFFF:
        # One record and the empty one, in one join (no copy per record); the
        # headers' bytes put directly (struct's pack costs more than the rest).
        padding = -length % 8
        high = request_id >> 8
        low = request_id & 0xFF
        return b"".join(
            (
                before,
                bytes((VERSION, PARAMS, high, low, length >> 8, length & 0xFF, padding, 0)),
                encoded,
                _PADDING[:padding],
                bytes((VERSION, PARAMS, high, low, 0, 0, 0, 0)),
                after,
            )
        )
    return before + stream(PARAMS, request_id, encoded) + record(PARAMS, request_id) + after


def stdin(request_id: int, data: bytes) -> bytes:
    """STDIN records for ``data`` (nothing for ``b""``; see :func:`stdin_end`)."""
    return stream(STDIN, request_id, data)


def stdin_end(request_id: int) -> bytes:
    """The empty STDIN record: the request body is complete."""
    return record(STDIN, request_id)


def abort_request(request_id: int) -> bytes:
    """ABORT_REQUEST: the client went away; the application should end the request."""
    return record(ABORT_REQUEST, request_id)


def get_values(names: Iterable[bytes] = (MAX_CONNS, MAX_REQS, MPXS_CONNS)) -> bytes:
    """GET_VALUES for ``names`` (a management record, request id 0)."""
    return record(GET_VALUES, 0, encode_pairs((name, b"") for name in names))


# What an application sends (our tests' FastCGI programs use these).


def stdout(request_id: int, data: bytes) -> bytes:
    """STDOUT records for ``data`` (an empty record ends the stream)."""
    return stream(STDOUT, request_id, data) if data else record(STDOUT, request_id)


def stderr(request_id: int, data: bytes) -> bytes:
    """STDERR records for ``data`` (an empty record ends the stream)."""
    return stream(STDERR, request_id, data) if data else record(STDERR, request_id)


def end_request(
    request_id: int, app_status: int = 0, protocol_status: int = REQUEST_COMPLETE
) -> bytes:
    """END_REQUEST with the application's exit status and the protocol status."""
    return record(END_REQUEST, request_id, _END_BODY.pack(app_status, protocol_status))


def get_values_result(values: Iterable[tuple[bytes, bytes]]) -> bytes:
    """GET_VALUES_RESULT (request id 0)."""
    return record(GET_VALUES_RESULT, 0, encode_pairs(values))


def unknown_type(rtype: int) -> bytes:
    """UNKNOWN_TYPE: the answer to a management record of type ``rtype``."""
    return record(UNKNOWN_TYPE, 0, bytes((rtype,)) + bytes(7))


def parse_begin_request(content: bytes) -> tuple[int, bool]:
    """``(role, keep_conn)`` of a BEGIN_REQUEST body."""
    if len(content) != _BEGIN_BODY.size:
        raise FastCgiProtocolError(f"a BEGIN_REQUEST body of {len(content)} bytes, not 8")
    role, flags = _BEGIN_BODY.unpack(content)
    return role, bool(flags & KEEP_CONN)


# -- decoding -------------------------------------------------------------------------------


class RecordReader:
    """Bytes, split anywhere, → :class:`Record` s. Holds at most one record
    beyond what was taken out."""

    __slots__ = ("_buffer", "_start", "content", "request_id")

    def __init__(self) -> None:
        # What arrived is used as it is (a record's content is a slice of it),
        # as long as it ends with whole records: the common case. Only the bytes
        # of a record cut short are gathered, in a bytearray (appended to
        # without copying what it holds, however small the pieces).
        self._buffer: bytes | bytearray = b""
        self._start = 0  # where the first record not taken out begins
        #: The request id and content of the record :meth:`next_type` took out.
        self.request_id = 0
        self.content = b""

    @property
    def pending(self) -> int:
        """Bytes received that were not taken out as records."""
        return len(self._buffer) - self._start

    def receive(self, data: bytes) -> None:
        """Add ``data``; take the records out with :meth:`next_record`."""
        buffer = self._buffer
        start = self._start
        self._start = 0
        if start >= len(buffer):
            self._buffer = data
        elif isinstance(buffer, bytearray):
            del buffer[:start]
            buffer += data
        else:
            gathered = bytearray(buffer[start:])
            gathered += data
            self._buffer = gathered

    def reset(self) -> None:
        """Drop what is held: ready for another stream of records."""
        self._buffer = b""
        self._start = 0
        self.content = b""

    def next_parts(self) -> tuple[int, int, bytes] | None:
        """:meth:`next_record` as a plain ``(type, request_id, content)`` tuple
        (no record object made)."""
        rtype = self.next_type()
        if rtype < 0:
            return None
        return rtype, self.request_id, self.content

    def next_type(self) -> int:
        """:meth:`next_record` without a tuple or an object: the next whole
        record's type, its request id and content then in :attr:`request_id`
        and :attr:`content`; -1 until more bytes come (what
        :class:`ResponseReader` reads)."""
        buffer = self._buffer
        start = self._start
        if len(buffer) - start < HEADER_LEN:
            return -1
        # The header's bytes read one by one (struct's unpack_from costs more),
        # from a ``bytes``: indexed natively, compiled, where a union is not.
        if isinstance(buffer, bytes):
            head = buffer
            at = start
        else:
            head = bytes(buffer[start : start + HEADER_LEN])
            at = 0
        version = head[at]
        if version != VERSION:
            raise FastCgiProtocolError(f"a record of version {version}, not {VERSION}")
        rtype = head[at + 1]
        length = head[at + 4] << 8 | head[at + 5]
        body = start + HEADER_LEN
        end = body + length + head[at + 6]
        if len(buffer) < end:
            return -1
        self._start = end
        self.request_id = head[at + 2] << 8 | head[at + 3]
        if isinstance(buffer, bytearray):
            self.content = bytes(buffer[body : body + length])
        else:
            # ``head`` is ``buffer`` here: a ``bytes``, sliced natively
            # (compiled), where the union is sliced generically.
            self.content = head[body : body + length]
        return rtype

    def next_record(self) -> Record | None:
        """The next whole record, or None until more bytes come. Raises
        :class:`FastCgiProtocolError` for a header with another version than 1
        (the bytes are not FastCGI)."""
        parts = self.next_parts()
        return None if parts is None else Record(*parts)

    def feed(self, data: bytes) -> list[Record]:
        """The records ``data`` completes."""
        self.receive(data)
        out: list[Record] = []
        while (rec := self.next_record()) is not None:
            out.append(rec)
        return out


# Events of the web server's side.


class Stdout(NamedTuple):
    """Bytes of the application's STDOUT stream: the CGI response."""

    data: bytes


class Stderr(NamedTuple):
    """Bytes of the application's STDERR stream: messages for the log."""

    data: bytes


class EndRequest(NamedTuple):
    """The request is complete: ``app_status`` (an exit status) and
    ``protocol_status`` (:data:`REQUEST_COMPLETE`, or why the application refused)."""

    app_status: int
    protocol_status: int


class GetValuesResult(NamedTuple):
    """The answer to GET_VALUES."""

    values: dict[bytes, bytes]


class UnknownType(NamedTuple):
    """The application does not know management record type ``type``."""

    type: int


Event = Stdout | Stderr | EndRequest | GetValuesResult | UnknownType


class ResponseReader:
    """The web server's side of one request on a connection: bytes → events.

    ``feed`` returns the events the bytes complete, in order; empty STDOUT and
    STDERR records (the end of each stream) yield nothing but close the stream.
    Anything an application may not send raises :class:`FastCgiProtocolError`;
    after that (or after :class:`EndRequest`) the reader accepts no more bytes.

    :meth:`take` is ``feed`` without the event objects, for the handler: the
    streams' pieces go to :attr:`out` and :attr:`err`, END_REQUEST's values to
    :attr:`app_status` and :attr:`protocol_status` (``done`` then True).
    """

    __slots__ = (
        "_closed",
        "_records",
        "app_status",
        "done",
        "err",
        "out",
        "protocol_status",
        "request_id",
    )

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._records = RecordReader()
        # The streams whose empty record (their end) came, as bits: 1 << type.
        self._closed = 0
        self.done = False  # END_REQUEST seen
        #: :meth:`take`'s STDOUT and STDERR pieces, in order; the caller empties them.
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        #: END_REQUEST's values, once ``done``.
        self.app_status = 0
        self.protocol_status = REQUEST_COMPLETE

    @property
    def pending(self) -> int:
        """Bytes of a record not yet complete."""
        return self._records.pending

    def reset(self) -> None:
        """Ready for the next request on the connection, as if new (a handler
        keeps one reader per connection instead of making one per request)."""
        self._records.reset()
        self._closed = 0
        self.done = False
        # Nearly always empty already (the handler takes what it reads): a
        # test, not a call.
        if self.out:
            self.out.clear()
        if self.err:
            self.err.clear()
        self.app_status = 0
        self.protocol_status = REQUEST_COMPLETE

    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` completes."""
        events: list[Event] = []
        records = self._start(data)
        while not self.done and (parts := records.next_parts()) is not None:
            # Unpacked, not *parts: a call with * is a generic call, not a native one.
            rtype, request_id, content = parts
            event = self._event(rtype, request_id, content)
            if event is not None:
                events.append(event)
        self._finish()
        return events

    def take(self, data: bytes) -> None:
        """:meth:`feed` into :attr:`out`, :attr:`err` and :attr:`protocol_status`
        (GET_VALUES_RESULT and UNKNOWN_TYPE are checked, then dropped)."""
        records = self._start(data)
        while not self.done and (rtype := records.next_type()) >= 0:
            content = records.content
            kind = self._kind(rtype, records.request_id, content)
            if kind == STDOUT:
                self.out.append(content)
            elif kind == STDERR:
                self.err.append(content)
        records.content = b""  # the last record's content is the caller's now
        self._finish()

    def _start(self, data: bytes) -> RecordReader:
        if self.done and data:
            raise FastCgiProtocolError("data after END_REQUEST")
        records = self._records
        records.receive(data)
        return records

    def _finish(self) -> None:
        if self.done and self._records.pending:
            raise FastCgiProtocolError("data after END_REQUEST")

    def _event(self, rtype: int, request_id: int, content: bytes) -> Event | None:
        kind = self._kind(rtype, request_id, content)
        # tuple.__new__: the named tuple's own __new__ is Python code.
        if kind == STDOUT:
            return tuple.__new__(Stdout, (content,))
        if kind == STDERR:
            return tuple.__new__(Stderr, (content,))
        if kind == END_REQUEST:
            return tuple.__new__(EndRequest, (self.app_status, self.protocol_status))
        if kind == GET_VALUES_RESULT:
            return GetValuesResult(dict(decode_pairs(content)))
        if kind == UNKNOWN_TYPE:
            return UnknownType(content[0])
        return None

    def _kind(self, rtype: int, request_id: int, content: bytes) -> int:
        # What a record is, checked: STDOUT or STDERR (with data), END_REQUEST
        # (its values kept), GET_VALUES_RESULT, UNKNOWN_TYPE; 0 for a stream's end.
        if request_id == 0:
            if rtype == GET_VALUES_RESULT:
                decode_pairs(content)  # checked here, decoded again by _event
                return rtype
            if rtype == UNKNOWN_TYPE:
                if len(content) != 8:
                    raise FastCgiProtocolError(
                        f"an UNKNOWN_TYPE body of {len(content)} bytes, not 8"
                    )
                return rtype
            raise FastCgiProtocolError(f"a {_name(rtype)} record as a management record")
        if request_id != self.request_id:
            raise FastCgiProtocolError(
                f"a {_name(rtype)} record for request {request_id}, not {self.request_id}"
            )
        if rtype in (STDOUT, STDERR):
            bit = 1 << rtype
            if self._closed & bit:
                raise FastCgiProtocolError(f"{_name(rtype)} data after the stream ended")
            if not content:
                self._closed |= bit
                return 0
            return rtype
        if rtype == END_REQUEST:
            if len(content) != 8:
                raise FastCgiProtocolError(f"an END_REQUEST body of {len(content)} bytes, not 8")
            self.done = True
            self.app_status = content[0] << 24 | content[1] << 16 | content[2] << 8 | content[3]
            self.protocol_status = content[4]
            return rtype
        raise FastCgiProtocolError(f"a {_name(rtype)} record from the application")


def _name(rtype: int) -> str:
    return TYPE_NAMES.get(rtype, f"type-{rtype}")
