"""Write TOML with a comment above each table naming the IIS element it came from.

The importer builds plain data (tables of strings, numbers, booleans, lists
and inline tables) grouped in :class:`Block`s; this module renders them. The
output is parsed back with ``tomllib`` and compared with the data before it is
returned, so a rendering mistake is an exception here, never a broken file.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class Block:
    """One TOML table (``[a.b]``) or array-of-tables entry (``[[a.b]]``)."""

    header: str
    """Dotted, already quoted where needed; empty for the top-level table."""
    array: bool = False
    values: list[tuple[str, Any, str]] = field(default_factory=list)
    """(key, value, source comment or "")."""
    source: str = ""

    def set(self, key: str, value: Any, source: str = "") -> None:
        """Set ``key`` (replacing an earlier value of the same key)."""
        self.values = [v for v in self.values if v[0] != key]
        self.values.append((key, value, source))


def key(name: str) -> str:
    """A TOML key: bare where it may be, quoted otherwise."""
    return name if _BARE.match(name) else string(name)


def string(value: str) -> str:
    """A TOML string: literal ('...') for text with backslashes (regular
    expressions read as written), basic ("...") otherwise."""
    if "\\" in value and "'" not in value and not any(ord(c) < 32 or c == "\x7f" for c in value):
        return f"'{value}'"
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\x7f", "\\u007f")


def value(item: Any) -> str:
    """Render one value inline."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return repr(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(v) for v in item) + "]"
    if isinstance(item, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + " }"
    raise TypeError(f"cannot write {type(item).__name__} as TOML")


def render(blocks: list[Block], title: str) -> str:
    """The document: ``title`` as a comment, then every block in order."""
    out = [f"# {line}" if line else "#" for line in title.splitlines()]
    for block in blocks:
        out.append("")
        if block.source:
            out.append(f"# from {block.source}")
        if block.header:
            out.append(f"[[{block.header}]]" if block.array else f"[{block.header}]")
        for name, item, source in block.values:
            if source:
                out.append(f"# from {source}")
            if isinstance(item, list) and item and all(isinstance(v, dict) for v in item):
                # Lists of tables one per line: a rule's conditions stay readable.
                out.append(f"{key(name)} = [")
                out.extend(f"  {value(v)}," for v in item)
                out.append("]")
            else:
                out.append(f"{key(name)} = {value(item)}")
    text = "\n".join(out) + "\n"
    tomllib.loads(text)  # a rendering mistake fails here, not in `colonnade check`
    return text
