"""A real framework middleware (Starlette's SessionMiddleware) declared as an
application module wraps every handler of the application, over real sockets.

The shop application hosts a Starlette app at /shop and static files under
/shop/files/. Its web.toml declares Starlette's SessionMiddleware and, inside
it, a small guard shipped in the application folder that reads the session,
refuses the files to visitors who are not signed in and counts the files a
member fetched (in the session: SessionMiddleware then sets a new cookie on the
static file's response).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("itsdangerous")
pytest.importorskip("websockets")
from websockets.sync.client import connect

from colonnade.errors import ConfigError

from .conftest import LiveServer
from .wire import Conn, Wire

pytestmark = pytest.mark.e2e

APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute


async def login(request):
    request.session["member"] = request.query_params.get("name", "ann")
    return PlainTextResponse("welcome")


async def me(request):
    return JSONResponse({
        "session": dict(request.session),
        "member": request.scope.get("member"),
        "root_path": request.scope["root_path"],
    })


async def ws(websocket):
    await websocket.accept()
    await websocket.send_json({"member": websocket.scope.get("member")})
    await websocket.close()


app = Starlette(routes=[Route("/login", login), Route("/me", me), WebSocketRoute("/ws", ws)])
"""

GUARD = """
class MembersOnly:
    def __init__(self, app, protect):
        self.app = app
        self.protect = protect

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            session = scope["session"]  # set by the outer SessionMiddleware
            scope["member"] = session.get("member")
            if scope["path"].startswith(self.protect):
                if not scope["member"]:
                    await send({"type": "http.response.start", "status": 401,
                                "headers": [(b"content-type", b"text/plain")]})
                    await send({"type": "http.response.body", "body": b"members only"})
                    return
                session["files_seen"] = session.get("files_seen", 0) + 1
        await self.app(scope, receive, send)
"""

SESSIONS = "starlette.middleware.sessions:SessionMiddleware"
WEB_TOML = f"""
[application_modules]
"shop.sessions" = {{ asgi_middleware = "{SESSIONS}", options = {{ secret_key = "k3y" }} }}

[application_modules."shop.members"]
asgi_middleware = "guard:MembersOnly"
options = {{ protect = "/shop/files/" }}
"""

BIG = 3 * 1024 * 1024


def tree(tmp_path: Path, web_toml: str = WEB_TOML) -> dict[str, Any]:
    shop = tmp_path / "shop"
    (shop / "files").mkdir(parents=True)
    (shop / "files" / "price-list.txt").write_text("secret prices")
    (shop / "files" / "catalogue.bin").write_bytes(os.urandom(BIG))
    (shop / "guard.py").write_text(GUARD)
    (shop / "session_shop.py").write_text(APP)
    (shop / "web.toml").write_text(web_toml)
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
                        "app": "session_shop:app",
                        "app_dir": "shop",
                        "allow_modules": True,
                    }
                ],
            }
        ],
        "handlers": [{"path": "/shop/files/*", "handler": "handler.static"}],
    }


def request(
    port: int, path: str, cookie: str | None = None, method: str = "GET", extra: str = ""
) -> Wire:
    with Conn(port) as c:
        if cookie:
            extra += f"Cookie: {cookie}\r\n"
        c.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
        return c.response(head_only=method == "HEAD")


def cookie_of(response: Wire) -> str:
    value = response.headers["set-cookie"]
    assert value.startswith("session=")
    return value.split(";")[0]


def test_session_middleware_guards_static_files_and_reaches_the_app(tmp_path: Path) -> None:
    with LiveServer(tree(tmp_path), tmp_path).start() as server:
        port = server.port
        # (a) the static file is refused by the guard inside SessionMiddleware...
        refused = request(port, "/shop/files/price-list.txt")
        assert (refused.status, refused.body) == (401, b"members only")
        assert "set-cookie" not in refused.headers
        # ... the Starlette app signs the visitor in (the session cookie) ...
        login = request(port, "/shop/login?name=ann")
        assert (login.status, login.body) == (200, b"welcome")
        cookie = cookie_of(login)
        # ... and the same static file is served to the member, with a new
        # session cookie set by SessionMiddleware on the static file's response.
        served = request(port, "/shop/files/price-list.txt", cookie)
        assert (served.status, served.body) == (200, b"secret prices")
        assert served.headers["content-type"].startswith("text/plain")
        cookie = cookie_of(served)
        # (b) the app sees the session (SessionMiddleware) and the guard's scope value.
        me = request(port, "/shop/me", cookie)
        assert json.loads(me.body) == {
            "session": {"member": "ann", "files_seen": 1},
            "member": "ann",
            "root_path": "/shop",
        }
        head = request(port, "/shop/files/price-list.txt", cookie, method="HEAD")
        assert (head.status, head.headers["content-length"], head.body) == (200, "13", b"")
        assert head.headers["set-cookie"].startswith("session=")


