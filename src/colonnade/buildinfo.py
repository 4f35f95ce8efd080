"""Which build of Colonnade runs: compiled (mypyc) or pure Python.

Read from the installed package's files, never by importing the compiled
modules: ``colonnade --version`` and the master's startup line must not load the
engine to say it.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

#: The installed package's folder.
PACKAGE = Path(__file__).resolve().parent
#: Written by setup.py into a build that is pure Python by fallback: why.
PURE_REASON = PACKAGE / "PURE_BUILD"


def compiled_modules() -> list[str]:
    """The package's modules installed as C extensions (mypyc), as dotted names.

    mypyc installs a compiled module's source beside its extension; an extension
    with no ``.py`` beside it is a C helper of the compiled build
    (``colonnade/_libc.c``), not a compiled module."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    found = []
    for path in PACKAGE.rglob("*"):
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is not None and path.with_name(path.name[: -len(suffix)] + ".py").is_file():
            relative = path.relative_to(PACKAGE.parent).as_posix()
            found.append(relative[: -len(suffix)].replace("/", "."))
    return sorted(found)


def describe() -> str:
    """``compiled: 20 modules``, or ``pure Python`` (with the reason, if a build
    that tried to compile fell back)."""
    compiled = compiled_modules()
    if compiled:
        return f"compiled: {len(compiled)} modules"
    try:
        reason = PURE_REASON.read_text(encoding="utf-8").strip()
    except OSError:
        return "pure Python"
    return f"pure Python: {reason}" if reason else "pure Python"
