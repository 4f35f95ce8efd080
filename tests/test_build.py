"""The optional mypyc build (setup.py): compiled modules only ever in an install.

A compiled module next to its source in ``src/`` would be imported instead of the
``.py`` (extension modules come first) and silently go stale with the next edit.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import tomllib
from pathlib import Path

import pytest

import colonnade

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "colonnade"
# Every ending CPython imports an extension module from, and the generic ones.
EXTENSIONS = (*importlib.machinery.EXTENSION_SUFFIXES, ".so", ".pyd")


def compiled_modules() -> list[str]:
    """The modules ``COLONNADE_MYPYC=1`` compiles, as pyproject.toml lists them."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        modules: list[str] = tomllib.load(f)["tool"]["colonnade"]["mypyc"]["modules"]
    return modules


def test_no_compiled_module_in_the_sources() -> None:
    if not SRC.is_dir():
        pytest.skip("not a source checkout")
    found = sorted(str(p.relative_to(ROOT)) for p in SRC.rglob("*") if p.name.endswith(EXTENSIONS))
    assert not found, f"compiled modules in src/ shadow their sources: {found} (delete them)"


def test_listed_modules_exist() -> None:
    if not SRC.is_dir():
        pytest.skip("not a source checkout")
    for name in compiled_modules():
        assert (SRC.parent / (name.replace(".", "/") + ".py")).is_file(), name


@pytest.mark.skipif(
    os.environ.get("COLONNADE_EXPECT_COMPILED") != "1",
    reason="COLONNADE_EXPECT_COMPILED=1 only (a COLONNADE_MYPYC=1 install)",
)
def test_listed_modules_are_compiled() -> None:
    package = Path(colonnade.__file__).resolve().parent
    assert package != SRC, "colonnade is imported from src/, not from the compiled install"
    for name in compiled_modules():
        module = importlib.import_module(name)
        assert module.__file__ is not None and module.__file__.endswith(EXTENSIONS), (
            f"{name} is not compiled: {module.__file__}"
        )
