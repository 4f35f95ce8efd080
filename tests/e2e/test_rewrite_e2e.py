"""URL Rewrite over real sockets: a WSGI and an ASGI application see the rewritten
URL and the original (``X-Original-URL``, ``REQUEST_URI``); the access log keeps
the original; a front controller and a trailing-slash redirect from a folder's
``web.toml``; a rewrite to ``index.php`` reaches the ``*.php`` handler (a stand-in
for FastCGI) with the original ``REQUEST_URI``; HTTP to HTTPS; a custom 403; an
abort closes the connection; a rule loop ends in a 500 naming the rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade import Context, Handler
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn, Wire
from tests.support.wait import PATIENCE, wait_for


class Script(Handler):
    """Stands in for the PHP (FastCGI) handler: says what it was asked to run,
    and the REQUEST_URI and X-Original-URL a script would see."""

    id = "test.script"

    def execute(self, ctx: Context) -> None:
        request = ctx.request
        original = request.header(b"x-original-url") or b"-"
        ctx.response.headers.append((b"content-type", b"text/plain"))
        script = "/".join(ctx.physical_path.split("/")[-2:]).encode()  # "app/index.php"
        ctx.response.body = b"script=%s query=%s REQUEST_URI=%s X-Original-URL=%s" % (
            script,
            request.query,
            request.target,
            original,
        )


WSGI = """\
import json

KEYS = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "HTTP_X_ORIGINAL_URL")


def app(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in KEYS}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""

ASGI = """\
import json


async def app(scope, receive, send):
    headers = dict(scope["headers"])
    original = headers.get(b"x-original-url")
    body = json.dumps(
        {
            "root_path": scope["root_path"],
            "path": scope["path"],
            "query_string": scope["query_string"].decode(),
            "raw_path": scope["raw_path"].decode(),
            "x-original-url": original.decode() if original else None,
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""

BLOG_RULES = """\
[[rewrite.rules]]
name = "add a slash to folders"
pattern = "^(.*[^/])$"
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "is_directory" },
]
action = { type = "redirect", url = "{R:1}/", redirect_type = 301 }

[[rewrite.rules]]
name = "front controller"
pattern = "^(.*)$"
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "is_file", negate = true },
  { input = "{REQUEST_FILENAME}", match_type = "is_directory", negate = true },
]
action = { type = "rewrite", url = "index.html" }
"""

PHP_FRONT = """\
[[rewrite.rules]]
name = "php front controller"
pattern = "^(.*)$"
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "is_file", negate = true },
  { input = "{REQUEST_FILENAME}", match_type = "is_directory", negate = true },
]
action = { type = "rewrite", url = "index.php?q={R:1}" }
"""

LOOP = """\
[[rewrite.rules]]
name = "bounce to {other}"
pattern = "^(.*)$"
action = {{ type = "rewrite", url = "/{other}/{{R:1}}" }}
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("rewrite-e2e")
    files = {
        "www/index.html": "<home>",
        "www/blog/index.html": "<blog front controller>",
        "www/blog/web.toml": BLOG_RULES,
        "www/blog/2024/notes.txt": "notes",
        "www/app/index.php": "<?php echo 'front';",
        "www/app/web.toml": PHP_FRONT,
        "www/ping/web.toml": LOOP.format(other="pong"),
        "www/pong/web.toml": LOOP.format(other="ping"),
        "code/rewrite_wsgi.py": WSGI,
        "code/rewrite_asgi.py": ASGI,
    }
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    return base


def app_rules(kind: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{kind} articles",
            "pattern": "^articles/(\\d+)$",
            "action": {"type": "rewrite", "url": "show?id={R:1}"},
        }
    ]


@pytest.fixture(scope="module")
def live(tree: Path) -> Iterator[LiveServer]:
    config = {
        "server": {
            "modules": [
                "security.request_filtering",
                "rewrite",
                "static.default_document",
                "handler.static",
                "log.http",
                "test.script",
            ]
        },
        "handlers": [
            {"path": "*.php", "handler": "test.script", "resource_type": "file"},
            {"path": "*", "handler": "handler.static"},
        ],
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [
                    {"path": "/wsgi", "root": "code", "app": "rewrite_wsgi:app", "app_dir": "code"},
                    {"path": "/asgi", "root": "code", "app": "rewrite_asgi:app", "app_dir": "code"},
                ],
            }
        ],
        "rewrite": {
            "global_rules": [
                {
                    "name": "to https",
                    "pattern": "^secure/(.*)",
                    "conditions": [{"input": "{HTTPS}", "pattern": "^off$"}],
                    "action": {"type": "redirect", "url": "https://{HTTP_HOST}/secure/{R:1}"},
                }
            ],
            "rules": [
                {
                    "name": "no backups",
                    "pattern": "\\.bak$",
                    "action": {"type": "abort"},
                },
                {
                    "name": "private",
                    "pattern": "^private/",
                    "action": {
                        "type": "custom_response",
                        "status_code": 403,
                        "description": "Private.",
                    },
                },
            ],
        },
        "locations": [
            {"path": "/wsgi", "rewrite": {"rules": app_rules("wsgi")}},
            {"path": "/asgi", "rewrite": {"rules": app_rules("asgi")}},
        ],
        "http_logging": {"target": str(tree / "access.log"), "buffer_size": 0},
    }
    with LiveServer(config, tree, modules=[Script]).start() as server:
        yield server


