"""The optional mypyc build (setup.py): compiled modules only ever in an install.

A compiled module next to its source in ``src/`` would be imported instead of the
``.py`` (extension modules come first) and silently go stale with the next edit.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

import colonnade
from colonnade import buildinfo

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


def load_backend() -> Any:
    """build_backend/colonnade_build.py, the build backend pyproject.toml names."""
    spec = importlib.util.spec_from_file_location(
        "colonnade_build", ROOT / "build_backend" / "colonnade_build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_checkout() -> Path:
    if not (ROOT / "build_backend").is_dir():
        pytest.skip("not a source checkout")
    return ROOT


def test_the_source_distribution_lists_every_c_source() -> None:
    """Each hand-written C source (the extensions setup.py builds beside mypyc's) is
    named in MANIFEST.in, so an sdist carries it: without it a wheel built from the
    sdist fails to compile and falls back to pure Python, which only the slow
    wheel check (make wheel-check) would notice."""
    root = source_checkout()
    listed = {
        line.split(None, 1)[1].strip()
        for line in (root / "MANIFEST.in").read_text().splitlines()
        if line.startswith("include ")
    }
    sources = {str(path.relative_to(root)) for path in (root / "src").rglob("*.c")}
    setup = (root / "setup.py").read_text()
    assert sources, "no C sources found"
    assert sources <= listed, sorted(sources - listed)
    # And each is one setup.py builds.
    assert all(f'"{source}"' in setup for source in sources), sources


def test_version_names_the_build() -> None:
    """``colonnade --version`` says which build runs: the count of compiled modules
    in the compiled install, pure Python in the editable one."""
    out = subprocess.run(
        [sys.executable, "-c", "from colonnade.management.cli import main; main(['--version'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    if os.environ.get("COLONNADE_EXPECT_COMPILED") == "1":
        # mypyc's group library sits outside the package: one extension per listed module.
        expected = f"(compiled: {len(compiled_modules())} modules)"
    else:
        expected = "(pure Python)"
    assert out.stdout.strip() == f"colonnade {colonnade.__version__} {expected}"


def test_describe_reads_the_installed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "colonnade"
    (package / "engine").mkdir(parents=True)
    monkeypatch.setattr(buildinfo, "PACKAGE", package)
    monkeypatch.setattr(buildinfo, "PURE_REASON", package / "PURE_BUILD")
    assert buildinfo.describe() == "pure Python"
    (package / "PURE_BUILD").write_text("no C compiler (cc)\n")
    assert buildinfo.describe() == "pure Python: no C compiler (cc)"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    # A compiled module: its extension and its source (mypyc installs both).
    for module in (package / "engine" / "engine", package / "buildinfo"):
        module.with_name(module.name + suffix).write_bytes(b"")
        module.with_name(module.name + ".py").write_text("")
    # A C helper of the compiled build (no source beside it) is no compiled module.
    (package / f"_libc{suffix}").write_bytes(b"")
    assert buildinfo.compiled_modules() == ["colonnade.buildinfo", "colonnade.engine.engine"]
    assert buildinfo.describe() == "compiled: 2 modules"


def test_a_wheel_asks_for_mypy_only_when_it_can_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    source_checkout()
    backend = load_backend()
    # setuptools' own answer (it runs setup.py): not what this test is about.
    monkeypatch.setattr(backend._setuptools, "get_requires_for_build_wheel", lambda _: ["wheel"])
    monkeypatch.delenv("COLONNADE_MYPYC", raising=False)
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert backend.cannot_compile() == "no C compiler (/nonexistent/cc)"
    assert backend.get_requires_for_build_wheel() == ["wheel"]
    monkeypatch.setenv("COLONNADE_MYPYC", "1")  # compiled or fail: setup.py fails, then
    assert backend.MYPYC_REQUIREMENT in backend.get_requires_for_build_wheel()
    monkeypatch.delenv("CC")
    if backend.cannot_compile() is not None:
        pytest.skip(f"this machine cannot compile: {backend.cannot_compile()}")
    monkeypatch.setenv("COLONNADE_MYPYC", "0")
    assert backend.get_requires_for_build_wheel() == ["wheel"]
    monkeypatch.delenv("COLONNADE_MYPYC")
    requires = backend.get_requires_for_build_wheel()
    # mypy type-checks what the compiled modules import: the runtime dependencies too.
    assert requires[:2] == ["wheel", backend.MYPYC_REQUIREMENT]
    assert any(r.startswith("msgspec") for r in requires)


def copy_tree(target: Path) -> Path:
    """The files a build reads, copied: a build writes build/ and egg-info beside them."""
    root = source_checkout()
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy(root / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", *(f"*{s}" for s in EXTENSIONS))
    shutil.copytree(root / "build_backend", target / "build_backend", ignore=ignore)
    shutil.copytree(root / "src", target / "src", ignore=ignore)
    return target


def pip_wheel(tmp_path: Path, *, cc: str) -> subprocess.CompletedProcess[str]:
    """``pip wheel`` (isolated, verbose) of a copy of the tree, into tmp_path/dist,
    with ``CC=cc`` and COLONNADE_MYPYC unset: the default, compiled when it can."""
    (tmp_path / "tree").mkdir()
    tree = copy_tree(tmp_path / "tree")
    env = {k: v for k, v in os.environ.items() if k != "COLONNADE_MYPYC"}
    env["CC"] = cc
    command = ["pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), "."]
    out = subprocess.run(
        [sys.executable, "-m", *command], cwd=tree, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def wheel_names(folder: Path) -> list[str]:
    (wheel,) = folder.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_without_a_compiler_a_wheel_is_pure_and_says_why(tmp_path: Path) -> None:
    """No C compiler: the build falls back to pure Python in one line, and the wheel
    records why (``colonnade --version`` shows it)."""
    out = pip_wheel(tmp_path, cc="/nonexistent/cc")
    lines = [
        line for line in (out.stdout + out.stderr).splitlines() if "colonnade: building" in line
    ]
    assert [line.strip() for line in lines] == [
        "colonnade: building pure Python (not compiled): no C compiler (/nonexistent/cc)"
    ]
    names = wheel_names(tmp_path / "dist")
    assert not [n for n in names if n.endswith(EXTENSIONS)]
    assert "colonnade/PURE_BUILD" in names
    assert "colonnade/engine/engine.py" in names
    assert next((tmp_path / "dist").glob("*.whl")).name.endswith("-py3-none-any.whl")


@pytest.mark.wheel_build
def test_python_m_build_wheel_carries_the_compiled_modules(tmp_path: Path) -> None:
    """``python -m build`` (an sdist, then a wheel from it, isolated): every listed
    module in the wheel as a C extension, with mypyc's group library (make wheel-check:
    a few minutes, as it compiles)."""
    root = source_checkout()
    env = {k: v for k, v in os.environ.items() if k not in ("COLONNADE_MYPYC", "CC")}
    out = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(root)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "building pure Python" not in out.stdout + out.stderr
    names = wheel_names(tmp_path)
    compiled = {n.split(".cpython")[0].replace("/", ".") for n in names if n.endswith(EXTENSIONS)}
    assert set(compiled_modules()) <= compiled
    assert any(n.startswith("colonnade__mypyc") for n in names)
    assert "colonnade/PURE_BUILD" not in names
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as t:
        assert any(n.endswith("build_backend/colonnade_build.py") for n in t.getnames())


@pytest.mark.wheel_build
def test_a_failing_c_compiler_falls_back_to_pure_python(tmp_path: Path) -> None:
    """mypyc runs, the C compiler fails (``CC=false``): no half-built extension is
    left in the wheel, which is pure Python and says why (make wheel-check)."""
    out = pip_wheel(tmp_path, cc=shutil.which("false") or "/bin/false")
    assert "colonnade: building pure Python (not compiled): the C compiler failed" in (
        out.stdout + out.stderr
    )
    names = wheel_names(tmp_path / "dist")
    assert not [n for n in names if n.endswith(EXTENSIONS)]
    assert "colonnade/PURE_BUILD" in names
