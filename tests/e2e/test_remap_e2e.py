"""Over real sockets: a default document reaches the handler its extension maps to
(``index.php`` → the ``*.php`` handler), and a ``*.php`` mapping with resource type
``file`` never runs a path through another file (``/uploads/a.jpg/x.php``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from colonnade import Context, Handler
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn, Wire


class Script(Handler):
    """Stands in for a FastCGI handler until it lands: names the script it was given."""

    id = "test.script"

    def execute(self, ctx: Context) -> None:
        request = ctx.request
        ctx.response.headers.append((b"content-type", b"text/plain"))
        ctx.response.body = f"script {request.method} {request.path} {ctx.physical_path}".encode()


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("remap-e2e")
    files = {
        "www/blog/index.php": "<?php echo 'blog';",
        "www/blog/index.html": "<p>not this one: index.php is listed first</p>",
        "www/site/index.html": "<p>static index</p>",
        "www/uploads/a.jpg": "\xff\xd8 <?php system($_GET['c']); ?>",
        "www/run.php": "<?php echo 'run';",
    }
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    return base


@pytest.fixture(scope="module")
def live(www: Path) -> Iterator[LiveServer]:
    config = {
        "server": {
            "modules": [
                "security.request_filtering",
                "static.default_document",
                "static.directory_listing",
                "handler.static",
                "test.script",
            ]
        },
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [
            {
                "path": "*.php",
                "handler": "test.script",
                "verbs": ["GET", "HEAD", "POST"],
                "resource_type": "file",
            },
            {"path": "*", "handler": "handler.static"},
        ],
        "default_document": {"files": ["index.php", "index.html"]},
    }
    server = LiveServer(config, www, modules=[Script]).start()
    yield server
    server.stop()


def send(live: LiveServer, target: str, method: str = "GET") -> Wire:
    with Conn(live.port) as conn:
        body = "content-length: 0\r\n" if method in ("POST", "PUT") else ""
        conn.send(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{body}\r\n".encode())
        return conn.response(head_only=method == "HEAD")


def test_a_default_document_reaches_the_php_handler(live: LiveServer, www: Path) -> None:
    response = send(live, "/blog/")
    assert response.status == 200
    assert response.body.decode() == f"script GET /blog/index.php {www / 'www/blog/index.php'}"
    post = send(live, "/blog/?x=1", "POST")
    assert post.body.decode().startswith("script POST /blog/index.php ")


def test_a_default_document_served_statically_is_unchanged(live: LiveServer) -> None:
    response = send(live, "/site/")
    assert response.status == 200
    assert response.body == b"<p>static index</p>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "etag" in response.headers and "last-modified" in response.headers
    assert send(live, "/site").headers["location"] == "/site/"


def test_a_verb_the_script_mapping_refuses_goes_to_the_static_handler(live: LiveServer) -> None:
    response = send(live, "/blog/", "PUT")
    assert (response.status, response.headers["allow"]) == (405, "GET, HEAD")


@pytest.mark.parametrize(
    "target", ["/uploads/a.jpg/x.php", "/uploads/a.jpg/x.php/y", "/missing.php", "/blog/no.php"]
)
def test_a_php_path_that_is_no_file_never_reaches_the_php_handler(
    live: LiveServer, target: str
) -> None:
    response = send(live, target)
    assert response.status == 404
    assert b"script" not in response.body


def test_an_existing_php_file_does(live: LiveServer) -> None:
    assert send(live, "/run.php").body.startswith(b"script GET /run.php ")
