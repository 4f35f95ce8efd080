"""The same PHP script behind Colonnade and behind nginx, both in front of one
php-fpm: for a table of requests (path info, query strings, encoded
characters, HEAD, POST) the variables a PHP application relies on are the same.

nginx is configured the way Debian ships it for PHP (``snippets/fastcgi-php.conf``
with ``fastcgi.conf``). Every variable that differs must be in ``EXPECTED``,
each difference justified there and in docs/php.md ("Colonnade and nginx").
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.handlers.fastcgi.kit import site
from tests.handlers.fastcgi.php_kit import NEEDS_PHP, php_fpm
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
FASTCGI_CONF = Path("/etc/nginx/fastcgi.conf")
SNIPPET = Path("/etc/nginx/snippets/fastcgi-php.conf")

pytestmark = [
    NEEDS_PHP,
    pytest.mark.skipif(
        NGINX is None or not SNIPPET.exists(), reason="nginx (Debian's package) is not installed"
    ),
]

DUMP = """<?php
$doc = ['server' => $_SERVER, 'get' => $_GET, 'post' => $_POST,
        'input' => strlen(file_get_contents('php://input'))];
unset($doc['server']['REQUEST_TIME'], $doc['server']['REQUEST_TIME_FLOAT']);
file_put_contents(__DIR__ . '/../dumps/' . basename($_SERVER['HTTP_X_ID']) . '.json',
                  json_encode($doc));
echo 'ok';
"""

#: Variables that differ, and why. Anything else that differs fails the test.
EXPECTED = {
    "SERVER_SOFTWARE": "each server names itself",
    "SERVER_PORT": "the two servers listen on different ports",
    "REMOTE_PORT": "each connection has its own client port",
    "HTTP_HOST": "the Host header names each server's port",
    "DOCUMENT_URI": "nginx only: its own $document_uri, in no CGI specification",
    "CONTENT_TYPE": "nginx sends it empty without a body; Colonnade only when the "
    "request has one (RFC 3875 4.1.3)",
    "CONTENT_LENGTH": "the same: RFC 3875 4.1.2 sets it only for a body",
    "PATH_TRANSLATED": "Colonnade sets it with path info (RFC 3875 4.1.6); "
    "Debian's nginx recipe does not send it",
    "REMOTE_USER": "nginx sends it empty for an anonymous request; Colonnade leaves "
    "it out (RFC 3875 4.1.11: only for an authenticated request)",
    "HTTP_CONTENT_TYPE": "nginx passes Content-Type twice, also as HTTP_CONTENT_TYPE; "
    "Colonnade as CONTENT_TYPE only (RFC 3875 4.1.18 allows leaving it out)",
    "HTTP_CONTENT_LENGTH": "the same for Content-Length",
}


class Case(NamedTuple):
    """One request of the table."""

    name: str
    method: str
    target: str
    headers: str = ""
    body: bytes = b""


CASES = [
    Case("plain", "GET", "/dump.php"),
    Case("query", "GET", "/dump.php?a=1&b=two%20words&c[]=x&c[]=y"),
    Case("empty query", "GET", "/dump.php?"),
    Case("odd query", "GET", "/dump.php?%41=%ZZ&&=x"),
    Case("path info", "GET", "/dump.php/extra/path?x=y"),
    Case("path info slash", "GET", "/dump.php/"),
    Case("encoded path info", "GET", "/dump.php/%C3%A9t%C3%A9/a%2Fb"),
    Case("encoded folder", "GET", "/sub%20dir/dump.php?z=1"),
    Case("unicode folder", "GET", "/caf%C3%A9/dump.php"),
    Case("head", "HEAD", "/dump.php?h=1"),
    Case(
        "form post",
        "POST",
        "/dump.php?q=1",
        "content-type: application/x-www-form-urlencoded\r\n",
        b"name=Ada+Lovelace&lang=%C3%BC",
    ),
    Case(
        "binary post",
        "POST",
        "/dump.php",
        "content-type: application/octet-stream\r\n",
        bytes(range(256)) * 40,
    ),
    Case(
        "headers",
        "GET",
        "/dump.php",
        "cookie: a=1; b=2\r\nx-custom-thing: yes\r\naccept-language: fr\r\n"
        "authorization: Bearer abc\r\nproxy: http://evil.example\r\n",
    ),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("php-diff")
    for folder in ("www", "www/sub dir", "www/café", "dumps"):
        (base / folder).mkdir()
    for folder in ("www", "www/sub dir", "www/café"):
        depth = folder.count("/")
        (base / folder / "dump.php").write_text(DUMP.replace("/../", "/.." * (depth + 1) + "/"))
    return base


@pytest.fixture(scope="module")
def fpm(tree: Path) -> Iterator[Path]:
    with php_fpm(tree, children=4) as sock:
        yield sock


@pytest.fixture(scope="module")
def nginx(tree: Path, fpm: Path) -> Iterator[int]:
    assert NGINX is not None
    port = free_port()
    prefix = tree / "nginx"
    prefix.mkdir()
    shutil.copy(FASTCGI_CONF, prefix / "fastcgi.conf")  # the snippet includes it
    (prefix / "nginx.conf").write_text(
        f"""
