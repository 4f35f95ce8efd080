"""HTTP/1.1 without sockets: bytes in, events out; response parts in, bytes out.

How this works
--------------
One ``HTTP1Connection`` per TCP connection. ``feed(data)`` hands the bytes to
llhttp (through httptools), which calls back into the ``_on_*`` methods below as
it recognises pieces; the callbacks append events to a list that ``feed``
returns. llhttp already enforces most of RFC 9112 (request-line and header
syntax, Content-Length syntax and duplicates, CL together with TE); the
callbacks add what it lets through: Host rules, request-target forms,
unsupported transfer codings, HTTP/0.9 and 2.0, Expect, and the size limits. A
check that fails stores a ``ProtocolError`` and raises ``_RejectError``, which
makes llhttp stop; ``feed`` turns that (or llhttp's own error) into the final
event, and from then on the connection only returns ``[]``.

The compiled build reads the common feed without llhttp: a feed that is exactly
one plain request head (``GET / HTTP/1.1``, a Host and the usual fields, nothing
after the empty line) arriving between messages goes to ``_head.c``'s
``read_head``, whose grammar is narrower than llhttp's (a few methods, an
origin-form target, HTTP/1.1 or 1.0, field lines of the bytes llhttp takes, no
Content-Length, Transfer-Encoding, Connection, Proxy-Connection or Upgrade field:
the ones llhttp reads itself). It answers the method, the target and the fields
exactly as llhttp would report them, or None for anything else, which goes to
llhttp as before. ``_read_head`` then makes the calls llhttp would make, in its
order, so every check (Host, limits, target forms, Expect, keep-alive) is the
callbacks' own. llhttp never sees that message and stays between messages, ready
for the next feed; a request that closes (HTTP/1.0) ends parsing as it would
after llhttp (``_CLOSED``: later feeds never reach llhttp). ``_C_HEAD`` holds the
reader (None in the pure build); tests/http/test_h1_head_reader.py feeds nasty
heads both ways and requires identical events, errors and state.

Two things llhttp cannot do are done here, off the common path:

- Methods. llhttp knows a fixed list of methods; RFC 9110 9.1 allows any token.
  When llhttp refuses a method, the request's bytes are found again (below), the
  token is checked against ``tchar``, and a fresh parser is fed ``PUT`` in its
  place while the real token is kept for the ``RequestHead``. A message whose
  token has not ended yet waits in ``_METHOD``.
- Chunked bodies. llhttp refuses the optional whitespace RFC 9112 7.1.1 allows
  around chunk extensions (``5; name=value``). So ``_on_headers_complete`` stops
  llhttp after the head of a chunked request and ``_dechunk`` reads the body;
  the next request goes to a fresh parser.

Both need to know where a message starts in the bytes, and llhttp does not say
how far it read. ``_boundaries`` works it out again from what llhttp reported:
a head ends at its first empty line (llhttp accepts only CRLF line ends), its
body is as long as its Content-Length (a chunked body always ends a parser's
run), and llhttp skips CR and LF between messages. A run that ends mid-message
leaves what the next run needs: the head so far (``_carry``) or the body bytes
still due (``_body_left``). A feed that is one whole request, the common case,
does none of this.

Parsing stops for good after a request that asked to close (later bytes are
ignored, RFC 9112 9.6) and after a ``ProtocolError``. After an upgrade request
(``Connection: Upgrade``, which llhttp stops at) it waits: the bytes that follow
are held (``trailing_data``) until the request's answer says whose they are. A
101 hands them to the new protocol; any other answer ignores the upgrade (RFC
9110 7.8) and, where the request's body was read in full and the connection is
otherwise kept, keeps it: the held bytes are HTTP again (``http_again``).

Memory stays bounded: the request target and the headers are checked as they
complete, and ``_stall`` counts the bytes fed while a header line may still be
incomplete inside httptools (which buffers it before calling us), so one
endless header line cannot grow without limit. Feeds larger than ``_SLICE`` are
parsed in slices so that count stays precise enough. A method token, a
chunk-size line and a trailer section have bounds of their own.

The response side is a handful of flags for the response being sent:
``start_response`` picks the framing (Content-Length, chunked, or close-delimited)
and ``body``/``end_response`` apply it. Requests are answered strictly in order;
counting requests and responses is enough to know which response is the last
one the connection will carry.
"""

from __future__ import annotations

import re
import threading
import time as _time_module
from collections.abc import Callable, Sequence
from typing import Final, NoReturn

import httptools

from colonnade.http.dates import format_http_date
from colonnade.http.events import (
    Body,
    EndOfMessage,
    Event,
    Headers,
    Preface,
    ProtocolError,
    RequestHead,
    UpgradePending,
)
from colonnade.http.phrases import PHRASES

__all__ = ["HTTP1Connection", "error_response", "reason_phrase"]

# -- parser states (the ones llhttp parses in come first: ``state <= _BODY``) ---------
_IDLE: Final = 0  # between requests
_HEAD: Final = 1  # request line and header section
_BODY: Final = 2  # a Content-Length body
_CHUNK: Final = 3  # a chunked body, read by _dechunk
_METHOD: Final = 4  # a method llhttp does not know, its token not complete yet
_UPGRADED: Final = 5  # after an upgrade request (or HTTP/2's preface): bytes held
_CLOSED: Final = 6  # after a request that asked to close, or EOF: later bytes are ignored
_FAILED: Final = 7  # after a ProtocolError

#: Bound once: compiled, a static load, not an attribute look-up on the module
#: (~280 instructions under callgrind) for each connection's parser.
_RequestParser: Final = httptools.HttpRequestParser
#: What ``_carry`` and ``_trailing`` hold until a connection needs a buffer of its
#: own (most never do): never written to, replaced by a new bytearray first.
_NO_BYTES: Final = bytearray()
#: What ``_events`` holds between feeds: events are only made inside ``feed`` and
#: ``feed_eof``, each of which puts a list of its own there and returns it.
_NO_EVENTS: Final[list[Event]] = []
#: A RequestHead without its __init__ (interpreted only: see _on_headers_complete).
_new_object: Final = object.__new__
#: Whether this module runs compiled (mypyc): a compiled module's file is its
#: extension, not its source (as in transport/connection.py).
_COMPILED: Final = not __file__.endswith(".py")
#: Whether the parsers call a thread's shared callbacks (see _Callbacks).
_SHARE_CALLBACKS: Final = _COMPILED

_SLICE: Final = 65536
#: The most bytes held after an upgrade request (see _upgraded) that are parsed as
#: HTTP again when its answer ignores the upgrade: as much as a read gives at once
#: (a pipelining client's requests), not a buffer grown while the answer was made,
#: parsed into requests all at once. More, and the answer closes the connection;
#: and the connection stops reading meanwhile (``over_held``).
HELD_MAX: Final = 4 * _SLICE
_END: Final = EndOfMessage()
_PREFACE: Final = Preface()
_UPGRADE_PENDING: Final = UpgradePending()
# What llhttp says when a request is HTTP/2's connection preface, ``PRI * HTTP/2.0``
# and an empty line (it stops there, so spotting HTTP/2 with prior knowledge costs the
# HTTP/1.1 path nothing), or a broken one: the HTTP/2 layer answers that with GOAWAY.
_PRI_REASONS: Final = frozenset({"Pause on PRI/Upgrade", "Expected HTTP/2 Connection Preface"})


#: What _head.c reads of a head: its method, its target, and its fields as llhttp
#: reports them, flat (name, value, name, value, ...).
_ReadHead = tuple[bytes, bytes, tuple[bytes, ...]]


def _c_read_head() -> Callable[[bytes], _ReadHead | None] | None:
    # The compiled build's C head reader (_head.c), None where it is not built.
    try:
        from colonnade.http._head import read_head
    except ImportError:
        return None
    return read_head


class _HeadReader:
    """Where ``feed`` finds _head.c's ``read_head`` (None: a build without it).
    An object, not a module constant: compiled, a field load all the same, and
    the tests can switch it off to compare with llhttp's reading."""

    __slots__ = ("read",)

    def __init__(self) -> None:
        self.read = _c_read_head()


_C_HEAD: Final = _HeadReader()
# Far beyond any count of requests, and small enough to stay a machine integer when
# compiled (sys.maxsize does not: every comparison with it took the slow path).
_NEVER: Final = 1 << 60

# Request header names that need a closer look; all but Host only at the end of the head.
# Fields _on_header notes: the framing ones (read again at the end of the head), Host,
# and Connection (llhttp's Proxy-Connection too), without which an HTTP/1.1 request
# is kept alive without asking llhttp; and the ones that make the answer particular to
# the request (``RequestHead.particular``).
# Each -> what _on_header does with it (its _Field says which: no look-up of its own).
_HOST_FIELD: Final = 1
_CONNECTION_FIELD: Final = 2
_FRAMING_FIELD: Final = 3
_PARTICULAR_FIELD: Final = 4
#: Request fields whose presence makes the answer depend on the client's state (a
#: 206, 304 or 412; credentials) or ask for another protocol: a shared cache (the
#: response cache) takes such a request to the pipeline (``RequestHead.particular``).
PARTICULAR_FIELDS: Final = frozenset(
    {
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"authorization",
        b"upgrade",
    }
)
_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _HOST_FIELD,
    b"content-length": _FRAMING_FIELD,
    b"transfer-encoding": _FRAMING_FIELD,
    b"expect": _FRAMING_FIELD,
    b"connection": _CONNECTION_FIELD,
    b"proxy-connection": _CONNECTION_FIELD,
    **{name: _PARTICULAR_FIELD for name in PARTICULAR_FIELDS},
}


