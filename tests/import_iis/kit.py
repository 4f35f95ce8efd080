"""Run `colonnade import-iis` on a copy of a corpus entry and check the result."""

from __future__ import annotations

import shutil
from pathlib import Path

from colonnade.management.cli import main

CORPUS = Path(__file__).parent / "corpus"
ENTRIES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def copy_entry(name: str, to: Path) -> Path:
    """The corpus entry ``name`` copied into ``to`` (without its expected report)."""
    target = to / name
    shutil.copytree(CORPUS / name, target, ignore=shutil.ignore_patterns("expected-report.txt"))
    return target


def inputs(folder: Path) -> list[str]:
    """What to name on the command line: applicationHost.config, else the folder."""
    apphost = folder / "applicationHost.config"
    return [str(apphost)] if apphost.exists() else [str(folder)]


def report_of(output: str) -> str:
    """The report part of the command's output (without the `wrote` lines)."""
    return "".join(line for line in output.splitlines(True) if not line.startswith("wrote "))


def run(argv: list[str]) -> int:
    """``colonnade import-iis ARGV``."""
    return main(["import-iis", *argv])
