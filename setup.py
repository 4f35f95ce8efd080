"""Optional mypyc build: ``COLONNADE_MYPYC=1 pip install .`` compiles the hottest
per-request modules to C extensions; without the variable the package is pure
Python, exactly as pyproject.toml describes it.

mypyc (part of mypy, already a dev dependency) compiles our own type-annotated
Python: the modules listed in ``[tool.colonnade.mypyc]`` of pyproject.toml. The
compiled install behaves the same and costs fewer instructions per request.

Only a regular (non-editable) install is compiled: an editable one imports from
``src/``, where a compiled ``.so`` would shadow its ``.py`` and go stale with the
first edit, so ``COLONNADE_MYPYC=1`` with an editable install is an error.

Both ways of building work: ``pip install --no-build-isolation .`` from a venv
that has mypy and the runtime dependencies (what ``make compiled`` does), or an
isolated build, for which mypy and the runtime dependencies (mypy follows the
compiled modules' imports) are added to the build requirements here.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
MYPYC_REQUIREMENT = "mypy>=2.0"
BUILD_COMMANDS = {"bdist_wheel", "build", "build_ext", "install"}


def _pyproject() -> dict[str, Any]:
    with open(HERE / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _refuse_editable() -> None:
    if {"editable_wheel", "develop"} & set(sys.argv[1:]):
        raise SystemExit(
            "COLONNADE_MYPYC=1 builds a regular install only: an editable install "
            "imports from src/, where compiled modules would shadow the sources. "
            "Use `COLONNADE_MYPYC=1 pip install .` (see `make compiled`)."
        )


class _BuildExt(build_ext):
    """build_ext that never writes extensions into the source tree."""

    def run(self) -> None:
        if self.inplace or getattr(self, "editable_mode", False):
            raise SystemExit("refusing to build compiled modules into src/ (in place)")
        super().run()


def _clean_build_lib() -> None:
    """Drop what earlier builds left in build/lib*: bdist_wheel packs all of it, so the
    extension of a module an earlier build compiled and this one does not would
    ship too, shadowing its ``.py``."""
    for lib in HERE.glob("build/lib*"):
        shutil.rmtree(lib)


def _options() -> dict[str, Any]:
    building = bool(BUILD_COMMANDS & set(sys.argv[1:]))
    if building:
        _clean_build_lib()
    if os.environ.get("COLONNADE_MYPYC") != "1":
        return {}
    _refuse_editable()
    pyproject = _pyproject()
    try:
        from mypyc.build import mypycify
    except ImportError:
        if building:
            # Never a silently pure build when a compiled one was asked for.
            raise SystemExit(f"COLONNADE_MYPYC=1 needs {MYPYC_REQUIREMENT} to build") from None
        # PEP 517 asks for the build requirements first (an isolated build then
        # installs these): mypy, and what the compiled modules import, for its
        # type check. A build without isolation must have them already.
        return {"setup_requires": [MYPYC_REQUIREMENT, *pyproject["project"]["dependencies"]]}
    if not building:
        return {}  # metadata only: no need to run mypyc for it
    modules: list[str] = pyproject["tool"]["colonnade"]["mypyc"]["modules"]
    # Relative paths: mypyc derives module names and build paths from them.
    os.chdir(HERE)
    paths = ["src/" + module.replace(".", "/") + ".py" for module in modules]
    return {
        "ext_modules": mypycify(paths, opt_level="3", group_name="colonnade"),
        "cmdclass": {"build_ext": _BuildExt},
    }


setup(**_options())
