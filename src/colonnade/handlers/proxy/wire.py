"""HTTP/1.1 as the proxy speaks it to an upstream, without sockets: chunked framing
out, the response parsed from bytes in (the request head is ``forward.outgoing``'s).

How this works. :class:`ResponseParser` is fed whatever the upstream sent
(``feed``) and answers events: :class:`Head` (a final response's status and
headers), :class:`Interim` (a 1xx other than 101), :class:`Data` (body bytes,
de-chunked), :class:`End` (the response is complete). It knows the request's
method (``start(method)``): the answer to ``HEAD`` has no body whatever it
declares. The body's framing follows RFC 9112 6.3: none for 1xx, 204 and 304;
chunked when the last transfer coding is; else ``Content-Length``; else until
the upstream closes (``eof()`` then ends it). Anything that is not HTTP — an
invalid status line, a header line that is no field, a head longer than
``max_head``, a bad chunk — raises :class:`UpstreamProtocolError`, and the
connection is never used again. After :class:`End`, ``reusable`` says whether
the connection may carry another request: the upstream did not ask to close,
its framing was not by close, and nothing followed the response.

The parser holds at most ``max_head`` bytes of a head or a chunk-size line;
body bytes pass through as slices of what was fed, never collected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from colonnade.core.httputil import TCHARS, has_token, is_field_value, is_token
from colonnade.core.response import FieldBlock, Response

if TYPE_CHECKING:
    from mypy_extensions import i64

Headers = list[tuple[bytes, bytes]]

#: Longest chunk-size line (with extensions) accepted: a hex size needs 16 bytes.
MAX_CHUNK_LINE: Final = 1024

#: Fields that belong to one connection (RFC 9110 7.6.1): never forwarded, either way.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: Field lines' bytes translated: a tchar in lower case, the colon kept, any other byte NUL.
_NAME: Final = bytes(
    (c + 32 if 65 <= c <= 90 else c) if c in TCHARS else c if c == 58 else 0 for c in range(256)
)
#: Response fields a proxy may change on the way back: the hop-by-hop ones, and
#: those whose URLs or cookie domains name the upstream.
_CHANGED: Final = HOP_BY_HOP | {b"location", b"content-location", b"set-cookie"}
#: 1 at the lengths of the names in _CHANGED (all shorter than 20), else 0: a
#: name is looked up (its bytes hashed) only when it has one of those lengths.
_CHANGED_SIZES: Final = bytes(
    1 if any(len(n) == size for n in _CHANGED) else 0 for size in range(20)
)


#: Bytes past a response head (a small body) translated with it rather than sliced off.
_TRANSLATED_PAST: Final = 256
#: Bytes searched for a head's end by a native loop (see _blank_line): more, by find.
_SCANNED: Final = 2048


class UpstreamProtocolError(ValueError):
    """The upstream's bytes are not a valid HTTP/1.1 response (the message says how)."""