def test_large_static_files_stream_through_the_middleware(tmp_path: Path) -> None:
    with LiveServer(tree(tmp_path), tmp_path).start() as server:
        data = (tmp_path / "shop" / "files" / "catalogue.bin").read_bytes()
        cookie = cookie_of(request(server.port, "/shop/login"))
        whole = request(server.port, "/shop/files/catalogue.bin", cookie)
        assert (whole.status, whole.headers["content-length"]) == (200, str(BIG))
        assert whole.body == data
        assert "set-cookie" in whole.headers
        part = request(
            server.port, "/shop/files/catalogue.bin", cookie, extra="Range: bytes=1000-2000999\r\n"
        )
        assert (part.status, part.headers["content-range"]) == (206, f"bytes 1000-2000999/{BIG}")
        assert part.body == data[1000:2001000]


def test_websockets_pass_the_middleware_too(tmp_path: Path) -> None:
    with LiveServer(tree(tmp_path), tmp_path).start() as server:
        cookie = cookie_of(request(server.port, "/shop/login?name=bea"))
        url = f"ws://127.0.0.1:{server.port}/shop/ws"
        with connect(url, proxy=None, open_timeout=5, additional_headers={"Cookie": cookie}) as ws:
            assert json.loads(ws.recv(timeout=5)) == {"member": "bea"}


# -- (c) a misdeclared middleware fails the start, naming file, line and key -------------------

MISDECLARED = [
    (
        '"shop.sessions" = { asgi_middleware = "starlette.middleware.nope:SessionMiddleware" }',
        "application_modules.shop.sessions.asgi_middleware",
        "cannot import 'starlette.middleware.nope'",
    ),
    (
        '"shop.sessions" = { asgi_middleware = "starlette.middleware.sessions:__name__" }',
        "application_modules.shop.sessions.asgi_middleware",
        "is not callable",
    ),
    (
        f'"shop.sessions" = {{ asgi_middleware = "{SESSIONS}", options = {{ secret = "k" }} }}',
        "application_modules.shop.sessions.options",
        "unexpected keyword argument 'secret'",
    ),
]


@pytest.mark.parametrize(("entry", "key", "message"), MISDECLARED)
def test_a_misdeclared_middleware_fails_the_start(
    tmp_path: Path, entry: str, key: str, message: str
) -> None:
    config = tree(tmp_path, f"# the shop\n[application_modules]\n{entry}\n")
    with pytest.raises(ConfigError) as info:
        LiveServer(config, tmp_path).start()
    error = info.value
    assert (error.file, error.line, error.key) == (str(tmp_path / "shop" / "web.toml"), 3, key)
    assert message in error.message


def test_colonnade_serve_refuses_a_misdeclared_middleware(tmp_path: Path) -> None:
    entry, key, message = MISDECLARED[2]
    config = tree(tmp_path, f"# the shop\n[application_modules]\n{entry}\n")
    sites = config["sites"][0]
    app = sites["applications"][0]
    (tmp_path / "colonnade.toml").write_text(
        f"""
[server]
modules = ["handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:1"]
root = "www"

[[sites.applications]]
path = "/shop"
root = "shop"
app = "{app["app"]}"
app_dir = "shop"
allow_modules = true

[[handlers]]
path = "/shop/files/*"
handler = "handler.static"
"""
    )
    out = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "serve", "-c", "colonnade.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert f"shop/web.toml:3: {key}: " in out.stderr
    assert message in out.stderr
