"""``COLONNADE_CONTROL`` names the master for every command that asks one, as it
does for ``serve``: the command line wins over it, it wins over the server file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from colonnade.management import cli

from .conftest import Master

pytestmark = pytest.mark.e2e


def test_the_environment_names_the_master(
    start_master: Callable[..., Master],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    master = start_master({"default": {"start": "always"}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLONNADE_CONTROL", master.control)
    assert cli.main(["pools", "--json"]) == 0
    (pool,) = json.loads(capsys.readouterr().out)["pools"]
    assert pool["name"] == "default"
    # Over a server file naming another socket: the environment wins.
    other = tmp_path / "other.toml"
    other.write_text('[server]\ncontrol_socket = "nowhere/control.sock"\n')
    assert cli.main(["pools", "-c", str(other), "--json"]) == 0
    capsys.readouterr()
    # The command line wins over the environment.
    assert cli.main(["pools", "--control", str(tmp_path / "none.sock")]) == 1
    assert "none.sock" in capsys.readouterr().err