user root;
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    fastcgi_temp_path {prefix}/fastcgi;
    proxy_temp_path {prefix}/proxy;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {tree / "www"};
        location ~ \\.php($|/) {{
            include {SNIPPET};
            fastcgi_pass unix:{fpm};
        }}
    }}
}}
"""
    )
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")])
    try:
        wait_for(lambda: _listening(port) or proc.poll() is not None, PATIENCE, "nginx")
        assert proc.poll() is None, (prefix / "error.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(PATIENCE)


@pytest.fixture(scope="module")
def colonnade(tree: Path, fpm: Path) -> Iterator[int]:
    config = site(
        {"address": f"unix:{fpm}"},
        {"path": "*.php", "handler": "handler.fastcgi", "resource_type": "file"},
        {"path": "*.php/*", "handler": "handler.fastcgi"},
    )
    config["handlers"][1]["path"] = "/dump.php/*"
    config["sites"][0]["host_names"] = []
    with LiveServer(config, tree).start() as server:
        yield server.port


def _listening(port: int) -> bool:
    try:
        Conn(port, timeout=1).close()
    except OSError:
        return False
    return True


def dump(port: int, tree: Path, case: Case, tag: str) -> dict[str, Any]:
    ident = f"{tag}-{case.name.replace(' ', '_')}"
    with Conn(port) as conn:
        length = f"content-length: {len(case.body)}\r\n" if case.body else ""
        conn.send(
            f"{case.method} {case.target} HTTP/1.1\r\nhost: localhost:{port}\r\n"
            f"x-id: {ident}\r\n{length}{case.headers}\r\n".encode()
            + case.body
        )
        wire = conn.response(head_only=case.method == "HEAD")
    assert wire.status == 200, (tag, case, wire)
    found: dict[str, Any] = json.loads((tree / "dumps" / f"{ident}.json").read_text())
    return found


#: The variables that differed in some case (test_every_expected_difference_is_seen).
SEEN: set[str] = set()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_variables_as_nginx(case: Case, tree: Path, nginx: int, colonnade: int) -> None:
    compare(case, tree, nginx, colonnade)


def compare(case: Case, tree: Path, nginx: int, colonnade: int) -> None:
    """Ask both servers; only the EXPECTED variables may differ."""
    theirs = dump(nginx, tree, case, "nginx")
    ours = dump(colonnade, tree, case, "colonnade")
    assert ours["get"] == theirs["get"]
    assert ours["post"] == theirs["post"]
    assert ours["input"] == theirs["input"] == len(case.body)
    a, b = theirs["server"], ours["server"]
    a.pop("HTTP_X_ID")
    b.pop("HTTP_X_ID")
    differing = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    SEEN.update(differing)
    assert "HTTP_PROXY" not in b  # httpoxy (PHP 8.2 drops it too: the same behind nginx)
    unexplained = {k: (a.get(k), b.get(k)) for k in differing - EXPECTED.keys()}
    assert not unexplained, unexplained
    # What applications route and decide by is never among the differences.
    for key in (
        "SCRIPT_NAME",
        "SCRIPT_FILENAME",
        "PHP_SELF",
        "PATH_INFO",
        "REQUEST_URI",
        "QUERY_STRING",
        "REQUEST_METHOD",
        "DOCUMENT_ROOT",
        "SERVER_NAME",
        "SERVER_PROTOCOL",
        "REQUEST_SCHEME",
        "REMOTE_ADDR",
        "HTTP_COOKIE",
        "HTTP_AUTHORIZATION",
    ):
        assert a.get(key) == b.get(key), key


def test_every_expected_difference_is_seen(tree: Path, nginx: int, colonnade: int) -> None:
    # EXPECTED lists no difference that is not there, so docs/php.md (which
    # lists the same) stays true. After the table (file order) SEEN is full;
    # selected alone, this test asks the table itself.
    if not SEEN:
        for case in CASES:
            compare(case, tree, nginx, colonnade)
    assert set(EXPECTED) == SEEN
