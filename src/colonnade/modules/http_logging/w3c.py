"""The W3C extended log writer: escaping, the directive block, the rendering loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from colonnade import __version__
from colonnade.modules.http_logging.fields import Field

#: Entries a memo holds before it starts over (the memos of :mod:`.w3cline` too).
MEMO_MAX = 4096


def _escape_unprintable(char: str) -> str:
    if char.isprintable():
        return char
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def w3c_escape(value: str) -> str:
    """A W3C field value: ``-`` when empty, spaces as ``+``, control characters %XX."""
    if not value:
        return "-"
    if " " in value:
        value = value.replace(" ", "+")
    if not value.isprintable():
        # A CR, LF (or U+2028...) from a decoded URL or header must not start a
        # forged line; this loop runs only for such rare values.
        value = "".join([_escape_unprintable(char) for char in value])
    return value


def escape_bytes(value: bytes | None) -> str:
    """A header value or query as a W3C field: ``-`` when missing or empty."""
    return w3c_escape(value.decode("latin-1")) if value else "-"


class _Memo(dict[Any, str]):
    """Escaped forms of recurring values (paths, user agents): one dict hit per line.

    A miss escapes the value and keeps it; the memo is emptied when it reaches
    ``MEMO_MAX`` entries, so hostile unique values cannot grow it without bound.
    """

    def __init__(self, escape: Callable[[Any], str]) -> None:
        super().__init__()
        self.escape = escape

    def __missing__(self, value: Any) -> str:
        if len(self) >= MEMO_MAX:
            self.clear()
        escaped = self[value] = self.escape(value)
        return escaped


class W3cWriter:
    """``format = "w3c"``: space-separated values under a ``#Fields`` directive."""

    @staticmethod
    def value(field: Field) -> str:
        """The field's W3C render expression."""
        return field.w3c

    @staticmethod
    def names() -> dict[str, Any]:
        """Fresh escape memos for one compiled field list."""
        return {"escs": _Memo(w3c_escape), "escb": _Memo(escape_bytes), "nums": _Memo(str)}

    @staticmethod
    def render_source(lines: str, values: Sequence[str], fields: Sequence[Field]) -> str:
        """``render(batch)``: one text line per ``lines`` iteration, each ending in ``\\n``."""
        return (
            "def render(batch):\n"
            "    out = []\n"
            "    append = out.append\n"
            f"    {lines}:\n"
            f'        append(" ".join(({", ".join(values)},)))\n'
            '    append("")\n'
            '    return "\\n".join(out)\n'
        )

    @staticmethod
    def directive(fields: Sequence[str]) -> str | None:
        """The ``#Fields`` line of ``fields``."""
        return "#Fields: " + " ".join(fields)

    @staticmethod
    def header(directive: str) -> str:
        """The directive block that starts a log (or a change of fields) now."""
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        return f"#Software: Colonnade {__version__}\n#Version: 1.0\n#Date: {now}\n{directive}\n"
