"""Finding the application: a failed import shows its traceback; a factory is recognised."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.pyapp import _is_factory, load_app
from colonnade.errors import ConfigError

BROKEN = "import os\n\n\ndef helper():\n    return undefined_name\n\n\nhelper()\napp = None\n"


def _module(tmp_path: Path, text: str) -> str:
    name = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(text)
    return name


def test_an_import_error_shows_the_apps_traceback(tmp_path: Path) -> None:
    name = _module(tmp_path, BROKEN)
    with pytest.raises(ConfigError) as info:
        load_app(f"{name}:app", app_dir=str(tmp_path))
    message = info.value.message
    assert message.startswith(f"cannot import module {name!r}: NameError:")
    assert "Traceback (most recent call last):" in message
    assert f'{tmp_path / name}.py", line 5, in helper' in message
    assert f'{tmp_path / name}.py", line 8, in <module>' in message
    # Only the application's frames: not the server's nor the import machinery's.
    assert "importlib" not in message and "pyapp.py" not in message


def test_a_failing_factory_shows_its_traceback(tmp_path: Path) -> None:
    name = _module(tmp_path, "def make():\n    raise KeyError('DATABASE_URL')\n")
    with pytest.raises(ConfigError) as info:
        load_app(f"{name}:make", app_dir=str(tmp_path), factory=True)
    assert "KeyError: 'DATABASE_URL'" in info.value.message
    assert f'{name}.py", line 2, in make' in info.value.message


def test_check_prints_the_traceback_with_file_line_and_key(tmp_path: Path) -> None:
    name = _module(tmp_path, BROKEN)
    (tmp_path / "colonnade.toml").write_text(
        '[[sites]]\nname = "s"\nbindings = ["http://127.0.0.1:8099"]\nroot = "."\n\n'
        f'  [[sites.applications]]\n  path = "/"\n  app = "{name}:app"\n  app_dir = "."\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "colonnade: colonnade.toml:8: sites[0].applications[0].app: cannot import module"
    )
    assert f'{name}.py", line 5, in helper' in done.stderr
    assert "NameError: name 'undefined_name' is not defined" in done.stderr


def _factory() -> Any:
    return lambda environ, start_response: []


def _factory_with_options(config: object = None) -> Any:
    return _factory()


def _wsgi(environ: object, start_response: object) -> list[bytes]:
    return []


async def _asgi(scope: object, receive: object, send: object) -> None:
    return None


def _anything(*args: object) -> None:
    return None


class _Callable:
    def __call__(self, scope: object, receive: object, send: object) -> None:
        return None


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_factory, True),
        (_factory_with_options, True),
        (_wsgi, False),
        (_asgi, False),
        (_anything, False),
        (_Callable(), False),
        (print, False),
    ],
)
def test_what_counts_as_a_factory(obj: Any, expected: bool) -> None:
    assert _is_factory(obj) is expected


def test_a_factory_without_the_flag_is_called_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = _module(
        tmp_path,
        "def create_app():\n    def app(environ, start_response):\n        return [b'x']\n"
        "    return app\n",
    )
    with caplog.at_level(logging.WARNING, logger="colonnade.app"):
        app = load_app(f"{name}:create_app", app_dir=str(tmp_path))
        load_app(f"{name}:create_app", app_dir=str(tmp_path))
    assert app.__name__ == "app"
    warnings = [r.getMessage() for r in caplog.records if "factory" in r.getMessage()]
    assert len(warnings) == 1 and "--factory" in warnings[0]
