"""The JSON lines writer: one object per line, the fields' JSON keys and typed values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from colonnade.modules.http_logging.fields import Field


class JsonWriter:
    """``format = "json"``: ``{"date": ..., "sc_status": 200, ...}`` per line, no header."""

    @staticmethod
    def value(field: Field) -> str:
        """The field's JSON render expression."""
        return field.json

    @staticmethod
    def names() -> dict[str, Any]:
        """The encoder: a batch is one ``encode_lines`` call."""
        return {"encode_lines": msgspec.json.Encoder().encode_lines}

    @staticmethod
    def render_source(lines: str, values: Sequence[str], fields: Sequence[Field]) -> str:
        """``render(batch)``: one object per ``lines`` iteration, each ending in ``\\n``."""
        # Keys are literals (repr of names the section validated) so the dict is
        # built with constant keys.
        items = ", ".join(f"{f.key!r}: {v}" for f, v in zip(fields, values, strict=True))
        return f"def render(batch):\n    return encode_lines([{{{items}}} {lines}]).decode()\n"

    @staticmethod
    def directive(fields: Sequence[str]) -> str | None:
        """None: a JSON log has no directives."""
        return None

    @staticmethod
    def header(directive: str) -> str:
        """Never asked for (no directive); empty."""
        return ""
