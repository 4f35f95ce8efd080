"""An htpasswd file: read once, re-read when it changes.

The file is a list of ``user:hash`` lines (Apache's format, also nginx's
``auth_basic_user_file``). As Apache does, empty lines and lines starting with
``#`` are skipped, the first line of a user counts, and the hash ends at the next
``:`` (later fields, such as the group lists some tools append, are ignored).

Change detection is split in two so the event loop never reads the file:
:meth:`UserFile.changed` (on the loop, at most one ``stat`` per
:data:`RECHECK` seconds) notices a new version; :meth:`UserFile.lookup` (in a
worker thread, where hashes are checked) reads it when what it holds is older
than what was seen.
"""

from __future__ import annotations

import logging
import os
import threading
from stat import S_ISREG

log = logging.getLogger("colonnade.auth")

#: The most seconds between two looks at the file.
RECHECK = 1.0
#: A larger file is refused (a user file is a few kilobytes; this is a runaway).
MAX_FILE_SIZE = 64 * 1024 * 1024

StatKey = tuple[int, int, int, int]


class UserFileError(OSError):
    """The file cannot be used (missing, unreadable, not a file, too large)."""


def _key(st: os.stat_result) -> StatKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def parse(data: bytes, path: str) -> dict[bytes, bytes]:
    """``user → stored hash`` of an htpasswd file's content (bytes, as written)."""
    users: dict[bytes, bytes] = {}
    skipped = 0
    for line in data.splitlines():
        line = line.strip(b" \t\r")
        if not line or line.startswith(b"#"):
            continue
        user, sep, rest = line.partition(b":")
        if not sep or not user:
            skipped += 1
            continue
        users.setdefault(user, rest.partition(b":")[0])
    if skipped:
        log.warning("%s: %d line(s) without 'user:hash' ignored", path, skipped)
    return users


class UserFile:
    """One htpasswd file, shared by every section that names it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._users: dict[bytes, bytes] | None = None
        self._loaded: StatKey | None = None
        self._seen: StatKey | None = None
        self._checked = float("-inf")

    def changed(self, now: float) -> bool:
        """True when the file changed since the last look (at most one ``stat`` per
        :data:`RECHECK` seconds). Called on the event loop for every request that
        carries credentials: the caller forgets what it verified against the old file.
        """
        if now - self._checked < RECHECK:
            return False
        self._checked = now
        try:
            seen: StatKey | None = _key(os.stat(self.path))
        except OSError:
            seen = None
        if seen == self._seen:
            return False
        self._seen = seen
        return True

    def lookup(self, user: bytes) -> bytes | None:
        """The stored hash of ``user``, or None if the file does not list it.

        Reads the file first when it changed (blocking: call it off the loop).
        Raises :class:`UserFileError` when the file cannot be used.
        """
        with self._lock:
            if self._users is None or self._loaded != self._seen:
                self._users = self._read()
            return self._users.get(user)

    def _read(self) -> dict[bytes, bytes]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if not S_ISREG(st.st_mode):
                    raise UserFileError(f"{self.path}: not a regular file")
                if st.st_size > MAX_FILE_SIZE:
                    raise UserFileError(f"{self.path}: larger than {MAX_FILE_SIZE} bytes")
                data = f.read(MAX_FILE_SIZE + 1)
        except UserFileError:
            self._users = None
            raise
        except OSError as exc:
            self._users = None
            raise UserFileError(f"{self.path}: {exc.strerror or exc}") from None
        users = parse(data, self.path)
        self._loaded = _key(st)
        if self._seen is None:
            self._seen = self._loaded
        log.info("%s: %d user(s) read", self.path, len(users))
        return users
