"""The ``colonnade`` command as a user types it: a real process, its output and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from colonnade import __version__
from colonnade.config.load import embedded_default
from colonnade.management.summary import serving_lines


def colonnade(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def test_version(tmp_path: Path) -> None:
    done = colonnade("--version", cwd=tmp_path)
    assert done.returncode == 0
    # and which build runs (tests/test_build.py checks that part)
    assert done.stdout.startswith(f"colonnade {__version__} (")


def test_help_is_plain_text(tmp_path: Path) -> None:
    done = colonnade("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "``" not in done.stdout  # no reStructuredText markup leaks into --help
    for command in ("serve", "check", "modules", "config", "pools", "recycle", "reload"):
        assert command in done.stdout


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    # `colonnade config show | head -2`: the reader leaves after two lines.
    (tmp_path / "www").mkdir()
    shell = (
        f"{sys.executable} -m colonnade.management.cli config show --root www | head -2; "
        "exit ${PIPESTATUS[0]}"
    )
    done = subprocess.run(
        ["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.returncode in (0, 141)  # 0 when everything fitted in the pipe first


def test_check_reads_colonnade_toml_of_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "colonnade.toml").write_text(
        '[[sites]]\nname = "here"\nbindings = ["http://127.0.0.1:8099"]\nroot = "site"\n'
    )
    done = colonnade("check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"configuration: {tmp_path / 'colonnade.toml'}" in done.stdout
    assert "site 'here' on http://127.0.0.1:8099" in done.stdout
    assert f"/  files from {tmp_path / 'site'}" in done.stdout
    # An explicit --root means the embedded default, not the file.
    done = colonnade("check", "--root", "site", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the embedded default" in done.stdout


def test_check_says_it_uses_the_embedded_default(tmp_path: Path) -> None:
    done = colonnade("check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "configuration: the embedded default (no colonnade.toml" in done.stdout
    assert f"/  files from {tmp_path}" in done.stdout


def test_start_workers_needs_workers(tmp_path: Path) -> None:
    done = colonnade("serve", "--start-workers", cwd=tmp_path)
    assert done.returncode == 2
    assert "--start-workers goes with --workers N" in done.stderr


@pytest.mark.parametrize("start", ["on_demand", "always"])
def test_serving_lines_say_what_is_served_and_how_workers_start(tmp_path: Path, start: str) -> None:
    config = embedded_default(str(tmp_path), ["http://127.0.0.1:8080"])
    config.pools["default"].start = start  # type: ignore[misc]
    lines = serving_lines(config, workers=True)
    assert lines[0].startswith("configuration: the embedded default")
    assert "site 'default' on http://127.0.0.1:8080" in lines
    assert f"  /  files from {tmp_path}" in lines
    pool = next(line for line in lines if line.startswith("pool 'default'"))
    if start == "always":
        assert pool.endswith("started now")
    else:
        assert "started at the pool's first request" in pool and "--start-workers" in pool


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("static=assets", "--static static=assets: give URL=DIR, such as /static=staticfiles"),
        ("/static", "--static /static: give URL=DIR, such as /static=staticfiles"),
        ("/static=", "--static /static=: give URL=DIR, such as /static=staticfiles"),
        ("/=assets", "--static /=assets: a folder at / is --root DIR"),
        ("/static=nowhere", "--static /static=nowhere: no such folder: {tmp}/nowhere"),
    ],
)
def test_static_option_errors(tmp_path: Path, value: str, error: str) -> None:
    (tmp_path / "assets").mkdir()
    done = colonnade("serve", "--static", value, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "colonnade: " + error.format(tmp=tmp_path)


def test_static_option_twice_at_one_path_and_with_a_file(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    done = colonnade("serve", "--static", "/s=assets", "--static", "/s/=assets", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "colonnade: --static /s/=assets: /s is given twice"
    (tmp_path / "colonnade.toml").write_text("")
    done = colonnade("serve", "-c", "colonnade.toml", "--static", "/s=assets", cwd=tmp_path)
    assert done.returncode == 2
    assert "--static apply only without -c" in done.stderr


def test_modules_json_is_the_admin_apis_description(tmp_path: Path) -> None:
    import json

    (tmp_path / "www").mkdir()
    (tmp_path / "colonnade.toml").write_text(
        '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:1"]\nroot = "www"\n'
    )
    done = colonnade("modules", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["site"] == "main" and found["application"] == "/"
    assert "handler.static" in [m["id"] for m in found["modules"]]
    stages = [row["stage"] for row in found["plan"]]
    assert stages[0] == "BEGIN_REQUEST" and "EXECUTE_REQUEST_HANDLER" in stages
    text = colonnade("modules", cwd=tmp_path).stdout
    assert "handler.static" in text and "EXECUTE_REQUEST_HANDLER" in text
