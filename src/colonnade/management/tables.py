"""Aligned tables for the ``colonnade`` command, coloured on a terminal.

Every listing command prints its rows through :func:`table`: one column width
per column, numbers right-aligned, and (on a terminal, unless ``NO_COLOR`` is
set) states coloured: green for serving, yellow for on the way, red for stopped
or failed. Piped output is plain text, stable for scripts (which should use
``--json``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

#: State words and their ANSI colours.
_STATE_COLOURS = {
    "ready": "32",
    "running": "32",
    "applied": "32",
    "starting": "33",
    "retiring": "33",
    "draining": "33",
    "idle": "33",
    "stopped": "31",
    "broken": "31",
}


def use_colour(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout) is a terminal that wants colour (no ``NO_COLOR``)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def paint(text: str, code: str, colour: bool) -> str:
    """``text`` in ANSI colour ``code`` when ``colour``."""
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    indent: str = "  ",
    colour: bool = False,
    right: Sequence[int] = (),
) -> list[str]:
    """``rows`` under ``headers``, one line each, columns aligned; the columns
    numbered in ``right`` (and every column whose values are all numbers) are
    right-aligned; a cell that is a state word is coloured when ``colour``."""
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    count = len(headers)
    widths = [max(len(line[i]) for line in cells) for i in range(count)]
    numeric = {
        i
        for i in range(count)
        if rows and all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows)
    } | set(right)
    out = []
    for n, line in enumerate(cells):
        parts = []
        for i, cell in enumerate(line):
            padded = cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            if n == 0:
                padded = paint(padded, "1", colour)
            elif cell in _STATE_COLOURS:
                padded = paint(padded, _STATE_COLOURS[cell], colour)
            parts.append(padded)
        out.append((indent + "  ".join(parts)).rstrip())
    return out
