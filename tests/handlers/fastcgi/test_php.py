"""Real PHP behind handler.fastcgi: php-cgi managed by Colonnade, php-fpm as an
external server on a Unix socket of the test's own; forms, sessions, headers and
cookies, phpinfo(), large uploads and downloads with our memory bounded,
recycling and a killed process replaced."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer, Process, free_port
from tests.e2e.wire import Conn
from tests.handlers.fastcgi.kit import processes, request, site
from tests.support.wait import PATIENCE, wait_for

PHP_CGI = shutil.which("php-cgi")
PHP_FPM = next(iter(sorted(glob.glob("/usr/sbin/php-fpm*"))), None) or shutil.which("php-fpm")

pytestmark = pytest.mark.skipif(
    PHP_CGI is None, reason="php-cgi is not installed (make sysdeps installs it)"
)

SCRIPTS = {
    "form.php": """<?php
header('Content-Type: application/json');
echo json_encode(['post' => $_POST, 'get' => $_GET, 'method' => $_SERVER['REQUEST_METHOD']]);
""",
    "stream.php": """<?php
// hash_update_stream over php://input, as the issue asks
$ctx = hash_init('sha256');
$n = hash_update_stream($ctx, fopen('php://input', 'rb'));
echo $n, ' ', hash_final($ctx);
""",
    "download.php": """<?php
header('Content-Type: application/octet-stream');
$n = (int)$_GET['mib'];
$block = str_repeat('0123456789abcdef', 65536);  // 1 MiB
for ($i = 0; $i < $n; $i++) { echo $block; flush(); }
""",
    "session.php": """<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
echo $_SESSION['n'];
""",
    "headers.php": """<?php
http_response_code(201);
header('X-Powered-Test: yes');
setcookie('a', 'one');
setcookie('b', 'two', ['httponly' => true, 'path' => '/']);
echo 'made';
""",
    "redirect.php": """<?php
header('Location: /form.php?from=redirect');
""",
    "notfound.php": """<?php
header('Status: 404 Not Found');
echo 'gone';
""",
    "info.php": "<?php phpinfo();",
    "server.php": """<?php
header('Content-Type: application/json');
echo json_encode(['server' => $_SERVER, 'pid' => getmypid()]);
""",
    "fatal.php": "<?php undefined_function_here();",
}


def make_tree(base: Path) -> Path:
    www = base / "www"
    (www / "uploads").mkdir(parents=True, exist_ok=True)
    for name, text in SCRIPTS.items():
        (www / name).write_text(text)
    (www / "uploads" / "evil.jpg").write_text("<?php echo 'executed'; ?>")
    (base / "sessions").mkdir(exist_ok=True)
    return base


def php_cgi(base: Path, **more: Any) -> dict[str, Any]:
    assert PHP_CGI is not None
    return {
        "program": PHP_CGI,
        "arguments": [
            "-d",
            f"session.save_path={base / 'sessions'}",
            "-d",
            "output_buffering=0",
            "-d",
            "post_max_size=0",
            "-d",
            "display_errors=0",
            "-d",
            "log_errors=1",
        ],
        "max_instances": 2,
        **more,
    }


def config(app: dict[str, Any]) -> dict[str, Any]:
    return site(app, {"path": "*.php", "handler": "handler.fastcgi", "resource_type": "file"})


def php_pids() -> set[int]:
    return processes(lambda pid: "php-cgi" in os.readlink(f"/proc/{pid}/exe"))


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


# -- a real server process: memory stays bounded -------------------------------------------


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """The largest RSS of a process while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


@pytest.fixture(scope="module")
def served(tree: Path) -> Iterator[Process]:
    port = free_port()
    args = php_cgi(tree)["arguments"]
    toml = f"""
[server]
modules = ["handler.fastcgi", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[handlers]]
path = "*.php"
handler = "handler.fastcgi"
resource_type = "file"

[[handlers]]
path = "*"
handler = "handler.static"

[fastcgi.applications.app]
program = "{PHP_CGI}"
arguments = {json.dumps(args)}
max_instances = 2
request_timeout = 600
"""
    (tree / "colonnade.toml").write_text(toml)
    server = Process(["-c", "colonnade.toml", "--no-watch"], tree, port)
    yield server
    server.kill()


MIB = 1024 * 1024


