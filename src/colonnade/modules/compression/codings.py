"""The three content codings: one-shot and flushing stream compressors.

gzip comes from the standard library's zlib; brotli from ``brotli`` (or the
API-compatible ``brotlicffi``) and zstd from ``zstandard``. Those two are looked
up when a coding is first asked for, so an application that offers only gzip never
imports them, and a missing library takes its coding off the offer instead of
failing the server (the module logs which); one that is installed is imported
when a response is first compressed with it (:class:`_Library`).
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import threading
import zlib
from typing import Any, Protocol

#: Reading a file to compress it in one piece from a thread, or to stream it.
CHUNK = 65536


class Stream(Protocol):
    """A compressor for a body sent in pieces: each piece comes out decodable."""

    def write(self, data: bytes) -> bytes:
        """Compress ``data`` and flush, so the client can decode it at once."""
        ...

    def finish(self) -> bytes:
        """The end of the compressed stream."""
        ...


class Coding(abc.ABC):
    """One content coding: its token, its ETag suffix and its file extension."""

    __slots__ = ("extension", "name", "suffix", "token")

    def __init__(self, name: str, extension: str) -> None:
        self.name = name
        self.token = name.encode()  # the Content-Encoding value
        self.suffix = b"-" + self.token  # appended inside ETag quotes
        self.extension = extension  # a precompressed sibling's extension

    @abc.abstractmethod
    def compress(self, data: bytes, level: int, *, reuse: bool = True) -> bytes:
        """``data`` compressed whole at ``level`` (safe from any thread).

        ``reuse=False`` for a one-off job (a static file in a worker thread): the
        compressor's memory is not kept for the next call.
        """

    @abc.abstractmethod
    def stream(self, level: int) -> Stream:
        """A flushing compressor for one streamed body."""

    def __repr__(self) -> str:
        return f"<Coding {self.name}>"


class _ZlibStream:
    __slots__ = ("_c",)

    def __init__(self, level: int) -> None:
        self._c = zlib.compressobj(level, zlib.DEFLATED, 31)  # 16 + 15: gzip framing

    def write(self, data: bytes) -> bytes:
        c = self._c
        return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


class Gzip(Coding):
    """``gzip`` (RFC 9110 8.4.1.3) from zlib; the gzip header carries no name or time,
    so the same input always gives the same bytes."""

    def __init__(self) -> None:
        super().__init__("gzip", ".gz")

    def compress(self, data: bytes, level: int, *, reuse: bool = True) -> bytes:
        return zlib.compress(data, level, 31)

    def stream(self, level: int) -> Stream:
        return _ZlibStream(level)


class _BrotliStream:
    __slots__ = ("_c",)

    def __init__(self, lib: Any, level: int) -> None:
        self._c = lib.Compressor(quality=level)

    def write(self, data: bytes) -> bytes:
        c = self._c
        out: bytes = c.process(data) + c.flush()
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.finish()
        return out


class Brotli(Coding):
    """``br`` (RFC 7932)."""

    def __init__(self, lib: Any) -> None:
        super().__init__("br", ".br")
        self._lib = lib

    __slots__ = ("_lib",)

    def compress(self, data: bytes, level: int, *, reuse: bool = True) -> bytes:
        out: bytes = self._lib.compress(data, quality=level)
        return out

    def stream(self, level: int) -> Stream:
        return _BrotliStream(self._lib, level)


class _ZstdStream:
    __slots__ = ("_c", "_flush_block")

    def __init__(self, lib: Any, level: int) -> None:
        # A compressor per stream: one ZstdCompressor runs one operation at a time.
        self._c = lib.ZstdCompressor(level=level).compressobj()
        self._flush_block = lib.COMPRESSOBJ_FLUSH_BLOCK

    def write(self, data: bytes) -> bytes:
        c = self._c
        out: bytes = c.compress(data) + c.flush(self._flush_block)
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.flush()
        return out


class Zstd(Coding):
    """``zstd`` (RFC 8878, for HTTP RFC 9659)."""

    __slots__ = ("_lib", "_local")

    def __init__(self, lib: Any) -> None:
        super().__init__("zstd", ".zst")
        self._lib = lib
        # Making a compressor costs more than compressing a small body, and one
        # instance must not be used by two threads: keep one per thread and level.
        self._local = threading.local()

    def compress(self, data: bytes, level: int, *, reuse: bool = True) -> bytes:
        if not reuse:
            # High levels keep large tables (about 90 MiB at 19): not per thread.
            once: bytes = self._lib.ZstdCompressor(level=level).compress(data)
            return once
        local = self._local
        try:
            by_level: dict[int, Any] = local.by_level
        except AttributeError:
            by_level = local.by_level = {}
        compressor = by_level.get(level)
        if compressor is None:
            compressor = by_level[level] = self._lib.ZstdCompressor(level=level)
        out: bytes = compressor.compress(data)
        return out

    def stream(self, level: int) -> Stream:
        return _ZstdStream(self._lib, level)


def _import_first(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


class _Library:
    """The first of ``names`` that is installed, imported when a response is first
    compressed with it: a worker that offers br and zstd but never sends them
    keeps brotli's and zstandard's modules and libraries (~0.5 MiB) out of its
    memory. Whether one is installed is known at once (``find_spec``)."""

    __slots__ = ("_module", "_names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names
        self._module: Any = None

    @classmethod
    def find(cls, *names: str) -> _Library | None:
        """The library, or None when none of ``names`` is installed."""
        found = tuple(n for n in names if importlib.util.find_spec(n) is not None)
        return cls(found) if found else None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = _import_first(*self._names)
            if module is None:  # installed but broken: as if it were not installed
                raise ImportError(f"cannot import {' or '.join(self._names)}")
        return getattr(module, attr)


_LOCK = threading.Lock()
_LOADED: dict[str, Coding | None] = {}


def load(name: str) -> Coding | None:
    """The coding called ``name``, or None when its library is not installed."""
    if name in _LOADED:
        return _LOADED[name]
    with _LOCK:
        coding: Coding | None
        if name == "gzip":
            coding = Gzip()
        elif name == "br":
            lib = _Library.find("brotli", "brotlicffi")
            coding = Brotli(lib) if lib is not None else None
        elif name == "zstd":
            lib = _Library.find("zstandard")
            coding = Zstd(lib) if lib is not None else None
        else:
            raise ValueError(f"unknown content coding {name!r}")
        _LOADED[name] = coding
        return coding
