"""The module registry: a module's section known without importing the module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, ModuleError
from colonnade.handlers.asgi.config import AsgiSection
from colonnade.handlers.wsgi.config import WsgiSection
from colonnade.modules.standard import BUILTIN


def test_each_builtin_that_names_its_section_names_its_classes_section() -> None:
    registry = Registry.standard(BUILTIN, with_entry_points=False)
    named = [entry for entry in BUILTIN if len(entry) == 3]
    assert {entry[0] for entry in named} == {"handler.asgi", "handler.wsgi"}
    for module_id, *_ in named:
        section = registry.section(module_id)
        assert section is not None
        # load() checks the class against the named section (and would refuse it).
        assert registry.load(module_id).section is section
    assert registry.section("handler.wsgi") is WsgiSection
    assert registry.section("handler.asgi") is AsgiSection


def test_a_named_section_is_read_without_importing_the_module() -> None:
    registry = Registry()
    registry.add(
        "x.never",
        "colonnade_no_such_package.module:Never",
        origin="code",
        section="colonnade.handlers.wsgi.config:WsgiSection",
    )
    assert registry.section("x.never") is WsgiSection
    with pytest.raises(ModuleError, match="cannot be loaded"):
        registry.load("x.never")  # the module itself was never importable
    assert registry.loaded() == []


def test_a_module_whose_section_is_not_the_one_registered_is_refused() -> None:
    registry = Registry()
    registry.add(
        "handler.asgi",
        "colonnade.handlers.asgi.handler:AsgiHandler",
        origin="code",
        section="colonnade.handlers.wsgi.config:WsgiSection",
    )
    wanted = re.escape("not 'colonnade.handlers.wsgi.config:WsgiSection' as registered")
    with pytest.raises(ModuleError, match=wanted):
        registry.load("handler.asgi")


def test_a_named_section_that_is_not_a_section_is_refused() -> None:
    registry = Registry()
    registry.add(
        "x.bad",
        "colonnade.handlers.asgi.handler:AsgiHandler",
        origin="code",
        section="colonnade.handlers.wsgi.config:Annotated",
    )
    with pytest.raises(ModuleError, match="is not a Section subclass"):
        registry.section("x.bad")
    registry.add(
        "x.gone",
        "colonnade.handlers.asgi.handler:AsgiHandler",
        origin="code",
        section="colonnade_no_such_package:Section",
    )
    with pytest.raises(ModuleError, match="its section cannot be loaded"):
        registry.section("x.gone")


SERVER = """
[[sites]]
name = "main"
bindings = ["http://127.0.0.1:8080"]
root = "www"

[[sites.applications]]
path = "/"
app = "apps:asgi"
app_dir = "."
interface = "asgi"
"""


def test_the_other_python_handlers_settings_are_still_checked(tmp_path: Path) -> None:
    """An ASGI app's server does not import the WSGI handler, but its ``[wsgi]``
    table is still known and checked (and the ASGI one's too)."""
    (tmp_path / "www").mkdir()
    (tmp_path / "apps.py").write_text("async def asgi(scope, receive, send):\n    pass\n")
    config = tmp_path / "colonnade.toml"
    config.write_text(SERVER + '\n[wsgi]\nthreads = 3\n[asgi]\nlifespan = "off"\n')
    registry = Registry.standard(BUILTIN, with_entry_points=False)
    engine = Engine(load_file(str(config)), registry)
    engine.close()
    assert "handler.wsgi" not in registry.loaded()
    assert "handler.asgi" in registry.loaded()

    config.write_text(SERVER + "\n[wsgi]\nthreadz = 3\n")
    with pytest.raises(ConfigError) as caught:
        Engine(load_file(str(config)), Registry.standard(BUILTIN, with_entry_points=False))
    assert "wsgi.threadz" in str(caught.value)
