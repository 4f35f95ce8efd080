"""A virtual directory inside a Python application's URL space is static content.

IIS serves a virtual directory's files with the static file handler unless a
handler mapping says otherwise; Colonnade does the same for a hosted WSGI or ASGI
application, whose catch-all mapping would otherwise answer for those files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from colonnade.config.load import from_dict
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.modules.standard import BUILTIN
from colonnade.testing import Client
from tests.hosting.support import EXTRA, engine, site_config

APP = "tests.hosting.apps.asgi_apps:hello"
CSS = b"body { color: teal }\n"


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    folder = tmp_path / "assets"
    (folder / "css").mkdir(parents=True)
    (folder / "css" / "site.css").write_bytes(CSS)
    return folder


def with_vdirs(config: dict[str, Any], *vdirs: tuple[str, Path]) -> dict[str, Any]:
    config["sites"][0]["virtual_directories"] = [
        {"path": path, "root": str(root)} for path, root in vdirs
    ]
    return config


def test_a_vdir_inside_the_app_is_served_by_the_static_handler(assets: Path) -> None:
    config = with_vdirs(site_config(APP, modules=["handler.static"]), ("/static", assets))
    with Client(engine(config)) as c:
        css = c.get("/static/css/site.css")
        other = c.get("/staticky/css/site.css")
        page = c.get("/somewhere")
        post = c.post("/static/css/site.css", b"x")
        missing = c.get("/static/css/none.css")
    assert css.status == 200 and css.body == CSS
    assert css.header("etag")  # the static handler's validators: not the app
    assert css.context.handler.id == "handler.static"
    # Whole segments only: a sibling path that merely starts alike is the app's.
    assert other.context.handler.id == "handler.asgi"
    assert page.context.handler.id == "handler.asgi" and page.status == 200
    assert post.status == 405 and post.header("allow") is not None
    assert missing.status == 404 and missing.context.handler.id == "handler.static"


def test_the_vdir_itself_is_the_static_handlers(assets: Path) -> None:
    config = with_vdirs(site_config(APP, modules=["handler.static"]), ("/static/", assets))
    with Client(engine(config)) as c:
        bare = c.get("/static")
    assert bare.context.handler.id == "handler.static"
    assert bare.status == 301 and bare.header("location") == "/static/"


def test_under_a_mounted_app_and_outside_it(tmp_path: Path, assets: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "logo.txt").write_text("logo")
    config = with_vdirs(
        site_config(APP, path="/api", modules=["handler.static"], root=str(tmp_path)),
        ("/api/assets", assets),
        ("/media", tmp_path / "media"),
    )
    config["handlers"] = [{"path": "*", "handler": "handler.static"}]
    with Client(engine(config)) as c:
        inside = c.get("/api/assets/css/site.css")
        outside = c.get("/media/logo.txt")
        app = c.get("/api/hello")
    assert inside.status == 200 and inside.body == CSS
    assert outside.status == 200 and outside.text == "logo"
    assert app.context.handler.id == "handler.asgi"


def test_an_explicit_mapping_wins(assets: Path) -> None:
    config = with_vdirs(
        site_config(
            APP,
            modules=["handler.static", "handler.asgi"],
            handlers=[{"path": "/static/dynamic/*", "handler": "handler.asgi"}],
        ),
        ("/static", assets),
    )
    with Client(engine(config)) as c:
        dynamic = c.get("/static/dynamic/x")
        css = c.get("/static/css/site.css")
    assert dynamic.context.handler.id == "handler.asgi" and dynamic.status == 200
    assert css.context.handler.id == "handler.static" and css.body == CSS


def test_a_vdir_of_a_deeper_application_belongs_to_it(tmp_path: Path, assets: Path) -> None:
    # No handler.static anywhere: the root app would have to refuse a vdir inside
    # its URL space, but /sub/static lies in /sub's, whose requests never reach it.
    config = with_vdirs(site_config(APP, root=str(tmp_path)), ("/sub/static", assets))
    config["sites"][0]["applications"].append({"path": "/sub"})
    with Client(engine(config)) as c:
        css = c.get("/sub/static/css/site.css")
    assert css.context.app.path == "/sub" and css.status == 404


def test_a_reload_that_removes_the_deeper_app_gives_the_vdir_to_the_root_app(
    tmp_path: Path, assets: Path
) -> None:
    registry = Registry.standard(BUILTIN)
    for cls in EXTRA:
        registry.add(cls.id, cls, origin="test")

    def build(config: dict[str, Any], previous: Engine | None = None) -> Engine:
        cfg = from_dict(config, source="<test>", base_dir=str(tmp_path))
        return Engine(cfg, registry, previous=previous)

    two = with_vdirs(
        site_config(APP, modules=["handler.static"], root=str(tmp_path)), ("/sub/static", assets)
    )
    two["sites"][0]["applications"].append({"path": "/sub", "app": APP})
    one = with_vdirs(
        site_config(APP, modules=["handler.static"], root=str(tmp_path)), ("/sub/static", assets)
    )
    first = build(two)
    second = build(one, previous=first)
    root = next(rt for rt in second.runtimes if rt.app.path == "/")
    assert root.handler_map.select("/sub/static/css/site.css", "GET").id == "handler.static"


APP_SOURCE = """
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})
"""


def check(tree: Path, toml: str) -> subprocess.CompletedProcess[str]:
    (tree / "code").mkdir(exist_ok=True)
    (tree / "code" / "web.py").write_text(APP_SOURCE)
    (tree / "assets").mkdir(exist_ok=True)
    (tree / "colonnade.toml").write_text(toml)
    return subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "check", "-c", "colonnade.toml"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
    )


SITE = """\
[server]
modules = {modules}

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:8080"]

  [[sites.applications]]
  path = "/"
  app = "web:app"
  app_dir = "code"

  [[sites.virtual_directories]]
  path = "/static"
  root = "assets"
"""


def test_check_says_why_a_vdir_inside_an_app_cannot_be_served(tmp_path: Path) -> None:
    out = check(tmp_path, SITE.format(modules='["log.http"]'))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "colonnade: colonnade.toml:14: sites[0].virtual_directories[0].path: the virtual "
        "directory /static lies inside the Python application at / and is served by "
        "handler.static, which is not enabled there: add handler.static to "
        "server.modules, or map the path to a handler with [[handlers]]"
    )
    fixed = check(tmp_path, SITE.format(modules='["handler.static"]'))
    assert fixed.returncode == 0, fixed.stderr


def test_check_accepts_a_vdir_an_explicit_mapping_covers(tmp_path: Path) -> None:
    toml = SITE.format(modules='["handler.asgi"]') + (
        '\n[[handlers]]\npath = "/static/*"\nhandler = "handler.asgi"\n'
    )
    out = check(tmp_path, toml)
    assert out.returncode == 0, out.stderr
