"""The configuration reference is generated from the schemas: it must match them."""

from __future__ import annotations

from pathlib import Path

from colonnade.core.registry import Registry
from colonnade.management.docgen import render
from colonnade.modules.standard import BUILTIN

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_configuration_reference_is_current() -> None:
    expected = render(Registry.standard(BUILTIN, with_entry_points=False))
    assert DOC.read_text() == expected, "docs/configuration.md is stale: run `make docs`"


def test_every_setting_is_explained() -> None:
    text = render(Registry.standard(BUILTIN, with_entry_points=False))
    unexplained = [line for line in text.splitlines() if line.endswith("|  |")]
    assert unexplained == []
