"""The import direction of DESIGN.md, checked on the source.

management → pools → transport → engine → integration → pipeline → core → config
→ http/errors: a package imports only the layers below it. ``modules/`` and
``handlers/`` (the features) import only core, config, providers and errors, and
never each other: removing a feature's folder and its line in
``modules/standard.py`` removes the feature. The layers above the engine know the
features only through ``modules/standard.py`` (ids and import paths as strings).

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a
type-only import upwards is still a dependency in the wrong direction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import colonnade

SRC = Path(colonnade.__file__).resolve().parent

#: Each layer and the packages it may import, besides itself. A feature package
#: (modules, handlers) is one layer per feature folder (see _unit).
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "http": frozenset({"errors"}),
    "config": frozenset({"errors"}),
    "core": frozenset({"config", "errors", "http"}),
    "providers": frozenset({"core", "config", "errors"}),
    "modules": frozenset({"core", "config", "providers", "errors"}),
    "handlers": frozenset({"core", "config", "providers", "errors"}),
    "pipeline": frozenset({"core", "config", "errors", "http"}),
    "integration": frozenset({"pipeline", "core", "config", "errors", "http"}),
    "engine": frozenset({"integration", "pipeline", "core", "config", "errors", "http"}),
}
ALLOWED["transport"] = ALLOWED["engine"] | {"engine"}
ALLOWED["pools"] = ALLOWED["transport"] | {"transport"}
ALLOWED["management"] = ALLOWED["pools"] | {"pools"}
ALLOWED["testing"] = ALLOWED["engine"] | {"engine"}
#: The package's own module: the module-author API, and ``run``/``Server`` imported
#: from management on first use (a lazy ``__getattr__``: ``import colonnade`` stays light).
ALLOWED["__init__"] = frozenset({"core", "config", "errors", "management"})
#: colonnade.auth: the applications' API to forms authentication (over core.auth).
ALLOWED["auth"] = frozenset({"core", "config", "errors"})
ALLOWED["__main__"] = frozenset({"management"})
#: colonnade.buildinfo: which build is installed, read from files (no imports).
ALLOWED["buildinfo"] = frozenset()

#: colonnade._libc: the compiled build's C helper (system calls without ctypes),
#: which imports nothing; every layer may use it.
ALLOWED["_libc"] = frozenset()
#: Leaves every layer may import.
LEAVES = frozenset({"errors", "_libc"})

#: Layers that may read the built-in module list (never a feature itself).
READS_STANDARD = frozenset({"engine", "transport", "pools", "management", "testing"})


def _unit(module: str) -> tuple[str, str]:
    """(layer, unit) of a dotted module name under ``colonnade``: a feature folder
    is a unit of its own (``modules.compression``); a layer is one unit."""
    parts = module.split(".")[1:] or ["__init__"]
    layer = parts[0]
    if layer in ("modules", "handlers") and len(parts) > 1:
        return layer, ".".join(parts[:2])
    return layer, layer


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every ``colonnade.*`` module that ``path`` (named ``module``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, name) for line, name in found if name.split(".")[0] == "colonnade"]


def violations(root: Path) -> list[str]:
    """Each import of the tree at ``root`` (the ``colonnade`` package) that breaks
    the direction, as ``file:line: importer → imported``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"] if len(rel.parts) > 1 else list(rel.parts)
        module = ".".join(["colonnade", *parts])
        layer, unit = _unit(module)
        for line, target in _imports(path, module):
            if target == "colonnade":
                target = "colonnade.__init__"
            t_layer, t_unit = _unit(target)
            if t_unit == unit:
                continue
            if target == "colonnade.modules.standard" and layer in READS_STANDARD:
                continue
            if t_layer in LEAVES and layer != t_layer:
                continue
            if t_layer == "__init__" and "core" in ALLOWED.get(layer, frozenset()):
                continue  # the module-author API: the core's names, re-exported
            if t_layer in ALLOWED.get(layer, frozenset()) and t_layer not in (
                "modules",
                "handlers",
            ):
                continue
            where = path.relative_to(root.parent)
            out.append(f"{where}:{line}: {module} → {target}")
    return out


def test_every_package_has_a_layer() -> None:
    names = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    names -= {"__pycache__", "py"}
    assert names <= set(ALLOWED), f"no layer declared for {sorted(names - set(ALLOWED))}"


def test_imports_follow_the_layers() -> None:
    assert violations(SRC) == []


@pytest.mark.parametrize(
    ("file", "line", "needle"),
    [
        # The engine reaching up to the process model.
        (
            "engine/engine.py",
            "from colonnade.pools.config import PoolConfig\n",
            "→ colonnade.pools",
        ),
        # One feature importing another.
        (
            "modules/compression/module.py",
            "from colonnade.handlers.static.handler import StaticFileHandler\n",
            "→ colonnade.handlers.static",
        ),
        # The core importing the engine, even for types only.
        (
            "core/context.py",
            "if TYPE_CHECKING:\n    from colonnade.engine.engine import Engine\n",
            "→ colonnade.engine",
        ),
        # A layer above the engine importing a feature directly.
        (
            "pools/worker.py",
            "from colonnade.modules.http_logging.module import HttpLogging\n",
            "→ colonnade.modules.http_logging",
        ),
    ],
)
def test_a_violation_is_caught(tmp_path: Path, file: str, line: str, needle: str) -> None:
    # A copy of the tree with one wrong import added: the checker names it.
    copy = tmp_path / "colonnade"
    for path in SRC.rglob("*.py"):
        target = copy / path.relative_to(SRC)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    target = copy / file
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    found = violations(copy)
    assert len(found) == 1 and needle in found[0], found
