"""The small-file cache: file versions kept in memory with their answers prepared.

How this works: a :class:`Representation` is one version of one file as the
handler answers with it — its validators and the header lists of a 200 and of a
304, built once; for a small file also its bytes. :class:`FileCache` keeps those
of small files, keyed by the physical path the URL mapped to, bounded by a byte
budget with least-recently-used eviction; and, charged only their bookkeeping,
the descriptions of larger files, which the handler checks against a fresh stat
on every request (their ``fresh_until`` stays 0) and reuses while it matches.

Staying correct is the handler's side of the bargain: an entry is trusted for
``cache_check_interval`` seconds, then the handler runs the full lookup again
(the root confinement walk, one ``lstat`` per path component) and compares the
file's identity — device, inode, size, modification and change times. The
change time cannot be set by a program, so a rewrite that restores the old
modification time (``cp -p``, ``rsync -t`` in place) is still noticed. A file
read within two seconds of its last change is "racy" (a second write in the same
timestamp tick would not change the identity), so its entry is re-read at the
next check until it has settled — git's answer to the same problem.

Recency is refreshed when an entry is checked, not on every hit: a hit costs a
dict lookup, and an entry in use is checked every interval anyway.
"""

from __future__ import annotations

import os

from colonnade.core.conditional import Validators
from colonnade.core.request import Headers
from colonnade.core.response import FileBody
from colonnade.handlers.static.config import StaticContentSection

#: (device, inode, size, mtime ns, ctime ns): equal means the same file version.
Identity = tuple[int, int, int, int, int]

#: A file changed this recently may change again within the same timestamp tick.
RACY_NS = 2_000_000_000
#: Bookkeeping bytes charged per entry besides its body and its paths (its objects,
#: validators, header lists): ~950 measured with tracemalloc, interpreted, ~740
#: compiled (tests/handlers/static/test_cache.py keeps the charge above it).
ENTRY_OVERHEAD = 1024


def identity(st: os.stat_result) -> Identity:
    """What tells two versions of a file apart without reading it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Representation:
    """One version of one file, with everything a response needs prepared.

    ``headers`` answers a GET in full; ``validator_headers`` (ETag,
    Last-Modified, Cache-Control, a fixed Expires) go on every 200, 206 and
    304. ``body`` holds the bytes of a cached file, None for one sent from disk.
    """

    __slots__ = (
        "body",
        "content_type",
        "cost",
        "expires_delta",
        "fresh_until",
        "headers",
        "identity",
        "key",
        "path",
        "racy",
        "settings",
        "size",
        "source",
        "validator_headers",
        "validators",
    )

    def __init__(
        self,
        *,
        key: str,
        path: str,
        ident: Identity,
        settings: StaticContentSection,
        content_type: bytes,
        validators: Validators,
        validator_headers: Headers,
        headers: Headers,
    ) -> None:
        self.key = key
        self.path = path
        self.identity = ident
        self.size = ident[2]
        # What the body was read from, for SEND_RESPONSE modules (compression).
        self.source = FileBody(path, 0, self.size)
        self.settings = settings
        self.content_type = content_type
        self.validators = validators
        self.validator_headers = validator_headers
        self.headers = headers
        self.expires_delta = settings.expires_delta
        self.body: bytes | None = None
        self.cost = 0
        self.fresh_until = 0.0
        self.racy = False


class FileCache:
    """Representations of small files by physical path, within ``max_bytes``."""

    __slots__ = ("entries", "max_bytes", "used")

    def __init__(self, max_bytes: int) -> None:
        self.entries: dict[str, Representation] = {}
        self.max_bytes = max_bytes
        self.used = 0

    def put(self, rep: Representation) -> bool:
        """Keep ``rep`` (replacing its key's entry), evicting the least recent."""
        self.drop(rep.key)
        cost = rep.cost
        if cost > self.max_bytes:
            return False
        entries = self.entries
        while self.used + cost > self.max_bytes:
            oldest = entries.pop(next(iter(entries)))
            self.used -= oldest.cost
        entries[rep.key] = rep
        self.used += cost
        return True

    def touch(self, rep: Representation) -> None:
        """Mark ``rep`` as just used (it moves to the end of the eviction order)."""
        entries = self.entries
        if entries.get(rep.key) is rep:
            del entries[rep.key]
            entries[rep.key] = rep

    def drop(self, key: str) -> None:
        """Forget the entry of ``key``, if any."""
        old = self.entries.pop(key, None)
        if old is not None:
            self.used -= old.cost

    def clear(self) -> None:
        """Forget everything."""
        self.entries.clear()
        self.used = 0


def read_exactly(path: str, ident: Identity) -> bytes | None:
    """The bytes of ``path`` if it is still the version ``ident`` names, else None.

    The opened file's identity is compared with the one the lookup vouched for,
    so a file swapped between the check and the read is never cached.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if identity(os.fstat(fd)) != ident:
            return None
        size = ident[2]
        data = os.read(fd, size + 1)
        while len(data) < size:  # a short read (some file systems): carry on
            more = os.read(fd, size + 1 - len(data))
            if not more:
                break
            data += more
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == size else None