def test_200_mib_upload_streams(served: Process) -> None:
    size = 200 * MIB
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    before = rss(served.proc.pid)
    with (
        Sampler(served.proc.pid) as sampler,
        socket.create_connection(("127.0.0.1", served.port), timeout=PATIENCE) as sock,
    ):
        sock.sendall(
            b"POST /stream.php HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n"
            b"content-length: %d\r\n\r\n" % size
        )
        for _ in range(size // MIB):
            sock.sendall(block)
            digest.update(block)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(digest.hexdigest().encode()):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert reply.endswith(f"{size} {digest.hexdigest()}".encode())
    # Our worker never held the body: it grew by far less than the upload.
    assert sampler.peak - before < 40 * MIB, (before, sampler.peak)


def test_large_download_streams(served: Process) -> None:
    mib = 200
    before = rss(served.proc.pid)
    with (
        Sampler(served.proc.pid) as sampler,
        socket.create_connection(("127.0.0.1", served.port), timeout=PATIENCE) as sock,
    ):
        sock.sendall(f"GET /download.php?mib={mib} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        got = 0
        buffered = b""
        while b"\r\n\r\n" not in buffered:
            buffered += sock.recv(65536)
        head, _, rest = buffered.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
        # Read slowly at first: the server must hold back, not buffer.
        tail = rest
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            got += len(data)
            tail = (tail + data)[-16:]
            if tail.endswith(b"0\r\n\r\n"):
                break
    assert got + len(rest) > mib * MIB
    assert sampler.peak - before < 40 * MIB, (before, sampler.peak)


def pool_server(tree: Path) -> Process:
    """``colonnade serve`` with a master and one worker, serving ``tree``."""
    port = free_port()
    cfg = re.sub(
        r"bindings = .*",
        f'bindings = ["http://127.0.0.1:{port}"]',
        (tree / "colonnade.toml").read_text(),
    )
    (tree / f"pool-{port}.toml").write_text(cfg)
    return Process(["-c", f"pool-{port}.toml", "--no-watch", "--workers", "1"], tree, port)


def served_pids(server: Process) -> set[int]:
    return {json.loads(request(server.port, "/server.php").body)["pid"] for _ in range(3)}


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.usefixtures("served")  # writes colonnade.toml
def test_no_php_cgi_outlives_the_server(tree: Path) -> None:
    server = pool_server(tree)
    try:
        pids = served_pids(server)
        assert pids <= php_pids()
        assert {parent(p) for p in pids} != {server.proc.pid}  # the worker's children
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(PATIENCE)
        wait_for(lambda: not (pids & php_pids()), PATIENCE, "php-cgi ends with the server")
    finally:
        server.kill()


@pytest.mark.usefixtures("served")
def test_php_cgi_dies_with_a_killed_worker(tree: Path) -> None:
    # Not a graceful stop: the worker is killed; the kernel ends its php-cgi
    # (PR_SET_PDEATHSIG), and the master's new worker starts its own.
    server = pool_server(tree)
    try:
        pids = served_pids(server)
        (worker,) = {parent(p) for p in pids}
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not (pids & php_pids()), PATIENCE, "php-cgi ends with its worker")
        again = wait_for(lambda: _served(server), PATIENCE, "the new worker serves PHP")
        assert not (again & pids)
    finally:
        server.kill()
    wait_for(lambda: not (again & php_pids()), PATIENCE, "php-cgi ends with the master")


def _served(server: Process) -> set[int]:
    try:
        return served_pids(server)
    except (OSError, EOFError, ValueError):
        return set()


# -- php-fpm, an external server -------------------------------------------------------------


@pytest.fixture
def fpm(tmp_path: Path) -> Iterator[Path]:
    if PHP_FPM is None:
        pytest.skip("php-fpm is not installed (make sysdeps installs it)")
    sock = tmp_path / "fpm.sock"
    conf = tmp_path / "fpm.conf"
    conf.write_text(
        f"""[global]
error_log = {tmp_path / "fpm.log"}
daemonize = no
pid = {tmp_path / "fpm.pid"}

[test]
listen = {sock}
user = root
group = root
pm = static
pm.max_children = 2
"""
    )
    proc = subprocess.Popen([PHP_FPM, "-n", "-R", "-y", str(conf), "-F"])
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, PATIENCE, "php-fpm listening")
        assert proc.poll() is None, (tmp_path / "fpm.log").read_text()
        yield sock
    finally:
        proc.terminate()
        proc.wait(PATIENCE)


def test_php_fpm_external_socket(tree: Path, fpm: Path) -> None:
    app = {"address": f"unix:{fpm}", "max_instances": 2}
    with LiveServer(config(app), tree).start() as server:
        docs = [json.loads(request(server.port, "/server.php").body) for _ in range(5)]
        assert docs[0]["server"]["SCRIPT_FILENAME"] == str(tree / "www" / "server.php")
        assert len({d["pid"] for d in docs}) <= 2
        body = os.urandom(5 * MIB)
        wire = request(server.port, "/stream.php", "POST", body)
        assert wire.body == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
        info = request(server.port, "/info.php")
        assert b"FPM/FastCGI" in info.body
