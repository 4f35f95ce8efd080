"""The response being built for a request."""

from __future__ import annotations

from typing import NamedTuple

from colonnade.core.request import Headers


class FileBody(NamedTuple):
    """A byte range of an open file, sent with ``sendfile`` where the platform can."""

    path: str
    offset: int
    length: int


class Response:
    """Status, headers and body; buffered until flushed.

    A handler sets ``status``, appends to ``headers`` (lower-case names) and either
    sets ``body`` or ``file``, or streams with ``Context.write``. ``substatus`` is
    IIS's refinement of the status (404.3 "no MIME type") and lands in the log.
    """

    __slots__ = (
        "body",
        "bytes_sent",
        "file",
        "headers",
        "headers_sent",
        "reason",
        "skip_custom_errors",
        "source",
        "status",
        "streaming",
        "substatus",
    )

    def __init__(self) -> None:
        self.status = 200
        self.substatus = 0
        self.reason: bytes | None = None
        self.headers: Headers = []
        self.body = b""
        self.file: FileBody | None = None
        # The whole file ``body`` was read from (a static file answered from
        # memory): SEND_RESPONSE modules may treat it as they would ``file``.
        self.source: FileBody | None = None
        self.headers_sent = False
        self.bytes_sent = 0
        # A module that wrote its own error body sets this so error-page modules
        # leave it alone (IIS fTrySkipCustomErrors).
        self.skip_custom_errors = False
        # The head goes out ahead of a streamed body (modules rewriting the body in
        # SEND_RESPONSE must leave it alone).
        self.streaming = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of response header ``name`` (lower case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def set_header(self, name: bytes, value: bytes) -> None:
        """Replace every value of ``name`` with ``value``."""
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def remove_header(self, name: bytes) -> None:
        """Drop every value of ``name``."""
        self.headers = [(k, v) for k, v in self.headers if k != name]

    def clear(self) -> None:
        """Forget the status, headers and body built so far (not once sent)."""
        self.status = 200
        self.substatus = 0
        self.reason = None
        self.headers = []
        self.body = b""
        self.file = None
        self.source = None
