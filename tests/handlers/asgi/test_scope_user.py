"""The user a server module authenticated reaches ASGI applications as ``scope["user"]``
and ``scope["auth"]`` (Starlette's keys), through application middleware too, and an
authentication middleware's own user still becomes the server's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.principal import ANONYMOUS, Principal
from colonnade.testing import Client, build_engine
from tests.e2e.conftest import LiveServer
from tests.handlers.asgi import mw_kit
from tests.support.header_auth import HeaderAuth, credentials

KIT = "tests.handlers.asgi.mw_kit"

SCOPE_APP = """
import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    user = scope.get("user")
    seen = {
        "user": None if user is None else [user.display_name, user.is_authenticated],
        "scopes": None if "auth" not in scope else scope["auth"].scopes,
    }
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(seen)})
        await send({"type": "websocket.close"})
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})
"""


@pytest.fixture(autouse=True)
def _clear_log() -> Iterator[None]:
    mw_kit.LOG.clear()
    yield
    mw_kit.LOG.clear()


def site(tmp_path: Path, app: str, modules: list[str], web_toml: str = "") -> dict[str, Any]:
    root = tmp_path / "app"
    root.mkdir(exist_ok=True)
    if web_toml:
        (root / "web.toml").write_text(web_toml)
    (tmp_path / "www").mkdir(exist_ok=True)
    return {
        "server": {"modules": modules},
        "handlers": [],  # the hosted app answers everything
        "sites": [
            {
                "name": "s",
                "bindings": ["http://127.0.0.1:8080"],
                "root": "www",
                "applications": [
                    {"path": "/app", "root": "app", "app": app, "allow_modules": True}
                ],
            }
        ],
    }


def client(tmp_path: Path, app: str, modules: list[str], web_toml: str = "") -> Client:
    config = site(tmp_path, app, modules, web_toml)
    return Client(build_engine(config, base_dir=str(tmp_path), modules=[HeaderAuth]))


AUTH = ["test.header_auth", "auth.anonymous"]


def test_the_servers_user_is_scope_user(tmp_path: Path) -> None:
    with client(tmp_path, f"{KIT}:echo", AUTH) as c:
        signed_in = c.get("/app/x", headers=credentials("alice"))
        assert json.loads(signed_in.body)["user"] == "alice"
        assert json.loads(signed_in.body)["server_user"] == "alice"
        anonymous = c.get("/app/x")
        assert json.loads(anonymous.body)["user"] == ""  # not authenticated
        assert anonymous.context.user is ANONYMOUS
    # No authentication module: nothing sets scope["user"] (an app's own
    # authentication middleware may).
    with client(tmp_path, f"{KIT}:echo", []) as c:
        assert json.loads(c.get("/app/x").body)["user"] is None


def test_roles_are_the_scopes_of_scope_auth(tmp_path: Path) -> None:
    (tmp_path / "user_scope_app.py").write_text(SCOPE_APP)
    config = site(tmp_path, "user_scope_app:app", AUTH)
    config["sites"][0]["applications"][0]["app_dir"] = "."
    with Client(build_engine(config, base_dir=str(tmp_path), modules=[HeaderAuth])) as c:
        seen = json.loads(c.get("/app/x", headers=credentials("bob", "staff", "admins")).body)
        assert seen == {"user": ["bob", True], "scopes": ["admins", "staff"]}
        assert json.loads(c.get("/app/x").body) == {"user": ["", False], "scopes": []}


def test_through_application_middleware_the_user_keeps_its_scheme(tmp_path: Path) -> None:
    web = f'[application_modules]\n"app.rec" = {{ asgi_middleware = "{KIT}:Recorder" }}\n'
    with client(tmp_path, f"{KIT}:echo", AUTH, web) as c:
        r = c.get("/app/x", headers=credentials("alice", "staff"))
        assert json.loads(r.body)["user"] == "alice"
        assert r.context.user == Principal("alice", "Test", frozenset({"staff"}))
        assert ("http.response.start", 0, False) in mw_kit.LOG  # it did pass the middleware
        r = c.get("/app/x")
        assert r.context.user is ANONYMOUS
    with client(tmp_path, f"{KIT}:wsgi_echo", AUTH, web) as c:
        seen = json.loads(c.get("/app/x", headers=credentials("alice")).body)
        assert (seen["remote_user"], seen["auth_type"]) == ("alice", "Test")
        # The anonymous user is no REMOTE_USER (CGI: unset without authentication).
        seen = json.loads(c.get("/app/x").body)
        assert (seen["remote_user"], seen["auth_type"]) == (None, None)


def test_an_authentication_middlewares_user_still_wins(tmp_path: Path) -> None:
    # The other way round, as before: the middleware's scope["user"] becomes the
    # server's user (REMOTE_USER, the access log), over the server's own.
    web = (
        '[application_modules]\n"app.auth" = { asgi_middleware = "'
        f'{KIT}:Auth", options = {{ user = "ann" }} }}\n'
    )
    with client(tmp_path, f"{KIT}:echo", AUTH, web) as c:
        r = c.get("/app/x", headers=credentials("alice"))
        assert json.loads(r.body)["user"] == "ann"
        assert r.context.user == Principal("ann", "asgi", frozenset({"staff"}))
    with client(tmp_path, f"{KIT}:wsgi_echo", AUTH, web) as c:
        seen = json.loads(c.get("/app/x").body)
        assert (seen["remote_user"], seen["auth_type"]) == ("ann", "asgi")


@pytest.mark.e2e
def test_websocket_scopes_carry_the_user(tmp_path: Path) -> None:
    pytest.importorskip("websockets")
    from websockets.sync.client import connect

    (tmp_path / "user_scope_app.py").write_text(SCOPE_APP)
    config = site(tmp_path, "user_scope_app:app", AUTH)
    config["sites"][0]["applications"][0]["app_dir"] = "."
    with LiveServer(config, tmp_path, modules=[HeaderAuth]).start() as server:
        url = f"ws://127.0.0.1:{server.port}/app/ws"
        headers = credentials("carol", "ops")
        with connect(url, proxy=None, open_timeout=5, additional_headers=headers) as ws:
            assert json.loads(ws.recv(timeout=5)) == {"user": ["carol", True], "scopes": ["ops"]}
