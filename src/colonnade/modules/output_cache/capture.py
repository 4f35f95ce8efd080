"""The writer adapter that keeps a copy of a response as it goes out.

``cache.output`` puts a :class:`CapturingWriter` in ``ctx.writer`` for a request
that fills a cache entry. Everything that changes a response on its way out
(SEND_RESPONSE hooks, the compression module's own writer, which wraps this
one) has done its work by the time the bytes reach this adapter, so the copy is
exactly what the client got: buffered (``send_all``), streamed
(``start``/``write``/``end``) or a file (``sendfile``, read back with
``pread``). The copy stops, and is thrown away, at ``limit`` bytes: a large or
endless stream is passed through without being held in memory.
"""

from __future__ import annotations

import os

from colonnade.core.context import RawStream, ResponseWriter, WriterAdapter
from colonnade.core.request import Headers


class CapturingWriter(WriterAdapter):
    """Passes a response through to ``inner`` and keeps a bounded copy of it."""

    __slots__ = (
        "_chunks",
        "_limit",
        "_size",
        "complete",
        "headers",
        "reason",
        "spoiled",
        "status",
    )

    def __init__(self, inner: ResponseWriter, limit: int) -> None:
        super().__init__(inner)
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self.status = 0
        self.reason: bytes | None = None
        self.headers: Headers = []
        self.complete = False  # the whole response went out
        self.spoiled = False  # too big, aborted or upgraded: nothing to keep

    @property
    def body(self) -> bytes:
        """The body as sent (only meaningful when ``complete`` and not ``spoiled``)."""
        return b"".join(self._chunks)

    def _spoil(self) -> None:
        self.spoiled = True
        self._chunks.clear()

    def _keep(self, data: bytes) -> None:
        if self.spoiled or not data:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._spoil()
        else:
            self._chunks.append(data)

    def send_all(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> None:
        """A whole response."""
        self.status, self.reason, self.headers = status, reason, list(headers)
        self._keep(body)
        self._inner.send_all(status, reason, headers, body)
        self.complete = True

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        """The head of a streamed response."""
        self.status, self.reason, self.headers = status, reason, list(headers)
        if content_length is not None and content_length > self._limit:
            self._spoil()
        self._inner.start(status, reason, headers, content_length)

    async def write(self, data: bytes) -> None:
        """Body bytes."""
        self._keep(data)
        await self._inner.write(data)

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        """A file range: read back for the copy (it fits in ``limit``), then sent."""
        if not self.spoiled:
            if self._size + count > self._limit:
                self._spoil()
            else:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        data = os.pread(fd, count, offset)
                    finally:
                        os.close(fd)
                except OSError:
                    data = b""
                if len(data) != count:
                    self._spoil()  # the file changed under us: keep nothing
                else:
                    self._keep(data)
        await self._inner.sendfile(path, offset, count)

    async def end(self) -> None:
        """The streamed body is complete."""
        await self._inner.end()
        self.complete = True

    def abort(self) -> None:
        """The response could not be completed: nothing to keep."""
        self._spoil()
        self._inner.abort()

    def upgrade(self) -> RawStream | None:
        """Another protocol takes over: nothing to keep."""
        self._spoil()
        return self._inner.upgrade()
