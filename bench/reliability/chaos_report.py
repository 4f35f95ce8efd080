"""bench/RELIABILITY.md: each script rewrites only its own ``<!-- NAME:begin -->`` /
``<!-- NAME:end -->`` section (the attack runs, the chaos suite and the soak write
the same file)."""

from __future__ import annotations

import os
from pathlib import Path

HEADER = """\
# Reliability: attacks, faults and time

Written by scripts, each owning its section between `<!-- NAME:begin -->` and
`<!-- NAME:end -->` markers (issue #23). Each section says how to rerun it.
"""


def write_section(path: Path, name: str, text: str) -> None:
    """Put ``text`` between ``name``'s markers in ``path`` (appended when missing)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    current = path.read_text() if path.exists() else HEADER
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in current and end in current:
        head, _, rest = current.partition(begin)
        _, _, tail = rest.partition(end)
        current = head + block + tail
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(current)
    os.replace(tmp, path)


def machine() -> str:
    """CPUs and load averages, for the report (the machine is shared)."""
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} / {five:.2f} / {fifteen:.2f}"
