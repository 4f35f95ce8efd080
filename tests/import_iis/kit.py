"""Run `colonnade import-iis` on a copy of a corpus entry and check the result."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import trustme

from colonnade.management.cli import main
from tests.support.tls import issue

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


def provide_certificates(server_file: Path, ca: trustme.CA | None = None) -> list[Path]:
    """The PEM files the imported ``[sites.tls]`` tables name, made by ``ca`` (a new
    test CA when None), a combined certificate and key per host; the files written."""
    config = tomllib.loads(server_file.read_text())
    ca = ca or trustme.CA()
    written = []
    for site in config.get("sites", []):
        tls = site.get("tls", {})
        hosts = site.get("host_names") or ["localhost"]
        if "certificate" in tls:
            path = server_file.parent / tls["certificate"]
            written.append(issue(ca, path.parent, path.stem, *hosts, combined=True).cert)
        if "certificate_store" in tls:
            store = server_file.parent / tls["certificate_store"]
            written.extend(issue(ca, store, host, host, combined=True).cert for host in hosts)
    return written
