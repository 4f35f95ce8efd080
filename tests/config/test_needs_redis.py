"""``colonnade check`` refuses a module set to keep its state in Redis (session
state, the output cache's shared tier, dynamic IP restrictions) where the server
file has no ``[redis]`` table, naming the file, line and key that chose Redis:
in the server file's section, in a ``[[locations]]`` entry, in a ``web.toml``."""

from __future__ import annotations

from pathlib import Path

import pytest

from colonnade.management.cli import main

MODULES = '["state.session", "cache.output", "security.dynamic_ip", "handler.static"]'

SERVER = f"""[server]
modules = {MODULES}

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:1"]
root = "www"

[[sites.applications]]
path = "/shop"
root = "shop"

[[locations]]
path = "/shop"
session_state = {{ provider = "redis" }}

[dynamic_ip_security]
store = "redis"

[session_state]
timeout = 30
"""

NEEDS = '"redis" needs a [redis] table in the server file (where Redis is)'


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    (tmp_path / "shop").mkdir()
    (tmp_path / "www" / "web.toml").write_text(
        '[output_cache]\npolicy = "dont_cache"\nstore = "redis"\n'
    )
    config = tmp_path / "colonnade.toml"
    config.write_text(SERVER)
    return config


def test_every_place_that_chose_redis_is_named(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree.parent)
    assert main(["check", "-c", "colonnade.toml"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"colonnade: colonnade.toml:15: locations[0].session_state.provider: {NEEDS}",
        f"colonnade: colonnade.toml:18: dynamic_ip_security.store: {NEEDS}",
        f"colonnade: www/web.toml:3: output_cache.store: {NEEDS}",
    ]


def test_with_a_redis_table_it_is_fine(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree.write_text(tree.read_text() + '\n[redis]\nurl = "redis://127.0.0.1:1/0"\n')
    assert main(["check", "-c", str(tree)]) == 0, capsys.readouterr().err
    assert "configuration OK" in capsys.readouterr().out


def test_the_memory_stores_need_no_redis_table(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree.write_text(
        tree.read_text()
        .replace('{ provider = "redis" }', '{ provider = "memory" }')
        .replace('store = "redis"', 'store = "shared_memory"')
    )
    (tree.parent / "www" / "web.toml").write_text('[output_cache]\nstore = "memory"\n')
    assert main(["check", "-c", str(tree)]) == 0, capsys.readouterr().err
