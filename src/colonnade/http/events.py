"""What the HTTP/1.1 parser hands to the transport: one event per thing that happened.

A request is ``RequestHead``, zero or more ``Body``, then ``EndOfMessage``. A
``ProtocolError`` ends the connection: nothing follows it; nor does ``Preface``,
which hands the connection to HTTP/2.

The events are ``msgspec.Struct`` classes: slotted classes like a slots dataclass
(fields, ``==``, ``repr``; copy with ``msgspec.structs.replace``), but built by C
code about three times faster, and with ``gc=False`` they are not tracked by the
cycle collector (they hold only bytes and lists of bytes, never a cycle). Several
are created per request on the hottest path of the server.
"""

from __future__ import annotations

import msgspec

Headers = list[tuple[bytes, bytes]]


class RequestHead(msgspec.Struct, gc=False):
    """The request line and header section of one request.

    Everything stays bytes, exactly as received: decoding (percent-decoding of the
    path, charset guesses) is the business of the layers above, which know what
    they need. ``keep_alive`` is what the client asked for, not what the server
    will do.
    """

    method: bytes
    """The method, e.g. ``b"GET"``; llhttp only accepts registered method names."""
    target: bytes
    """The request target exactly as sent (origin-, absolute- or asterisk-form)."""
    path: bytes
    """The raw path of the target (not percent-decoded); ``b"*"`` for ``OPTIONS *``."""
    query: bytes
    """The raw query without the ``?``; ``b""`` when there is none."""
    version: bytes
    """``b"1.1"`` or ``b"1.0"``."""
    headers: Headers
    """Header fields in arrival order: names lowercased, values with OWS stripped."""
    host: bytes
    """The authority: from an absolute-form target, else the Host header, else ``b""``."""
    keep_alive: bool
    """True unless the client asked to close (1.1) or did not ask to keep alive (1.0)."""
    expect_continue: bool
    """The client sent ``Expect: 100-continue`` and waits before sending the body."""
    content_length: int | None
    """The declared body length, or None (no body, or a chunked body)."""
    chunked: bool
    """The body is chunked; ``Body`` events carry it already de-chunked."""


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


Event = RequestHead | Body | EndOfMessage | ProtocolError | Preface
"""Anything ``HTTP1Connection.feed`` returns."""
