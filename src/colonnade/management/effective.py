"""``colonnade config show`` and ``colonnade modules`` as text.

The data comes from :mod:`colonnade.engine.effective`, which the admin API
serves too.
"""

from __future__ import annotations

from typing import Any

from colonnade.engine.effective import effective_config, handler_mappings
from colonnade.management.tables import table

__all__ = ["effective_config", "format_mappings", "handler_mappings"]


def format_mappings(rows: list[dict[str, Any]]) -> list[str]:
    """:func:`handler_mappings` as an aligned table, one line per mapping."""
    return table(
        ("#", "NAME", "PATH", "VERBS", "HANDLER", "RESOURCE", "ENTRY", "ORIGIN"),
        [
            (
                row["index"],
                row["name"] or "-",
                row["path"],
                ",".join(row["verbs"]),
                row["handler"],
                row["resource_type"],
                row["entry"],
                row["origin"],
            )
            for row in rows
        ],
    )
