"""Colonnade's build backend: setuptools' own, asking for mypyc when it can compile.

A regular install (``pip install .``, ``python -m build``) compiles the hot path
with mypyc whenever this machine can build a C extension (setup.py decides and
falls back to pure Python with one line saying why). An isolated build only has
what the backend asks for, so a wheel's build requirements add mypy and the
runtime dependencies (mypy type-checks what the compiled modules import) there,
and only there: an editable install stays pure (setup.py's reasons), so it asks
for nothing more, and ``COLONNADE_MYPYC=0`` or a machine with no compiler skips
the download.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401 - the hooks we do not change
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

HERE = Path(__file__).resolve().parent.parent
MYPYC_REQUIREMENT = "mypy>=2.0"


def mode() -> str:
    """``COLONNADE_MYPYC``: "1" compiled or fail, "0" pure, else compiled when possible."""
    value = os.environ.get("COLONNADE_MYPYC", "")
    return value if value in ("0", "1") else "auto"


def cannot_compile() -> str | None:
    """Why no C extension can be built here (no compiler, no Python headers), or None."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0] if cc else 'CC is empty'})"
    include = sysconfig.get_path("include")
    if not (Path(include) / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h: the python3-dev package)"
    return None


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements, plus mypy and the runtime dependencies to compile."""
    requires: list[str] = _setuptools.get_requires_for_build_wheel(config_settings)
    if mode() == "0" or (mode() == "auto" and cannot_compile() is not None):
        return requires  # setup.py says why it builds pure Python
    with open(HERE / "pyproject.toml", "rb") as f:
        dependencies: list[str] = tomllib.load(f)["project"]["dependencies"]
    return [*requires, MYPYC_REQUIREMENT, *dependencies]
