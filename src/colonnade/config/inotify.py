"""A recursive inotify watch of folder trees for configuration and code changes.

Why not watchfiles' notifier: it asks inotify for ``IN_OPEN`` and
``IN_CLOSE_NOWRITE`` as well, so every file a worker opens under a watched site
root (each static file served from disk) wakes the master's watcher thread twice,
to throw the events away. This watch asks only for what changes a file's content or
a folder's entries: a finished write (``IN_CLOSE_WRITE``, not every ``write``: a
configuration file is read once it is complete), a new, removed or renamed entry, a
changed mode or time stamp (``touch web.toml`` reloads). Reading files costs it
nothing.

It is used where the kernel has inotify and ``libc`` exports it (Linux); elsewhere,
and where ``WATCHFILES_FORCE_POLLING`` asks for polling, config/watch.py keeps
watchfiles' notifier. :class:`Inotify` offers the same ``watch`` call as that
notifier (``RustNotify``), so the caller drives both alike.

The three system calls go through the compiled build's C helper (colonnade/_libc.c,
which the master loads anyway), else through ctypes: ctypes (its package,
``_ctypes`` and libffi) is ~0.4 MiB of an idle master's RSS, for three calls.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_OPEN = 0x20
IN_CLOSE_NOWRITE = 0x10
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_DONT_FOLLOW = 0x2000000
IN_EXCL_UNLINK = 0x4000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

#: What a folder's watch asks for: content written and closed, entries created,
#: removed or renamed, attributes changed, the folder itself removed or moved.
MASK = (
    IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
)

#: watchfiles' change kinds (``watchfiles.Change``): added, modified, deleted.
ADDED, MODIFIED, DELETED = 1, 2, 3

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_READ = 64 * 1024

Raw = set[tuple[int, str]] | Literal["timeout", "stop"]


class _Calls(NamedTuple):
    """inotify's system calls; each raises OSError with the call's errno."""

    init1: Callable[[int], int]
    add_watch: Callable[[int, bytes, int], int]
    rm_watch: Callable[[int, int], None]


def _calls() -> _Calls:
    """The C helper's calls (the compiled build), else ctypes' (the pure build).
    Raises OSError or AttributeError where the C library has no inotify."""
    try:
        import colonnade._libc as _libc
    except ImportError:
        return _ctypes_calls()
    return _Calls(_libc.inotify_init1, _libc.inotify_add_watch, _libc.inotify_rm_watch)


def _ctypes_calls() -> _Calls:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    init1, add, rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    add.restype = ctypes.c_int

    def checked(result: int) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    def rm_watch(fd: int, wd: int) -> None:
        checked(rm(fd, wd))

    return _Calls(
        lambda flags: checked(init1(flags)),
        lambda fd, path, mask: checked(add(fd, path, mask)),
        rm_watch,
    )


class Inotify:
    """An inotify instance watching every folder below ``roots`` (new folders are
    added as they appear). Raises OSError where it cannot be made (no inotify, the
    kernel's watch limit reached): the caller then watches another way."""

    def __init__(self, roots: Iterable[str]) -> None:
        self._calls = _calls()
        try:
            fd = self._calls.init1(IN_NONBLOCK | IN_CLOEXEC)
        except OSError as exc:
            raise _error("inotify_init1", exc.errno) from None
        self._fd: int = fd
        # What ends a wait early (:meth:`wake`): the watch sleeps in the kernel
        # until a change, its timeout or this, never waking to look at ``halt``.
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            os.close(fd)  # (no pipe: out of descriptors) the caller watches another way
            raise
        self._closing = threading.Lock()  # wake() against close(): no write to a reused fd
        self._folders: dict[int, str] = {}  # watch descriptor -> folder path
        try:
            for root in roots:
                self._add_tree(root, None)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop watching (the instance's descriptors are closed; idempotent)."""
        with self._closing:
            if self._fd >= 0:
                os.close(self._fd)
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._fd = self._wake_r = self._wake_w = -1

    def wake(self) -> None:
        """End a :meth:`watch` in progress (or the next one) at once, so that it
        reads its ``halt`` again: whoever sets the halt calls this after. Safe
        from any thread, also after :meth:`close`."""
        with self._closing:
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):  # woken already, not read yet
                    os.write(self._wake_w, b"\0")

    @property
    def folders(self) -> int:
        """How many folders are watched."""
        return len(self._folders)

    def watch(self, debounce_ms: int, step_ms: int, timeout_ms: int, halt: threading.Event) -> Raw:
        """Wait for changes as watchfiles' notifier does: once one is seen, gather
        more until none comes for ``step_ms`` or ``debounce_ms`` have passed since
        the first; return them as ``(change, path)`` pairs. ``"timeout"`` after
        ``timeout_ms`` with none (0: no limit), ``"stop"`` once ``halt`` is set and
        :meth:`wake` called.

        Unlike watchfiles' notifier, the wait does not look at ``halt`` every
        ``step_ms``: an idle watch sleeps in the kernel until something changes,
        its timeout passes or :meth:`wake` is called (no wake-up 20 times a
        second in an idle server)."""
        found: set[tuple[int, str]] = set()
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        start = time.monotonic()
        first = 0.0
        while not halt.is_set():
            # In whole milliseconds, rounded up: a wait rounded down to 0 would
            # spin through the last fraction of one.
            if found:  # gathering: until a quiet step, at most until the debounce
                left = debounce_ms - (time.monotonic() - first) * 1000
                wait = min(step_ms, max(0, math.ceil(left)))
            elif timeout_ms:
                wait = max(0, math.ceil(timeout_ms - (time.monotonic() - start) * 1000))
            else:
                wait = -1  # no limit
            ready = poller.poll(wait)
            changed = False
            for fd, _events in ready:
                if fd == self._fd:
                    changed = True
                else:
                    self._drain_wake()
            if changed:
                self._read(found)
            now = time.monotonic()
            if found:
                first = first or now
                if not changed or (now - first) * 1000 >= debounce_ms:
                    return found  # a quiet step (or a wake-up), or the debounce is up
            elif timeout_ms and (now - start) * 1000 >= timeout_ms:
                return "timeout"
        return "stop"

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 64):
                pass

    def _read(self, found: set[tuple[int, str]]) -> None:
        try:
            data = os.read(self._fd, _READ)
        except BlockingIOError:
            return
        at = 0
        while at + _EVENT.size <= len(data):
            wd, mask, _cookie, size = _EVENT.unpack_from(data, at)
            name = data[at + _EVENT.size : at + _EVENT.size + size].rstrip(b"\0")
            at += _EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                self._rescan(found)
                continue
            folder = self._folders.get(wd)
            if folder is None:
                continue
            if mask & IN_IGNORED:  # the folder is gone (or its watch was dropped)
                del self._folders[wd]
                continue
            if not name:  # the watched folder itself was removed or moved
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    found.add((DELETED, folder))
                continue
            path = os.path.join(folder, os.fsdecode(name))
            if mask & (IN_DELETE | IN_MOVED_FROM):
                found.add((DELETED, path))
                if mask & IN_ISDIR and mask & IN_MOVED_FROM:
                    self._forget_tree(path)  # moved in again, it is watched anew
            elif mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                # A folder made or moved in: watch it, and report what it holds
                # already (a tree moved in whole, a file written before the watch).
                found.add((ADDED, path))
                self._add_tree(path, found)
            elif mask & (IN_CREATE | IN_MOVED_TO):
                found.add((ADDED, path))
            else:
                found.add((MODIFIED, path))

    def _add_tree(self, root: str, found: set[tuple[int, str]] | None) -> None:
        for folder, dirs, files in os.walk(root, onerror=None, followlinks=False):
            if not self._add_folder(folder):
                dirs[:] = []
                continue
            if found is not None:
                found.update((ADDED, os.path.join(folder, f)) for f in files)

    def _add_folder(self, folder: str) -> bool:
        try:
            wd = self._calls.add_watch(self._fd, os.fsencode(folder), MASK)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return False  # gone already, a symbolic link, or not ours to read
            raise _error(f"inotify_add_watch {folder}", exc.errno) from None
        self._folders[wd] = folder
        return True

    def _forget_tree(self, root: str) -> None:
        below = root.rstrip("/") + "/"
        for wd, folder in list(self._folders.items()):
            if folder == root or folder.startswith(below):
                del self._folders[wd]
                with contextlib.suppress(OSError):  # the kernel dropped it already
                    self._calls.rm_watch(self._fd, wd)

    def _rescan(self, found: set[tuple[int, str]]) -> None:
        """The kernel's queue overflowed: events were lost, so every file below the
        watched folders counts as changed (the caller keeps the ones it wants)."""
        for folder in list(self._folders.values()):
            try:
                with os.scandir(folder) as entries:
                    found.update((MODIFIED, e.path) for e in entries if not e.is_dir())
            except OSError:
                continue


def _error(what: str, err: int | None) -> OSError:
    code = err or errno.EIO
    return OSError(code, f"{what}: {os.strerror(code)}")
