"""The mypyc build: a regular install compiles the hottest per-request modules to C
extensions whenever this machine can (a C compiler and the Python headers), and is
pure Python otherwise, saying so in one line.

mypyc (part of mypy) compiles our own type-annotated Python: the modules listed in
``[tool.colonnade.mypyc]`` of pyproject.toml. The compiled install behaves the same
and costs fewer instructions per request. ``COLONNADE_MYPYC`` chooses:

- unset: compiled when possible, else pure Python with one line saying why (no
  compiler, no headers, no mypyc in a build without isolation, or mypyc failing);
- ``1``: compiled, or the build fails (``make compiled``: never silently pure);
- ``0``: pure Python.

Only a regular (non-editable) install is compiled: an editable one imports from
``src/``, where a compiled ``.so`` would shadow its ``.py`` and go stale with the
first edit, so an editable install is always pure (and ``COLONNADE_MYPYC=1`` with
one is an error).

Both ways of building work: an isolated build (``pip install .``, ``python -m
build``), for which build_backend/colonnade_build.py asks for mypy and the runtime
dependencies (mypy follows the compiled modules' imports), or ``pip install
--no-build-isolation .`` from a venv that has them (what ``make compiled`` does).
Which build an install holds: ``colonnade --version``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "build_backend"))
from colonnade_build import MYPYC_REQUIREMENT, cannot_compile, mode  # noqa: E402

BUILD_COMMANDS = {"bdist_wheel", "build", "build_ext", "install"}
#: Written into the built package when it is pure Python by fallback: the reason,
#: for ``colonnade --version`` (pip hides a build's output unless asked with -v).
PURE_REASON = "colonnade/PURE_BUILD"

#: Why this build is pure Python though compiling was wanted; None: not by fallback.
_fallback: str | None = None


def _pyproject() -> dict[str, Any]:
    with open(HERE / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _editable() -> bool:
    return bool({"editable_wheel", "develop"} & set(sys.argv[1:]))


def _pure(reason: str) -> dict[str, Any]:
    """Build pure Python, telling why in one line (``COLONNADE_MYPYC=1``: fail instead)."""
    global _fallback
    if mode() == "1":
        # Never a silently pure build when a compiled one was asked for.
        raise SystemExit(f"COLONNADE_MYPYC=1: cannot build the compiled modules: {reason}")
    _fallback = reason
    print(f"colonnade: building pure Python (not compiled): {reason}", file=sys.stderr)
    return {"cmdclass": {"build_py": _BuildPy}}


class _BuildPy(build_py):
    """build_py that records in the package why it is pure Python, if by fallback."""

    def run(self) -> None:
        super().run()
        if _fallback is not None and not self.editable_mode:
            target = Path(self.build_lib) / PURE_REASON
            target.write_text(_fallback + "\n", encoding="utf-8")


class _BuildExt(build_ext):
    """build_ext that never writes extensions into the source tree, and falls back to
    pure Python when compiling fails (unless ``COLONNADE_MYPYC=1``)."""

    def run(self) -> None:
        if self.inplace or getattr(self, "editable_mode", False):
            raise SystemExit("refusing to build compiled modules into src/ (in place)")
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError: the compiler's own message
            if mode() == "1":
                raise
            # A half-built group would break imports: no extension at all, then.
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []
            _pure(f"the C compiler failed ({type(exc).__name__}: {exc})")
            Path(self.build_lib, PURE_REASON).write_text(f"{_fallback}\n", encoding="utf-8")


def _clean_build_lib() -> None:
    """Drop what earlier builds left in build/lib*: bdist_wheel packs all of it, so the
    extension of a module an earlier build compiled and this one does not would
    ship too, shadowing its ``.py``."""
    for lib in HERE.glob("build/lib*"):
        shutil.rmtree(lib)


def _path(module: str) -> str:
    return "src/" + module.replace(".", "/") + ".py"


def _libraries(modules: list[str], libraries: dict[str, list[str]]) -> list[tuple[list[str], str]]:
    """The shared libraries to build, as mypyc's ``separate`` groups: each set of
    ``[tool.colonnade.mypyc.libraries]`` (its listed modules only), and "colonnade"
    with every other module."""
    grouped = {m for members in libraries.values() for m in members}
    groups = [([_path(m) for m in modules if m not in grouped], "colonnade")]
    for name, members in libraries.items():
        paths = [_path(m) for m in members if m in modules]
        if paths:
            groups.append((paths, name))
    return groups


def _relr() -> list[str]:
    """``-z pack-relative-relocs`` (DT_RELR: the relative relocations as a bitmap,
    ~8,900 of them in the main library) where the linker takes it and this
    machine's C library reads it (glibc 2.36+; a library linked so does not load
    on an older one)."""
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")  # "glibc 2.36"
        if name != "glibc" or tuple(map(int, version.split(".")[:2])) < (2, 36):
            return []
    except (AttributeError, OSError, ValueError, TypeError):  # not glibc
        return []
    flag = "-Wl,-z,pack-relative-relocs"
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder, "probe.c")
        source.write_text("int probe(void) { return 0; }\n", encoding="utf-8")
        command = [*cc, "-shared", "-fPIC", flag, "-o", str(Path(folder, "probe.so")), str(source)]
        try:
            linked = subprocess.run(command, capture_output=True, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return []
    return [flag] if linked.returncode == 0 else []


def _options() -> dict[str, Any]:
    building = bool(BUILD_COMMANDS & set(sys.argv[1:]))
    if building:
        _clean_build_lib()
    if mode() == "1" and _editable():
        raise SystemExit(
            "COLONNADE_MYPYC=1 builds a regular install only: an editable install "
            "imports from src/, where compiled modules would shadow the sources. "
            "Use `COLONNADE_MYPYC=1 pip install .` (see `make compiled`)."
        )
    if not building or _editable():
        return {}  # metadata, an sdist, or an editable install: pure Python
    if mode() == "0":
        print("colonnade: building pure Python (COLONNADE_MYPYC=0)", file=sys.stderr)
        return {}
    why = cannot_compile()
    if why is not None:
        return _pure(why)
    try:
        from mypyc.build import mypycify
    except ImportError:
        return _pure(f"no mypyc in this build environment ({MYPYC_REQUIREMENT})")
    table = _pyproject()["tool"]["colonnade"]["mypyc"]
    modules: list[str] = table["modules"]
    # Relative paths: mypyc derives module names and build paths from them.
    os.chdir(HERE)
    try:
        extensions = mypycify(
            [_path(module) for module in modules],
            opt_level="3",
            separate=_libraries(modules, table.get("libraries", {})),
        )
    except (Exception, SystemExit) as exc:  # mypyc reports a failed type check by exiting
        if mode() == "1":
            raise
        return _pure(f"mypyc failed ({exc})")
    # The worker's two C library calls at start-up (prctl, malloc_trim) without
    # ctypes; the pure build makes them through ctypes (pools/sandbox.py).
    extensions.append(Extension("colonnade._libc", ["src/colonnade/_libc.c"]))
    # The proxy's field-line loop in C (handlers/proxy/_fields.c says why); the pure
    # build runs it in Python.
    extensions.append(
        Extension("colonnade.handlers.proxy._fields", ["src/colonnade/handlers/proxy/_fields.c"])
    )
    # A feed that is one plain request head read in C (http/_head.c says which);
    # the pure build hands every feed to llhttp.
    extensions.append(Extension("colonnade.http._head", ["src/colonnade/http/_head.c"]))
    # A connection's task's reusable wait in C (core/_taskwait.c says why): the
    # client connection's between requests and the upstream connection's for bytes;
    # the pure build's are Python (core/taskwait.py's TaskWait).
    extensions.append(Extension("colonnade.core._taskwait", ["src/colonnade/core/_taskwait.c"]))
    if sys.platform.startswith("linux"):
        # Export PyInit_* only (build_backend/exports.map says why), and pack the
        # relative relocations where the toolchain can: the main library's loader
        # tables, resident in every worker, shrink from 476 KiB to ~240, then ~20.
        flags = [f"-Wl,--version-script={HERE / 'build_backend' / 'exports.map'}", *_relr()]
        for extension in extensions:
            extension.extra_link_args = [*(extension.extra_link_args or []), *flags]
    return {"ext_modules": extensions, "cmdclass": {"build_ext": _BuildExt, "build_py": _BuildPy}}


setup(**_options())
