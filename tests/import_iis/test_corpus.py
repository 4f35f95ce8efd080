"""Real-world web.config files (corpus/SOURCES.md): the report each one gets is
the expected one, and `colonnade check` accepts what the importer wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from colonnade.management.cli import main
from tests.import_iis.kit import (
    CORPUS,
    ENTRIES,
    copy_entry,
    inputs,
    provide_certificates,
    report_of,
    run,
)


@pytest.mark.parametrize("name", ENTRIES)
def test_report_is_the_expected_one(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_entry(name, tmp_path)
    assert run(inputs(folder)) == 0
    golden = CORPUS / name / "expected-report.txt"
    report = report_of(capsys.readouterr().out)
    if os.environ.get("COLONNADE_UPDATE_GOLDEN"):  # after a deliberate change; review the diff
        golden.write_text(report)
    assert report == golden.read_text()


@pytest.mark.parametrize("name", ENTRIES)
def test_check_accepts_the_output(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_entry(name, tmp_path)
    assert run(inputs(folder)) == 0
    capsys.readouterr()
    # An https binding's certificate is exported from the Windows store by hand:
    # here, a test CA's certificate where the importer said it must be put.
    provide_certificates(folder / "colonnade.toml")
    assert main(["check", "-c", str(folder / "colonnade.toml")]) == 0, capsys.readouterr().err
    assert "configuration OK" in capsys.readouterr().out


def test_every_entry_has_its_source_noted() -> None:
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in ENTRIES:
        assert f"`{name}/" in sources
