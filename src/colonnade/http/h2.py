"""HTTP/2 without sockets: what Colonnade adds to the ``h2`` library.

The ``h2`` library (sans-IO, like h11) keeps RFC 9113's state: frames, HPACK,
stream states, flow-control windows, header validation. This module holds the
rest of the protocol layer, still without sockets:

- :class:`FrameWatch` reads the frame headers of the bytes a client sends
  *before* ``h2`` parses them, and refuses the floods that cost a server work
  without giving it any: RST_STREAM (the rapid reset attack, CVE-2023-44487),
  PING and SETTINGS frames, and empty DATA frames (CVE-2019-9518), beyond a
  rate, and a header block (HEADERS with its
  CONTINUATION frames) beyond a size, before a byte of it is decoded.
- :func:`request_fields` turns a stream's header list into what a request
  needs (pseudo-header fields out, ``cookie`` fields joined, ``host`` from
  ``:authority``); :func:`response_headers` turns a response head into a header
  list HTTP/2 allows (no connection-specific fields, ``content-length``, ``date``
  and ``server`` as HTTP/1.1 sends them).
- :class:`FieldEncoder` is the HPACK encoder of responses: static table and
  literals only, so the encoding of a field never depends on what was sent
  before and is kept in a cache shared by all connections.
  :class:`FieldDecoder` is ``hpack``'s decoder remembering the small blocks that
  change nothing in its table (a client repeating a request).
- :func:`headers_frames` and :func:`data_frame_head` make the frames of a response
  (the transport writes them beside ``h2``'s, whose state it keeps up to date).

The transport (``transport/h2connection.py``) owns the socket and drives both.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable
from typing import Final

from hpack import Decoder, HeaderTuple
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

from colonnade.http.events import Headers
from colonnade.http.h1 import date_header_value, response_name

#: The client connection preface (RFC 9113 3.4).
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 6) the watch looks at.
_DATA: Final = 0x0
_HEADERS: Final = 0x1
_RST_STREAM: Final = 0x3
_SETTINGS: Final = 0x4
_PING: Final = 0x6
_CONTINUATION: Final = 0x9
_END_HEADERS: Final = 0x4
_END_STREAM: Final = 0x1
_ACK: Final = 0x1
_FRAME_HEADER: Final = 9

#: Fields that are about one HTTP/1.1 connection and may not appear in HTTP/2
#: (RFC 9113 8.2.2); dropped from responses, refused in requests (by ``h2``).
CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


#: RFC 9113 7 error codes the watch uses.
PROTOCOL_ERROR: Final = 0x1
FRAME_SIZE_ERROR: Final = 0x6
ENHANCE_YOUR_CALM: Final = 0xB


class FrameError(Exception):
    """A client's frames end the connection: GOAWAY with ``code``. ``kind`` names the
    cause (a counter's key), ``reason`` says it for the log."""

    def __init__(self, code: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.kind = kind
        self.reason = reason


def _flood(kind: str, reason: str) -> FrameError:
    return FrameError(ENHANCE_YOUR_CALM, kind, reason)


class _Rate:
    """Events counted in fixed periods of ``window`` seconds."""

    __slots__ = ("count", "limit", "start", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.count = 0
        self.start = 0.0

    def hit(self, now: float) -> bool:
        """Count one; True when this one is over the limit."""
        if now - self.start >= self.window:
            self.start = now
            self.count = 0
        self.count += 1
        return self.count > self.limit


class FrameWatch:
    """Frame headers of a client's byte stream, read ahead of ``h2`` (see the module
    docstring). Feed it every byte after the 24-byte preface, in order."""

    __slots__ = (
        "_block",
        "_clock",
        "_empty",
        "_first",
        "_head",
        "_max_block",
        "_pings",
        "_resets",
        "_settings",
        "_skip",
    )

    def __init__(
        self,
        *,
        max_header_block: int,
        max_resets: int,
        max_pings: int,
        max_settings: int,
        max_empty: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_block = max_header_block
        self._empty = _Rate(max_empty, window)
        self._resets = _Rate(max_resets, window)
        self._pings = _Rate(max_pings, window)
        self._settings = _Rate(max_settings, window)
        self._clock = clock
        self._head = b""  # a frame header split between feeds
        self._skip = 0  # payload bytes of the current frame still to come
        self._block = -1  # bytes of the header block in progress; -1: none
        self._first = True  # the preface's SETTINGS frame is still due

    def feed(self, data: bytes) -> None:
        """Look at ``data``; raise :class:`FrameError` when it goes over a limit (or
        breaks a rule ``h2`` leaves unchecked)."""
        pos = 0
        size = len(data)
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            need = _FRAME_HEADER - len(self._head)
            if need < _FRAME_HEADER or size - pos < _FRAME_HEADER:
                self._head += data[pos : pos + need]
                pos += need
                if len(self._head) < _FRAME_HEADER:
                    return
                header, self._head = self._head, b""
            else:
                header = data[pos : pos + _FRAME_HEADER]
                pos += _FRAME_HEADER
            self._frame(header)

    def _frame(self, header: bytes) -> None:
        length = int.from_bytes(header[:3], "big")
        kind = header[3]
        flags = header[4]
        self._skip = length
        if self._first:
            # RFC 9113 3.4: the preface ends with a SETTINGS frame (h2 does not check).
            self._first = False
            if kind != _SETTINGS or flags & _ACK:
                raise FrameError(PROTOCOL_ERROR, "preface", "the preface lacks its SETTINGS frame")
        if kind == _SETTINGS and flags & _ACK and length:
            # RFC 9113 6.5 (hyperframe calls it a PROTOCOL_ERROR).
            raise FrameError(FRAME_SIZE_ERROR, "frame_size", "SETTINGS ACK with a payload")
        if kind == _HEADERS or (kind == _CONTINUATION and self._block >= 0):
            block = (self._block if kind == _CONTINUATION else 0) + _FRAME_HEADER + length
            if block > self._max_block:
                raise _flood(
                    "header_block",
                    f"header block over {self._max_block} bytes (CONTINUATION flood?)",
                )
            self._block = -1 if flags & _END_HEADERS else block
        elif kind == _RST_STREAM:
            if self._resets.hit(self._clock()):
                raise _flood("rapid_reset", "too many RST_STREAM frames (rapid reset)")
        elif kind == _PING:
            if not flags & _ACK and self._pings.hit(self._clock()):
                raise _flood("ping_flood", "too many PING frames")
        elif kind == _SETTINGS and not flags & _ACK and self._settings.hit(self._clock()):
            raise _flood("settings_flood", "too many SETTINGS frames")
        elif (
            kind == _DATA
            and not length
            and not flags & _END_STREAM
            and self._empty.hit(self._clock())
        ):
            raise _flood("empty_frames", "too many empty DATA frames")


class RequestFields:
    """A request's pseudo-header fields and its regular header fields. ``authority``
    is ``:authority``, else the ``host`` field (RFC 9113 8.3.1). (A plain class: a
    compiled class is made without the Python-level __new__ a NamedTuple calls.)"""

    __slots__ = ("authority", "headers", "method", "path", "scheme")

    def __init__(
        self, method: bytes, scheme: bytes, authority: bytes, path: bytes, headers: Headers
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.headers = headers

    def copy(self) -> RequestFields:
        """The same fields, with a list of header fields of its own."""
        return RequestFields(self.method, self.scheme, self.authority, self.path, self.headers[:])


def malformed(reason: str) -> FrameError:
    """A malformed field block (RFC 9113 8.1.1): a PROTOCOL_ERROR. ``h2`` would make
    it a connection error, and so does Colonnade (RFC 9113 5.4.1 allows it)."""
    return FrameError(PROTOCOL_ERROR, "protocol_error", reason)


# RFC 9113 8.2.1: a field name is visible ASCII without upper case letters, and only
# a pseudo-header field's begins with a colon (those are checked by name); a value
# has no NUL, CR or LF and neither starts nor ends with a space or tab.
_NAME: Final = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+")
_BLANK: Final = (0x20, 0x09)
# Names seen valid (a bounded set: a client naming many cannot grow it further).
_VALID_NAMES: Final[set[bytes]] = set()
_VALID_NAMES_MAX: Final = 512
_PSEUDO: Final = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})


def _bad_value(value: bytes) -> bool:
    # Three memchr scans (of an int: ``b"\r" in value`` first fails, at a cost, to
    # read its argument as an int) and two byte tests; a regex search costs more.
    return 0 in value or 13 in value or 10 in value or value[0] in _BLANK or value[-1] in _BLANK


def check_field(name: bytes, value: bytes) -> None:
    """Raise :func:`malformed` for a regular field HTTP/2 does not allow (RFC 9113
    8.2.1, 8.2.2): a name that is empty, has upper case or characters outside
    visible ASCII, or a colon; a value with NUL, CR or LF or white space at either
    end; a connection-specific field; ``te`` other than ``trailers``."""
    if name not in _VALID_NAMES:
        if _NAME.fullmatch(name) is None:
            raise malformed(f"invalid field name {name!r}")
        if len(_VALID_NAMES) < _VALID_NAMES_MAX:
            _VALID_NAMES.add(name)
    if value and _bad_value(value):
        raise malformed(f"invalid value of field {name!r}")
    if name in CONNECTION_SPECIFIC:
        raise malformed(f"connection-specific field {name!r}")
    if name == b"te" and value.lower() != b"trailers":
        raise malformed("te other than trailers")


def request_fields(fields: list[tuple[bytes, bytes]]) -> RequestFields:
    """Check a request's field list and split it into pseudo-header fields and
    header fields. Raises :func:`malformed` where RFC 9113 calls the request
    malformed (8.1.1): a field :func:`check_field` refuses; a pseudo-header field
    unknown, repeated, or after a regular field; ``:method`` missing; ``:scheme`` or
    ``:path`` missing (present, for CONNECT), ``:path`` empty; neither ``:authority``
    nor ``host``, or both and different; ``host`` twice (8.3). ``h2`` leaves these
    to Colonnade (``validate_inbound_headers`` off), as one pass here costs less.

    ``cookie`` fields (which HTTP/2 may split, 8.2.3) are joined into one for the
    HTTP/1.1-shaped interfaces above; a ``host`` field is added from ``:authority``
    when there is none (8.3.1), as applications look there.
    """
    pseudo: dict[bytes, bytes] = {}
    host = None
    headers: Headers = []
    cookies: list[bytes] = []
    for name, value in fields:
        if name[:1] != b":":
            check_field(name, value)
            if name == b"cookie":
                cookies.append(value)
                continue
            if name == b"host":
                if host is not None:
                    raise malformed("host twice")
                host = value
            headers.append((name, value))
            continue
        if headers or cookies:
            raise malformed(f"pseudo-header field {name!r} after a regular field")
        if name not in _PSEUDO:
            raise malformed(f"pseudo-header field {name!r} in a request")
        if name in pseudo:
            raise malformed(f"{name!r} twice")
        if value and _bad_value(value):
            raise malformed(f"invalid value of field {name!r}")
        pseudo[name] = value
    method = pseudo.get(b":method")
    scheme = pseudo.get(b":scheme")
    path = pseudo.get(b":path")
    authority = pseudo.get(b":authority")
    protocol = pseudo.get(b":protocol")
    if method is None:
        raise malformed("no :method")
    if method == b"CONNECT" and protocol is None:
        if scheme is not None or path is not None:
            raise malformed("CONNECT with :scheme or :path")
    elif scheme is None or path is None:
        raise malformed("no :scheme or no :path")
    elif protocol is not None and method != b"CONNECT":
        raise malformed(":protocol without CONNECT")
    if path is not None and not path:
        raise malformed("empty :path")
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if authority is None:
        if host is None:
            raise malformed("neither :authority nor host")
        authority = host
    elif host is None:
        headers.append((b"host", authority))
    elif host != authority:
        raise malformed(":authority and host differ")
    return RequestFields(method, scheme or b"", authority, path or b"", headers)


def check_trailers(fields: list[tuple[bytes, bytes]]) -> None:
    """Raise :func:`malformed` for trailers with a pseudo-header field or a field
    :func:`check_field` refuses (RFC 9113 8.1)."""
    for name, value in fields:
        if name[:1] == b":":
            raise malformed(f"pseudo-header field {name!r} in trailers")
        check_field(name, value)


def response_headers(
    status: int, headers: Headers, content_length: int | None, server: bytes | None
) -> list[tuple[bytes, bytes]]:
    """The header list of a response: ``:status`` first, then ``headers`` without the
    connection-specific fields (and their own ``content-length``: ``content_length``
    says it, as the HTTP/1.1 layer's framing does), then ``date`` and ``server`` unless
    given. Raises ValueError for a name that is no token or a value with CR, LF or
    NUL, as the HTTP/1.1 layer does."""
    out = [(b":status", b"%d" % status)]
    add_date = add_server = True
    for name, value in headers:
        name = response_name(name)
        if 13 in value or 10 in value or 0 in value:
            raise ValueError(f"CR, LF or NUL in the value of response header {name!r}")
        if name in CONNECTION_SPECIFIC:
            continue
        if name == b"content-length":
            if content_length is None:
                content_length = int(value)
            continue
        if name == b"date":
            add_date = False
        elif name == b"server":
            add_server = False
            if not value:
                continue  # an empty Server header means: send none
        out.append((name, value))
    if content_length is not None and status != 204 and status >= 200:
        out.append((b"content-length", b"%d" % content_length))
    if add_date:
        out.append((b"date", date_header_value()))
    if add_server and server:
        out.append((b"server", server))
    return out


# -- HPACK (RFC 7541) for responses ---------------------------------------------------

_HUFFMAN: Final = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
# The static table (RFC 7541 Appendix A), 1-based: a whole field, or its name.
_STATIC_FIELD: Final[dict[tuple[bytes, bytes], int]] = {}
_STATIC_NAME: Final[dict[bytes, int]] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_FIELD.setdefault((_name, _value), _index)
    _STATIC_NAME.setdefault(_name, _index)
#: Response fields sent as "never indexed" (RFC 7541 7.1.3), so that no intermediary
#: compresses them, and never kept in the encoder's cache.
NEVER_INDEXED: Final = frozenset({b"set-cookie"})
# Fields whose encoding is kept (one cache for the process; ``date`` changes each
# second, ``content-length`` with the body): emptied when full.
_CACHE_SIZE: Final = 1024
#: Fields' encodings (:class:`FieldEncoder`), for every connection of the process.
FIELD_CACHE: Final[dict[tuple[bytes, bytes], bytes]] = {}
_DYNAMIC_TABLE_SIZE_ZERO: Final = b"\x20"


def _integer(value: int, prefix: int, first: int) -> bytes:
    # RFC 7541 5.1: ``value`` in a ``prefix``-bit prefix of a first byte whose other
    # bits are ``first``, continued 7 bits a byte.
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    # RFC 7541 5.2: Huffman-coded where that is shorter.
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        return _integer(len(coded), 7, 0x80) + coded
    return _integer(len(data), 7, 0) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One header field as HPACK: indexed when the static table holds it whole, else a
    literal "without indexing" (``NEVER_INDEXED`` names: "never indexed"), naming the
    static table's entry for its name where there is one."""
    index = _STATIC_FIELD.get((name, value))
    if index is not None:
        return bytes((0x80 | index,))  # every static index is below 127
    first = 0x10 if name in NEVER_INDEXED else 0
    index = _STATIC_NAME.get(name)
    if index is not None:
        return _integer(index, 4, first) + _string(value)
    return bytes((first,)) + _string(name) + _string(value)


class FieldEncoder:
    """The HPACK encoder of one connection's responses, in place of ``hpack``'s.

    It never adds to the dynamic table (as nginx's does not), so a field's encoding
    depends on nothing sent before: it is computed once and kept in a cache all
    connections share, and a repeated response head costs a few dictionary lookups.
    The price is a few dozen bytes a response more than with the table (``date``,
    ``server``, ``content-type`` as literals each time). The first block, and the
    first after the client changes SETTINGS_HEADER_TABLE_SIZE, starts with a dynamic
    table size update to 0 (RFC 7541 4.2, 6.3), which any announced size allows.

    ``h2`` calls :meth:`encode` with the header list of HEADERS frames and sets
    :attr:`header_table_size` on the client's SETTINGS.
    """

    __slots__ = ("_resize",)

    def __init__(self) -> None:
        self._resize = True

    @property
    def header_table_size(self) -> int:
        """The dynamic table's size this encoder uses: always 0."""
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # The client announced a new maximum: say again that ours is 0.
        self._resize = True

    def encode(self, headers: list[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        """The header block of ``headers`` (names in lower case, bytes)."""
        cache = FIELD_CACHE
        out = [_DYNAMIC_TABLE_SIZE_ZERO] if self._resize else []
        self._resize = False
        for field in headers:
            data = cache.get(field)
            if data is None:
                name, value = field
                data = encode_field(name, value)
                if name not in NEVER_INDEXED:
                    if len(cache) >= _CACHE_SIZE:
                        cache.clear()
                    cache[field] = data
            out.append(data)
        return b"".join(out)


#: A header block of at most this many bytes that changed no table is remembered; so
#: many such blocks per connection at most (a few hundred bytes of tuples each).
_REMEMBERED_BLOCK: Final = 64
_REMEMBERED_BLOCKS: Final = 16


class _CountedTable(HeaderTable):
    """``hpack``'s dynamic table, counting its changes (entries added, size set)."""

    def __init__(self) -> None:
        super().__init__()
        self.changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.changes += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class FieldDecoder(Decoder):
    """``hpack``'s decoder (RFC 7541), which remembers what it decoded of the small
    blocks that changed nothing in its dynamic table.

    Such a block is what a client sends when it repeats a request: fields already in
    its tables (indexed), or sent as literals it chose not to index (nghttp2, so
    h2load and curl, never indexes ``:path``). Decoding is a function of the block
    and the table, so the block decodes to the same list for as long as the table
    does not change; any change (an entry added, a size update) forgets everything
    remembered, and a block that changes the table is never remembered (it must
    change it again). Errors are never remembered; the header list limit (HPACK
    bombs) and table size limit a block was checked under are compared on each use.
    """

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self.header_table = self._table = table = _CountedTable()
        self._blocks: dict[bytes, list[HeaderTuple]] = {}
        self._state = (table.changes, max_header_list_size, self.max_allowed_table_size)

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:
        """The header list of the block ``data`` (raises ``hpack``'s errors)."""
        if not raw:
            return list(super().decode(data, raw))
        return list(self.decode_shared(data))

    def decode_shared(self, data: bytes) -> list[HeaderTuple]:
        """The header list of the block ``data``, names and values as bytes (raises
        ``hpack``'s errors): a remembered block's list itself, which the caller
        must not change."""
        blocks = self._blocks
        changes = self._table.changes
        state = (changes, self.max_header_list_size, self.max_allowed_table_size)
        if state != self._state:
            blocks.clear()
            self._state = state
        known = blocks.get(data)
        if known is not None:
            return known
        headers = list(super().decode(data, True))
        if self._table.changes == changes and len(data) <= _REMEMBERED_BLOCK:
            if len(blocks) >= _REMEMBERED_BLOCKS:
                blocks.clear()
            blocks[data] = headers
        return headers


# -- frames of a response (RFC 9113 4.1, 6.1, 6.2, 6.10) ------------------------------

_FRAME_HEAD: Final = struct.Struct(">HBBBL")  # length (24 bits), type, flags, stream
_END_STREAM_FLAG: Final = 0x1
_END_HEADERS_FLAG: Final = 0x4


def data_frame_head(stream_id: int, size: int, end: bool) -> bytes:
    """The 9-byte header of a DATA frame of ``size`` bytes (``end``: END_STREAM)."""
    return _FRAME_HEAD.pack(size >> 8, size & 0xFF, _DATA, end, stream_id)


def headers_frames(stream_id: int, block: bytes, end: bool, max_frame: int) -> bytes:
    """A header block as a HEADERS frame (``end``: END_STREAM), and CONTINUATION
    frames where it is larger than ``max_frame``."""
    size = len(block)
    flags = _END_STREAM_FLAG if end else 0
    if size <= max_frame:
        head = _FRAME_HEAD.pack(
            size >> 8, size & 0xFF, _HEADERS, flags | _END_HEADERS_FLAG, stream_id
        )
        return head + block
    out = []
    kind = _HEADERS
    for start in range(0, size, max_frame):
        piece = block[start : start + max_frame]
        last = start + max_frame >= size
        if last:
            flags |= _END_HEADERS_FLAG
        length = len(piece)
        out.append(_FRAME_HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id))
        out.append(piece)
        kind, flags = _CONTINUATION, 0
    return b"".join(out)
