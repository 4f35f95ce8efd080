"""Whether a mapped file path stays inside its application, cheaply.

What ``Application.lstat_inside`` does, as a function of the roots alone so that
the compiled build (mypyc: this module is in ``[tool.colonnade.mypyc]``) runs it
as C: it is on the path of every request for a script or a static file. Stdlib
only.

:class:`FileChecks` keeps the walk's answers for a short while (``[server]
file_check_cache``, as nginx's ``open_file_cache`` keeps its ``stat`` results): the
handler mapping's file check (``resource_type``) and the gateways' script lookup
(``core.cgienv.find_script``) ask it, once per process (:data:`FILE_CHECKS`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Final

#: ``st_mode``'s file-type bits, and those of a symlink and a folder (``stat``'s
#: constants, here so that the compiled walk tests them without a call).
_TYPE: Final = 0o170000
_LINK: Final = 0o120000
_DIR: Final = 0o040000


def lstat_inside(prefixes: tuple[str, ...], path: str) -> os.stat_result | None:
    """The stat of ``path`` if it starts with one of ``prefixes`` (the roots, each
    ending with a separator, longest first: ``Application.root_prefixes``) and no
    component below that root is a symlink: then its real path is inside the root.

    One ``lstat`` per component below the root, where ``os.path.realpath`` costs
    several times that. None when the walk cannot vouch for the path (a symlink, a
    path outside the roots, an empty, ``.`` or ``..`` segment): the caller then
    resolves it. Raises OSError (a missing component, ``ValueError`` for a NUL)
    and ``NotADirectoryError`` for "file/".
    """
    root = ""
    for prefix in prefixes:
        if path.startswith(prefix):
            root = prefix
            break
    if not root:
        return None
    rel = path[len(root) :]
    wants_dir = rel.endswith("/")
    if wants_dir:
        rel = rel[:-1]
    if not rel:  # the root itself
        return os.stat(root)
    current = root[:-1]  # "" for the root "/": components are appended with "/"
    st: os.stat_result | None = None
    for part in rel.split("/"):
        if part == "" or part == "." or part == "..":
            return None  # not what map_path makes: let realpath judge
        current = current + "/" + part
        st = os.lstat(current)
        if st.st_mode & _TYPE == _LINK:
            return None
    assert st is not None
    if wants_dir and st.st_mode & _TYPE != _DIR:
        raise NotADirectoryError(path)  # "file.txt/" names no file
    return st


#: How many paths :class:`FileChecks` holds by default.
FILE_CHECKS_SIZE: Final = 4096


class FileChecks:
    """:func:`lstat_inside`, its answers kept ``validity`` seconds (0: not kept).

    Only what the walk vouched for is kept: a path's stat, or None (a symlink on
    the way, or outside the roots: the caller resolves it each time). A failure
    (a missing file, ``a.jpg/x.php``) is never kept, so a file that appears is
    found at once; one that is deleted, replaced, or becomes a symlink is noticed
    at most ``validity`` seconds later (nginx's ``open_file_cache`` has the same
    window). At most ``size`` paths are held: past that, the expired ones are
    dropped, then the oldest.
    """

    __slots__ = ("_clock", "_entries", "size", "validity")

    def __init__(
        self,
        validity: float = 1.0,
        size: int = FILE_CHECKS_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.validity = validity
        self.size = size
        self._clock = clock
        #: path → (when it expires, the roots it was walked from, the answer)
        self._entries: dict[str, tuple[float, tuple[str, ...], os.stat_result | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def configure(self, validity: float, size: int = FILE_CHECKS_SIZE) -> None:
        """Change the validity and bound (a new configuration); forget everything."""
        self.validity = validity
        self.size = size
        self._entries.clear()

    def lstat_inside(self, prefixes: tuple[str, ...], path: str) -> os.stat_result | None:
        """:func:`lstat_inside` of ``path`` below ``prefixes``, from what was kept
        while it is valid; the same answers and exceptions."""
        if self.validity <= 0:
            return lstat_inside(prefixes, path)
        now = self._clock()
        entries = self._entries
        entry = entries.get(path)
        # The same roots: another application's answer is not this one's.
        if entry is not None and entry[0] > now and entry[1] == prefixes:
            return entry[2]
        try:
            st = lstat_inside(prefixes, path)
        except (OSError, ValueError):
            if entry is not None:
                del entries[path]  # expired, and gone since: nothing kept
            raise
        if entry is None and len(entries) >= self.size:
            self._make_room(now)
        entries[path] = (now + self.validity, prefixes, st)
        return st

    def _make_room(self, now: float) -> None:
        entries = self._entries
        for key in [k for k, e in entries.items() if e[0] <= now]:
            del entries[key]
        while len(entries) >= self.size > 0:
            del entries[next(iter(entries))]


#: The process's file checks (configured by the engine from ``[server]
#: file_check_cache``).
FILE_CHECKS: Final = FileChecks()
