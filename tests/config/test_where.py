"""Where a setting may be set (``Section.allowed``/``allowed_keys``) and ``locked``:
checked by the builder at every level, reported with file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import Application, Module, Section, Where
from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, ModuleError
from colonnade.modules.standard import BUILTIN


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max: int = 1
    min: int = 0


class GaugeSection(Section, frozen=True):
    key = "gauge"
    allowed = Where.APPLICATION | Where.DIRECTORY
    allowed_keys = {"limits.max": Where.SERVER | Where.APPLICATION}

    color: str = "red"
    limits: Limits = Limits()


class Gauge(Module):
    id = "test.gauge"
    section = GaugeSection


class SealedSection(Section, frozen=True):
    key = "sealed"
    locked = True

    value: int = 0


class Sealed(Module):
    id = "test.sealed"
    section = SealedSection


HEAD = """[server]
modules = ["handler.static", "http.compression", "handler.wsgi", "test.gauge", "test.sealed"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:8080"]
root = "www"

  [[sites.applications]]
  path = "/shop"
"""


def build(tmp_path: Path, server: str = "", files: dict[str, str] | None = None) -> Engine:
    (tmp_path / "www" / "shop" / "deep").mkdir(parents=True, exist_ok=True)
    (tmp_path / "www" / "docs").mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        (tmp_path / "www" / name).write_text(text)
    (tmp_path / "colonnade.toml").write_text(HEAD + server)
    registry = Registry.standard(BUILTIN, with_entry_points=False)
    registry.add(Gauge.id, Gauge, origin="test")
    registry.add(Sealed.id, Sealed, origin="test")
    return Engine(load_file(str(tmp_path / "colonnade.toml")), registry)


def app(engine: Engine, path: str) -> Application:
    return next(rt.app for rt in engine.runtimes if rt.app.path == path)


def refused(tmp_path: Path, server: str = "", files: dict[str, str] | None = None) -> ConfigError:
    """The error of the server file that refuses the tree, or of the one web.toml
    whose folder answers 500.19 with it."""
    if not files:
        with pytest.raises(ConfigError) as caught:
            build(tmp_path, server, files)
        return caught.value
    (broken,) = build(tmp_path, server, files).broken
    return broken.error


FOLDER = "not in a folder's web.toml"
SERVER_AND_APP = "may be set at the server and application levels only"


@pytest.mark.parametrize(
    ("server", "files", "file", "line", "key", "message"),
    [
        (
            "",
            {"docs/web.toml": "[static_content]\nset_etag = false\ncache_max_bytes = 10\n"},
            "www/docs/web.toml",
            3,
            "static_content.cache_max_bytes",
            f"{SERVER_AND_APP}, {FOLDER}",
        ),
        (
            "",
            {"shop/deep/web.toml": "[compression]\ncache_max_bytes = 10\n"},
            "www/shop/deep/web.toml",
            2,
            "compression.cache_max_bytes",
            f"{SERVER_AND_APP}, {FOLDER}",
        ),
        (
            "",
            {"docs/web.toml": "[wsgi]\nthreads = 2\n"},
            "www/docs/web.toml",
            1,
            "wsgi",
            f"{SERVER_AND_APP}, {FOLDER}",
        ),
        (
            '\n[[locations]]\npath = "main/shop/deep"\nstatic_content = { cache_max_bytes = 5 }\n',
            None,
            "colonnade.toml",
            14,
            "locations[0].static_content.cache_max_bytes",
            f"{SERVER_AND_APP}, not in a [[locations]] entry below an application's root "
            "(site main, /shop/deep)",
        ),
        (
            # A location for every site: /docs is a folder of the root application.
            '\n[[locations]]\npath = "/docs"\n\n  [locations.wsgi]\n  threads = 3\n',
            None,
            "colonnade.toml",
            15,
            "locations[0].wsgi",
            f"{SERVER_AND_APP}, not in a [[locations]] entry below an application's root "
            "(site main, /docs)",
        ),
        (
            '\n[gauge]\ncolor = "blue"\n',
            None,
            "colonnade.toml",
            12,
            "gauge",
            "may be set at the application and directory levels only, not at the server level",
        ),
        (
            # The most specific declaration wins: limits.max is not a directory key...
            "",
            {"docs/web.toml": '[gauge]\ncolor = "blue"\nlimits = { max = 3 }\n'},
            "www/docs/web.toml",
            3,
            "gauge.limits.max",
            f"{SERVER_AND_APP}, {FOLDER}",
        ),
        (
            "",
            {"shop/web.toml": "[sealed]\nvalue = 1\n"},
            "www/shop/web.toml",
            1,
            "sealed",
            "locked by the server configuration",
        ),
    ],
)
def test_a_setting_out_of_its_place_names_file_line_and_key(
    tmp_path: Path,
    server: str,
    files: dict[str, str] | None,
    file: str,
    line: int,
    key: str,
    message: str,
) -> None:
    error = refused(tmp_path, server, files)
    assert (error.file, error.line, error.key) == (str(tmp_path / file), line, key)
    assert message in error.message


def test_allowed_placements_work(tmp_path: Path) -> None:
    server = (
        "\n[static_content]\ncache_max_bytes = 1000\n"
        '\n[[locations]]\npath = "/shop"\ncompression = { cache_max_bytes = 2000 }\n'
        '\n[[locations]]\npath = "main/docs"\ngauge = { color = "green" }\n'
        '\n[[locations]]\npath = "/"\ngauge = { limits = { max = 7 } }\n'
    )
    files = {
        "shop/web.toml": "[static_content]\ncache_max_bytes = 3000\n[wsgi]\nthreads = 2\n",
        # A folder may set every other key of the section.
        "docs/web.toml": "[static_content]\nset_etag = false\n[gauge]\nlimits = { min = 1 }\n",
        "shop/deep/web.toml": "[compression]\nmin_size = 10\n",
    }
    engine = build(tmp_path, server, files)
    root, shop = app(engine, "/"), app(engine, "/shop")
    from colonnade.handlers.static.config import StaticContentSection
    from colonnade.handlers.wsgi.config import WsgiSection
    from colonnade.modules.compression.config import CompressionSection

    assert root.section(StaticContentSection).cache_max_bytes == 1000
    assert shop.section(StaticContentSection).cache_max_bytes == 3000
    assert shop.section(CompressionSection).cache_max_bytes == 2000
    assert shop.section(WsgiSection).threads == 2
    docs = root.sections_for("/docs")
    assert docs.get(StaticContentSection).set_etag is False
    assert docs.get(GaugeSection).color == "green"
    assert docs.get(GaugeSection).limits == Limits(max=7, min=1)
    assert shop.sections_for("/shop/deep").get(CompressionSection).min_size == 10


def test_a_locked_section_is_open_to_locations_and_to_lock_allow(tmp_path: Path) -> None:
    files = {"docs/web.toml": "[sealed]\nvalue = 2\n"}
    engine = build(tmp_path, '\n[lock]\nsealed = "allow"\n', files)
    assert app(engine, "/").sections_for("/docs").get(SealedSection).value == 2
    engine = build(tmp_path / "b", '\n[[locations]]\npath = "/docs"\nsealed = { value = 3 }\n')
    assert app(engine, "/").sections_for("/docs").get(SealedSection).value == 3


def test_check_reports_it_exactly_as_serve_does(tmp_path: Path) -> None:
    # In the server file: both refuse, naming file, line and key. (A web.toml's
    # mistake is confined to its folder: tests/e2e/test_config_errors.py.)
    (tmp_path / "www" / "docs").mkdir(parents=True)
    (tmp_path / "colonnade.toml").write_text(
        '[server]\nmodules = ["handler.static"]\n\n[[sites]]\nname = "main"\n'
        'bindings = ["http://127.0.0.1:1"]\nroot = "www"\n\n'
        '[[locations]]\npath = "/docs"\nstatic_content = { cache_max_bytes = 1 }\n'
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "colonnade.management.cli", *args, "-c", "colonnade.toml"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )

    check = run("check")
    serve = run("serve", "--workers", "0")
    expected = (
        "colonnade: colonnade.toml:11: locations[0].static_content.cache_max_bytes: may be set "
        "at the server and application levels only, not in a [[locations]] entry below an "
        "application's root (site main, /docs)\n"
    )
    assert (check.returncode, check.stderr) == (2, expected)
    assert (serve.returncode, serve.stderr) == (2, expected)


def test_declarations_are_checked() -> None:
    class Misspelt(Section, frozen=True):
        key = "misspelt"
        allowed_keys = {"cache_max_byte": Where.SERVER}
        cache_max_bytes: int = 0

    class NotWhere(Section, frozen=True):
        key = "not_where"
        allowed: Any = "server"

    registry = Registry()
    for n, section in enumerate((Misspelt, NotWhere)):
        cls = type(f"M{n}", (Module,), {"id": f"test.m{n}", "section": section})
        registry.add(cls.id, cls, origin="test")
    with pytest.raises(ModuleError, match="allowed_keys names no key of it: 'cache_max_byte'"):
        registry.load("test.m0")
    with pytest.raises(ModuleError, match="allowed must be a Where value"):
        registry.load("test.m1")


def test_where_describes_itself() -> None:
    assert Where.SERVER.describe() == "at the server level"
    assert Where.ANYWHERE.describe() == "at the server, application and directory levels"
    assert GaugeSection.where_allowed("") is Where.APPLICATION | Where.DIRECTORY
    assert GaugeSection.where_allowed("limits") is Where.APPLICATION | Where.DIRECTORY
    assert GaugeSection.where_allowed("limits.max") is Where.SERVER | Where.APPLICATION
    assert GaugeSection.where_allowed("limits.max.deeper") is Where.SERVER | Where.APPLICATION
