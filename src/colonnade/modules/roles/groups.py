"""An Apache-format group file, read once and re-read when it changes."""

from __future__ import annotations

import logging
import os
import time

from colonnade.errors import ConfigError

log = logging.getLogger("colonnade.auth")

#: The largest group file read (a bigger one is an error): the file is read on the
#: event loop when it changes.
MAX_GROUP_FILE = 8 * 1024 * 1024

_NONE: frozenset[str] = frozenset()


def parse_groups(text: str, source: str) -> dict[str, frozenset[str]]:
    """``user → groups`` of a group file's text; ``ValueError`` naming the line."""
    groups_of: dict[str, set[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        group, colon, members = line.partition(":")
        group = group.strip()
        if not colon or not group or any(c.isspace() for c in group):
            raise ValueError(f"{source}:{number}: expected 'group: user1 user2 ...'")
        for user in members.split():
            groups_of.setdefault(user, set()).add(group)
    # Users in the same groups share one frozenset.
    shared: dict[frozenset[str], frozenset[str]] = {}
    out: dict[str, frozenset[str]] = {}
    for user, names in groups_of.items():
        frozen = frozenset(names)
        out[user] = shared.setdefault(frozen, frozen)
    return out


class GroupFile:
    """The groups of each user in one file, kept current (see :meth:`roles_of`)."""

    __slots__ = ("_members", "_next_check", "_problem", "_stamp", "interval", "path")

    def __init__(self, path: str, interval: float) -> None:
        """Read ``path`` now: ``ConfigError`` if it cannot be used."""
        self.path = path
        self.interval = interval
        self._problem: str | None = None
        self._next_check = time.monotonic() + interval
        try:
            self._stamp, self._members = self._read()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"roles.group_file: {_reason(exc)}", key="roles.group_file") from None

    def roles_of(self, user: str) -> frozenset[str]:
        """The groups ``user`` is a member of (looks for a change at most once per
        ``interval``)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.interval
            self._refresh()
        return self._members.get(user, _NONE)

    def _stamp_now(self) -> tuple[int, int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)

    def _read(self) -> tuple[tuple[int, int, int, int], dict[str, frozenset[str]]]:
        with open(self.path, "rb") as f:
            stamp = os.fstat(f.fileno())
            data = f.read(MAX_GROUP_FILE + 1)
        if len(data) > MAX_GROUP_FILE:
            raise ValueError(f"{self.path}: larger than {MAX_GROUP_FILE} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: not UTF-8 (byte {exc.start})") from None
        members = parse_groups(text, self.path)
        return (stamp.st_mtime_ns, stamp.st_ctime_ns, stamp.st_size, stamp.st_ino), members

    def _refresh(self) -> None:
        try:
            if self._stamp_now() == self._stamp:
                return
            self._stamp, self._members = self._read()
        except (OSError, ValueError) as exc:
            problem = _reason(exc)
            if problem != self._problem:  # once per problem, not per request
                log.warning("group file: %s; the previous content stays in use", problem)
                self._problem = problem
            return
        if self._problem is not None:
            log.info("group file %s: readable again", self.path)
        self._problem = None
        log.info("group file %s: re-read (%d users)", self.path, len(self._members))


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}"
    return str(exc)
