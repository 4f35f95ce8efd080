"""The ``[cgi]`` section: locked like IIS's, the restriction list at the server only."""

from __future__ import annotations

from pathlib import Path

import pytest

from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError
from colonnade.handlers.cgi.config import CgiSection
from colonnade.modules.standard import BUILTIN

HEAD = """[server]
modules = ["handler.static", "handler.cgi"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:8080"]
root = "www"

[[handlers]]
path = "/cgi-bin/*"
handler = "handler.cgi"

[cgi]
allowed_programs = ["/srv/cgi/*"]
"""


def build(tmp_path: Path, server: str = "", web: str | None = None) -> Engine:
    (tmp_path / "www" / "cgi-bin").mkdir(parents=True, exist_ok=True)
    if web is not None:
        (tmp_path / "www" / "cgi-bin" / "web.toml").write_text(web)
    (tmp_path / "colonnade.toml").write_text(HEAD + server)
    return Engine(load_file(str(tmp_path / "colonnade.toml")), Registry.standard(BUILTIN))


def settings(engine: Engine, path: str) -> CgiSection:
    (runtime,) = engine.runtimes
    return runtime.app.sections_for(path).get(CgiSection)


def test_a_web_toml_may_not_set_cgi_unless_unlocked(tmp_path: Path) -> None:
    engine = build(tmp_path, web="[cgi]\ntimeout = 5\n")
    (broken,) = engine.broken
    assert "locked" in str(broken.error)
    engine = build(tmp_path, '[lock]\ncgi = "allow"\n', web="[cgi]\ntimeout = 5\n")
    assert not engine.broken
    assert settings(engine, "/cgi-bin/x").timeout == 5
    assert settings(engine, "/cgi-bin/x").allows("/srv/cgi/tool")
    assert not settings(engine, "/cgi-bin/x").allows("/srv/other/tool")


def test_the_restriction_list_is_the_servers_alone(tmp_path: Path) -> None:
    engine = build(tmp_path, '[lock]\ncgi = "allow"\n', web='[cgi]\nallowed_programs = ["/*"]\n')
    (broken,) = engine.broken
    assert "cgi.allowed_programs" in str(broken.error)
    with pytest.raises(ConfigError, match="not_listed_allowed"):
        build(tmp_path, '[[locations]]\npath = "/cgi-bin"\ncgi = { not_listed_allowed = true }\n')


def test_globs_match_real_paths() -> None:
    section = CgiSection(allowed_programs=["/srv/www/cgi-bin/*", "/usr/lib/cgi-bin/tool"])
    assert section.allows("/srv/www/cgi-bin/a/b.sh")
    assert section.allows("/usr/lib/cgi-bin/tool")
    assert not section.allows("/usr/lib/cgi-bin/tool2")
    assert not CgiSection().allows("/usr/lib/cgi-bin/tool")
    assert CgiSection(not_listed_allowed=True).allows("/anything")
