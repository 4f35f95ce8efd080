"""The PEP 3333 environ: its constant part, the per-request part, and its streams.

- ``SCRIPT_NAME`` is the application's mount path (``""`` at ``/``) and
  ``PATH_INFO`` the rest of the URL path, both percent-decoded and in PEP 3333's
  "bytes as latin-1" form. They come from the request's canonical path (dot
  segments resolved), so what the application routes on is what the server
  mapped; ``RAW_URI``/``REQUEST_URI`` carry the target as sent.
- Request headers become ``HTTP_*`` (``Content-Type``/``Content-Length`` without
  the prefix); repeated headers are joined with ``,`` (``Cookie`` with ``; ``).
  Header names containing ``_`` are dropped: ``X_Forwarded_For`` would otherwise
  impersonate ``X-Forwarded-For`` (nginx and gunicorn drop them too).
- ``wsgi.input`` streams the body from the loop as the application reads it
  (:class:`InputStream`); ``wsgi.input_terminated`` is true, so frameworks read
  chunked bodies to their end. ``wsgi.errors`` writes lines to the application's
  logger. ``wsgi.file_wrapper`` is :class:`FileWrapper`; a wrapped regular file
  is sent with ``sendfile``.
- Over TLS, mod_ssl's variables: ``HTTPS=on``, ``SSL_PROTOCOL``, ``SSL_CIPHER``,
  ``SSL_TLS_SNI``, and where the site asks for client certificates
  ``SSL_CLIENT_VERIFY`` (``NONE``, ``SUCCESS``, ``FAILED:reason``) and the
  certificate's ``SSL_CLIENT_S_DN``, ``SSL_CLIENT_I_DN``, ``SSL_CLIENT_M_SERIAL``,
  ``SSL_CLIENT_V_START``/``_END``, ``SSL_CLIENT_CERT`` (PEM), ``SSL_CLIENT_S_DN_CN``
  and the like (``TlsInfo.ssl_variables``). ``HTTPS=on`` also where a trusted
  proxy says the request came over HTTPS.
- ``REMOTE_USER``/``AUTH_TYPE`` carry the user the server's authentication
  modules established; ``colonnade.context`` and ``colonnade.items`` the request
  context and its shared items (``environ["colonnade.context"].correlation_id``
  names the request in logs); ``colonnade.session`` the session where
  ``state.session`` gives one (a mutable mapping, ``core.session.Session``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import IO

from colonnade.core.cgienv import HeaderVariables, http_name, latin1_path
from colonnade.handlers.wsgi.bridge import READ, READ_ALL, Bridge

#: Request body bytes asked of the loop per read when the application reads lines.
_CHUNK = 65536


def _wsgi_rule(name: bytes) -> str | None:
    # Names with "_" are dropped; other names keep their token characters.
    return None if b"_" in name else http_name(name)


#: The request headers as environ entries: the CGI handlers' header loop and name
#: cache (core.cgienv), with WSGI's naming rule.
WSGI_HEADERS = HeaderVariables(_wsgi_rule, ",")

#: The environ key of request header ``name`` (lower case), or None to drop it.
environ_key = WSGI_HEADERS.key
#: Put the request headers into ``environ``.
add_headers = WSGI_HEADERS.add
#: A decoded URL path in PEP 3333's form: UTF-8 bytes read as latin-1.
wsgi_path = latin1_path


class EmptyInput:
    """``wsgi.input`` of a request without a body (shared: it has no state)."""

    __slots__ = ()

    def read(self, size: int | None = -1) -> bytes:
        """Always the end."""
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        """Always the end."""
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """No lines."""
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


EMPTY_INPUT = EmptyInput()


class InputStream:
    """``wsgi.input``: the request body, fetched from the loop as the application reads."""

    __slots__ = ("_bridge", "_buffer", "_eof")

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._buffer = bytearray()
        self._eof = False

    def _fill(self, size: int) -> bool:
        if self._eof:
            return False
        data: bytes = self._bridge.call(READ, size)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if -1 or None); ``b""`` at the end."""
        buffer = self._buffer
        if size is None or size < 0:
            if not self._eof:
                rest: bytes = self._bridge.call(READ_ALL, None)
                self._eof = True
                if not buffer:
                    return rest
                buffer += rest
            data = bytes(buffer)
            buffer.clear()
            return data
        while len(buffer) < size and self._fill(size - len(buffer)):
            pass
        if not buffer:
            return b""
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line, with its ``\\n`` (at most ``size`` bytes if given)."""
        buffer = self._buffer
        limit = -1 if size is None else size
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end != -1:
                end += 1
                break
            if 0 <= limit <= len(buffer):
                end = limit
                break
            start = len(buffer)
            if not self._fill(_CHUNK):
                end = len(buffer)
                break
        if 0 <= limit < end:
            end = limit
        data = bytes(buffer[:end])
        del buffer[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The remaining lines (stopping once ``hint`` bytes were read, if given)."""
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class ErrorStream:
    """``wsgi.errors``: each complete line becomes an ERROR record of ``logger``."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._partial = threading.local()

    def write(self, text: str) -> None:
        """Log the complete lines of ``text``; keep a trailing partial line."""
        pending: str = getattr(self._partial, "text", "") + text
        *lines, rest = pending.split("\n")
        for line in lines:
            self.logger.error("%s", line.rstrip("\r"))
        self._partial.text = rest

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Log a pending partial line."""
        rest = getattr(self._partial, "text", "")
        if rest:
            self._partial.text = ""
            self.logger.error("%s", rest)


class FileWrapper:
    """``wsgi.file_wrapper``: a file the server may send with ``sendfile``.

    Iterating reads ``blksize`` blocks (the fallback for objects that are not
    regular files); ``close`` closes the file.
    """

    def __init__(self, filelike: IO[bytes], blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while data := read(self.blksize):
            yield data

    def close(self) -> None:
        """Close the wrapped file (if it can be closed)."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