class _Field:
    """A request header name as received, known: its lower case and its kind (a
    ``_*_FIELD``, or 0)."""

    __slots__ = ("kind", "name")

    def __init__(self, name: bytes, kind: int) -> None:
        self.name = name
        self.kind = kind


def _field(name: bytes) -> _Field:
    lname = name.lower()
    return _Field(lname, _SPECIAL.get(lname, 0))


# RFC 3986 reg-name / IP-literal / port characters: anything else in Host is a 400.
_HOST_CHARS: Final = (
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]"
)
# Hosts already found valid: clients repeat the same few, and a dict hit is a quarter
# of the cost of checking. Bounded, so junk hosts only fill it and then bypass it.
# Each maps to itself: a connection keeps the shared object as its last good host,
# not the bytes of its own request (~50 bytes per idle connection).
_VALID_HOSTS: Final[dict[bytes, bytes]] = {}
_VALID_HOSTS_MAX: Final = 256
# Request header names as received -> their _Field: clients send the same few names
# in the same spelling. A hit costs the look-up a lower() would cost anyway, says
# the field's kind without a second look-up by the lowered name (~290 instructions
# compiled), and gives the same lowered object each time, whose hash is then cached
# (every later look-up by name). Bounded: junk names only fill it. Host, in every
# request, is not looked up at all (see _on_header).
_FIELD_NAMES: Final[dict[bytes, _Field]] = {}
_FIELD_NAMES_MAX: Final = 512
_HOST_NAME: Final = b"host"
# RFC 9110 tchar: a response header name made of anything else is a caller bug.
_TCHARS: Final = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TCHAR_CLASS: Final = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"

# -- methods llhttp does not know ---------------------------------------------------
# What llhttp says when it refuses a method. The last is a method it knows only for
# RTSP (PLAY, SETUP, ...) on an HTTP request line: a token like any other.
_METHOD_ERRORS: Final = frozenset(
    (
        "Invalid method encountered",
        "Expected space after method",
        "Invalid method for HTTP/x.x request",
    )
)
# The method llhttp is given instead. Not one of RTSP's, so that llhttp still tells
# an RTSP/1.0 request line ("FOO / RTSP/1.0") from an HTTP one.
_STAND_IN: Final = b"PUT"
# RFC 9112 3: a method longer than any the server implements gets 501. The longest
# registered method (IANA) has 17 characters.
_MAX_METHOD: Final = 64
_PROBE: Final = _MAX_METHOD + 1  # the bytes that decide about a method
_TOKEN_PREFIX: Final = re.compile(rb"[%s]*" % _TCHAR_CLASS)

# -- chunked bodies (RFC 9112 7.1) ---------------------------------------------------
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), the value a
# token or a quoted-string. Possessive quantifiers: no backtracking, linear time.
_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]+")
_CHUNK_EXT: Final = re.compile(
    rb"(?:[ \t]*+;[ \t]*+[%s]++(?:[ \t]*+=[ \t]*+(?:[%s]++|"
    rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*+"))?+)*+'
    % (_TCHAR_CLASS, _TCHAR_CLASS)
)
# A trailer field line (RFC 9112 5): no whitespace before the colon, no obs-fold.
_FIELD_LINE: Final = re.compile(rb"[%s]+:[\t \x20-\x7e\x80-\xff]*" % _TCHAR_CLASS)
# Longest chunk-size line (size and extensions) read; longer is refused.
_MAX_CHUNK_LINE: Final = 4096
# Chunk-size digits beyond leading zeros: 15 hex digits is 2**60 bytes.
_MAX_CHUNK_DIGITS: Final = 15
# _chunk_left values that are not a count of chunk-data bytes: what comes next.
_CHUNK_CRLF: Final = 0  # the CRLF after chunk data
_CHUNK_LF: Final = -1  # its LF
_CHUNK_SIZE_LINE: Final = -2  # a chunk-size line
_CHUNK_TRAILER: Final = -3  # a trailer field line, or the empty line that ends the body
# llhttp also parses RTSP/1.0 and ICE/1.0 request lines and reports them as version
# 1.0 without saying which protocol it saw. These methods are RTSP's, and SOURCE is
# the one ICE allows: with version 1.0 they mean "not HTTP". (``GET / RTSP/1.0``
# still passes as HTTP/1.0: nothing tells it apart, and it is harmless.)
_NOT_HTTP_10: Final = frozenset(
    (
        b"ANNOUNCE",
        b"DESCRIBE",
        b"FLUSH",
        b"GET_PARAMETER",
        b"PAUSE",
        b"PLAY",
        b"PLAY_NOTIFY",
        b"RECORD",
        b"REDIRECT",
        b"SETUP",
        b"SET_PARAMETER",
        b"SOURCE",
        b"TEARDOWN",
    )
)


class _RejectError(Exception):
    """Raised inside a parser callback to make llhttp stop; the error is in ``_reject``."""


