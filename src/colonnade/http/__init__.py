"""The HTTP protocol layer, without sockets: bytes in, events out; responses to bytes.

``HTTP1Connection`` parses HTTP/1.1 requests (llhttp, through httptools) into
``RequestHead``, ``Body`` and ``EndOfMessage`` events, or a ``ProtocolError`` that
ends the connection, and serializes responses with the right framing. The
transport owns the socket and moves bytes between the two.
"""

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
from colonnade.http.h1 import HTTP1Connection, error_response, reason_phrase

__all__ = [
    "Body",
    "EndOfMessage",
    "Event",
    "HTTP1Connection",
    "Headers",
    "Preface",
    "ProtocolError",
    "RequestHead",
    "UpgradePending",
    "error_response",
    "reason_phrase",
]
