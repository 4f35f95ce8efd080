"""An application module shipped with an app protects the app's static files.

The managed-module analogue of IIS: a class in the application's own folder,
declared in its web.toml, joins the pipeline for all of that application's
content — here it denies a static file unless a cookie set by the app is present.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from colonnade.errors import ConfigError
from colonnade.testing import build_engine

from .conftest import LiveServer
from .wire import Conn

GUARD = """
from colonnade import FINISH, Context, Module, Section, Stage, hook


class GuardSection(Section, frozen=True):
    key = "cookie_guard"
    protect: str = "/"
    cookie: str = "member=yes"


class CookieGuard(Module):
    id = "shop.guard"
    section = GuardSection

    @hook(Stage.AUTHORIZE_REQUEST)
    def authorize(self, ctx: Context):
        settings = ctx.section(GuardSection)
        if not ctx.request.path.startswith(settings.protect):
            return None
        cookies = b"; ".join(ctx.request.header_values(b"cookie"))
        if settings.cookie.encode() not in cookies:
            ctx.error_response(403, 0, "members only")
            return FINISH
        return None
"""

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"set-cookie", b"member=yes; Path=/shop")]})
    await send({"type": "http.response.body", "body": b"welcome"})
"""

WEB_TOML = """
[application_modules]
"shop.guard" = "guard:CookieGuard"

[cookie_guard]
protect = "/shop/files/"
cookie = "member=yes"
"""


def tree(tmp_path: Path, allow: bool = True) -> dict[str, object]:
    shop = tmp_path / "shop"
    (shop / "files").mkdir(parents=True)
    (shop / "files" / "price-list.txt").write_text("secret prices")
    (shop / "guard.py").write_text(GUARD)
    (shop / "web.py").write_text(APP)
    (shop / "web.toml").write_text(WEB_TOML)
    (tmp_path / "www").mkdir()
    return {
        "server": {"modules": ["handler.static"]},
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [
                    {
                        "path": "/shop",
                        "root": "shop",
                        "app": "web:app",
                        "app_dir": "shop",
                        "allow_modules": allow,
                    }
                ],
            }
        ],
        # Static files win over the app only where a mapping says so.
        "handlers": [{"path": "/shop/files/*", "handler": "handler.static"}],
    }


def get(port: int, path: str, cookie: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    with Conn(port) as c:
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
        r = c.response()
        return r.status, r.body, r.headers


def test_application_module_guards_static_files(tmp_path: Path) -> None:
    with LiveServer(tree(tmp_path), tmp_path).start() as server:
        status, _, _ = get(server.port, "/shop/files/price-list.txt")
        assert status == 403  # the app module refused the static file
        status, body, headers = get(server.port, "/shop/login")
        assert body == b"welcome"
        cookie = headers["set-cookie"].split(";")[0]
        status, body, _ = get(server.port, "/shop/files/price-list.txt", cookie)
        assert (status, body) == (200, b"secret prices")  # served by handler.static


def test_application_modules_need_the_server_to_allow_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_engine(tree(tmp_path, allow=False), base_dir=str(tmp_path))
    assert info.value.file == str(tmp_path / "shop" / "web.toml")
    assert info.value.key == "application_modules"
    assert "allow_modules = true" in info.value.message
