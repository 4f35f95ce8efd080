"""Windows paths in IIS configuration → paths on this machine (``--path-map``)."""

from __future__ import annotations

import os
import re

_ENV = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
_WINDOWS_ENV = {"systemdrive": "C:", "systemroot": r"C:\Windows", "windir": r"C:\Windows"}


def windows_path(text: str) -> bool:
    """True for ``C:\\...``, ``\\\\server\\share`` and ``%VAR%\\...`` paths."""
    return bool(re.match(r"^([A-Za-z]:|\\\\|%[A-Za-z_]+%)", text))


def expand(text: str) -> str:
    """Expand the environment variables IIS configurations use (``%SystemDrive%``)."""
    return _ENV.sub(lambda m: _WINDOWS_ENV.get(m.group(1).lower(), m.group(0)), text)


class PathMap:
    """``WIN=POSIX`` prefixes, longest first, matched without regard to case."""

    def __init__(self, pairs: list[str]) -> None:
        self.pairs: list[tuple[str, str]] = []
        for pair in pairs:
            win, sep, posix = pair.partition("=")
            if not sep or not win or not posix:
                raise ValueError(f"--path-map {pair!r}: expected WINDOWS_PATH=POSIX_PATH")
            self.pairs.append((_norm(expand(win)), posix.rstrip("/") or "/"))
        self.pairs.sort(key=lambda p: -len(p[0]))

    def map(self, text: str) -> str | None:
        """The POSIX path of a Windows ``text``; None when no prefix covers it."""
        norm = _norm(expand(text))
        for win, posix in self.pairs:
            if norm == win or norm.startswith(win + "/"):
                rest = norm[len(win) :].lstrip("/")
                # The case of the rest is kept as written: Linux file names are
                # case-sensitive and the files were copied with these names.
                original = expand(text).replace("\\", "/").rstrip("/")
                tail = original[len(original) - len(rest) :] if rest else ""
                return os.path.join(posix, tail) if tail else posix
        return None


def _norm(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").lower()