class Head:
    """A final response's head (status 101 included: the connection is switched).

    ``plain``: no field a proxy changes on the way back (hop-by-hop, ``Location``,
    ``Content-Location``, ``Set-Cookie``), so the fields may be passed on as they are.
    ``headers`` is a list of the head's own, made when first asked for (a pipeline
    changes a response's list); ``fields`` is the same, and ``bare`` the same
    without ``Content-Length`` (for a body handed on whole, whose length the engine
    writes): lists of this head's own (the same list when there is no
    ``Content-Length``), which the parser never reads or changes again.
    """

    __slots__ = ("_headers", "bare", "fields", "keep_alive", "plain", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: bytes,
        fields: Headers,
        keep_alive: bool,
        plain: bool = False,
        bare: Headers | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.fields = fields  # names lower case, in order
        self.bare = fields if bare is None else bare
        self.keep_alive = keep_alive
        self.plain = plain
        self._headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        """The fields, names lower case, in order: a list of this head's own."""
        headers = self._headers
        if headers is None:
            headers = self._headers = self.fields[:]
        return headers

    def __repr__(self) -> str:
        return f"<Head {self.status}>"


class Interim:
    """An informational (1xx) response other than 101: ``100 Continue``, ``103``."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers


class Data:
    """Body bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class End:
    """The response is complete."""

    __slots__ = ()


END: Final = End()
Event = Head | Interim | Data | End

# Where the parser is.
# (Final constants: compiled, a comparison with one is native, not a lookup.)
_HEAD: Final = 0
_LENGTH: Final = 1
_CHUNK_SIZE: Final = 2
_CHUNK_DATA: Final = 3
_CHUNK_CRLF: Final = 4
_TRAILERS: Final = 5
_CLOSE: Final = 6
_DONE: Final = 7
_SWITCHED: Final = 8


class ResponseParser:
    """Parses one upstream connection's responses (see the module docstring)."""

    __slots__ = (
        "_buffer",
        "_handed",
        "_head_request",
        "_parsed",
        "_remaining",
        "_state",
        "max_head",
        "reusable",
    )

    def __init__(self, max_head: int = 65536) -> None:
        self.max_head = max_head
        self._buffer = b""
        self._state = _DONE
        self._remaining = 0
        self._head_request = False
        # A head whole() parsed and did not take, with the data it came in: feed's.
        self._handed: tuple[bytes, _Parsed] | None = None
        # What each final head is parsed into (read at once, then parsed over by
        # the next head: no object made and freed per response).
        self._parsed = _Parsed()
        #: After End: the connection may carry another request.
        self.reusable = False

    @property
    def idle(self) -> bool:
        """True before a request and once its response ended, with nothing after it."""
        return self._state == _DONE and not self._buffer

    @property
    def started(self) -> bool:
        """True once any byte of the current response arrived."""
        return self._state != _HEAD or bool(self._buffer)

    @property
    def length_due(self) -> int | None:
        """Body bytes still to come of a response framed by ``Content-Length``
        (None: framed otherwise, or no body under way)."""
        return self._remaining if self._state == _LENGTH else None

    def start(self, method: str) -> None:
        """A request went out: parse its response (``method`` decides whether it
        has a body)."""
        if self._state != _DONE or self._buffer:
            raise UpstreamProtocolError("the upstream sent bytes before the request")
        self._state = _HEAD
        self._head_request = method == "HEAD"
        self.reusable = False

    def whole(self, data: bytes) -> _Parsed | None:
        """``feed`` for the usual small answer, without its events: when ``data``
        is exactly one final response whose body, framed by a ``Content-Length``,
        ends where ``data`` ends, the response is taken (its body is
        ``data[parsed.end:]``) and its head returned. None: not such an
        answer (its head not whole, an interim answer, another framing, more or
        fewer bytes than its length), and nothing taken: then ``feed`` with the
        same ``data`` (which takes the head parsed here, not parsing it again)."""
        if self._state != _HEAD or self._buffer or self._head_request:
            return None
        parsed = _parse_usual_head(data, self.max_head, self._parsed)
        if parsed is None:  # not the usual head (or not whole): read here in Python
            found = _blank_line(data, 0, self.max_head)
            if found < 0:
                return None  # not whole yet, or too long: feed says which
            fresh = _parse_head(data, found + 4, self._parsed)
            if isinstance(fresh, Interim):
                return None  # (rare: a 1xx to a request without a body) read again
            parsed = fresh
        status = parsed.status
        length = parsed.length
        if length is None or parsed.te or status == 101 or status == 204 or status == 304:
            size = -1
        else:
            size = parsed.size
            if size < 0:
                size = parsed.size = _length(length)
        if size < 0 or len(data) != parsed.end + size:
            # Not such an answer: feed, called next with this data, takes the head.
            parsed.restore()
            self._handed = (data, parsed)
            return None
        self._state = _DONE
        self.reusable = parsed.keep_alive
        return parsed

    def leftover(self) -> bytes:
        """After a 101: what the upstream sent past the head (the other protocol's)."""
        data, self._buffer = self._buffer, b""
        return data

    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` completes, in order."""
        events: list[Event] = []
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        pos = 0
        end = len(data)
        while pos < end or self._state == _CLOSE:
            state = self._state
            if state == _LENGTH:
                take = min(self._remaining, end - pos)
                events.append(Data(data[pos : pos + take] if pos or take < end else data))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._finish(events)
            elif state == _CLOSE:
                if pos < end:
                    events.append(Data(data[pos:] if pos else data))
                pos = end
                break
            elif state == _CHUNK_DATA:
                take = min(self._remaining, end - pos)
                events.append(Data(data[pos : pos + take]))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _HEAD:
                pos = self._head(data, pos, events)
                if pos < 0:
                    break
            elif state == _CHUNK_SIZE:
                pos = self._chunk_size(data, pos)
                if pos < 0:
                    break
            elif state == _CHUNK_CRLF:
                if end - pos < 2:
                    self._buffer = data[pos:]
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise UpstreamProtocolError("a chunk does not end with CRLF")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                pos = self._trailers(data, pos, events)
                if pos < 0:
                    break
            elif state == _SWITCHED:
                self._buffer = data[pos:]
                break
            else:  # _DONE: bytes nobody asked for
                self.reusable = False
                self._buffer = data[pos:]
                break
        return events

    def eof(self) -> list[Event]:
        """The upstream closed its side: the end of a body framed by close, else
        an error if a response was under way."""
        if self._state == _CLOSE:
            self._state = _DONE
            self.reusable = False
            return [END]
        if self._state in (_DONE, _SWITCHED):
            return []
        if self._state == _HEAD and not self._buffer:
            raise UpstreamProtocolError("the upstream closed the connection without answering")
        raise UpstreamProtocolError("the upstream closed the connection before its response ended")

    # -- pieces -------------------------------------------------------------------------

    def _finish(self, events: list[Event]) -> None:
        events.append(END)
        self._state = _DONE

    def _block(self, data: bytes, pos: int, limit: int, what: str) -> int:
        # The end of the blank line that ends a block of lines starting at pos
        # (-1: not there yet; the rest is kept); limit bounds the block.
        found = data.find(b"\r\n\r\n", pos, pos + limit + 4)
        if found < 0:
            if len(data) - pos > limit + 3:
                raise UpstreamProtocolError(f"the upstream's {what} is longer than {limit} bytes")
            self._buffer = data[pos:]
            return -1
        return found

    def _head(self, data: bytes, pos: int, events: list[Event]) -> int:
        # The head ends at the first blank line. Every response's head is parsed
        # once: by whole() (handed over with its data), else here. No memo of the
        # last response's head: an upstream answering byte for byte alike is a
        # benchmark's more than a real one's (see docs/proxy.md).
        handed = self._handed
        if handed is not None:
            self._handed = None
            if pos == 0 and handed[0] is data:
                parsed = handed[1]
                return self._final(parsed, data, parsed.end, events)
        limit = self.max_head
        found = _blank_line(data, pos, limit)
        if found < 0:
            if len(data) - pos > limit + 3:
                raise UpstreamProtocolError(
                    f"the upstream's response head is longer than {limit} bytes"
                )
            self._buffer = data[pos:] if pos else data
            return -1
        after = found + 4
        fresh = _parse_head(data[pos:after] if pos else data, after - pos, self._parsed)
        if isinstance(fresh, Interim):
            events.append(fresh)
            return after  # the final response follows
        return self._final(fresh, data, after, events)

    def _final(self, parsed: _Parsed, data: bytes, after: int, events: list[Event]) -> int:
        # A final response's head read (``after``: where it ended in ``data``): its
        # event, and the state its framing puts the parser in.
        # The lists shared: Head copies them when asked (see Head).
        events.append(
            Head(
                parsed.status,
                parsed.reason,
                parsed.headers,
                parsed.keep_alive,
                parsed.plain,
                parsed.bare,
            )
        )
        self.reusable = parsed.keep_alive
        status = parsed.status
        if status == 101:
            self._state = _SWITCHED
            self.reusable = False
            self._buffer = data[after:]
            return len(data)
        if self._head_request or status == 204 or status == 304:
            self._finish(events)
        elif parsed.te:
            if parsed.length is not None:
                self.reusable = False  # RFC 9112 6.1: both framings: close after it
            if parsed.chunked:
                self._state = _CHUNK_SIZE
            else:
                self._state = _CLOSE
                self.reusable = False
        elif parsed.length is not None:
            size = parsed.size
            if size < 0:
                size = parsed.size = _length(parsed.length)
            self._remaining = size
            if self._remaining:
                self._state = _LENGTH
            else:
                self._finish(events)
        else:
            self._state = _CLOSE
            self.reusable = False
        return after

    def _chunk_size(self, data: bytes, pos: int) -> int:
        found = data.find(b"\r\n", pos, pos + MAX_CHUNK_LINE + 2)
        if found < 0:
            if len(data) - pos > MAX_CHUNK_LINE + 1:
                raise UpstreamProtocolError("a chunk-size line is too long")
            self._buffer = data[pos:]
            return -1
        size = data[pos:found].split(b";", 1)[0].strip(b" \t")
        if not size or len(size) > 16 or size.translate(None, b"0123456789abcdefABCDEF"):
            raise UpstreamProtocolError(f"an invalid chunk size: {size[:40]!r}")
        self._remaining = int(size, 16)
        self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        return found + 2

    def _trailers(self, data: bytes, pos: int, events: list[Event]) -> int:
        if data.startswith(b"\r\n", pos):
            self._finish(events)
            return pos + 2
        if len(data) - pos < 2:
            self._buffer = data[pos:]
            return -1
        found = self._block(data, pos, self.max_head, "trailer section")
        if found < 0:
            return -1
        _fields(data[pos:found].split(b"\r\n"))  # checked, then dropped (not forwarded)
        self._finish(events)
        return found + 4


class _Parsed:
    """A final response head, ``end`` bytes long (the blank line that ends it
    included): what :class:`Head` carries and what decides the body's framing.
    ``length``: the Content-Length value (None: none), ``size`` its number once
    read (-1: not yet); ``bare``: ``headers`` without Content-Length (the same
    list when there is none); ``te``: a Transfer-Encoding was sent, ``chunked``
    its last coding is. ``canonical``: the status line and every field line are
    as the HTTP/1 writer would write them (``HTTP/1.1``, a reason; ``name:
    value``, see _fields.c), at most one Content-Length among them, whose line
    then begins at ``length_at`` (-1: none); ``date``, ``server``: a Date, a
    Server field is among them. ``lines``: what :meth:`block` cuts from the
    head, cut already (_fields.c's reader; None: cut there). ``missing``: where
    the Content-Length field goes back in ``headers``, which the C reader leaves
    without it (-1: nowhere), see :meth:`restore`."""

    __slots__ = (
        "_block",
        "bare",
        "canonical",
        "chunked",
        "date",
        "end",
        "headers",
        "keep_alive",
        "length",
        "length_at",
        "lines",
        "missing",
        "plain",
        "reason",
        "server",
        "size",
        "status",
        "te",
    )

    def __init__(self) -> None:
        self._block: FieldBlock | None = None  # see block
        self.end = 0
        self.length_at = -1
        self.lines: bytes | None = None
        self.missing = -1
        self.date = False
        self.server = False
        self.canonical = False
        self.status = 0
        self.reason = b""
        self.headers: Headers = []
        self.bare: Headers = self.headers
        self.keep_alive = False
        self.plain = True
        self.length: bytes | None = None
        self.te = False
        self.chunked = False
        self.size = -1

    def restore(self) -> None:
        """``headers`` with its Content-Length field, where the C reader left it
        out (a response taken whole needs only ``bare``: no list made for it)."""
        missing = self.missing
        if missing >= 0:
            length = self.length
            assert length is not None
            headers = self.bare[:]
            headers.insert(missing, (b"content-length", length))
            self.headers = headers
            self.missing = -1

    def block(
        self, data: bytes, response: Response, body: bytes | None = None
    ) -> FieldBlock | None:
        """The head, read from ``data``, as the HTTP/1 writer would write it
        without its Content-Length (the response's fields, ``response.headers``,
        are its fields without it), from ``data``'s own bytes: None unless they
        are written so already (``canonical``) and no field is to be changed on
        the way back (``plain``). Set as ``response.block`` too. The block is this
        record's one, filled again for the next head (the response it was filled
        for before no longer holds it: FieldBlock).

        ``body``: ``data`` is the whole answer, this head and ``body`` (its
        Content-Length's worth, the response's body): where its Content-Length
        line is its last field line, its length in decimal as the writer writes
        it, and a Date and a Server are among the fields, ``data`` is also the
        whole answer the writer would send: the response's ``answer`` (of
        ``answer_body`` ``body``), the response's alone (a block lives as long as
        its connection, a response as long as its request)."""
        if not self.canonical or not self.plain:
            response.block = None
            return None
        cut = self.end - 2  # where the blank line begins
        at = self.length_at
        length = self.length
        if (
            body is not None
            and self.date
            and self.server
            and length is not None
            and at >= 0
            and at + 18 + len(length) == cut
            and (length[0] != 48 or len(length) == 1)  # no leading zero ("0" itself)
            and len(data) == self.end + len(body)
        ):
            response.answer = data
            response.answer_body = body
        cut_already = self.lines
        if cut_already is not None:
            lines = cut_already
        elif at < 0:
            lines = data[:cut]
        else:
            # The Content-Length line ("content-length: " value CR LF) cut out.
            assert length is not None
            after = at + 18 + len(length)
            lines = data[:at] if after == cut else data[:at] + data[after:cut]
        # The pairs as objects (compiled, a pair read as tuple[bytes, bytes] is
        # unboxed, and boxed anew where it is compared by identity).
        pairs: tuple[object, ...] = tuple(cast("list[object]", response.headers))
        block = self._block
        if block is None:
            block = self._block = FieldBlock()
        block.fill(self.status, self.reason, pairs, lines, self.date, self.server)
        response.block = block
        return block


def _parse_head(raw: bytes, end: int = -1, into: _Parsed | None = None) -> _Parsed | Interim:
    # A response head (status line and fields, and the blank line): an
    # informational one as Interim, a final one as _Parsed (``into``, whose
    # values are all replaced, else a new one). ``end``: where the
    # head ends in ``raw`` (after its blank line; -1: at the end of ``raw``),
    # which may go on with the body. Compiled, a bytes
    # method call costs hundreds of instructions, indexing a few: the status
    # line ends at the first CRLF, found by a native loop that notes a NUL,
    # lone CR or LF on the way (then _status_line looks for them in the reason).
    if end < 0:
        end = len(raw)
    eol: i64 = 0
    clean = True
    while True:
        c: i64 = raw[eol]
        if c == 13:
            if raw[eol + 1] == 10:
                break
            clean = False
        elif c == 10 or c == 0:
            clean = False
        eol += 1
    status, reason, http10 = _status_line(raw, not clean, eol)
    headers, canonical = _header_lines(raw, eol + 2, end)
    if 100 <= status < 200 and status != 101:
        return Interim(status, headers)
    connection = b""
    length: bytes | None = None
    lengths = 0  # Content-Length fields
    at = -1  # where the first one is
    chunked = False
    te = False
    plain = True
    changed = _CHANGED
    sizes = _CHANGED_SIZES
    date = False
    server = False
    # Where each line begins, were every line written "name: value" (canonical).
    pos: i64 = eol + 2
    length_at: i64 = -1
    for i, (name, value) in enumerate(headers):
        size = len(name)
        if size == 14 and name == b"content-length":
            if length is not None and value != length:
                raise UpstreamProtocolError("the response has several Content-Length values")
            length = value
            lengths += 1
            if at < 0:
                at = i
                length_at = pos
        elif size == 4 and name == b"date":
            date = True
        elif size == 6 and name == b"server":
            server = True
        elif size < 20 and sizes[size] and name in changed:
            plain = False
            if name == b"connection":
                connection = connection + b"," + value if connection else value
            elif name == b"transfer-encoding":
                te = True
                chunked = value.rstrip(b" \t").lower().endswith(b"chunked")
        pos += size + len(value) + 4
    if http10:
        keep_alive = bool(connection) and has_token(connection, b"keep-alive")
    else:
        keep_alive = not connection or not has_token(connection, b"close")
    # The fields without Content-Length (the same list when there is none): a
    # copy less its one field, the usual case (pop: a native call; del and a
    # comprehension are not).
    if not lengths:
        bare = headers
    elif lengths == 1:
        bare = headers[:]
        bare.pop(at)
    else:
        bare = [f for f in headers if f[0] != b"content-length"]
    parsed = _Parsed() if into is None else into
    parsed.end = end
    parsed.lines = None
    parsed.missing = -1
    parsed.length_at = length_at
    parsed.date = date
    parsed.server = server
    # As the writer writes a head: HTTP/1.1 and a reason (see _Parsed).
    parsed.canonical = canonical and not http10 and bool(reason) and lengths <= 1
    parsed.status = status
    parsed.reason = reason
    parsed.headers = headers
    parsed.bare = bare
    parsed.keep_alive = keep_alive
    parsed.plain = plain
    parsed.length = length
    parsed.te = te
    parsed.chunked = chunked
    parsed.size = -1
    return parsed


def _parse_usual_head(data: bytes, limit: int, into: _Parsed) -> _Parsed | None:
    # The usual response head at the start of ``data`` (HTTP/1.1, a final status
    # other than 101, no Connection nor Transfer-Encoding field, at most one
    # Content-Length, all valid; within ``limit`` bytes) read by _fields.c's
    # response_head in one pass, into ``into`` as _parse_head would read it: None
    # for any other head (or one not whole yet), and in a pure-Python build.
    read = _C_RESPONSE_HEAD
    if read is None:
        return None
    found = read(data, limit)
    if found is None:
        return None
    end, status, reason, bare, length, missing, length_at, size, flags, lines = found
    into.end = end
    into.lines = lines
    # The fields without Content-Length: its field goes back in only for a
    # response that is not taken whole (see _Parsed.restore).
    into.missing = missing
    into.length_at = length_at
    into.canonical = flags & 1 != 0
    into.date = flags & 2 != 0
    into.server = flags & 4 != 0
    into.plain = flags & 8 != 0
    into.status = status
    into.reason = reason
    into.headers = bare
    into.bare = bare
    into.keep_alive = True  # HTTP/1.1 without Connection
    into.length = length
    into.te = False
    into.chunked = False
    into.size = size
    return into


def _blank_line(data: bytes, start: int, limit: int) -> int:
    # Where the first CRLF CRLF at or after ``start`` begins, if it begins
    # within ``limit`` bytes of it (-1: none). A native loop in place of
    # data.find (compiled, a bytes method call costs ~1,300 instructions for a
    # small head) over the first _SCANNED bytes: it looks at every fourth byte
    # where those are neither CR nor LF, as a field line's are (Horspool's
    # shifts for CRLF CRLF: 2 after an LF, 1 after a CR, else 4). Past them
    # (a large head), find's C loop is the faster.
    size: i64 = len(data)
    stop: i64 = start + limit + 3  # the last byte a match may end at
    if stop >= size:
        stop = size - 1
    scanned: i64 = stop if stop - start <= _SCANNED else start + _SCANNED
    i: i64 = start + 3
    while i <= scanned:
        c: i64 = data[i]
        if c == 10:
            if data[i - 1] == 13 and data[i - 2] == 10 and data[i - 3] == 13:
                return i - 3
            i += 2
        elif c == 13:
            i += 1
        else:
            i += 4
    if scanned < stop:
        # One that ends past what was scanned begins at scanned - 2 or later.
        found: int = data.find(b"\r\n\r\n", scanned - 2, stop + 1)
        return found
    return -1


def _status_line(raw: bytes, check: bool = True, eol: int = -1) -> tuple[int, bytes, bool]:
    # HTTP-version SP 3DIGIT SP [reason]: (status, reason, is HTTP/1.0) of the
    # status line ``raw[:eol]`` (-1: all of ``raw``). Indexing, not slices nor
    # bytes methods: compiled, those are native operations, where a slice makes an
    # object (the reason is the one made).
    size = len(raw) if eol < 0 else eol
    if (
        size < 12
        or raw[0] != 72  # H
        or raw[1] != 84  # T
        or raw[2] != 84  # T
        or raw[3] != 80  # P
        or raw[4] != 47  # /
        or raw[5] != 49  # 1
        or raw[6] != 46  # .
        or (raw[7] != 49 and raw[7] != 48)  # 1 or 0
        or raw[8] != 32
    ):
        raise UpstreamProtocolError(f"an invalid status line: {raw[: min(size, 80)]!r}")
    hundreds = raw[9] - 48
    tens = raw[10] - 48
    units = raw[11] - 48
    if (
        not 1 <= hundreds <= 9
        or not 0 <= tens <= 9
        or not 0 <= units <= 9
        or (size > 12 and raw[12] != 32)
    ):
        raise UpstreamProtocolError(f"an invalid status line: {raw[: min(size, 80)]!r}")
    # (A slice whose stop is before its start raises compiled: see _blame.)
    reason = raw[13:size] if size > 13 else b""
    if check and reason and (0 in reason or 13 in reason or 10 in reason):
        raise UpstreamProtocolError("an invalid reason phrase")
    return hundreds * 100 + tens * 10 + units, reason, raw[7] == 48


def _length(value: bytes) -> int:
    # A Content-Length value: 1 to 18 ASCII digits.
    size = len(value)
    if not size or size > 18:
        raise UpstreamProtocolError(f"an invalid Content-Length: {value[:40]!r}")
    length = 0
    for i in range(size):
        digit = value[i] - 48
        if not 0 <= digit <= 9:
            raise UpstreamProtocolError(f"an invalid Content-Length: {value[:40]!r}")
        length = length * 10 + digit
    return length


def _c_header_lines() -> Callable[[bytes, int, int], tuple[Headers, bool] | None] | None:
    # The compiled build's C loop (_fields.c), None where it is not built. (Its
    # function imported by a name of its own: compiled, an import in a function
    # binds a module global, and ``_fields`` is this module's line-by-line check.)
    try:
        from colonnade.handlers.proxy._fields import header_lines as c_header_lines
    except ImportError:
        return None
    return c_header_lines


def _c_response_head() -> (
    Callable[
        [bytes, int],
        tuple[int, int, bytes, Headers, bytes | None, int, int, int, int, bytes | None] | None,
    ]
    | None
):
    # _fields.c's response_head, None where it is not built (see _c_header_lines).
    try:
        from colonnade.handlers.proxy._fields import response_head
    except ImportError:
        return None
    return response_head


#: The usual response head read whole in C (_fields.c's response_head; see
#: _parse_usual_head); None in a pure-Python build.
_C_RESPONSE_HEAD: Final = _c_response_head()


#: _header_lines_py's loop in C (_fields.c: the same answers, ~3,000 instructions
#: fewer for a 4-field head); None in a pure-Python build.
_C_HEADER_LINES: Final = _c_header_lines()


def _join() -> Callable[[list[bytes]], bytes]:
    # _fields.c's join where built (see join), else bytes' own.
    try:
        from colonnade.handlers.proxy._fields import join as c_join
    except ImportError:
        return b"".join
    return c_join


#: ``b"".join`` of a list of bytes: _fields.c's in the compiled build, without the
#: buffer protocol's work per part (forward.outgoing joins a request head of ~8).
join: Final = _join()


def _header_lines(raw: bytes, start: int, size: int = -1) -> tuple[Headers, bool]:
    # The fields of a head (``raw[:size]``: its bytes, the blank line that ends it
    # included, -1: all of ``raw``; ``start``: where its first field line starts),
    # checked as _fields checks them (see _header_lines_py), by the C loop where
    # the build has it; and whether every line is written as the HTTP/1 writer
    # writes it (see _fields.c).
    if size < 0:
        size = len(raw)
    lines = _C_HEADER_LINES
    if lines is None:
        return _header_lines_py(raw, start, size)
    found = lines(raw, start, size)
    if found is None:
        return _blame(raw, start, size - 4), False
    return found


def _header_lines_py(raw: bytes, start: int, size: int) -> tuple[Headers, bool]:
    # _header_lines in Python: every name a token, no NUL, CR or LF in a value,
    # the value trimmed of SP and HTAB, the name lower case; and whether every
    # line is "name: value" as the writer writes it. One C-level translate
    # of the head (_NAME: a tchar in lower case, the colon kept, any other byte
    # NUL), then native loops: over a name's translated bytes to the colon, over
    # a value's to the CR that ends its line. Where a check fails, _fields finds
    # the line to blame.
    # (What follows the head, a small body, is translated with it: no slice.)
    names = (raw if len(raw) - size <= _TRANSLATED_PAST else raw[:size]).translate(_NAME)
    headers: Headers = []
    canonical = True
    at: i64 = start
    last: i64 = size - 2  # the blank line
    while at < last:
        colon: i64 = at
        while True:
            c: i64 = names[colon]
            if c == 58:  # ":"
                break
            if c == 0:  # no tchar (a CR: no colon)
                return _blame(raw, start, last - 2), False
            colon += 1
        end: i64 = colon + 1
        while True:
            c = raw[end]
            if c == 13:
                break
            if c == 10 or c == 0:
                return _blame(raw, start, last - 2), False
            end += 1
        if colon == at or raw[end + 1] != 10:
            return _blame(raw, start, last - 2), False
        first: i64 = colon + 1
        while first < end and (raw[first] == 32 or raw[first] == 9):
            first += 1
        stop: i64 = end
        while stop > first and (raw[stop - 1] == 32 or raw[stop - 1] == 9):
            stop -= 1
        name = names[at:colon]
        if canonical:
            canonical = (
                first == colon + 2
                and raw[colon + 1] == 32
                and stop == end
                and stop > first
                and raw[at:colon] == name
            )
        headers.append((name, raw[first:stop]))
        at = end + 2
    return headers, canonical


def _blame(raw: bytes, start: int, stop: int) -> Headers:
    # A head whose fields a fast loop refused: _fields reads its lines
    # (``raw[start:stop]``) one by one and raises for the first bad one. A stop
    # before start is no line at all: compiled, such a bytes slice raises
    # SystemError (mypyc computes a negative size) where Python gives b"".
    return _fields(raw[start : max(start, stop)].split(b"\r\n"))


def _fields(lines: list[bytes]) -> Headers:
    headers: Headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not is_token(name):
            # Includes obs-fold (a line starting with whitespace): RFC 9112 5.2
            # lets a proxy reject it.
            raise UpstreamProtocolError(f"an invalid header line: {line[:80]!r}")
        value = value.strip(b" \t")
        if value and not is_field_value(value):
            raise UpstreamProtocolError(f"an invalid value of header {name[:40]!r}")
        headers.append((name.lower(), value))
    return headers


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (``data`` not empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


#: The end of a chunked body, with no trailers.
LAST_CHUNK: Final = b"0\r\n\r\n"
