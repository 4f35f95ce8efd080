"""Real PHP behind handler.fastcgi: php-cgi managed by Colonnade, php-fpm as an
external server on a Unix socket of the test's own; forms, sessions, headers and
cookies, phpinfo(), recycling and a killed process replaced. (A real server
process, memory and process lifetimes: tests/e2e/test_php_e2e.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.handlers.fastcgi.kit import request
from tests.handlers.fastcgi.php_kit import (
    NEEDS_PHP,
    config,
    make_tree,
    php_cgi,
    php_fpm,
    php_pids,
)
from tests.support.wait import PATIENCE, wait_for

pytestmark = NEEDS_PHP


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("php"))


@pytest.fixture(scope="module")
def live(tree: Path) -> Iterator[LiveServer]:
    server = LiveServer(config(php_cgi(tree)), tree).start()
    yield server
    server.stop()


def test_form_post(live: LiveServer) -> None:
    body = urllib.parse.urlencode({"name": "Ada Lovelace", "lang": "Ünïcode"}).encode()
    wire = request(
        live.port,
        "/form.php?x=1",
        "POST",
        body,
        "content-type: application/x-www-form-urlencoded\r\n",
    )
    assert wire.status == 200, wire.body
    doc = json.loads(wire.body)
    assert doc == {
        "post": {"name": "Ada Lovelace", "lang": "Ünïcode"},
        "get": {"x": "1"},
        "method": "POST",
    }


def test_multipart_form(live: LiveServer) -> None:
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\ncontent-disposition: form-data; name="field"\r\n\r\nvalue\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    wire = request(
        live.port,
        "/form.php",
        "POST",
        body,
        f"content-type: multipart/form-data; boundary={boundary}\r\n",
    )
    assert json.loads(wire.body)["post"] == {"field": "value"}


def test_sessions_across_requests(live: LiveServer) -> None:
    first = request(live.port, "/session.php")
    assert first.body == b"1"
    cookie = first.headers["set-cookie"].split(";")[0]
    assert cookie.startswith("PHPSESSID=")
    second = request(live.port, "/session.php", headers=f"cookie: {cookie}\r\n")
    third = request(live.port, "/session.php", headers=f"cookie: {cookie}\r\n")
    assert (second.body, third.body) == (b"2", b"3")


def test_headers_and_cookies(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(b"GET /headers.php HTTP/1.1\r\nhost: x\r\n\r\n")
        wire = conn.response()
    assert wire.status == 201
    assert wire.headers["x-powered-test"] == "yes"
    cookies = re.findall(rb"set-cookie: ([^\r]*)", wire.raw_head)
    assert cookies == [b"a=one", b"b=two; path=/; HttpOnly"]
    assert wire.body == b"made"


def test_status_and_redirect(live: LiveServer) -> None:
    gone = request(live.port, "/notfound.php")
    assert (gone.status, gone.body) == (404, b"gone")
    moved = request(live.port, "/redirect.php")
    assert moved.status == 302
    assert moved.headers["location"] == "/form.php?from=redirect"


def test_phpinfo(live: LiveServer) -> None:
    wire = request(live.port, "/info.php")
    assert wire.status == 200
    text = wire.body.decode()
    assert "PHP Version" in text and "cgi-fcgi" in text
    assert "colonnade/" in text  # SERVER_SOFTWARE


def test_server_variables(live: LiveServer, tree: Path) -> None:
    wire = request(live.port, "/server.php?q=a%20b", headers="proxy: http://evil\r\n")
    server = json.loads(wire.body)["server"]
    assert server["SCRIPT_FILENAME"] == str(tree / "www" / "server.php")
    assert server["SCRIPT_NAME"] == server["PHP_SELF"] == "/server.php"
    assert server["REQUEST_URI"] == "/server.php?q=a%20b"
    assert server["QUERY_STRING"] == "q=a%20b"
    assert server["DOCUMENT_ROOT"] == str(tree / "www")
    assert "HTTP_PROXY" not in server


def test_a_php_error_is_the_applications_500(live: LiveServer) -> None:
    wire = request(live.port, "/fatal.php")
    assert wire.status == 500
    assert request(live.port, "/form.php").status == 200


def test_no_upload_is_ever_executed(live: LiveServer) -> None:
    assert request(live.port, "/uploads/evil.jpg/x.php").status == 404
    plain = request(live.port, "/uploads/evil.jpg")
    assert b"executed" not in plain.body or plain.body.startswith(b"<?php")


def test_file_checks_kept_a_while_never_run_what_is_not_a_script(tree: Path) -> None:
    # [server] file_check_cache: a script's check is kept, so a deleted one is
    # noticed within the validity, a new one at once; an upload never runs,
    # however warm the kept checks are.
    conf = config(php_cgi(tree))
    conf["server"]["file_check_cache"] = 0.3
    www = tree / "www"
    with LiveServer(conf, tree).start() as server:
        for _ in range(3):
            assert request(server.port, "/form.php").status == 200
            assert request(server.port, "/uploads/evil.jpg/x.php").status == 404
        fresh = www / "fresh.php"
        fresh.write_text("<?php echo 'fresh';")
        try:
            assert request(server.port, "/fresh.php").body == b"fresh"  # at once
            fresh.unlink()
            wait_for(
                lambda: request(server.port, "/fresh.php").status == 404,
                PATIENCE,
                "the deleted script noticed",
            )
            fresh.mkdir()  # a folder where the script was: never handed to PHP
            assert request(server.port, "/fresh.php").status in (403, 404)
        finally:
            if fresh.is_dir():
                fresh.rmdir()
            fresh.unlink(missing_ok=True)
        assert request(server.port, "/uploads/evil.jpg/x.php").status == 404


def test_recycling_and_a_killed_process(tree: Path) -> None:
    app = php_cgi(tree, max_instances=1, instance_max_requests=3)
    with LiveServer(config(app), tree).start() as server:
        pids = [json.loads(request(server.port, "/server.php").body)["pid"] for _ in range(4)]
        assert pids[0] == pids[1] == pids[2] != pids[3]
        os.kill(pids[3], signal.SIGKILL)
        wait_for(lambda: pids[3] not in php_pids(), PATIENCE, "php-cgi killed")
        after = json.loads(request(server.port, "/server.php").body)["pid"]
        assert after not in pids
    wait_for(lambda: after not in php_pids(), PATIENCE, "php-cgi ends with the server")


# -- php-fpm, an external server -------------------------------------------------------------


@pytest.fixture
def fpm(tmp_path: Path) -> Iterator[Path]:
    with php_fpm(tmp_path) as sock:
        yield sock


def test_php_fpm_external_socket(tree: Path, fpm: Path) -> None:
    app = {"address": f"unix:{fpm}", "max_instances": 2}
    with LiveServer(config(app), tree).start() as server:
        docs = [json.loads(request(server.port, "/server.php").body) for _ in range(5)]
        assert docs[0]["server"]["SCRIPT_FILENAME"] == str(tree / "www" / "server.php")
        assert len({d["pid"] for d in docs}) <= 2
        body = os.urandom(5 * 1024 * 1024)
        wire = request(server.port, "/stream.php", "POST", body)
        assert wire.body == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
        info = request(server.port, "/info.php")
        assert b"FPM/FastCGI" in info.body


#: A Python application beside PHP: what the pipeline told it about the user.
WHO_WSGI = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    who = f"{environ.get('REMOTE_USER', '-')} {environ.get('AUTH_TYPE', '-')}"
    return [who.encode()]
"""


