"""Compressed static files kept in memory, least recently used dropped first.

An entry is filed under (path, coding) and is valid only for the version it was
made from; a request that finds another version misses, and the new copy
replaces the old one under the same key, so a changed file is compressed again
and its stale copy goes at once. The version is what identifies the bytes
being sent:

- a file sent from disk (``response.file``): its modification time in
  nanoseconds and its size, from a ``stat`` taken when the response goes out
  (the worker checks them again on the open file before it reads);
- a file the static handler sent from its own memory cache (``response.body``):
  the response's own validator (ETag, else Last-Modified) and the body's length,
  since those bytes may be a version the disk no longer holds.

A miss does not hold the response up: it is compressed at the dynamic level
this time, and :meth:`StaticCache.schedule` has the static-level copy made in a
background worker thread (one per cache, so dense levels never starve the
event loop's own executor). Requests for a version whose job is under way do not
start another: each version and coding is compressed once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, NamedTuple

from colonnade.modules.compression.codings import CHUNK, Coding

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("colonnade.compression")

#: Jobs waiting for the worker at most; beyond it a miss schedules nothing (a
#: crawler walking every file must not queue unbounded work and memory).
MAX_PENDING = 64


class Key(NamedTuple):
    """What an entry is filed under."""

    path: str
    coding: str


class Entry(NamedTuple):
    """One compressed version."""

    version: Hashable
    data: bytes


class Stats:
    """Counters for runtime state and tests."""

    __slots__ = ("compressions", "evictions", "failures", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.compressions = 0
        self.failures = 0
        self.evictions = 0


class FileChangedError(OSError):
    """The file is not the version the job was asked for."""


def compress_source(source: bytes | str, version: Hashable, coding: Coding, level: int) -> bytes:
    """Compress ``source`` (bytes, or the path of a file of ``version``); in a thread."""
    if isinstance(source, bytes):
        return coding.compress(source, level, reuse=False)
    with open(source, "rb") as f:
        st = os.fstat(f.fileno())
        if (st.st_mtime_ns, st.st_size) != version:
            raise FileChangedError(f"{source} changed before it could be compressed")
        parts = []
        left = st.st_size
        while left > 0:
            part = f.read(min(left, CHUNK * 16))
            if not part:
                raise FileChangedError(f"{source} shrank while it was read")
            parts.append(part)
            left -= len(part)
    return coding.compress(b"".join(parts), level, reuse=False)


Compressor = Callable[[bytes | str, Hashable, Coding, int], bytes]


class StaticCache:
    """The LRU of compressed static files, bounded by the bytes it holds."""

    __slots__ = ("_entries", "_executor", "_jobs", "compressor", "max_bytes", "size", "stats")

    def __init__(self, max_bytes: int, compressor: Compressor = compress_source) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.stats = Stats()
        self.compressor = compressor
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._jobs: dict[tuple[Key, Hashable], asyncio.Future[bytes]] = {}
        self._executor: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, version: Hashable) -> bytes | None:
        """The compressed bytes of this version, if held."""
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry.data

    def put(self, key: Key, version: Hashable, data: bytes) -> None:
        """Keep ``data`` (replacing any older version), evicting until it fits."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old.data)
        if len(data) > self.max_bytes:
            return
        self._entries[key] = Entry(version, data)
        self.size += len(data)
        while self.size > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.size -= len(dropped.data)
            self.stats.evictions += 1

    def schedule(
        self, key: Key, version: Hashable, source: bytes | str, coding: Coding, level: int
    ) -> None:
        """Have this version compressed in the background (once), then kept."""
        job_key = (key, version)
        if job_key in self._jobs or len(self._jobs) >= MAX_PENDING:
            return
        self.stats.misses += 1
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor  # with the first miss

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="colonnade-compress")
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, self.compressor, source, version, coding, level)
        self._jobs[job_key] = job
        job.add_done_callback(lambda done: self._finished(job_key, done))

    def _finished(self, job_key: tuple[Key, Hashable], job: asyncio.Future[bytes]) -> None:
        self._jobs.pop(job_key, None)
        if job.cancelled():
            return
        exc = job.exception()
        if exc is not None:
            self.stats.failures += 1
            if not isinstance(exc, FileChangedError):  # a deploy in progress is no news
                log.warning("compressing %s failed: %r", job_key[0].path, exc)
            return
        self.stats.compressions += 1
        key, version = job_key
        self.put(key, version, job.result())

    async def settle(self) -> None:
        """Wait until every scheduled job has finished (tests, graceful shutdown)."""
        while self._jobs:
            await asyncio.gather(*self._jobs.values(), return_exceptions=True)
            await asyncio.sleep(0)  # let the done callbacks run

    def close(self) -> None:
        """Drop every entry and stop the worker (jobs not started are cancelled)."""
        self._entries.clear()
        self.size = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
