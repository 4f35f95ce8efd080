"""Whether a mapped file path stays inside its application, cheaply.

What ``Application.lstat_inside`` does, as a function of the roots alone so that
the compiled build (mypyc: this module is in ``[tool.colonnade.mypyc]``) runs it
as C: it is on the path of every request for a script or a static file. Stdlib
only; nothing here keeps state.
"""

from __future__ import annotations

import os

#: ``st_mode``'s file-type bits, and those of a symlink and a folder (``stat``'s
#: constants, here so that the compiled walk tests them without a call).
_TYPE = 0o170000
_LINK = 0o120000
_DIR = 0o040000


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
