"""``[fastcgi]`` is checked when the configuration is built: each mistake names
its key, and no content folder may define a program to run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from colonnade.errors import ConfigError, ModuleError
from colonnade.handlers.fastcgi.config import parse_address
from colonnade.testing import Client, build_engine


def config(tmp_path: Path, **fastcgi: Any) -> dict[str, Any]:
    (tmp_path / "www" / "sub").mkdir(parents=True, exist_ok=True)
    return {
        "server": {"modules": ["handler.fastcgi", "handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [{"path": "*.php", "handler": "handler.fastcgi"}],
        "fastcgi": fastcgi,
    }


PROGRAM = {"program": sys.executable}


@pytest.mark.parametrize(
    ("fastcgi", "message"),
    [
        ({"applications": {"php": {}}}, "exactly one of program"),
        (
            {"applications": {"php": {**PROGRAM, "address": "unix:/x.sock"}}},
            "exactly one of program",
        ),
        ({"applications": {"php": {"program": "php-cgi"}}}, "absolute path"),
        ({"applications": {"php": {"address": "localhost"}}}, "HOST:PORT"),
        ({"applications": {"php": {"address": "unix:run/x.sock"}}}, "absolute path"),
        (
            {"applications": {"php": {**PROGRAM, "environment": {"PHP_FCGI_MAX_REQUESTS": "10"}}}},
            "at least instance_max_requests",
        ),
        (
            {"applications": {"php": {**PROGRAM, "environment": {"PHP_FCGI_CHILDREN": "4"}}}},
            "PHP_FCGI_CHILDREN must be 0",
        ),
        (
            {"applications": {"php": PROGRAM}, "application": "perl"},
            "no FastCGI application 'perl'",
        ),
        ({"applications": {"a": PROGRAM, "b": PROGRAM}}, "several FastCGI applications"),
        ({"applications": {"php": {**PROGRAM, "max_instances": -1}}}, "max_instances"),
        ({"applications": {"php": {**PROGRAM, "stderr_mode": "ignore"}}}, "stderr_mode"),
    ],
)
def test_mistakes_name_their_key(tmp_path: Path, fastcgi: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_engine(config(tmp_path, **fastcgi), base_dir=str(tmp_path))
    assert "fastcgi" in str(info.value)


def test_a_location_picks_another_application(tmp_path: Path) -> None:
    data = config(tmp_path, applications={"a": PROGRAM, "b": PROGRAM}, application="a")
    data["locations"] = [{"path": "main/sub", "fastcgi": {"application": "b"}}]
    build_engine(data, base_dir=str(tmp_path))
    data["locations"] = [{"path": "main/sub", "fastcgi": {"application": "c"}}]
    with pytest.raises(ConfigError, match="no FastCGI application 'c'"):
        build_engine(data, base_dir=str(tmp_path))


def test_web_toml_cannot_define_programs(tmp_path: Path) -> None:
    data = config(tmp_path, applications={"php": PROGRAM})
    (tmp_path / "www" / "sub" / "web.toml").write_text(
        '[fastcgi.applications.evil]\nprogram = "/bin/sh"\n'
    )
    engine = build_engine(data, base_dir=str(tmp_path))
    assert [b.error for b in engine.broken]  # that folder answers 500.19
    assert "fastcgi.applications" in str(engine.broken[0].error)


def test_enabled_without_an_application(tmp_path: Path) -> None:
    engine = build_engine(config(tmp_path), base_dir=str(tmp_path))
    with (
        pytest.raises((ConfigError, ModuleError), match="no FastCGI application is defined"),
        Client(engine),
    ):
        pass


def test_addresses() -> None:
    assert parse_address("unix:/run/php.sock") == ("unix", "/run/php.sock")
    assert parse_address("127.0.0.1:9000") == ("tcp", ("127.0.0.1", 9000))
    assert parse_address("[::1]:9000") == ("tcp", ("::1", 9000))
    for bad in ("9000", ":9000", "host:0", "host:99999", "unix:"):
        with pytest.raises(ValueError):
            parse_address(bad)