def get(live: LiveServer, target: str, host: str = "example.com") -> Wire:
    with Conn(live.port) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return conn.response()


def test_a_wsgi_app_sees_the_rewritten_url_and_the_original(live: LiveServer) -> None:
    response = get(live, "/wsgi/articles/42?x=%20y")
    assert response.status == 200
    assert json.loads(response.body) == {
        "SCRIPT_NAME": "/wsgi",
        "PATH_INFO": "/show",
        "QUERY_STRING": "id=42&x=%20y",
        "REQUEST_URI": "/wsgi/articles/42?x=%20y",
        "HTTP_X_ORIGINAL_URL": "/wsgi/articles/42?x=%20y",
    }
    # Not rewritten: no X-Original-URL, even if the client sends one.
    with Conn(live.port) as conn:
        conn.send(b"GET /wsgi/plain HTTP/1.1\r\nHost: x\r\nX-Original-URL: /admin\r\n\r\n")
        plain = json.loads(conn.response().body)
    assert plain["PATH_INFO"] == "/plain"
    assert plain["HTTP_X_ORIGINAL_URL"] is None


def test_an_asgi_app_sees_the_rewritten_url_and_the_original(live: LiveServer) -> None:
    response = get(live, "/asgi/articles/7")
    assert json.loads(response.body) == {
        "root_path": "/asgi",
        "path": "/asgi/show",
        "query_string": "id=7",
        "raw_path": "/asgi/articles/7",
        "x-original-url": "/asgi/articles/7",
    }


def test_the_access_log_keeps_the_url_the_client_sent(live: LiveServer, tree: Path) -> None:
    assert get(live, "/wsgi/articles/99?ref=log").status == 200
    log = tree / "access.log"

    def logged() -> str | None:
        text = log.read_text() if log.exists() else ""
        return next((line for line in text.splitlines() if "/articles/99" in line), None)

    line = wait_for(logged, PATIENCE, "the access log line of /wsgi/articles/99")
    assert " /wsgi/articles/99 ref=log " in line
    assert "id=99" not in line


def test_front_controller_and_trailing_slash_in_a_folder(live: LiveServer) -> None:
    front = get(live, "/blog/2024/my-post")
    assert (front.status, front.body) == (200, b"<blog front controller>")
    assert get(live, "/blog/2024/notes.txt").body == b"notes"  # a file is itself
    slash = get(live, "/blog/2024")
    assert (slash.status, slash.headers["location"]) == (301, "/blog/2024/")


def test_a_rewrite_to_a_script_reaches_the_handler_its_extension_maps_to(
    live: LiveServer,
) -> None:
    # IIS's front controller for PHP: the rewritten URL is mapped again, so
    # "index.php" reaches the *.php handler, which sees the original URL.
    response = get(live, "/app/products/42?color=red")
    assert response.status == 200
    assert response.body == (
        b"script=app/index.php query=q=products/42&color=red "
        b"REQUEST_URI=/app/products/42?color=red X-Original-URL=/app/products/42?color=red"
    )


def test_http_to_https(live: LiveServer) -> None:
    moved = get(live, "/secure/account?tab=1", host="shop.example")
    assert (moved.status, moved.headers["location"]) == (
        301,
        "https://shop.example/secure/account?tab=1",
    )


def test_custom_response(live: LiveServer) -> None:
    refused = get(live, "/private/x")
    assert refused.status == 403
    assert b"Private." in refused.body


def test_abort_closes_the_connection_without_an_answer(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(b"GET /db.bak HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.closed()
        assert conn.buf == b""
    assert get(live, "/").status == 200  # the server goes on


def test_a_rule_loop_ends_in_a_500(live: LiveServer) -> None:
    response = get(live, "/ping/x")
    assert response.status == 500
    # A local client reads which rule looped (the detail is logged as well).
    assert b"bounce to" in response.body
    assert get(live, "/").status == 200
