"""``colonnade import-iis``: IIS ``applicationHost.config`` / ``web.config`` → Colonnade.

``xmlread`` reads the XML safely with line numbers; ``convert`` holds one
converter per IIS section; ``importer`` assembles the server file and the
``web.toml`` files (``tomlwrite`` renders them with comments naming each source
element); ``report`` says what became of every element.
"""

from __future__ import annotations

import sys

from colonnade.management.import_iis.importer import ImportFailedError, run_import, write

__all__ = ["main"]


def main(
    paths: list[str],
    out: str | None,
    force: bool,
    strict: bool,
    path_map: list[str],
    cert_dir: str = "certs",
) -> int:
    """Run the import; print the report. Exit 0, 1 (``--strict`` and something not
    converted) or 2 (a fatal error: nothing written)."""
    try:
        outputs, report = run_import(paths, out, force, path_map, cert_dir)
    except ImportFailedError as exc:
        print(f"colonnade: import-iis: {exc}", file=sys.stderr)
        return 2
    for path in write(outputs):
        print(f"wrote {path}")
    sys.stdout.write(report.render())
    return 1 if strict and report.not_converted else 0
