"""Golden trees: a server file plus web.toml files → the effective settings per URL.

Each folder of ``golden/`` is a config tree with ``queries.json`` (the "site path"
pairs to resolve) and ``expected.json``: per query the application, the module
list, the handler and every setting that some file set (with the file, relative
to the case folder), or the error the tree must be refused with. Run with
``UPDATE_GOLDEN=1`` to rewrite the expected files, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError
from colonnade.management.effective import effective_config
from colonnade.modules.standard import BUILTIN

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def resolve(case: Path) -> dict[str, Any]:
    def rel(text: str) -> str:
        # Error texts name files relative to the working folder where they can.
        return text.replace(str(case) + "/", "").replace(os.path.relpath(case) + "/", "")

    try:
        engine = Engine(load_file(str(case / "colonnade.toml")), Registry.standard(BUILTIN))
    except ConfigError as exc:
        return {"error": rel(f"{exc.file}:{exc.line}: {exc.key}: {exc.message}")}
    queries = json.loads((case / "queries.json").read_text())["queries"]
    out: dict[str, Any] = {}
    if engine.broken:
        # A web.toml that cannot be used answers 500.19 for its subtree alone.
        out["broken"] = [rel(str(b.error)) for b in engine.broken]
    for query in queries:
        site, path = query.split(" ", 1)
        found = effective_config(engine, site, path)
        settings = {
            f"{section}.{key}": {"value": row["value"], "from": rel(row["from"])}
            for section, rows in found["sections"].items()
            for key, row in rows.items()
            if row["from"] != "(default)"
        }
        out[query] = {
            "application": found["application"],
            "modules": found["modules"],
            "handler": found["handler"],
            "set": settings,
        }
        if "broken" in found:
            out[query]["broken"] = rel(found["broken"])
    return out


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    case = GOLDEN / name
    got = resolve(case)
    expected_file = case / "expected.json"
    if os.environ.get("UPDATE_GOLDEN") or not expected_file.exists():
        expected_file.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_file.read_text())
