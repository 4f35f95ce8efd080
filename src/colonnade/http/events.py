"""What the HTTP/1.1 parser hands to the transport: one event per thing that happened.

A request is ``RequestHead``, zero or more ``Body``, then ``EndOfMessage``. A
``ProtocolError`` ends the connection: nothing follows it; nor does ``Preface``,
which hands the connection to HTTP/2. ``UpgradePending`` follows the head of an
upgrade request.

The events but ``RequestHead`` (see there) are ``msgspec.Struct`` classes: slotted
classes like a slots dataclass (fields, ``==``, ``repr``; copy with
``msgspec.structs.replace``), but built by C code about three times faster, and with
``gc=False`` they are not tracked by the cycle collector (they hold only bytes and
lists of bytes, never a cycle). Several are created per request on the hottest path
of the server.
"""

from __future__ import annotations

import msgspec

Headers = list[tuple[bytes, bytes]]


class RequestHead:
    """The request line and header section of one request.

    Everything stays bytes, exactly as received: decoding (percent-decoding of the
    path, charset guesses) is the business of the layers above, which know what
    they need. ``keep_alive`` is what the client asked for, not what the server
    will do.

    A plain slotted class, unlike the other events: compiled (mypyc), it is a
    native class, and the transport's dozen reads of its fields per request are
    field loads instead of attribute lookups on a foreign type (~3,000 instructions
    of a request).
    """

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "host",
        "keep_alive",
        "method",
        "particular",
        "path",
        "query",
        "target",
        "version",
    )

    #: The method, e.g. ``b"GET"``; llhttp only accepts registered method names.
    method: bytes
    #: The request target exactly as sent (origin-, absolute- or asterisk-form).
    target: bytes
    #: The raw path of the target (not percent-decoded); ``b"*"`` for ``OPTIONS *``.
    path: bytes
    #: The raw query without the ``?``; ``b""`` when there is none.
    query: bytes
    #: ``b"1.1"`` or ``b"1.0"``.
    version: bytes
    #: Header fields in arrival order: names lowercased, values with OWS stripped.
    headers: Headers
    #: The authority: from an absolute-form target, else the Host header, else ``b""``.
    host: bytes
    #: True unless the client asked to close (1.1) or did not ask to keep alive (1.0).
    keep_alive: bool
    #: The client sent ``Expect: 100-continue`` and waits before sending the body.
    expect_continue: bool
    #: The declared body length, or None (no body, or a chunked body).
    content_length: int | None
    #: The body is chunked; ``Body`` events carry it already de-chunked.
    chunked: bool
    #: A field of ``h1.PARTICULAR_FIELDS`` came (Range, If-*, Authorization, Upgrade):
    #: the answer depends on the client's state, and a shared cache does not give it.
    particular: bool

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: bytes,
        query: bytes,
        version: bytes,
        headers: Headers,
        host: bytes,
        keep_alive: bool,
        expect_continue: bool,
        content_length: int | None,
        chunked: bool,
        particular: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.host = host
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked
        self.particular = particular

    def _fields(self) -> tuple[object, ...]:
        return (
            self.method,
            self.target,
            self.path,
            self.query,
            self.version,
            self.headers,
            self.host,
            self.keep_alive,
            self.expect_continue,
            self.content_length,
            self.chunked,
            self.particular,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestHead):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        names = (
            "method",
            "target",
            "path",
            "query",
            "version",
            "headers",
            "host",
            "keep_alive",
            "expect_continue",
            "content_length",
            "chunked",
            "particular",
        )
        values = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True))
        return f"RequestHead({values})"


class Body(msgspec.Struct, gc=False):
    """A piece of the request body (de-chunked)."""

    data: bytes


class EndOfMessage(msgspec.Struct, frozen=True, gc=False):
    """The request (head and body) is complete."""


class ProtocolError(msgspec.Struct, frozen=True, gc=False):
    """The client broke the protocol; answer with ``status`` and close the connection."""

    status: int
    """The status to answer with (400, 414, 417, 431, 501, 505)."""
    reason: str
    """What was wrong, for the log and the error page."""


class Preface(msgspec.Struct, frozen=True, gc=False):
    """The connection began with HTTP/2's connection preface (prior knowledge, RFC
    9113 3.3): it speaks HTTP/2 from its first byte. No HTTP/1.1 event follows;
    ``HTTP1Connection.trailing_data`` holds every byte received, the preface's
    first line included, for the HTTP/2 protocol to read from the start."""


class UpgradePending(msgspec.Struct, frozen=True, gc=False):
    """The request before asked to upgrade (``Connection: Upgrade``): the bytes
    after it (and its body) are held until its answer. A 101 hands them to the new
    protocol (``HTTP1Connection.trailing_data``); any other answer that keeps the
    connection makes them HTTP again (``HTTP1Connection.http_again``), and no event
    comes until then."""


Event = RequestHead | Body | EndOfMessage | ProtocolError | Preface | UpgradePending
"""Anything ``HTTP1Connection.feed`` returns."""
