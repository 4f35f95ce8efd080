"""What ``colonnade serve --reload`` watches of the application's code.

Apart from the watcher itself (``config/watch.py``), which every master runs for
its configuration files: this, with dataclasses, fnmatch and pathlib (~0.3 MiB of
an idle master), is imported only with ``--reload``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import PurePath


@dataclass(frozen=True)
class CodeWatch:
    """The application code ``colonnade serve --reload`` watches: files under
    ``folders`` whose path matches an ``include`` glob and none of whose parts (below
    the folder) matches an ``exclude`` glob (uvicorn's defaults: ``*.py``; hidden
    files and folders, compiled files, editor swap and backup files)."""

    folders: tuple[str, ...]
    include: tuple[str, ...] = ("*.py",)
    exclude: tuple[str, ...] = (".*", "*.py[cod]", "*.sw.*", "~*", "__pycache__")

    def __post_init__(self) -> None:
        object.__setattr__(self, "folders", tuple(os.path.realpath(f) for f in self.folders))

    def matches(self, path: str) -> bool:
        """Whether a change of ``path`` is a change of the application's code."""
        real = os.path.realpath(path)
        for folder in self.folders:
            if not real.startswith(folder.rstrip("/") + "/"):
                continue
            parts = PurePath(os.path.relpath(real, folder)).parts
            if any(fnmatch(part, glob) for part in parts for glob in self.exclude):
                return False
            return any(PurePath(real).match(glob) for glob in self.include)
        return False
