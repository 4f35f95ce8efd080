"""A small file the module reads at start and again whenever it changes.

The key ring is a file an administrator edits while the server runs (a key
rotation). It is parsed whole when first read, which refuses the start with a
``ConfigError`` if it is unusable; afterwards a request checks its stamp (inode,
size, modification time) at most once a :data:`RECHECK`, and a changed file is
parsed again. A version that cannot be used is logged once and the previous
contents stay in force: a half-written file never signs everyone out.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from colonnade.errors import ConfigError

log = logging.getLogger("colonnade.auth")

T = TypeVar("T")

#: How often a file is checked for a change, in seconds.
RECHECK = 1.0
#: The largest file read (a key ring is a few lines; a user store a few thousand).
MAX_BYTES = 4 * 1024 * 1024

Stamp = tuple[int, int, int]
#: The stamp of a file that cannot be read.
_GONE: Stamp = (-1, -1, -1)


class WatchedFile(Generic[T]):
    """``parse(text)`` of the file at ``path``, kept current.

    ``parse`` raises ``ValueError`` with a message that names no secret: it is
    logged and put in the ``ConfigError`` (under ``key``).
    """

    __slots__ = ("_checked", "_failed", "_stamp", "key", "parse", "path", "value", "warn_shared")

    def __init__(
        self, path: str, parse: Callable[[str], T], key: str, *, warn_shared: bool = False
    ) -> None:
        self.path = path
        self.parse = parse
        self.key = key
        self.warn_shared = warn_shared
        self._failed: Stamp | None = None
        self._stamp, self.value = self._read()
        self._checked = time.monotonic()

    def current(self) -> T:
        """The contents in force (the file checked for a change at most once a
        :data:`RECHECK`)."""
        now = time.monotonic()
        if now - self._checked >= RECHECK:
            self._checked = now
            self._refresh()
        return self.value

    def _refresh(self) -> None:
        try:
            stamp = _stamp(os.stat(self.path))
        except OSError as exc:
            self._report(_GONE, f"cannot read it ({exc.strerror})")
            return
        if stamp in (self._stamp, self._failed):
            return
        try:
            self._stamp, self.value = self._read()
        except ConfigError as exc:
            self._report(stamp, exc.message)
            return
        self._failed = None
        log.info("%s: %s read again", self.key, self.path)

    def _report(self, stamp: Stamp, message: str) -> None:
        # Once per bad version of the file, not per request.
        if self._failed != stamp:
            log.error(
                "%s: %s: %s; the previous contents stay in force", self.key, self.path, message
            )
        self._failed = stamp

    def _read(self) -> tuple[Stamp, T]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                st = os.fstat(f.fileno())
                text = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}", key=self.key) from None
        if len(text) > MAX_BYTES:
            raise ConfigError(f"{self.path} is larger than {MAX_BYTES} bytes", key=self.key)
        if self.warn_shared and st.st_mode & 0o004:
            log.warning(
                "%s: %s is readable by every user of this machine (chmod 600 it)",
                self.key,
                self.path,
            )
        try:
            return _stamp(st), self.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{self.path}: {exc}", key=self.key) from None


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns)
