"""Pool settings decode strictly, with IIS's defaults; what workers are built from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade.config.load import from_dict, load_file
from colonnade.config.schema import PoolConfig
from colonnade.errors import ConfigError
from colonnade.pools.config import (
    NOWHERE,
    ConfigSource,
    content_folders,
    fingerprint,
    pool_view,
    without_python_apps,
)
from colonnade.pools.control import socket_path
from colonnade.pools.supervision import crossed


def decode(data: dict[str, Any]) -> Any:
    return from_dict(data, source="/srv/colonnade.toml", base_dir="/srv")


def test_defaults_are_iis_defaults() -> None:
    pool = PoolConfig()
    assert (pool.workers, pool.start, pool.queue_length) == (1, "on_demand", 1000)
    assert pool.idle_timeout == 20 * 60
    assert (pool.ping, pool.ping_interval, pool.ping_response_time) == (True, 30, 90)
    assert (pool.startup_time_limit, pool.shutdown_time_limit) == (90, 90)
    assert pool.recycling.time == 1740 * 60
    assert (pool.recycling.requests, pool.recycling.memory, pool.recycling.schedule) == (0, 0, [])
    assert pool.recycling.overlapping and pool.recycling.on_config_change
    assert (pool.rapid_fail.enabled, pool.rapid_fail.max_crashes) == (True, 5)
    assert pool.rapid_fail.interval == 5 * 60
    assert (pool.user, pool.group, pool.env, pool.sandbox) == (None, None, {}, False)


@pytest.mark.parametrize(
    ("pools", "key", "message"),
    [
        ({"api": {"wrokers": 2}}, "pools.api.wrokers", "unknown key"),
        ({"api": {"workers": -1}}, "pools.api.workers", ">= 0"),
        ({"api": {"workers": "2"}}, "pools.api.workers", "Expected `int`"),
        ({"api": {"start": "sometimes"}}, "pools.api.start", "not one of: 'on_demand', 'always'"),
        ({"api": {"queue_length": 0}}, "pools.api.queue_length", ">= 1"),
        ({"api": {"queue_length": 70000}}, "pools.api.queue_length", "<= 65535"),
        ({"api": {"idle_timeout": -5}}, "pools.api.idle_timeout", ">= 0"),
        ({"api": {"ping_interval": 0}}, "pools.api.ping_interval", "> 0"),
        ({"api": {"rapid_fail": {"max_crashes": 0}}}, "pools.api.rapid_fail.max_crashes", ">= 1"),
        ({"api": {"rapid_fail": {"intervall": 5}}}, "pools.api.rapid_fail.intervall", "unknown"),
        ({"api": {"recycling": {"schedule": ["25:00"]}}}, "pools.api.recycling.schedule[0]", ""),
        ({"api": {"recycling": {"requests": -1}}}, "pools.api.recycling.requests", ">= 0"),
        ({"api": {"recycling": {"every": 1}}}, "pools.api.recycling.every", "unknown key"),
        ({"api": {"limits": {"open_files": 10}}}, "pools.api.limits.open_files", ""),
        ({"api": {"limits": {"cpu": 1}}}, "pools.api.limits.cpu", "unknown key"),
        ({"api": {"sandbox": "maybe"}}, "pools.api.sandbox", ""),
        ({"api": {"env": {"1BAD": "x"}}}, "pools.api.env.1BAD", "environment variable"),
        ({"api": {"env": {"OK": 1}}}, "pools.api.env.OK", "Expected `str`"),
        ({"bad name": {}}, "pools.bad name", "'bad name': expected a pool name: 1-64"),
        ({"api": {"writable": ["/nonexistent/db"]}}, "pools.api.writable[0]", "no such folder"),
        ({"api": {"writable": "var"}}, "pools.api.writable", "Expected `array`"),
    ],
)
def test_pool_settings_are_strict(pools: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode({"pools": pools})
    assert info.value.key == key
    assert message in info.value.message


def test_error_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "colonnade.toml"
    file.write_text('[pools.api]\nworkers = 2\n\n[pools.api.recycling]\nschedule = ["3:00"]\n')
    with pytest.raises(ConfigError) as info:
        load_file(str(file))
    assert info.value.line == 5 and info.value.key == "pools.api.recycling.schedule[0]"


def test_valid_settings_decode() -> None:
    config = decode(
        {
            "pools": {
                "api": {
                    "workers": 3,
                    "start": "always",
                    "user": "www-data",
                    "group": 33,
                    "env": {"MODE": "prod"},
                    "sandbox": "best-effort",
                    "limits": {"open_files": 4096, "memory": 1 << 30},
                    "recycling": {"schedule": ["03:00", "15:30:15"], "requests": 10_000},
                    "rapid_fail": {"enabled": False},
                }
            }
        }
    )
    api = config.pools["api"]
    assert api.sandbox == "best-effort" and api.group == 33 and api.limits.memory == 1 << 30
    assert api.recycling.schedule == ["03:00", "15:30:15"]


def test_an_application_in_an_unknown_pool_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        decode(
            {
                "sites": [
                    {
                        "name": "s",
                        "bindings": ["http://127.0.0.1:8080"],
                        "applications": [{"path": "/api", "pool": "nope"}],
                    }
                ]
            }
        )
    assert info.value.key == "sites[0].applications[0].pool"


TWO_SITES = {
    "pools": {"default": {}, "api": {}, "other": {}},
    "sites": [
        {
            "name": "main",
            "bindings": ["http://127.0.0.1:8080"],
            "root": "www",
            "applications": [
                {"path": "/api", "pool": "api", "app": "pkg.api:app", "app_dir": "code"},
                {"path": "/app", "app": "pkg.web:app"},
            ],
        },
        {
            "name": "second",
            "bindings": ["http://127.0.0.1:8080"],
            "host_names": ["second.test"],
            "root": "other",
            "pool": "other",
        },
    ],
}


def test_pool_view_keeps_only_the_pools_own_python_apps_and_sites() -> None:
    config = decode(TWO_SITES)
    api = pool_view(config, "api")
    main, second = api.sites
    assert [a.app for a in main.applications] == ["pkg.api:app", None]
    assert (second.name, second.root, second.host_names) == ("second", NOWHERE, ["second.test"])
    default = pool_view(config, "default")
    assert [a.app for a in default.sites[0].applications] == [None, "pkg.web:app"]
    assert content_folders(api) == ["/srv/code", "/srv/www"]
    assert content_folders(pool_view(config, "other")) == ["/srv/other"]
    assert all(a.app is None for s in without_python_apps(config).sites for a in s.applications)


def test_fingerprint_ignores_master_side_settings() -> None:
    base = decode(TWO_SITES)
    changed = msgspec.structs.replace(
        base,
        pools={
            **base.pools,
            "api": msgspec.structs.replace(base.pools["api"], workers=4, idle_timeout=5),
        },
    )
    assert fingerprint(base, "api") == fingerprint(changed, "api")
    env = msgspec.structs.replace(
        base,
        pools={**base.pools, "api": msgspec.structs.replace(base.pools["api"], env={"A": "b"})},
    )
    assert fingerprint(base, "api") != fingerprint(env, "api")
    assert fingerprint(base, "default") == fingerprint(env, "default")


def test_config_source_sends_the_text_the_master_read(tmp_path: Path) -> None:
    file = tmp_path / "colonnade.toml"
    file.write_text("[pools.default]\nworkers = 2\n")
    source = ConfigSource(file=str(file), default_workers=5).read()
    file.write_text("[pools.default]\nworkers = 3\n")  # changed after the master read it
    assert source.load().pools["default"].workers == 5
    assert (
        msgspec.structs.replace(source, default_workers=None).load().pools["default"].workers == 2
    )


def test_control_socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = decode({"server": {"control_socket": "run/c.sock"}})
    assert socket_path(config) == "/srv/run/c.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert socket_path(decode({})) == str(tmp_path / "colonnade" / "control.sock")


def test_schedule_crossing() -> None:
    import datetime

    day = datetime.datetime(2030, 1, 2, 3, 0, 0).timestamp()
    assert crossed("03:00", day - 0.5, day)
    assert not crossed("03:00", day, day + 0.5)
    assert crossed("02:59:59", day - 2, day)
    assert not crossed("04:00", day - 1, day)
