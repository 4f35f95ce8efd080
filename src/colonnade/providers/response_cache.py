"""Cached responses: the output cache's memory tier, one per application and worker.

How this works
--------------
An entry is a response as it went out (status, headers, body) under a fixed-size
key: a digest of what the request varied on (``cache.output`` builds it). The
tier is an LRU (an ``OrderedDict``: a hit moves the entry to the end, storing
past ``max_bytes`` drops entries from the front) with two bounds that hostile
input cannot move: the byte budget, and ``max_variants`` entries per URL path
(a path at its cap stores no more variants; the ones it has stay).

An entry also says when it stops being fresh (a ``time.monotonic`` deadline,
``inf`` for none) and which files it came from, with their ``(mtime_ns, size,
inode)`` when it was stored: :meth:`MemoryTier.get` drops an entry whose files
changed (IIS's ``CacheUntilChange``, by looking rather than by change
notification).

Every live tier registers itself with :mod:`colonnade.core.caches` (kind
``"output_cache"``), so a purge command reaching the worker (the control
socket) purges every application's tier without knowing the modules.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from colonnade.core import caches
from colonnade.core.cachegrant import CacheGrant
from colonnade.core.conditional import Validators, validators_of
from colonnade.core.request import Headers

#: An entry whose source file changed less than this many seconds before it was
#: stored is kept at most this long: it may hold the version before the change.
RACY_SECONDS = 2.0

#: What a stored entry costs besides its bytes (objects, key, bookkeeping).
ENTRY_OVERHEAD = 400


class FileStamp(NamedTuple):
    """A file an entry came from, as it was when the entry was stored."""

    path: str
    mtime_ns: int
    ctime_ns: int
    size: int
    inode: int

    def racy(self, now_ns: int) -> bool:
        """True if the file changed less than :data:`RACY_SECONDS` before ``now_ns``
        (``time.time_ns()``): the content that came with it may be an older
        version still held by whoever read it (the static handler trusts its
        own copy for ``cache_check_interval``)."""
        return now_ns - max(self.mtime_ns, self.ctime_ns) < RACY_SECONDS * 1_000_000_000


def stamp(path: str) -> FileStamp | None:
    """The current stamp of ``path`` (None: not a file we can see)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return FileStamp(path, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def unchanged(files: tuple[FileStamp, ...]) -> bool:
    """True while every one of ``files`` is as it was stamped. A stamp made on
    another machine (inode 0: from the Redis tier) is compared by modification
    time and size only: inodes and change times differ between machines."""
    for old in files:
        now = stamp(old.path)
        if now is None:
            return False
        if old.inode == 0:
            if (now.mtime_ns, now.size) != (old.mtime_ns, old.size):
                return False
        elif now != old:
            return False
    return True


class Entry:
    """One cached response."""

    __slots__ = (
        "body",
        "expires",
        "files",
        "grant",
        "headers",
        "reason",
        "size",
        "status",
        "stored",
        "url",
        "validators",
    )

    def __init__(
        self,
        status: int,
        reason: bytes | None,
        headers: Headers,
        body: bytes,
        *,
        url: str,
        expires: float = math.inf,
        files: tuple[FileStamp, ...] = (),
        stored: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.url = url
        self.expires = expires
        self.files = files
        self.stored = time.time() if stored is None else stored
        self.validators: Validators = validators_of(headers)
        #: The response cache's leave to keep this entry's answer, once a hit gave
        #: it (``cache.output``); revoked when the entry leaves the tier.
        self.grant: CacheGrant | None = None
        self.size = (
            len(body)
            + sum(len(n) + len(v) for n, v in headers)
            + len(url)
            + sum(len(f.path) for f in files)
            + ENTRY_OVERHEAD
        )

    def fresh(self, now: float) -> bool:
        """True until the entry's deadline (``now``: ``time.monotonic()``) and
        while its files are unchanged."""
        return now < self.expires and (not self.files or unchanged(self.files))


class Counters:
    """What a tier has done (IIS ``Output Cache Total Hits`` and friends)."""

    __slots__ = ("evictions", "hits", "misses", "purged", "rejected", "stores")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.evictions = 0  # dropped for room (LRU)
        self.purged = 0  # dropped by a purge, an expiry or a changed file
        self.rejected = 0  # cacheable but not stored: too big, or its URL at max_variants

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "stores": self.stores,
            "evictions": self.evictions,
            "purged": self.purged,
            "rejected": self.rejected,
        }


#: The kind tiers are registered under in :mod:`colonnade.core.caches`.
KIND = "output_cache"


class MemoryTier:
    """An LRU of :class:`Entry` objects under a byte budget."""

    def __init__(self, max_bytes: int, max_variants: int) -> None:
        self.max_bytes = max_bytes
        self.max_variants = max_variants
        self.bytes = 0
        self.counters = Counters()
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._by_url: dict[str, set[bytes]] = {}
        # The request headers the response at a base key said it varies on
        # (``Vary``), beyond those in the base key: the second half of the key.
        self._varies: dict[bytes, tuple[bytes, ...]] = {}
        caches.register(KIND, self)

    def __len__(self) -> int:
        return len(self._entries)

    def varies(self, base: bytes) -> tuple[bytes, ...]:
        """The extra request headers the responses at ``base`` vary on."""
        return self._varies.get(base, ())

    def get(self, key: bytes, now: float) -> Entry | None:
        """The fresh entry at ``key`` (counted as a hit), or None (not counted:
        the caller counts a miss when it goes on without one)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        # Entry.fresh, without a call on the hit path.
        if now >= entry.expires or (entry.files and not unchanged(entry.files)):
            self._drop(key, entry)
            self.counters.purged += 1
            return None
        self._entries.move_to_end(key)
        self.counters.hits += 1
        return entry

    def put(self, base: bytes, varies: tuple[bytes, ...], key: bytes, entry: Entry) -> bool:
        """Store ``entry`` at ``key``; False when it may not be (too big for the
        budget, or its URL has ``max_variants`` entries already)."""
        if entry.size > self.max_bytes:
            self.counters.rejected += 1
            return False
        old = self._entries.get(key)
        if old is not None:
            self._drop(key, old)
        keys = self._by_url.get(entry.url)
        if keys is not None and len(keys) >= self.max_variants:
            self.counters.rejected += 1
            return False
        if keys is None:
            keys = self._by_url[entry.url] = set()
        keys.add(key)
        self._varies[base] = varies
        self._entries[key] = entry
        self.bytes += entry.size
        self.counters.stores += 1
        while self.bytes > self.max_bytes:
            victim_key, victim = next(iter(self._entries.items()))
            self._drop(victim_key, victim)
            self.counters.evictions += 1
        return True

    def purge(self, path: str, *, prefix: bool = False) -> int:
        """Drop every entry of URL path ``path`` (every query string and variant),
        or of every path starting with it; the count dropped."""
        if prefix:
            urls: Iterable[str] = [u for u in self._by_url if u.startswith(path)]
        else:
            urls = [path] if path in self._by_url else []
        dropped = 0
        for url in urls:
            for key in list(self._by_url.get(url, ())):
                entry = self._entries.get(key)
                if entry is not None:
                    self._drop(key, entry)
                    dropped += 1
        self.counters.purged += dropped
        if prefix and path in ("", "/"):
            self._varies.clear()
        return dropped

    def clear(self) -> None:
        """Drop everything (counted as purged)."""
        self.counters.purged += len(self._entries)
        for entry in self._entries.values():
            if entry.grant is not None:
                self._revoke(entry.grant)
        self._entries.clear()
        self._by_url.clear()
        self._varies.clear()
        self.bytes = 0

    def close(self) -> None:
        """Drop everything and leave the process-wide set."""
        self.clear()
        caches.unregister(KIND, self)

    def _drop(self, key: bytes, entry: Entry) -> None:
        if entry.grant is not None:
            self._revoke(entry.grant)
        del self._entries[key]
        self.bytes -= entry.size
        keys = self._by_url.get(entry.url)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_url[entry.url]

    def _revoke(self, grant: CacheGrant) -> None:
        """The response cache's copy of an entry goes with it; its hits stay counted."""
        grant.revoked = True
        self.counters.hits += grant.hits
        grant.hits = 0

    def stats(self) -> dict[str, int]:
        """The counters and the current size; ``hits`` with those the response cache
        answered from this tier's entries (``Entry.grant``)."""
        stats = {**self.counters.as_dict(), "entries": len(self._entries), "bytes": self.bytes}
        stats["hits"] += sum(e.grant.hits for e in self._entries.values() if e.grant is not None)
        return stats