# -- status lines and reasons, built once --------------------------------------------
_REASONS: Final[dict[int, bytes]] = {code: text.encode("ascii") for code, text in PHRASES.items()}
_STATUS_LINES: Final[dict[int, bytes]] = {
    code: b"HTTP/1.1 %d %b\r\n" % (code, phrase) for code, phrase in _REASONS.items()
}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase for ``status`` (``b"Not Found"``), ``b""`` if none."""
    return _REASONS.get(status, b"")


def _status_line(status: int, reason: bytes) -> bytes:
    if not 100 <= status <= 999:
        raise ValueError(f"invalid status code {status!r}")
    if b"\r" in reason or b"\n" in reason:
        raise ValueError("CR or LF in reason phrase")
    return b"HTTP/1.1 %d %b\r\n" % (status, reason)


# -- the Date header, formatted at most once per second (for all connections) ---------
class _DateLine:
    """The cached Date line and when it goes stale. An instance, not two module
    globals: compiled, a read of either is a field load, not a dict lookup."""

    __slots__ = ("line", "next")

    def __init__(self) -> None:
        self.next = 0.0
        self.line = b""


_DATE: Final = _DateLine()
# A Final name: compiled, a C static, not a lookup in the module's dict per call.
_now: Final = _time_module.time


def _date_header() -> bytes:
    date = _DATE
    now = _now()
    if now >= date.next:
        second = int(now)
        date.line = b"date: " + format_http_date(second) + b"\r\n"
        date.next = second + 1.0
    return date.line


def date_header_value() -> bytes:
    """The Date field's value now (formatted at most once per second, shared with the
    HTTP/1.1 responses)."""
    return _date_header()[6:-2]


# -- Content-Length lines for the sizes that recur (formatting costs more than a lookup)
_LENGTH_LINES: Final[dict[int, bytes]] = {}
_LENGTH_LINES_MAX: Final = 4096


def _length_line(length: int) -> bytes:
    if length < 0:
        raise ValueError("negative Content-Length")
    line = b"content-length: %d\r\n" % length
    if len(_LENGTH_LINES) < _LENGTH_LINES_MAX:
        _LENGTH_LINES[length] = line
    return line


# -- response header names: validated and lowercased once, then looked up ------------
# Every name goes out in lower case: the protocol layer's own (date, server,
# content-length, ...) and whatever a module or an application handed over. One
# form on the wire, the one HTTP/2 requires and uvicorn and hypercorn send; field
# names are case-insensitive (RFC 9110 5.1), and the lowered name is looked up
# for the framing checks anyway, so sending it costs nothing.
# Handlers send the same few names over and over; a dict hit (the name's hash is
# cached on the bytes object) is cheaper than lowering and validating each time.
_NAME_CACHE: Final[dict[bytes, bytes]] = {}
_NAME_CACHE_MAX: Final = 1024
_RESPONSE_FRAMING: Final = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"date", b"server")
)


def response_name(name: bytes) -> bytes:
    """``name`` as it goes out: lower case, once checked to be a token (else
    ValueError). Cached: handlers send the same few names over and over."""
    lname = _NAME_CACHE.get(name)
    return lname if lname is not None else _response_name(name)


def _response_name(name: bytes) -> bytes:
    lname = name.lower()
    if not name or name.translate(None, _TCHARS):
        raise ValueError(f"invalid response header name {name!r}")
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = lname
    return lname


def _head_end(data: bytes, start: int) -> int:
    """Where the head that starts at ``start`` ends (just past its empty line)."""
    found = data.find(b"\r\n\r\n", start)
    if found < 0:
        raise RuntimeError("llhttp completed a head that is not in the bytes it read")
    return found + 4


def _has_token(value: bytes, token: bytes) -> bool:
    return any(part.strip() == token for part in value.lower().split(b","))


class _Callbacks:
    """The object httptools calls.

    httptools takes each callback from the object it is given, by name, once per
    parser (which keeps them as long as the connection lives); these attributes
    keep them off the public surface of ``HTTP1Connection`` at no cost per call.
    Two kinds, one per build:

    - Interpreted, ``_Callbacks(conn)``: the connection's own bound methods, five
      made per connection.
    - Compiled, ``_Callbacks(None)``: one per thread, shared by the connections
      that thread feeds (``_thread_shared``). Its attributes are its own bound
      methods, made once, and ``conn`` is the connection being fed
      (``HTTP1Connection.feed`` sets it, and clears it after). Five bound methods
      per connection are ~570 bytes of an idle one, compiled; forwarding costs a
      native call per callback, tens of instructions. Interpreted, that call would
      cost as much as the callback itself (~900 instructions), hence the first kind.
      One per thread, not one for all: a connection is fed by the thread of its
      event loop, which made it, and two threads' feeds must not share ``conn``.

    No ``on_message_complete``: a message's end is known without llhttp's word
    (the end of a head without a body, the last byte of a Content-Length body,
    the end of a chunked body, which is read here), and llhttp's call of it cost
    ~900 instructions a request, interpreted.
    """

    __slots__ = (
        "conn",
        "on_body",
        "on_header",
        "on_headers_complete",
        "on_message_begin",
        "on_url",
    )

    def __init__(self, conn: HTTP1Connection | None) -> None:
        self.conn: HTTP1Connection | None = None
        self.on_message_begin: Callable[[], None]
        self.on_url: Callable[[bytes], None]
        self.on_header: Callable[[bytes, bytes], None]
        self.on_headers_complete: Callable[[], None]
        self.on_body: Callable[[bytes], None]
        if conn is not None:
            self.on_message_begin = conn._on_message_begin
            self.on_url = conn._on_url
            self.on_header = conn._on_header
            self.on_headers_complete = conn._on_headers_complete
            self.on_body = conn._on_body
        else:
            self.on_message_begin = self._message_begin
            self.on_url = self._url
            self.on_header = self._header
            self.on_headers_complete = self._headers_complete
            self.on_body = self._body

    def _fed(self) -> HTTP1Connection:
        conn = self.conn
        if conn is None:  # cannot happen: only feed runs the parser, and sets it
            raise RuntimeError("an HTTP/1.1 parser ran outside HTTP1Connection.feed")
        return conn

    def _message_begin(self) -> None:
        self._fed()._on_message_begin()

    def _url(self, url: bytes) -> None:
        self._fed()._on_url(url)

    def _header(self, name: bytes, value: bytes) -> None:
        self._fed()._on_header(name, value)

    def _headers_complete(self) -> None:
        self._fed()._on_headers_complete()

    def _body(self, data: bytes) -> None:
        self._fed()._on_body(data)


#: Each thread's shared _Callbacks (made by the first connection of the thread).
_THREAD: Final = threading.local()


def _thread_shared() -> _Callbacks:
    shared: _Callbacks | None = getattr(_THREAD, "shared", None)
    if shared is None:
        shared = _Callbacks(None)
        _THREAD.shared = shared
    return shared


class PreparedHead:
    """The caller's part of a response head, checked and formatted once: the status
    line and the caller's header lines, and what they say about framing, Date,
    Server and Connection (see :meth:`HTTP1Connection.start_response`)."""

    __slots__ = (
        "add_date",
        "add_server",
        "caller_close",
        "length",
        "lines",
        "plain",
        "status",
    )

    def __init__(
        self, status: int, headers: Headers, reason: bytes | None, content_length: int | None
    ) -> None:
        if reason is None:
            line = _STATUS_LINES.get(status)
            if line is None:
                line = _status_line(status, b"")
        else:
            line = _status_line(status, reason)
        add_date = True
        add_server = True
        caller_close = False
        length = content_length
        out = [line]
        for name, value in headers:
            lname = _NAME_CACHE.get(name)
            if lname is None:
                lname = _response_name(name)
            # CR or LF would split the response. An int operand makes ``in`` a
            # memchr, several times faster than a bytes needle.
            if 13 in value or 10 in value or 0 in value:
                raise ValueError(f"CR, LF or NUL in the value of response header {name!r}")
            if lname in _RESPONSE_FRAMING:
                if lname == b"content-length":
                    declared = _content_length(value)
                    if length is None:
                        length = declared
                    elif declared != length:
                        raise ValueError("conflicting Content-Length values")
                    continue
                if lname == b"transfer-encoding":
                    continue
                if lname == b"connection":
                    caller_close = _has_token(value, b"close")
                elif lname == b"date":
                    add_date = False
                else:
                    add_server = False
                    if not value:
                        continue  # an empty Server header means: send none
            out += (lname, b": ", value, b"\r\n")
        self.status = status
        self.lines = b"".join(out)
        self.length = length
        self.caller_close = caller_close
        self.add_date = add_date
        self.add_server = add_server
        self.plain = _plain(status, caller_close)


def _plain(status: int, caller_close: bool) -> bool:
    # What start_response's common answer needs of a head: a final status with a
    # body, Connection left to the connection (a Date of the caller's own is kept).
    return status >= 200 and status != 204 and status != 304 and not caller_close


class CheckedHead(PreparedHead):
    """A :class:`PreparedHead` whose maker checked and formatted the lines itself
    (the proxy's answer, from the upstream's bytes): ``lines`` is the status line
    and the field lines, each ``name: value`` and CR LF with the name a token in
    lower case and the value not empty, without CR, LF or NUL, none of them a
    Content-Length, Transfer-Encoding or Connection field: the bytes PreparedHead
    would make of that status and those fields. ``add_date``, ``add_server``:
    no Date, no Server among them. (A connection keeps one, refilled for each
    such response: :meth:`HTTP1Connection.checked_head`. It holds a head only:
    the whole answer a maker may have goes to :meth:`HTTP1Connection.start_response`
    as its argument, so that no connection keeps it.)"""

    __slots__ = ()

    def __init__(self, status: int, lines: bytes, add_date: bool, add_server: bool) -> None:
        self.fill(status, lines, add_date, add_server)

    def fill(self, status: int, lines: bytes, add_date: bool, add_server: bool) -> None:
        """Make this the head of ``status`` and ``lines`` (see the class)."""
        self.status = status
        self.lines = lines
        self.length = None
        self.caller_close = False
        self.add_date = add_date
        self.add_server = add_server
        self.plain = _plain(status, False)


class Framed:
    """A whole answer sent again and again (a response cache entry's,
    :meth:`HTTP1Connection.start_again`), framed for the common case (an HTTP/1.1
    GET kept alive) and kept while the Date line it carries is the current one: a
    hit within that second is the same bytes, so they are joined once per second
    and entry rather than per response. ``prepared`` and ``server`` say what else
    they were made from (an entry's head made again for a new Age; another Server
    line): either changed, they are made again. ``until``: when that second ends,
    on the monotonic clock (the caller's reading of it is passed in: no clock is
    read per answer). The wall clock stepped meanwhile, the Date line is at most
    that second behind; a line made again by another response sooner ends it too."""

    __slots__ = ("data", "date", "prepared", "server", "until")

    def __init__(self) -> None:
        self.data = b""
        self.date: bytes | None = None
        self.prepared: PreparedHead | None = None
        self.server = b""
        self.until = 0.0


# -- prepared heads for the response shapes that recur ---------------------------------
# An application answers with the same status and header list over and over but for
# the length (a framework's JSON or text response: its type, and a Content-Length
# that changes with each body). Checking and formatting a shape once, then finding
# it by value, costs a tuple and a dict lookup where a PreparedHead costs a loop over
# the headers (~4,700 instructions). The shape is the head without its length: the
# first Content-Length header (named in lower case, as ASGI applications, the WSGI
# handler and the modules send it) is checked and taken out of the key each time
# (``HTTP1Connection.start_response``), so answers of one shape with bodies of any
# size find the same head. A Content-Length named otherwise, or a second one, stays
# in the shape: its PreparedHead holds that length, checked against the response's.
# Bounded: at most ``_PREPARED_MAX`` shapes, each head's lines at most
# ``_PREPARED_LINES_MAX`` bytes (a longer one is made per response and not kept),
# and the dict started over when full, so an application sending unique headers
# (cookies, ETags, random names) cannot grow it: it only pays for a PreparedHead
# per response, as without the dict.
_PREPARED: Final[dict[tuple[int, bytes | None, tuple[tuple[bytes, bytes], ...]], PreparedHead]] = {}
_PREPARED_MAX: Final = 512
_PREPARED_LINES_MAX: Final = 1024
_CONTENT_LENGTH: Final = b"content-length"
_NO_HEADERS: Final[Headers] = []
#: Content-Length values found valid -> their number (interpreted: a dict hit costs
#: a fraction of ``isdigit`` and ``int()``). Bounded as ``_LENGTH_LINES``, and
#: each value to 18 digits.
_DECLARED: Final[dict[bytes, int]] = {}


def _lists_close(headers: Headers) -> bool:
    """Whether a Connection field (or Proxy-Connection, which llhttp reads as one)
    lists the "close" option (RFC 9112 9.6): asked of an HTTP/1.0 head that llhttp
    keeps alive, which reads only "keep-alive" there (RFC 9112 9.3: close wins)."""
    for name, value in headers:
        if name == b"connection" or name == b"proxy-connection":
            for option in value.split(b","):
                if option.strip(b" \t").lower() == b"close":
                    return True
    return False


def _content_length(value: bytes) -> int:
    """A Content-Length value's number; ValueError unless it is 1*DIGIT (RFC 9110
    8.6: no sign, space, underscore, CR or LF, all of which ``int()`` takes). Compiled,
    a loop over the digits, where ``int(value)`` is a call of a type (~850
    instructions) and ``isdigit`` a method call."""
    if not _COMPILED:  # interpreted, C-level calls beat a loop over the digits
        if not value.isdigit():
            raise ValueError(f"invalid Content-Length value {value[:32]!r}")
        number = int(value)
        # Kept only up to 18 digits (every length a body can have): a value is the
        # application's, and 4,096 of thousands of digits each would hold megabytes.
        if len(value) <= 18 and len(_DECLARED) < _LENGTH_LINES_MAX:
            _DECLARED[value] = number
        return number
    n = len(value)
    if n > 18:  # past what an i64 holds: Python's own ints
        if not value.isdigit():
            raise ValueError(f"invalid Content-Length value {value[:32]!r}")
        return int(value)
    if n == 0:
        raise ValueError("empty Content-Length value")
    number = 0
    for k in range(n):
        digit = value[k] - 48
        if digit < 0 or digit > 9:
            raise ValueError(f"invalid Content-Length value {value!r}")
        number = number * 10 + digit
    return number


def _prepare(
    key: tuple[int, bytes | None, tuple[tuple[bytes, bytes], ...]] | None,
    status: int,
    shape: Headers,
    reason: bytes | None,
) -> PreparedHead:
    """A shape not in ``_PREPARED``: its PreparedHead, kept under ``key`` unless
    None (headers that do not hash) or too long (see above)."""
    prepared = PreparedHead(status, shape, reason, None)
    if key is not None and len(prepared.lines) <= _PREPARED_LINES_MAX:
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.clear()
        _PREPARED[key] = prepared
    return prepared


class HTTP1Connection:
    """The HTTP/1.1 protocol state of one connection, without any I/O.

    Feed it received bytes, act on the events, and send what the response
    methods return, in that order. Responses must be produced strictly in the
    order of the requests.
    """

    __slots__ = (
        "__weakref__",
        "_body_due",
        "_body_left",
        "_carry",
        "_checked",
        "_chunk_left",
        "_chunked",
        "_close",
        "_connection_field",
        "_continued",
        "_events",
        "_feeding",
        "_final",
        "_framing",
        "_good_host",
        "_headers",
        "_host",
        "_hsize",
        "_keep_alive_req",
        "_left",
        "_line",
        "_max_header_size",
        "_max_headers",
        "_max_target",
        "_method",
        "_no_body",
        "_parser",
        "_particular",
        "_reject",
        "_requests",
        "_responses",
        "_server_line",
        "_shared",
        "_stall",
        "_state",
        "_trailing",
        "_upgrade_left",
        "_url",
        "ignored",
        "keep_alive",
    )
    # release() deletes these (mypyc allows only the deletable ones to be deleted).
    __deletable__ = ("_parser",)

    def __init__(
        self,
        *,
        max_target: int = 8192,
        max_header_size: int = 65536,
        max_headers: int = 100,
        server: bytes | None = b"colonnade",
    ) -> None:
        """Limits: request-target length (414), header section bytes and count (431).

        ``server`` is the Server header value, or None to send none.
        """
        self._max_target = max_target
        self._max_header_size = max_header_size
        self._max_headers = max_headers
        self._server_line = _server_header(server)
        # The thread's shared callbacks (compiled), or None: see _Callbacks.
        self._shared = _thread_shared() if _SHARE_CALLBACKS else None
        self._parser = self._new_parser()
        self._events = _NO_EVENTS
        self._state = _IDLE
        self._stall = 0
        self._feeding = 0
        # The bytes of the feed in progress when it began between requests: its
        # first message's request line starts them (see _on_headers_complete).
        self._line = b""
        self._reject: ProtocolError | None = None
        # The request being parsed.
        self._url = b""
        self._headers: Headers | None = None  # None outside a head
        self._hsize = 0  # trailer section bytes (read and dropped by _dechunk)
        self._host: bytes | None = None
        self._good_host = b"\x00"  # the last Host found valid (none: never equal)
        self._framing = False
        # A field of PARTICULAR_FIELDS in the head being parsed.
        self._particular = False
        # A Connection field in the head being parsed (see _on_headers_complete).
        self._connection_field = False
        self._keep_alive_req = True
        # A method llhttp did not read, for the head in progress: it got _STAND_IN,
        # or it saw nothing of the head (_read_head).
        self._method = b""
        # Where a parser run ended mid-message (see "How this works"): the message's
        # bytes so far in _HEAD and _METHOD, the unfinished line in _CHUNK; the
        # Content-Length bytes still due in _BODY; in _CHUNK, the chunk-data bytes
        # still due or (zero or less) what comes next.
        self._carry = _NO_BYTES
        self._body_left = 0
        # The Content-Length body bytes llhttp has yet to hand over (see _on_body).
        self._body_due = 0
        self._chunk_left = _CHUNK_SIZE_LINE
        # After an upgrade request: its body still to deliver, then the raw rest.
        self._upgrade_left = 0
        self._trailing = _NO_BYTES
        # Response side: requests parsed, responses started, and the number of the
        # last response the connection will carry (_NEVER while that is open).
        self._requests = 0
        self._responses = 0
        self._final = _NEVER
        self._chunked = False
        self._no_body = False
        self._left = -1
        self._close = False
        self._continued = False
        self._checked: CheckedHead | None = None  # see checked_head
        #: True if the connection may carry another request after the current
        #: response: ``not _close and _responses < _final``, stored (read-only to
        #: callers), set again wherever one of the three changes. Interpreted, a
        #: property cost a Python frame (~900 instructions) each of the two times
        #: a request reads it.
        self.keep_alive = True
        #: Bytes came after a request that closes, and were ignored (RFC 9112 9.6):
        #: the client may still be sending (the caller's close lingers).
        self.ignored = False

    # -- receiving ---------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse received bytes; return the events they complete, in order."""
        shared = self._shared
        if shared is not None:
            shared.conn = self
        try:
            events: list[Event] = []
            self._events = events
            state = self._state
            size = len(data)
            if state <= _BODY and size <= _SLICE:
                # The common case: llhttp reads the whole feed (``_execute``, inlined),
                # or, where the feed is one plain request head, _head.c does.
                self._feeding = size
                if state == _IDLE:
                    self._line = data
                    read = _C_HEAD.read
                    if read is not None:
                        parsed = read(data)
                        if parsed is not None:
                            self._read_head(parsed)
                            self._line = b""
                            self._events = _NO_EVENTS
                            return events
                try:
                    self._parser.feed_data(data)
                except httptools.HttpParserUpgrade as upgrade:
                    self._line = b""
                    self._upgraded(data, upgrade.args[0])
                except httptools.HttpParserError as exc:
                    self._line = b""
                    done = self._parser_error(exc, data, state, 0)
                    if done < len(data):
                        self._feed_rest(data, done)
                else:
                    self._line = b""
                    now = self._state
                    if now == _HEAD or now == _BODY:  # noqa: SIM109 (int compares, no tuple)
                        self._carry_over(data, state, 0)
                    elif self._carry is not _NO_BYTES:
                        # A head that came in pieces is complete: its bytes are not
                        # needed any more (nor kept by an idle connection).
                        self._carry = _NO_BYTES
            else:
                self._feed_rest(data, 0)
            self._events = _NO_EVENTS
            return events
        finally:
            if shared is not None:
                shared.conn = None

    def feed_eof(self) -> list[Event]:
        """The peer closed its side: a request cut short is a 400, else nothing."""
        events: list[Event] = []
        self._events = events
        state = self._state
        if (_HEAD <= state <= _METHOD) or (state == _UPGRADED and self._upgrade_left):
            self._fail_connection(
                ProtocolError(400, "connection closed in the middle of a request")
            )
        elif state == _UPGRADED and self._final and self._trailing:
            # Bytes held after an upgrade request: its answer still says whose they
            # are. Requests (an ignored upgrade, see http_again, which the caller
            # follows with this call again) are answered before the connection
            # closes, as nginx answers every request that came before the FIN.
            pass
        elif state != _FAILED:
            self._state = _CLOSED
            # The requests already received are answered; the last answer closes.
            self._final = min(self._final, self._requests)
            self.keep_alive = not self._close and self._responses < self._final
        self._events = _NO_EVENTS
        return events

    def release(self) -> None:
        """The connection is gone and nothing more is fed: drop the parser. Its
        callbacks (interpreted) refer back to this object, a reference cycle that
        would otherwise live until the garbage collector's next pass (ten objects
        per connection, and a collection every few dozen connections). Feeding
        afterwards raises AttributeError; the response side keeps working."""
        del self._parser

    def _new_parser(self) -> httptools.HttpRequestParser:
        shared = self._shared
        if shared is not None:
            return _RequestParser(shared)
        return _RequestParser(_Callbacks(self))

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after an upgrade request (and its body): the new protocol's."""
        return bytes(self._trailing)

    @property
    def over_held(self) -> bool:
        """More bytes held after an upgrade request than its answer may give back
        as HTTP (``HELD_MAX``): the caller stops reading until the answer says whose
        they are (else a client could make the server hold any amount)."""
        return self._state == _UPGRADED and len(self._trailing) > HELD_MAX

    def http_again(self) -> bytes:
        """After the answer to an upgrade request that did not switch protocols and
        kept the connection (see :meth:`_upgrade_ignored`): parse HTTP again, with a
        fresh parser. Returns the bytes held since the request, to :meth:`feed` before
        any received later (b"": none, or the upgrade was not ignored)."""
        if self._state != _UPGRADED or self._final != _NEVER:
            return b""
        self._state = _IDLE
        self._parser = self._new_parser()
        held = bytes(self._trailing)
        self._trailing = _NO_BYTES
        return held

    def _feed_rest(self, data: bytes, pos: int) -> None:
        """Parse ``data[pos:]`` piece by piece, each piece by whatever reads the state."""
        size = len(data)
        view = memoryview(data)
        while pos < size:
            state = self._state
            if state <= _BODY:
                end = min(pos + _SLICE, size)
                piece = data if pos == 0 and end == size else view[pos:end]
                pos += self._execute(piece, state, len(self._events))
            elif state == _CHUNK:
                pos = self._dechunk(data, pos)
            elif state == _METHOD:
                pos += self._method_token(bytes(self._carry), data[pos : pos + _PROBE])
            else:
                if state == _UPGRADED:
                    self._after_upgrade(view[pos:])
                elif state == _CLOSED:
                    self.ignored = True
                return

    def _execute(self, data: bytes | memoryview, s0: int, ev0: int) -> int:
        """One run of llhttp over ``data``; the number of its bytes consumed.

        ``s0`` is the state before the run and ``ev0`` the index of its first event:
        what finding the messages in ``data`` again needs. Fewer bytes than all are
        consumed only when something else reads the rest (a chunked body, a method
        llhttp does not know).
        """
        size = len(data)
        self._feeding = size
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded(data, upgrade.args[0])
            return size
        except httptools.HttpParserError as exc:
            return self._parser_error(exc, data, s0, ev0)
        state = self._state
        if state in (_HEAD, _BODY):
            self._carry_over(data, s0, ev0)
        elif self._carry is not _NO_BYTES:
            # As in feed's common case: a head that came in pieces is complete, and
            # an idle connection keeps none of its bytes (nor would a later head read
            # by _head.c, which never looks at them, let them go).
            self._carry = _NO_BYTES
        return size

    def _parser_error(self, exc: Exception, data: bytes | memoryview, s0: int, ev0: int) -> int:
        error = self._reject
        if error is None:
            state = self._state
            if state == _CHUNK:
                # _on_headers_complete stopped llhttp: the chunked body is read here.
                return self._after_chunked_head(bytes(data), s0, ev0)
            if state == _CLOSED:
                # llhttp refuses bytes after a request that asked to close; RFC 9112
                # 9.6 says to ignore them, which is what _CLOSED does from now on.
                self.ignored = True
                return len(data)
            if isinstance(exc, httptools.HttpParserCallbackError):
                raise exc  # a bug in a callback: let it show
            reason = str(exc)
            if reason in _PRI_REASONS and not self._requests and s0 <= _HEAD:
                return self._preface(data, s0)
            if reason in _METHOD_ERRORS and not self._method:
                return self._unknown_method(bytes(data), s0, ev0)
            # llhttp says "Invalid HTTP version" for a well-formed but unsupported one.
            error = ProtocolError(505 if reason == "Invalid HTTP version" else 400, reason)
        self._fail_connection(error)
        return len(data)

    def _preface(self, data: bytes | memoryview, s0: int) -> int:
        # The connection's first bytes are HTTP/2's preface: all of them (the head
        # so far kept in _carry, then this feed), and whatever follows, are HTTP/2's.
        self._state = _UPGRADED
        self._final = 0
        self.keep_alive = False
        trailing = self._trailing_buffer()
        if s0 == _HEAD:
            trailing += self._carry
            self._carry = _NO_BYTES
        trailing += data
        self._events.append(_PREFACE)
        return len(data)

    # -- where messages start (see "How this works") -----------------------------------

    def _boundaries(self, data: bytes, s0: int, ev0: int) -> tuple[int, int, int]:
        """Messages in one llhttp run over ``data``, found again from what it reported.

        Returns where the last message begun in ``data`` starts (-1: none began),
        where the last head completed in ``data`` ends (-1: none), and where the
        message of that head (or the one in progress) ends, which may lie beyond
        ``data``. Only heads completed in the run have a RequestHead from ``ev0`` on.
        """
        lengths = [e.content_length or 0 for e in self._events[ev0:] if isinstance(e, RequestHead)]
        size = len(data)
        start = head_end = -1
        done = 0
        if s0 == _BODY:
            pos = self._body_left
        elif s0 == _HEAD:
            if not lengths:
                return -1, -1, size
            # The head in progress ends here; its last CRLFCRLF may straddle the feeds.
            tail = bytes(self._carry[-3:])
            found = (tail + data[:3]).find(b"\r\n\r\n")
            head_end = found + 4 - len(tail) if found >= 0 else _head_end(data, 0)
            pos = head_end + lengths[0]
            done = 1
        else:
            pos = 0
        while pos < size:
            while pos < size and data[pos] in b"\r\n":
                pos += 1
            if pos == size:
                break
            start = pos
            if done == len(lengths):
                break  # this head did not complete in the run
            head_end = _head_end(data, pos)
            pos = head_end + lengths[done]
            done += 1
        return start, head_end, pos

    def _read_head(self, parsed: _ReadHead) -> None:
        """The feed is one request head, read by _head.c (see "How this works"): the
        callbacks llhttp would make of it, in its order and with what it would
        report, so that every check is theirs. llhttp never sees these bytes, and
        stays where it was, between messages."""
        method, url, fields = parsed
        try:
            self._on_message_begin()
            self._on_url(url)
            at = 0
            end = len(fields)
            while at < end:
                self._on_header(fields[at], fields[at + 1])
                at += 2
            self._method = method
            self._on_headers_complete()
        except _RejectError:
            error = self._reject
            if error is None:  # cannot happen: _head.c reads no chunked head
                raise
            self._fail_connection(error)

    def _carry_over(self, data: bytes | memoryview, s0: int, ev0: int) -> None:
        """A run ended mid-message: keep what the next run may need to find messages."""
        size = len(data)
        if self._state == _HEAD:
            self._stall += size
            # A header line may sit in httptools' buffer until it ends; bound those
            # bytes with room for a maximal legitimate head plus one slice of
            # overcount. (Worked out here, off the common path: not an int object
            # held by every connection.)
            if self._stall > self._max_target + self._max_header_size + _SLICE + 1024:
                self._fail_connection(ProtocolError(431, "header section too large"))
                return
            chunk = bytes(data)
            start = self._boundaries(chunk, s0, ev0)[0]
            if start < 0:  # the same head goes on
                if self._carry is _NO_BYTES:
                    self._carry = bytearray(chunk)
                else:
                    self._carry += chunk
            else:
                self._carry = bytearray(chunk[start:])
        else:
            self._body_left = self._boundaries(bytes(data), s0, ev0)[2] - size
            self._carry = _NO_BYTES  # the head is complete (see feed)

    # -- a method llhttp does not know ---------------------------------------------------

    def _unknown_method(self, data: bytes, s0: int, ev0: int) -> int:
        """llhttp refused the method of the last message begun; decide here instead."""
        start = self._boundaries(data, s0, ev0)[0]
        if start < 0:  # begun in an earlier run: its bytes so far are carried
            return self._method_token(bytes(self._carry), data[:_PROBE])
        return start + self._method_token(b"", data[start : start + _PROBE])

    def _method_token(self, prefix: bytes, data: bytes) -> int:
        """Read the method of a message that is ``prefix + data``; the bytes of ``data`` used.

        RFC 9110 9.1: any token is a method. A byte outside ``tchar`` before the
        space is a 400, a token longer than ``_MAX_METHOD`` a 501 (RFC 9112 3);
        both depend on the first ``_PROBE`` bytes alone, so every way of splitting
        the feeds reaches the same verdict. An unfinished token waits in
        ``_METHOD``, and then ``data`` is all the message's bytes so far.
        """
        probe = prefix + data[: max(_PROBE - len(prefix), 0)]
        found = _TOKEN_PREFIX.match(probe, 0, _PROBE)
        end = found.end() if found is not None else 0
        if end > _MAX_METHOD:
            self._fail_connection(ProtocolError(501, "request method too long"))
            return len(data)
        if end == len(probe):
            self._state = _METHOD
            self._carry = bytearray(probe)
            return len(data)
        if end == 0 or probe[end] != 32:  # a space ends the method
            self._fail_connection(ProtocolError(400, "invalid request method"))
            return len(data)
        # A fresh parser gets a method it knows, followed by the rest of the request
        # line; the real token stands in the RequestHead.
        self._parser = self._new_parser()
        self._url = b""
        self._host = None
        self._framing = False
        self._particular = False
        self._connection_field = False
        self._state = _IDLE
        self._method = probe[:end]
        first = _STAND_IN + prefix[end:]
        used = max(end - len(prefix), 0)
        self._execute(first, _IDLE, len(self._events))
        return used

    # -- chunked bodies (RFC 9112 7.1) -------------------------------------------------

    def _after_chunked_head(self, data: bytes, s0: int, ev0: int) -> int:
        """llhttp stopped after a chunked head: the body starts where the head ended."""
        head_end = self._boundaries(data, s0, ev0)[1]
        self._carry = _NO_BYTES  # from now on: an unfinished line of the body
        # The run was cut short: the next message needs a parser of its own.
        self._parser = self._new_parser()
        return head_end

    def _dechunk(self, data: bytes, pos: int) -> int:
        """Read chunked body bytes from ``data[pos:]``; where the body (or ``data``) ended.

        Every refusal depends only on the bytes before it, whatever the feeds.
        """
        size = len(data)
        events = self._events
        while pos < size:
            left = self._chunk_left
            if left > 0:
                end = min(pos + left, size)
                events.append(Body(data[pos:end]))
                self._chunk_left = left - (end - pos)
                pos = end
                continue
            if left in (_CHUNK_CRLF, _CHUNK_LF):
                if left == _CHUNK_CRLF and data[pos : pos + 2] == b"\r\n":
                    pos += 2
                    self._chunk_left = _CHUNK_SIZE_LINE
                    continue
                if data[pos] != (13 if left == _CHUNK_CRLF else 10):
                    return self._chunk_error(400, "chunk data not followed by CRLF", size)
                pos += 1
                self._chunk_left = _CHUNK_LF if left == _CHUNK_CRLF else _CHUNK_SIZE_LINE
                continue
            # A line: its bytes with CRLF may not exceed ``room``. Without its end yet,
            # the bytes so far and the LF still due are enough to tell.
            trailer = left == _CHUNK_TRAILER
            carry = self._carry
            room = self._max_header_size - self._hsize if trailer else _MAX_CHUNK_LINE + 2
            newline = data.find(b"\n", pos)
            if newline < 0:
                if carry is _NO_BYTES:
                    carry = self._carry = bytearray()
                carry += data[pos:]
                if len(carry) + 1 > room:
                    return self._line_too_long(trailer, size)
                return size
            if len(carry) + newline + 1 - pos > room:
                return self._line_too_long(trailer, size)
            if carry:
                line = bytes(carry) + data[pos:newline]
                self._carry = _NO_BYTES
            else:
                line = data[pos:newline]
            pos = newline + 1
            if line[-1:] != b"\r":
                return self._chunk_error(400, "bare LF in chunked body", size)
            line = line[:-1]
            if trailer:
                if not line:
                    self._on_message_complete()
                    return pos
                self._hsize += len(line) + 2
                if _FIELD_LINE.fullmatch(line) is None:
                    return self._chunk_error(400, "invalid trailer field", size)
                continue
            digits = _CHUNK_SIZE.match(line)
            if digits is None:
                return self._chunk_error(400, "invalid chunk size", size)
            end = digits.end()
            if end < len(line) and _CHUNK_EXT.fullmatch(line, end) is None:
                return self._chunk_error(400, "invalid chunk extension", size)
            hexa = digits.group().lstrip(b"0")
            if len(hexa) > _MAX_CHUNK_DIGITS:
                return self._chunk_error(400, "chunk size too large", size)
            length = int(hexa, 16) if hexa else 0
            self._chunk_left = length if length else _CHUNK_TRAILER
        return pos

    def _line_too_long(self, trailer: bool, size: int) -> int:
        if trailer:
            return self._chunk_error(431, "trailer section too large", size)
        return self._chunk_error(400, "chunk size line too long", size)

    def _chunk_error(self, status: int, reason: str, size: int) -> int:
        self._carry = _NO_BYTES
        self._fail_connection(ProtocolError(status, reason))
        return size

    def _trailing_buffer(self) -> bytearray:
        """``_trailing``, made the connection's own on first use (see _NO_BYTES)."""
        trailing = self._trailing
        if trailing is _NO_BYTES:
            trailing = self._trailing = bytearray()
        return trailing

    def _upgraded(self, data: bytes | memoryview, offset: int) -> None:
        # Whose the bytes after the request are, its answer says: till then they are
        # held, and that answer is taken for the connection's last (_upgrade_ignored).
        self._state = _UPGRADED
        self._final = self._requests
        self.keep_alive = not self._close and self._responses < self._final
        self._events.append(_UPGRADE_PENDING)
        self._after_upgrade(data[offset:])

    def _upgrade_ignored(self) -> bool:
        """The answer being started is the last one because an upgrade request came
        (``_final``, see _upgraded), it is final and not 101, and the caller and the
        request would keep the connection: whether it stays (HTTP again, RFC 9110
        7.8, as nginx does), which it does only if the request's body came in full
        (else its bytes and the next request's cannot be told apart) and no more
        than ``HELD_MAX`` bytes came after it meanwhile. The bytes held
        meanwhile are given back by :meth:`http_again`; until then more are held."""
        if (
            self._state != _UPGRADED
            or self._upgrade_left
            or not self._final
            or self._responses != self._final
            or len(self._trailing) > HELD_MAX
        ):
            # HTTP/2's preface (_final 0), a body still due, an earlier answer, more
            # bytes held than one read gives
            return False
        self._final = _NEVER
        return True

    def _fail_connection(self, error: ProtocolError) -> None:
        self._events.append(error)
        self._state = _FAILED
        # The error response counts as one more response; it is the last.
        self._final = self._requests + 1
        self.keep_alive = not self._close and self._responses < self._final

    def _fail(self, status: int, reason: str) -> NoReturn:
        self._reject = ProtocolError(status, reason)
        raise _RejectError(reason)

    def _after_upgrade(self, data: bytes | memoryview) -> None:
        left = self._upgrade_left
        if left:
            piece = bytes(data[:left])
            if piece:
                self._events.append(Body(piece))
            left -= len(piece)
            self._upgrade_left = left
            if left:
                return
            self._events.append(_END)
            data = data[len(piece) :]
        if data:
            buffer = self._trailing_buffer()
            buffer += data

    # -- llhttp callbacks (hot path: keep them lean) -----------------------------------

    def _on_message_begin(self) -> None:
        if self._state == _CLOSED:
            # After a request that closes where llhttp would have gone on (see
            # _lists_close): nothing more is read (RFC 9112 9.6; _parser_error).
            raise _RejectError("after a request that closes")
        self._state = _HEAD
        self._stall = 0
        self._headers = []

    def _on_url(self, url: bytes) -> None:
        # llhttp reports the target in pieces when it spans feeds (rarely: compiled,
        # the test is a length, the concatenation a call).
        if self._url:
            url = self._url + url
        if len(url) > self._max_target:
            self._fail(414, "request target too long")
        self._url = url

    def _on_header(self, name: bytes, value: bytes) -> None:
        # Sizes and counts are checked once, at the end of the head (the _stall
        # guard bounds memory meanwhile): this runs for every field of every request.
        headers = self._headers
        if headers is None:  # cannot happen: llhttp begins every message first
            raise RuntimeError("header field outside a message")
        # llhttp strips leading whitespace only; trailing is rare, and a method call.
        if value and ((last := value[-1]) == 32 or last == 9):
            value = value.rstrip(b" \t")
        # Host, in every request and nearly always spelled so: two compares of bytes
        # (the first a length test for any other name), not a hash of the new name
        # and a look-up (~400 instructions, compiled).
        if name == b"Host" or name == b"host":
            headers.append((_HOST_NAME, value))
            if self._host is not None:
                self._fail(400, "more than one Host header")
            self._host = value
            return
        field = _FIELD_NAMES.get(name)
        if field is None:
            field = _field(name)
            if len(_FIELD_NAMES) < _FIELD_NAMES_MAX:
                _FIELD_NAMES[name] = field
        headers.append((field.name, value))
        kind = field.kind
        if kind:
            if kind == _HOST_FIELD:
                if self._host is not None:
                    self._fail(400, "more than one Host header")
                self._host = value
            elif kind == _CONNECTION_FIELD:
                self._connection_field = True
            elif kind == _FRAMING_FIELD:
                self._framing = True
            else:
                self._particular = True

    def _check_head_size(self, headers: Headers) -> None:
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if size > self._max_header_size:
            self._fail(431, "header section too large")

    def _on_headers_complete(self) -> None:
        headers = self._headers
        if headers is None:  # cannot happen: llhttp begins every message first
            raise RuntimeError("headers complete outside a message")
        if len(headers) > self._max_headers:
            self._fail(431, "too many header fields")
        # Bytes fed since the head began bound its size; count exactly only past the limit.
        if self._stall + self._feeding > self._max_header_size:
            self._check_head_size(headers)
        parser = self._parser
        stand_in = self._method
        line = self._line
        if stand_in:
            method = stand_in
            self._method = b""
        elif line.startswith(b"GET ") if _COMPILED else line[:4] == b"GET ":
            # The feed began between requests with this head's request line (see
            # below): its method is GET. A constant, not a new bytes object from
            # httptools (a call) whose hash each later look-up by method computes.
            method = b"GET"
        else:
            method = parser.get_method()
        url = self._url
        # The version, and whether it is 1.1 (an int test where a bytes compare is
        # a call, compiled: the head asks three times).
        version = b""
        http11 = False
        if line:
            # The feed began between requests, so this head's request line starts
            # it (unless llhttp skipped a CRLF first): "method SP target SP
            # HTTP/x.y CRLF", the version where the method and the target put it.
            # httptools' get_http_version formats it anew each time (~3,000
            # instructions, a tenth of parsing a request); a slice compare is cheap.
            # A skipped CRLF shifts the slice onto bytes that cannot match (the
            # line holds no other CRLF): then httptools is asked after all.
            self._line = b""
            at = len(method) + len(url) + 2
            tail = line[at : at + 10]
            if tail == b"HTTP/1.1\r\n":
                version = b"1.1"
                http11 = True
            elif tail == b"HTTP/1.0\r\n":
                version = b"1.0"
        if not version:
            version_str = parser.get_http_version()
            if version_str == "1.1":
                version = b"1.1"
                http11 = True
            elif version_str == "1.0":
                version = b"1.0"
            else:
                self._fail(505, f"HTTP/{version_str} not supported")
        # A method in place of _STAND_IN passed llhttp's check that the line says HTTP;
        # one _head.c read, its own (and none of these is among its methods).
        if not http11 and method in _NOT_HTTP_10 and not stand_in:
            self._fail(400, "not an HTTP request")
        host = self._host
        authority = None
        # Origin-form, the common case. Compiled, startswith is a native test where
        # a slice makes bytes to compare; interpreted, it is a method that parses
        # its arguments as a tuple (~500 instructions), and the slice is cheaper.
        if url.startswith(b"/") if _COMPILED else url[:1] == b"/":
            if 35 in url:  # "#"; an int is found by memchr, a bytes needle is slower
                self._fail(400, "fragment in request target")
            if 63 in url:  # "?": a partition is a method call, a tuple and its unpacking
                path, _, query = url.partition(b"?")
            else:
                path = url
                query = b""
        elif url == b"*":
            if method != b"OPTIONS":
                self._fail(400, "asterisk-form target is only for OPTIONS")
            path = url
            query = b""
        else:
            path, query, authority = self._absolute_form(method, url)
        if host is None:
            if http11:
                self._fail(400, "missing Host header")
            host = b""
        elif host != self._good_host:
            # A connection's requests name the same host: checked once per connection
            # (a compare of equal bytes), else once per host (the dict hashes it).
            known = _VALID_HOSTS.get(host)
            if known is None:
                if host.translate(None, _HOST_CHARS):
                    self._fail(400, "invalid Host header")
                known = host
                if len(_VALID_HOSTS) < _VALID_HOSTS_MAX:
                    _VALID_HOSTS[host] = host
            self._good_host = known
        if authority is not None:
            # RFC 9112 3.2.2: the target's authority wins over the Host header.
            host = authority
        content_length = None
        chunked = False
        expect_continue = False
        if self._framing:
            self._framing = False
            self._hsize = 0
            content_length, chunked, expect_continue = self._framing_fields(headers, version)
            if (content_length or chunked) and parser.should_upgrade():
                # llhttp hands the body to the upgrade; deliver a sized one ourselves.
                if chunked:
                    self._fail(400, "chunked body on an upgrade request")
                self._upgrade_left = content_length or 0
        if not self._connection_field:
            # What llhttp would answer: without a Connection field (llhttp counts
            # Proxy-Connection too), an HTTP/1.1 request is kept alive and an
            # HTTP/1.0 one is not (llhttp_should_keep_alive: no close flag, or no
            # keep-alive flag; a request never needs the close to end it). Asked
            # only where such a field came (a method looked up by name, compiled,
            # ~200 instructions), and never of a head _head.c read (it reads none
            # with such a field, and llhttp did not see it).
            keep_alive = http11
        else:
            self._connection_field = False
            keep_alive = parser.should_keep_alive()
            if keep_alive and version == b"1.0" and _lists_close(headers):
                # llhttp reads only "keep-alive" in an HTTP/1.0 head; RFC 9112 9.3:
                # "close" wins (_on_message_begin then stops llhttp after it).
                keep_alive = False
        particular = self._particular
        if particular:
            self._particular = False
        if _COMPILED:
            head = RequestHead(
                method,
                url,
                path,
                query,
                version,
                headers,
                host,
                keep_alive,
                expect_continue,
                content_length,
                chunked,
                particular,
            )
        else:
            # Interpreted, calling the class costs a third more than setting its
            # fields here (its __init__ is one more Python frame, reached through
            # the type's slots): ~1,100 instructions of a request. Compiled, the
            # class is native and its constructor a plain call.
            head = _new_object(RequestHead)
            head.method = method
            head.target = url
            head.path = path
            head.query = query
            head.version = version
            head.headers = headers
            head.host = host
            head.keep_alive = keep_alive
            head.expect_continue = expect_continue
            head.content_length = content_length
            head.chunked = chunked
            head.particular = particular
        self._events.append(head)
        self._requests += 1
        self._keep_alive_req = keep_alive
        self._url = b""
        self._headers = None
        self._host = None
        if content_length:
            # Its end is the last of its bytes (_on_body), or the upgrade's.
            self._body_due = content_length
            self._state = _BODY
        elif chunked:
            # The body is read by _dechunk; llhttp must stop here (see "How this works").
            self._state = _CHUNK
            self._chunk_left = _CHUNK_SIZE_LINE
            raise _RejectError("chunked body")
        elif keep_alive:
            # No body: the message ends with its head, where llhttp would call
            # on_message_complete next. The parsers are given none (a call from
            # httptools is ~900 instructions of a request, interpreted): its end
            # is said here, and in _on_body and _dechunk. (_on_message_complete,
            # inline for the common case: a call less.)
            self._events.append(_END)
            self._state = _IDLE
        else:
            self._on_message_complete()

    def _absolute_form(self, method: bytes, url: bytes) -> tuple[bytes, bytes, bytes]:
        if method == b"CONNECT":
            # Colonnade is not a forward proxy; authority-form is refused.
            self._fail(400, "CONNECT is not supported")
        scheme, sep, rest = url.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            self._fail(400, "invalid request target")
        if b"#" in rest:
            self._fail(400, "fragment in request target")
        end = len(rest)
        for delimiter in (b"/", b"?"):
            index = rest.find(delimiter)
            if 0 <= index < end:
                end = index
        authority = rest[:end]
        if not authority or b"@" in authority or authority.translate(None, _HOST_CHARS):
            # RFC 9110 4.2.4: userinfo in an http(s) URI is to be treated as an error.
            self._fail(400, "invalid authority in request target")
        path, _, query = rest[end:].partition(b"?")
        return path or b"/", query, authority

    def _framing_fields(self, headers: Headers, version: bytes) -> tuple[int | None, bool, bool]:
        content_length = None
        codings: list[bytes] = []
        seen_te = False
        expect_continue = False
        for name, value in headers:
            if name == b"content-length":
                # llhttp has checked: digits only, no overflow, no second header.
                content_length = int(value)
            elif name == b"transfer-encoding":
                seen_te = True
                codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
            elif name == b"expect":
                if value.lower() != b"100-continue" or expect_continue:
                    self._fail(417, "unsupported expectation")
                # RFC 9110 10.1.1: ignore 100-continue from an HTTP/1.0 client.
                expect_continue = version == b"1.1"
        chunked = False
        if seen_te:
            if version == b"1.0":
                # RFC 9112 6.1: TE in a 1.0 message means the framing is faulty.
                self._fail(400, "Transfer-Encoding in an HTTP/1.0 request")
            if codings == [b"chunked"]:
                chunked = True
            elif not codings or (
                b"chunked" in codings
                and (codings[-1] != b"chunked" or codings.count(b"chunked") > 1)
            ):
                self._fail(400, "invalid Transfer-Encoding")
            else:
                # Chunked last (or absent) after codings we cannot undo (RFC 9112 6.1).
                self._fail(501, "unsupported transfer coding")
        return content_length, chunked, expect_continue

    def _on_body(self, data: bytes) -> None:
        # Only a Content-Length body reaches here (llhttp stops at a chunked head,
        # and hands an upgrade request's body to the upgrade): it ends with the
        # last of its declared bytes, where llhttp would call on_message_complete.
        self._events.append(Body(data))
        due = self._body_due - len(data)
        self._body_due = due
        if not due:
            self._on_message_complete()

    def _on_message_complete(self) -> None:
        if self._upgrade_left:
            return  # the body comes after the upgrade: _after_upgrade ends the message
        self._events.append(_END)
        if self._keep_alive_req:
            self._state = _IDLE
        else:
            self._state = _CLOSED
            self._final = self._requests
            self.keep_alive = not self._close and self._responses < self._final

    # -- sending -------------------------------------------------------------------------

    def continue_response(self) -> bytes:
        """The interim response that tells an ``expect_continue`` client to send the body."""
        self._continued = True
        return _CONTINUE

    def start_response(
        self,
        head: RequestHead,
        status: int,
        headers: Headers,
        reason: bytes | None = None,
        content_length: int | None = None,
        keep_alive: bool = True,
        body: bytes = b"",
        prepared: PreparedHead | None = None,
        answer: bytes | None = None,
    ) -> bytes:
        """The status line and header section of the response to ``head``
        (and ``body`` behind them, framed: see :meth:`start_prepared`).

        Framing is the connection's business: pass ``content_length`` (or a
        content-length header) for a sized body; without one the body is chunked
        for HTTP/1.1 and close-delimited for HTTP/1.0. A transfer-encoding header
        from the caller is dropped. Adds Date, Server (unless present) and the
        Connection header that says what happens after this response. Every
        name goes out in lower case. Raises ValueError for a header that cannot
        be sent (invalid name, CR/LF/NUL). ``prepared``: the status and headers
        checked and formatted already (see :meth:`start_prepared`), in place of
        ``status``, ``headers`` and ``reason``. ``answer``: where the caller has
        it, the whole answer already as the common answer below would join it of
        ``prepared`` (a :class:`CheckedHead` with a Date and a Server among its
        lines), ``length`` and ``body``, with the connection kept (the proxy's
        usual answer, whose upstream wrote it so: its Content-Length line last),
        returned as it is where that is what goes out; else joined as always.
        """
        length = content_length
        if prepared is None:
            # The response's shape (see _PREPARED), looked up here rather than in a
            # function of its own, and the common answer made below rather than in
            # another method: interpreted, each call costs as much as the lookup.
            # The loop reads each pair once (compiled, it holds them unboxed).
            shape = headers
            at = 0
            for name, value in headers:
                if name == _CONTENT_LENGTH:
                    if _COMPILED:
                        declared = _content_length(value)
                    else:
                        found = _DECLARED.get(value)
                        declared = found if found is not None else _content_length(value)
                    if length is None:
                        length = declared
                    elif declared != length:
                        raise ValueError("conflicting Content-Length values")
                    shape = headers.copy()
                    if _COMPILED:
                        shape.pop(at)  # a native op, where a del is a generic call
                    else:
                        del shape[at]  # a bytecode, where a pop is a method call
                    break
                at += 1  # noqa: SIM113 (enumerate makes a pair per header)
            key: tuple[int, bytes | None, tuple[tuple[bytes, bytes], ...]] | None
            try:
                key = (status, reason, tuple(shape))
                prepared = _PREPARED.get(key)
            except TypeError:  # a header given as a list, or a bytearray: not kept
                key = None
                prepared = None
            if prepared is None:
                prepared = _prepare(key, status, shape, reason)
            kept = prepared.length
            if kept is not None:  # a Content-Length the shape kept (see _PREPARED)
                if length is None:
                    length = kept
                elif kept != length:
                    raise ValueError("conflicting Content-Length values")
        if length is not None and prepared.plain and not head.expect_continue:
            # Each field of the head read once (compiled, every read is a lookup).
            version = head.version
            if version == b"1.1" and head.method != b"HEAD":
                # The common answer (a sized body on a 1.1 connection, kept or
                # closed after it): what _start gives, in one join of a tuple (no
                # list to grow).
                self._responses += 1
                close = not keep_alive or not head.keep_alive or self._responses >= self._final
                if close and self._state == _UPGRADED and keep_alive and head.keep_alive:
                    close = not self._upgrade_ignored()
                self._continued = False
                self._close = close
                self.keep_alive = not close  # close holds _responses >= _final
                self._chunked = False
                self._no_body = False
                # What body_left would say (interpreted, its call costs more than this).
                left = length - len(body)
                if left < 0:
                    raise ValueError("response body longer than its Content-Length")
                self._left = left
                if (
                    answer is not None
                    and not close
                    and not left
                    and not prepared.add_date
                    and not prepared.add_server
                ):
                    return answer  # the join below, made already (the caller's)
                date = _DATE
                return b"".join(
                    (
                        prepared.lines,
                        _LENGTH_LINES.get(length) or _length_line(length),
                        b"connection: close\r\n" if close else b"",
                        (date.line if _now() < date.next else _date_header())
                        if prepared.add_date
                        else b"",
                        self._server_line if prepared.add_server else b"",
                        b"\r\n",
                        body,
                    )
                )
        return self._start(head, prepared, length, keep_alive, body)

    def checked_head(
        self, status: int, lines: bytes, add_date: bool, add_server: bool
    ) -> PreparedHead:
        """The :class:`CheckedHead` of ``lines`` for :meth:`start_response`'s
        ``prepared``, to be handed to it at once: the connection's one, refilled (a
        response's own object, made and freed, costs more than filling it)."""
        checked = self._checked
        if checked is None:
            checked = self._checked = CheckedHead(status, lines, add_date, add_server)
        else:
            checked.fill(status, lines, add_date, add_server)
        return checked

    def start_prepared(
        self, head: RequestHead, prepared: PreparedHead, keep_alive: bool, body: bytes = b""
    ) -> bytes:
        """:meth:`start_response` with the caller's part checked and formatted
        already, its length in it (a response sent again and again: the response
        cache). ``body``: the whole body of a sized response, returned framed
        behind the head, joined with it once (as :meth:`body` would frame it)."""
        # Positional (as the transport calls it): interpreted, a call with keywords
        # matches each name against the parameters.
        return self.start_response(
            head, prepared.status, _NO_HEADERS, None, prepared.length, keep_alive, body, prepared
        )

    def start_again(
        self,
        head: RequestHead,
        prepared: PreparedHead,
        keep_alive: bool,
        body: bytes,
        framed: Framed,
        now: float,
    ) -> bytes:
        """:meth:`start_prepared` with ``body`` (the whole body of the answer), for an
        answer sent again and again: the common answer (an HTTP/1.1 GET of a sized
        body, kept alive) is taken from ``framed`` while it was made in the Date
        line's current second from the same head and Server line, else made and
        kept there; any other answer is made as :meth:`start_prepared` makes it.
        ``now``: ``time.monotonic()`` when the request came (``Framed.until``)."""
        length = prepared.length
        if (
            keep_alive
            and head.keep_alive
            and head.method == b"GET"
            and head.version == b"1.1"
            and prepared.plain
            and length is not None
            and length == len(body)  # an int compare, narrowed (not a generic ==)
            and not head.expect_continue
        ):
            responses = self._responses + 1
            if responses < self._final:
                date = _DATE
                server = self._server_line
                if (
                    framed.date is date.line
                    and framed.prepared is prepared
                    and framed.server is server
                    and now < framed.until
                ):
                    # What the common answer of start_response sets, to the letter.
                    self._responses = responses
                    self._continued = False
                    self._close = False
                    self.keep_alive = True  # responses < self._final, above
                    self._chunked = False
                    self._no_body = False
                    self._left = 0
                    return framed.data
                data = self.start_response(
                    head, prepared.status, _NO_HEADERS, None, length, True, body, prepared
                )
                framed.data = data
                framed.date = date.line  # the line data carries (made fresh if stale)
                framed.prepared = prepared
                framed.server = server
                framed.until = now + (date.next - _now())
                return data
        return self.start_prepared(head, prepared, keep_alive, body)

    def _start(
        self,
        head: RequestHead,
        prepared: PreparedHead,
        length: int | None,
        keep_alive: bool,
        body: bytes,
    ) -> bytes:
        """:meth:`start_response` past the common answer: every other status,
        version, method and framing."""
        status = prepared.status
        interim = status < 200 and status != 101
        if not interim:
            self._responses += 1
        version = head.version
        method = head.method
        close = not keep_alive or not head.keep_alive or self._responses >= self._final
        # Closing for no other reason than an upgrade request's (see _upgraded).
        upgrade = close and keep_alive and head.keep_alive and self._state == _UPGRADED
        out = [prepared.lines]
        if interim:
            if version == b"1.0":
                return b""  # RFC 9110 15.2: no 1xx to an HTTP/1.0 client
            out.append(b"\r\n")
            return b"".join(out)
        if (
            head.expect_continue
            and not self._continued
            and self._responses == self._requests
            and self._state in (_BODY, _CHUNK)
        ):
            # Answered without 100 Continue while the body is still due: the client
            # may send it or not (RFC 9110 10.1.1), so its framing is unknowable.
            close = True
        self._continued = False
        chunked = False
        if status == 204 or status == 101:
            length = None  # RFC 9110 8.6: no Content-Length on 1xx or 204
        elif length is not None:
            out.append(_LENGTH_LINES.get(length) or _length_line(length))
        elif status != 304 and method != b"HEAD":
            if version == b"1.1":
                chunked = True
                out.append(b"transfer-encoding: chunked\r\n")
            else:
                close = True  # the end of the body is the end of the connection
                upgrade = False
        if status == 101:
            close = True  # no more HTTP; the caller's Connection: Upgrade says the rest
        elif upgrade and not prepared.caller_close:
            # The last answer only for the upgrade request it answers (_upgrade_ignored).
            close = not self._upgrade_ignored()
            if close:
                out.append(b"connection: close\r\n")
        elif prepared.caller_close:
            close = True
        elif close:
            out.append(b"connection: close\r\n")
        elif version == b"1.0":
            out.append(b"connection: keep-alive\r\n")
        if prepared.add_date:
            date = _DATE
            out.append(date.line if _now() < date.next else _date_header())
        if prepared.add_server and self._server_line:
            out.append(self._server_line)
        out.append(b"\r\n")
        self._close = close
        self.keep_alive = not close  # close holds _responses >= _final
        self._chunked = chunked
        no_body = status == 204 or status == 304 or status == 101 or method == b"HEAD"
        self._no_body = no_body
        self._left = -1 if length is None or no_body else length
        if body:
            out.append(self.body(body))
        return b"".join(out)

    def body(self, data: bytes) -> bytes:
        """``data`` framed for the wire (empty for responses that carry no body)."""
        if not data or self._no_body:
            return b""
        if self._chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        self._left = body_left(self._left, len(data))
        return data

    def body_sent(self, count: int) -> None:
        """Account for ``count`` raw body bytes the caller sent itself (``sendfile``).

        Only for a response with a Content-Length: the bytes carry no framing.
        """
        if self._chunked:
            raise ValueError("raw body bytes cannot go into a chunked response")
        if self._no_body:
            return
        self._left = body_left(self._left, count)

    def end_response(self) -> bytes:
        """The end of the body: the last chunk if chunked, else nothing."""
        if self._chunked:
            self._chunked = False
            return b"0\r\n\r\n"
        if self._left > 0:
            # The body fell short of its Content-Length: the framing is broken, so
            # the only honest end is closing the connection.
            self._close = True
            self.keep_alive = False
        return b""

    def error_response(self, status: int, reason: str) -> bytes:
        """A complete response for a ``ProtocolError``; the connection closes after it."""
        self._responses += 1
        self._close = True
        self.keep_alive = False
        self._chunked = False
        self._no_body = True
        self._left = -1
        return _error_response(status, reason, self._server_line, ())