def test_one_authentication_guards_php_static_files_and_a_python_app(tree: Path) -> None:
    # The integrated pipeline: one authentication (Basic, users from a file),
    # one role source and one URL authorization rule, written once for /staff,
    # guard a PHP folder, a static folder and a Python application alike; the
    # user they established reaches PHP and Python as REMOTE_USER / AUTH_TYPE.
    staff = tree / "www" / "staff"
    for folder in ("php", "files", "app"):
        (staff / folder).mkdir(parents=True, exist_ok=True)
    (staff / "php" / "who.php").write_text(
        "<?php echo $_SERVER['REMOTE_USER'] ?? '-', ' ', $_SERVER['AUTH_TYPE'] ?? '-';"
    )
    (staff / "files" / "notes.txt").write_text("static secret")
    code = tree / "code"
    code.mkdir(exist_ok=True)
    # A name of its own: an application module is imported once per process.
    (code / "php_pipeline_who_app.py").write_text(WHO_WSGI)

    def sha(password: bytes) -> str:
        return "{SHA}" + base64.b64encode(hashlib.sha1(password).digest()).decode()

    (tree / "users.htpasswd").write_text(f"ada:{sha(b's3cret')}\nbob:{sha(b'hunter2')}\n")
    (tree / "groups").write_text("staff: ada\n")
    cfg = config(php_cgi(tree))
    cfg["server"]["modules"] = ["auth.basic", "auth.roles", "authz.url", *cfg["server"]["modules"]]
    cfg["basic_authentication"] = {
        "enabled": True,
        "realm": "staff",
        "user_file": str(tree / "users.htpasswd"),
    }
    cfg["roles"] = {"group_file": str(tree / "groups")}
    cfg["sites"][0]["applications"] = [
        {
            "path": "/staff/app",
            "root": "www/staff/app",
            "app": "php_pipeline_who_app:app",
            "app_dir": "code",
        },
    ]
    cfg["locations"] = [
        {
            "path": "main/staff",
            "url_authorization": {"rules": [{"access": "allow", "roles": ["staff"]}]},
        }
    ]

    def basic(user: bytes) -> str:
        return "authorization: Basic " + base64.b64encode(user).decode() + "\r\n"

    targets = ("/staff/php/who.php", "/staff/files/notes.txt", "/staff/app/who")
    with LiveServer(cfg, tree).start() as server:
        for target in targets:
            anonymous = request(server.port, target)
            assert anonymous.status == 401, (target, anonymous.body)
            assert anonymous.headers["www-authenticate"] == 'Basic realm="staff", charset="UTF-8"'
            wrong = request(server.port, target, headers=basic(b"ada:not-it"))
            assert wrong.status == 401, (target, wrong.body)
            assert wrong.headers["www-authenticate"] == anonymous.headers["www-authenticate"]
            refused = request(server.port, target, headers=basic(b"bob:hunter2"))
            assert refused.status == 403, (target, refused.body)
            assert b"static secret" not in refused.body and b"bob" not in refused.body
        ada = basic(b"ada:s3cret")
        answers = [request(server.port, target, headers=ada) for target in targets]
        assert [(a.status, a.body) for a in answers] == [
            (200, b"ada Basic"),
            (200, b"static secret"),
            (200, b"ada Basic"),
        ]
        assert request(server.port, "/form.php").status == 200  # outside: anonymous


