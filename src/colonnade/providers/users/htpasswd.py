"""Apache's htpasswd files: read once, re-read when they change.

The file is a list of ``user:hash`` lines (Apache's format, also nginx's
``auth_basic_user_file``). As Apache does, empty lines and lines starting with
``#`` are skipped, the first line of a user counts, and the hash ends at the next
``:`` (later fields, such as the group lists some tools append, are ignored).

Change detection is split in two so the event loop never reads the file:
:meth:`HtpasswdFile.changed` (on the loop, at most one ``stat`` per
:data:`RECHECK` seconds) notices a new version; :meth:`HtpasswdFile.check` (in a
worker thread, where hashes are checked) reads it when what it holds is older
than what was seen.

A name the file does not list costs about what a listed one does (the password
is checked against another entry's hash and the answer dropped), so the time
of a refusal does not tell which names exist.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from stat import S_ISREG

from colonnade.providers.users import Logon, UserStoreError
from colonnade.providers.users.hashes import UnusableHashError, verify

log = logging.getLogger("colonnade.auth")

#: The most seconds between two looks at the file.
RECHECK = 1.0
#: A larger file is refused (a user file is a few kilobytes; this is a runaway).
MAX_FILE_SIZE = 64 * 1024 * 1024

StatKey = tuple[int, int, int, int]


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


class HtpasswdFile:
    """One htpasswd file (a :class:`~colonnade.providers.users.PasswordStore`)."""

    def __init__(self, path: str, *, equalize: bool = True) -> None:
        self.path = path
        #: Check an unknown name's password against another entry (see above).
        #: Off where another store follows, which spends its own time.
        self.equalize = equalize
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

    def check(self, name: str, password: str, client: str | None = None) -> Logon | None:
        """The logon of ``name``, or None if the file does not list it.

        Reads the file first when it changed (blocking: call it off the loop).
        Raises :class:`UserStoreError` when the file cannot be read or the
        user's entry cannot be checked (an unknown hash form, a crypt(3) method
        this system lacks).
        """
        secret = password.encode("utf-8")
        with self._lock:
            if self._users is None or self._loaded != self._seen:
                self._users = self._read()
            users = self._users
        stored = users.get(name.encode("utf-8"))
        if stored is None:
            if self.equalize and users:
                # Spend what a listed name costs; the answer does not matter.
                with contextlib.suppress(UnusableHashError):
                    verify(next(iter(users.values())), secret)
            return None
        try:
            ok = verify(stored, secret)
        except UnusableHashError as exc:
            raise UserStoreError(f"{self.path}: the entry of {name!r} is unusable: {exc}") from None
        return Logon(ok, name, reason="" if ok else "wrong password")

    def _read(self) -> dict[bytes, bytes]:
        try:
            # O_NONBLOCK: a FIFO put in the file's place must not hang the thread
            # in open(); it is refused below as not a regular file.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            with open(fd, "rb") as f:
                st = os.fstat(fd)
                if not S_ISREG(st.st_mode):
                    raise UserStoreError(f"{self.path}: not a regular file")
                if st.st_size > MAX_FILE_SIZE:
                    raise UserStoreError(f"{self.path}: larger than {MAX_FILE_SIZE} bytes")
                data = f.read(MAX_FILE_SIZE + 1)
        except UserStoreError:
            self._users = None
            raise
        except OSError as exc:
            self._users = None
            raise UserStoreError(f"{self.path}: {exc.strerror or exc}") from None
        users = parse(data, self.path)
        self._loaded = _key(st)
        if self._seen is None:
            self._seen = self._loaded
        log.info("%s: %d user(s) read", self.path, len(users))
        return users