def error_response(
    status: int,
    reason: str,
    *,
    server: bytes | None = b"colonnade",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """A complete plain-text error response after which the connection closes.

    For a connection answered once outside any ``HTTP1Connection`` (the master's
    503 for a stopped pool or a full queue). ``server`` is the Server header value
    (None: none); ``headers`` are added, names in lower case (``Retry-After``). Raises
    ValueError for a header that cannot be sent.
    """
    named: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lname = _response_name(name)
        if lname in _RESPONSE_FRAMING:
            raise ValueError(f"{name!r} is set by the error response itself")
        if 13 in value or 10 in value or 0 in value:
            raise ValueError(f"CR, LF or NUL in the value of response header {name!r}")
        named.append((lname, value))
    return _error_response(status, reason, _server_header(server), named)


# The Server line of each configured name: made per connection otherwise, and a
# ``bytes in bytes`` test costs an exception inside CPython each time.
_SERVER_LINES: dict[bytes, bytes] = {}


def _server_header(server: bytes | None) -> bytes:
    if server is None:
        return b""
    line = _SERVER_LINES.get(server)
    if line is not None:
        return line
    if b"\r" in server or b"\n" in server:
        raise ValueError("CR or LF in server name")
    line = b"server: " + server + b"\r\n"
    if len(_SERVER_LINES) < 64:  # names come from the configuration: a few at most
        _SERVER_LINES[server] = line
    return line


def _error_response(
    status: int, reason: str, server_line: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> bytes:
    line = _STATUS_LINES.get(status) or _status_line(status, b"")
    phrase = reason_phrase(status).decode("ascii")
    text = f"{status} {phrase}\n\n{reason}\n".encode("ascii", "backslashreplace")
    out = [
        line,
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(text),
        b"connection: close\r\n",
        _date_header(),
        server_line,
    ]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    out += (b"\r\n", text)
    return b"".join(out)


def body_left(left: int, size: int) -> int:
    """The declared body bytes still due once ``size`` more are sent: ``left`` less
    ``size`` (``left`` -1, no Content-Length, stays -1). HTTP/1.1 and HTTP/2 alike.
    Raises ValueError for a body longer than its Content-Length."""
    if left < 0:
        return left
    left -= size
    if left < 0:
        raise ValueError("response body longer than its Content-Length")
    return left