def test_php_over_http2(live: LiveServer) -> None:
    import httpx

    big = os.urandom(3 * 1024 * 1024 + 5)
    base_url = f"http://127.0.0.1:{live.port}"
    with httpx.Client(http1=False, http2=True, timeout=PATIENCE, base_url=base_url) as client:
        server = client.get("/server.php?q=1", headers={"cookie": "a=1"}).json()["server"]
        assert server["SERVER_PROTOCOL"] == "HTTP/2.0"
        assert server["HTTP_COOKIE"] == "a=1" and server["QUERY_STRING"] == "q=1"
        upload = client.post("/stream.php", content=big)
        assert upload.text == f"{len(big)} {hashlib.sha256(big).hexdigest()}"
        download = client.get("/download.php?mib=5")
        assert len(download.content) == 5 * 1024 * 1024
        made = client.get("/headers.php")
        assert made.status_code == 201
        assert made.headers.get_list("set-cookie") == ["a=one", "b=two; path=/; HttpOnly"]


def test_front_controller_through_url_rewrite(tree: Path) -> None:
    # WordPress/Laravel style: what is no file and no folder goes to index.php,
    # which routes by the client's URL (REQUEST_URI); files stay static.
    app_dir = tree / "www" / "app"
    (app_dir / "assets").mkdir(parents=True, exist_ok=True)
    (app_dir / "index.php").write_text(
        "<?php echo json_encode(['uri' => $_SERVER['REQUEST_URI'],"
        " 'script' => $_SERVER['SCRIPT_NAME'], 'get' => $_GET]);"
    )
    (app_dir / "assets" / "site.css").write_text("body{}")
    (app_dir / "web.toml").write_text(
        """
[[rewrite.rules]]
name = "front controller"
pattern = "^(.*)$"
conditions = [
  { input = "{REQUEST_FILENAME}", match_type = "is_file", negate = true },
  { input = "{REQUEST_FILENAME}", match_type = "is_directory", negate = true },
]
action = { type = "rewrite", url = "index.php" }
"""
    )
    cfg = config(php_cgi(tree))
    cfg["server"]["modules"] = ["rewrite", *cfg["server"]["modules"]]
    with LiveServer(cfg, tree).start() as server:
        wire = request(server.port, "/app/blog/2024/hello-world?page=2")
        assert wire.status == 200, wire.body
        doc = json.loads(wire.body)
        assert doc == {
            "uri": "/app/blog/2024/hello-world?page=2",
            "script": "/app/index.php",
            "get": {"page": "2"},
        }
        assert request(server.port, "/app/assets/site.css").body == b"body{}"
