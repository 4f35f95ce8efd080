"""The response being built for a request."""

from __future__ import annotations

from typing import NamedTuple, cast

from colonnade.core.markup import escape
from colonnade.core.request import Headers


class FileBody(NamedTuple):
    """A byte range of an open file, sent with ``sendfile`` where the platform can."""

    path: str
    offset: int
    length: int


class FieldBlock:
    """A response head a handler has as HTTP/1.1 bytes already (the proxy: the
    upstream's, as it came): ``lines`` is the status line and the field lines the
    HTTP/1 writer would make of ``status``, ``reason`` and the fields ``pairs``
    (each ``name: value`` and CR LF, the name a token in lower case, the value not
    empty and without CR, LF or NUL; no Content-Length, Transfer-Encoding or
    Connection among them), ``date`` and ``server``: whether a Date, a Server is
    among them.

    A handler sets it as ``Response.block`` beside the same status, reason and
    fields; the writer sends ``lines`` in place of formatting the head only while
    :meth:`holds`: while the response's status, reason and header list are still
    those (the same pair objects, in the same order). A module that changes any of
    them, in place or by a new list, so has the head written from what it left,
    as for any response; nothing that reads them misses a field. A handler may
    keep one block and :meth:`fill` it for its next response (the proxy: one per
    upstream connection): the response it was filled for before then no longer
    holds it (its pairs are other objects, or the same objects: the same fields).

    A block holds a head, never a body: the whole answer a handler may have as
    bytes too is the response's (``Response.answer``), which lives for one
    request, where a block may live as long as a connection.
    """

    __slots__ = ("date", "lines", "pairs", "reason", "server", "status")

    def __init__(self) -> None:
        # Empty until filled (a head of no status, which no response holds).
        self.fill(0, None, (), b"", False, False)

    def fill(
        self,
        status: int,
        reason: bytes | None,
        pairs: tuple[object, ...],
        lines: bytes,
        date: bool,
        server: bool,
    ) -> None:
        """Make this the block of another head (see the class)."""
        self.status = status
        self.reason = reason
        self.pairs = pairs
        self.lines = lines
        self.date = date
        self.server = server

    def holds(self, response: Response) -> bool:
        """True while ``response`` has the status, reason and fields this block was
        made of (each field the same object, in the same order)."""
        if response.status != self.status or response.reason != self.reason:
            return False
        # Read as objects: compiled, a pair read as tuple[bytes, bytes] is unboxed
        # into its two fields, and would be boxed anew (another object) to compare.
        headers = cast("list[object]", response.headers)
        pairs = self.pairs
        size = len(pairs)
        if len(headers) != size:
            return False
        for i in range(size):  # noqa: SIM110 (interpreted, all() of a generator costs more)
            if headers[i] is not pairs[i]:
                return False
        return True


class Response:
    """Status, headers and body; buffered until flushed.

    A handler sets ``status``, appends to ``headers`` (lower-case names) and either
    sets ``body`` or ``file``, or streams with ``Context.write``. ``substatus`` is
    IIS's refinement of the status (404.3 "no MIME type") and lands in the log.
    ``block``: the head as bytes already, while it holds (see :class:`FieldBlock`).

    ``answer``: None, or (with a block) the whole answer as the HTTP/1 writer would
    write it for a response of body ``answer_body`` to an HTTP/1.1 request other
    than HEAD on a connection it keeps: the block's ``lines``, then
    ``content-length:`` and the body's length in decimal, the blank line and the
    body, a Date and a Server among the fields (the proxy's usual answer, as its
    upstream wrote it). It is sent as it is only while the block holds and
    ``body`` is still ``answer_body`` (that very object), and only where the
    writer would write exactly those bytes (``http.h1``'s ``start_response``);
    else the head is made as for any response. Held here, it lives as long as the
    request: no connection keeps it.
    """

    __slots__ = (
        "answer",
        "answer_body",
        "block",
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
        self.block: FieldBlock | None = None
        self.answer: bytes | None = None
        self.answer_body = b""
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

    def add_vary(self, names: bytes) -> None:
        """Make the response vary on ``names`` (a field name, or a comma-separated
        list of them) as well as on whatever it varies on already.

        Every part of the server that varies a response goes through here
        (compression on ``Accept-Encoding``, custom headers, a directory listing
        on ``Accept``), so the response carries one ``Vary`` field naming each
        field once, whatever the case it was written in; ``*`` absorbs every
        other name (RFC 9110 12.5.5). ``Vary`` fields already present (from an
        application) are merged into that one.
        """
        headers = self.headers
        values = [value for name, value in headers if name == b"vary"]
        if not values:
            headers.append((b"vary", names))
            return
        values.append(names)
        merged = _merge_vary(values)
        if len(values) == 2 and merged == values[0]:
            return  # the one field says it already
        first = next(i for i, (name, _) in enumerate(headers) if name == b"vary")
        self.headers = [
            (b"vary", merged) if i == first else pair
            for i, pair in enumerate(headers)
            if i == first or pair[0] != b"vary"
        ]

    def clear(self) -> None:
        """Forget the status, headers and body built so far (not once sent)."""
        self.status = 200
        self.substatus = 0
        self.reason = None
        self.headers = []
        self.block = None
        self.answer = None
        self.answer_body = b""
        self.body = b""
        self.file = None
        self.source = None

    def redirect(self, status: int, location: str) -> None:
        """Make this a redirect to ``location`` (ASCII, already percent-encoded and
        free of CR/LF: the caller's to ensure), with a short HTML page linking it."""
        self.clear()
        self.status = status
        self.headers.append((b"location", location.encode("ascii")))
        self.headers.append((b"content-type", b"text/html; charset=utf-8"))
        href = escape(location)
        self.body = (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Moved</title></head>'
            f'<body><p>Moved to <a href="{href}">{href}</a>.</p></body></html>\n'
        ).encode("ascii")


def _merge_vary(values: list[bytes]) -> bytes:
    """One ``Vary`` value listing each field name of ``values`` once, in order of
    first mention and as first written; ``*`` if any of them is ``*``."""
    kept: list[bytes] = []
    seen: set[bytes] = set()
    for value in values:
        for part in value.split(b","):
            token = part.strip(b" \t")
            if not token:
                continue
            lower = token.lower()
            if lower == b"*":
                return b"*"
            if lower not in seen:
                seen.add(lower)
                kept.append(token)
    return b", ".join(kept)


def keep_private(response: Response) -> None:
    """Keep a response that carries one user's cookie (a ticket, a session id)
    out of shared caches: ``Cache-Control: private`` added unless it says
    ``private`` or ``no-store`` already (ASP.NET marks such responses too)."""
    found = response.header(b"cache-control")
    if found is None:
        response.headers.append((b"cache-control", b"private"))
    elif b"private" not in found and b"no-store" not in found:
        response.set_header(b"cache-control", found + b", private")
