"""``colonnade serve --root-path``: the app behind a proxy that strips a prefix.

Requests arrive without the prefix; the application sees it (ASGI ``root_path``,
with ``path`` starting with it as uvicorn gives it; WSGI ``SCRIPT_NAME``), so the
URLs it makes carry it. Over real sockets, with a Starlette app's ``url_for``."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import colonnade
from colonnade.errors import ConfigError
from colonnade.management import serve_options
from colonnade.management.cli import _parser, config_source
from tests.management.test_serve_options import _exchange
from tests.support.wait import PATIENCE


async def item(request: Request) -> JSONResponse:
    scope = request.scope
    return JSONResponse(
        {
            "url": str(request.url_for("item", id=request.path_params["id"])),
            "root_path": scope["root_path"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode(),
        }
    )


starlette_app = Starlette(routes=[Route("/items/{id}", item, name="item")])


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    seen = {k: environ[k] for k in ("SCRIPT_NAME", "PATH_INFO")}
    return [json.dumps(seen).encode()]


def _get(port: int, target: str) -> tuple[int, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        answer = _exchange(sock, target)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else None


def test_starlette_url_for_carries_the_root_path() -> None:
    with colonnade.Server(starlette_app, root_path="/api/") as server:
        status, seen = _get(server.port, "/items/7")
    assert status == 200
    assert seen == {
        "url": "http://t/api/items/7",
        "root_path": "/api",
        "path": "/api/items/7",
        "raw_path": "/api/items/7",
    }


def test_without_root_path_nothing_changes() -> None:
    with colonnade.Server(starlette_app) as server:
        status, seen = _get(server.port, "/items/7")
    assert status == 200 and seen["url"] == "http://t/items/7" and seen["root_path"] == ""


def test_wsgi_script_name_is_the_root_path() -> None:
    with colonnade.Server(wsgi_app, root_path="/api/v1") as server:
        status, seen = _get(server.port, "/items/7")
    assert (status, seen) == (200, {"SCRIPT_NAME": "/api/v1", "PATH_INFO": "/items/7"})


def test_root_path_in_the_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    config = tmp_path / "colonnade.toml"
    config.write_text(
        '[asgi]\nroot_path = "/file"\n\n'
        '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:1"]\nroot = "www"\n'
    )

    def loaded(argv: list[str], environ: dict[str, str]) -> tuple[str, str]:
        args = _parser().parse_args(["serve", "-c", str(config), *argv])
        serve_options.prepare(args, environ)
        sections = config_source(args).load().sections
        return sections["asgi"]["root_path"], sections.get("wsgi", {}).get("root_path", "")

    assert loaded([], {}) == ("/file", "")
    assert loaded([], {"COLONNADE_ROOT_PATH": "/env"}) == ("/env", "/env")
    assert loaded(["--root-path", "/line"], {"COLONNADE_ROOT_PATH": "/env"}) == ("/line", "/line")


def test_a_root_path_with_a_space_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"asgi\.root_path: '/a b': expected ''"):
        colonnade.Server(starlette_app, root_path="/a b").start()


async def ws_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    seen = {"root_path": scope["root_path"], "path": scope["path"]}
    await send({"type": "websocket.send", "text": json.dumps(seen)})
    await send({"type": "websocket.close"})


def test_a_websocket_scope_carries_the_root_path() -> None:
    with (
        colonnade.Server(ws_app, root_path="/api") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock,
    ):
        sock.sendall(
            b"GET /live HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 6:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        head, _, frames = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        while len(frames) < 2 + frames[1]:
            frames += sock.recv(4096)
    assert frames[0] == 0x81  # one text frame, unmasked, short
    assert json.loads(frames[2 : 2 + frames[1]]) == {"root_path": "/api", "path": "/api/live"}
