"""The writer adapter: compression applied where the response meets the transport.

The module's SEND_RESPONSE hook replaces ``ctx.writer`` with a
:class:`CompressingWriter` only for a response it will compress on the fly.
``Context`` calls the writer right after the SEND_RESPONSE hooks: ``send_all``
for a buffered body, ``start``/``write``/``end`` for a streamed one,
``start``/``sendfile``/``end`` for a file. So the adapter sees the final
response and applies the coding to exactly what goes out: the headers
(Content-Encoding, Content-Length, ETag) are rewritten there, not in the hook.
If a hook that ran after this module replaced the response (another status, or
a body that is already encoded) the adapter passes everything through.

A buffered body is compressed in one go. A streamed body is compressed chunk by
chunk, each ``write`` flushed (zlib ``Z_SYNC_FLUSH``, brotli flush, zstd block
flush) so the client can decode every chunk as soon as it arrives: server-sent
events and long polls keep working. A file is read and compressed in chunks.
"""

from __future__ import annotations

import os

from colonnade.core.context import ResponseWriter, WriterAdapter
from colonnade.core.request import Headers
from colonnade.core.response import Response
from colonnade.modules.compression.codings import CHUNK, Coding, Stream
from colonnade.modules.compression.variant import encoded_headers, has_header


class CompressingWriter(WriterAdapter):
    """Compresses application output (buffered or streamed) on its way out."""

    __slots__ = (
        "_coding",
        "_level",
        "_min_size",
        "_response",
        "_status",
        "_stream",
        "_weak",
    )

    def __init__(
        self,
        inner: ResponseWriter,
        response: Response,
        coding: Coding,
        level: int,
        min_size: int,
        *,
        weak: bool = False,
    ) -> None:
        super().__init__(inner)
        self._response = response
        self._status = response.status  # a later hook that changes it replaced the response
        self._coding = coding
        self._level = level
        self._min_size = min_size
        self._stream: Stream | None = None
        # A weak ETag for bytes that another request may not reproduce exactly.
        self._weak = weak

    def _applies(self, status: int, headers: Headers) -> bool:
        return status == self._status and not has_header(headers, b"content-encoding")

    def send_all(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> None:
        """Compress a buffered body in one go (also for HEAD: the length must agree)."""
        if len(body) >= self._min_size and self._applies(status, headers):
            data = self._coding.compress(body, self._level)
            if len(data) < len(body):  # mislabelled binary data is better sent as is
                headers = encoded_headers(headers, self._coding, length=None, weak=self._weak)
                self._response.headers = headers
                body = data
        self._inner.send_all(status, reason, headers, body)

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        """Start a compressed stream: length unknown, so chunked (or close-delimited)."""
        if (content_length is None or content_length >= self._min_size) and self._applies(
            status, headers
        ):
            self._stream = self._coding.stream(self._level)
            # Chunk boundaries depend on how the application wrote: not byte-stable.
            headers = encoded_headers(headers, self._coding, length=None, weak=True)
            self._response.headers = headers
            content_length = None
        self._inner.start(status, reason, headers, content_length)

    async def write(self, data: bytes) -> None:
        """Compress and flush one chunk."""
        stream = self._stream
        if stream is None:
            await self._inner.write(data)
            return
        out = stream.write(data)
        if out:
            await self._inner.write(out)

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        """A file range inside a compressed stream is read and compressed."""
        if self._stream is None:
            await self._inner.sendfile(path, offset, count)
            return
        with open(path, "rb") as f:  # noqa: ASYNC230 - local file, read with pread
            fd = f.fileno()
            while count > 0:
                data = os.pread(fd, min(count, CHUNK), offset)
                if not data:
                    raise ConnectionError("the file shrank while it was being sent")
                await self.write(data)
                offset += len(data)
                count -= len(data)

    async def end(self) -> None:
        """Close the compressed stream, then the response."""
        stream = self._stream
        if stream is not None:
            self._stream = None
            tail = stream.finish()
            if tail:
                await self._inner.write(tail)
        await self._inner.end()
