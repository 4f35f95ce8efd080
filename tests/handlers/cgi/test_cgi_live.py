"""handler.cgi over real sockets, with scripts in sh and Python written here."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn, Wire
from tests.support.wait import PATIENCE, wait_for

PY = sys.executable

SCRIPTS = {
    # The environment as JSON (bytes as latin-1).
    "cgi-bin/env.py": f"""#!{PY}
import json, os, sys
env = {{k.decode("latin-1"): v.decode("latin-1") for k, v in os.environb.items()}}
env["_cwd"] = os.getcwd()
env["_stdin"] = sys.stdin.buffer.read().decode("latin-1")
env["_fds"] = " ".join(sorted(os.listdir("/proc/self/fd")))
out = json.dumps(env).encode()
sys.stdout.buffer.write(b"Content-Type: application/json\\r\\n\\r\\n" + out)
""",
    "cgi-bin/sha.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
sha256sum | cut -d' ' -f1
""",
    # Writes 1 MiB blocks, recording after each how many it wrote ($PROGRESS).
    "cgi-bin/download.py": f"""#!{PY}
import os, sys
out = sys.stdout.buffer
out.write(b"Content-Type: application/octet-stream\\n\\n")
block = bytes(range(256)) * 4096
count = int(os.environ["QUERY_STRING"])
fd = os.open(os.environ["_PROGRESS"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(count):
    out.write(block)
    out.flush()
    os.pwrite(fd, b"%12d" % ((i + 1) * len(block)), 0)
""",
    "cgi-bin/status.sh": """#!/bin/sh
printf 'Status: 201 Made Here\\r\\n'
printf 'Content-Type: text/plain\\r\\n'
printf 'Set-Cookie: a=1; Path=/\\r\\n'
printf 'Set-Cookie: b=2; Path=/\\r\\n'
printf 'X-Custom: yes\\r\\n'
printf 'Connection: close\\r\\n'
printf '\\r\\n'
printf 'created'
""",
    "cgi-bin/local.sh": """#!/bin/sh
printf 'Location: /target.txt?from=cgi\\n\\n'
""",
    "cgi-bin/local_cgi.sh": """#!/bin/sh
cat > /dev/null
printf 'Location: /cgi-bin/env.py/after?q=2\\n\\n'
""",
    "cgi-bin/loop.sh": """#!/bin/sh
printf 'Location: /cgi-bin/loop.sh\\n\\n'
""",
    "cgi-bin/client.sh": """#!/bin/sh
printf 'Location: https://example.test/elsewhere\\n\\n'
""",
    "cgi-bin/hang.sh": """#!/bin/sh
echo $$ > "$_PIDS/script"
sleep 1000 &
echo $! > "$_PIDS/child"
wait
""",
    "cgi-bin/dies.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nsome of the body'
kill -9 $$
""",
    "cgi-bin/dies_late.py": f"""#!{PY}
import os, signal, sys
out = sys.stdout.buffer
out.write(b"Content-Type: text/plain\\n\\n" + b"x" * 300000)
out.flush()
os.kill(os.getpid(), signal.SIGKILL)
""",
    "cgi-bin/forever.sh": """#!/bin/sh
echo $$ > "$_PIDS/forever"
printf 'Content-Type: text/plain\\n\\n'
exec yes
""",
    "cgi-bin/nohead.sh": """#!/bin/sh
exit 3
""",
    "cgi-bin/badstatus.sh": """#!/bin/sh
printf 'Status: abc\\nContent-Type: text/plain\\n\\nSCRIPTBODY'
""",
    "cgi-bin/badhead.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\nthis is no header\\n\\nSCRIPTBODY'
""",
    # A Content-Length of 5,000 digits: int() refused it outside the head's error
    # handling (a 500, found by fuzzing), now a 502.2 like any bad head.
    "cgi-bin/hugelength.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\nContent-Length: %05000d\\n\\nSCRIPTBODY' 1
""",
    "cgi-bin/stderr.sh": """#!/bin/sh
echo 'first complaint' >&2
head -c 300000 /dev/zero | tr '\\0' 'e' >&2
printf 'Content-Type: text/plain\\n\\nok'
""",
    "cgi-bin/linger.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\ndone'
exec >&- 2>&-
echo $$ > "$_PIDS/linger"
sleep 1000
""",
    "cgi-bin/data.txt": "just data\n",
    "cgi-bin/noshebang": "echo no interpreter line\n",
    "elsewhere/unlisted.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nshould not run'
""",
    "uploads/evil.jpg": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nEXECUTED'
""",
    "hello.cgi": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nhello from cgi'
""",
    "target.txt": "the target\n",
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(os.path.realpath(tmp_path_factory.mktemp("cgi-live")))
    for name, text in SCRIPTS.items():
        path = root / "www" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644 if name.endswith(".txt") else 0o755)
    (root / "pids").mkdir()
    return root


def server_config(base: Path) -> dict[str, Any]:
    www = base / "www"
    return {
        "server": {"modules": ["handler.static", "handler.cgi"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [
            {"path": "/cgi-bin/*", "handler": "handler.cgi"},
            {"path": "/elsewhere/*", "handler": "handler.cgi"},
            {"path": "*.cgi", "handler": "handler.cgi", "resource_type": "file"},
            {"path": "*", "handler": "handler.static"},
        ],
        "cgi": {
            # The uploads folder is listed too: only the mapping keeps evil.jpg from running.
            "allowed_programs": [f"{www}/cgi-bin/*", f"{www}/*.cgi", f"{www}/uploads/*"],
            "environment": {"_PIDS": str(base / "pids"), "_PROGRESS": str(base / "progress")},
            "max_stderr_log": 1000,
        },
        "locations": [{"path": "/cgi-bin/hang.sh", "cgi": {"timeout": 1, "kill_grace": 0.5}}],
    }


@pytest.fixture(scope="module")
def live(base: Path) -> Iterator[LiveServer]:
    server = LiveServer(server_config(base), base).start()
    yield server
    server.stop()


def request(live: LiveServer, raw: bytes, *, head_only: bool = False) -> Wire:
    with Conn(live.port) as conn:
        conn.send(raw)
        return conn.response(head_only=head_only)


def get(live: LiveServer, target: str, headers: str = "", method: str = "GET") -> Wire:
    raw = f"{method} {target} HTTP/1.1\r\nHost: cgi.test\r\n{headers}\r\n".encode()
    return request(live, raw, head_only=method == "HEAD")


def env_of(wire: Wire) -> dict[str, str]:
    assert wire.status == 200, (wire.status, wire.body[:500])
    data: dict[str, str] = json.loads(wire.body)
    return data


# -- the variables ----------------------------------------------------------------------------


def test_the_variables_a_script_sees(live: LiveServer, base: Path) -> None:
    www = base / "www"
    body = b"name=value"
    raw = (
        b"POST /cgi-bin/env.py/extra/path?a=1&b=%20 HTTP/1.1\r\nHost: cgi.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 10\r\nCookie: a=1\r\nCookie: b=2\r\n"
        b"Proxy: http://evil.test:3128\r\nX_Sneaky: 1\r\nX-Thing: t\r\n\r\n" + body
    )
    env = env_of(request(live, raw))
    expected = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "POST",
        "QUERY_STRING": "a=1&b=%20",
        "REQUEST_URI": "/cgi-bin/env.py/extra/path?a=1&b=%20",
        "SCRIPT_NAME": "/cgi-bin/env.py",
        "SCRIPT_FILENAME": f"{www}/cgi-bin/env.py",
        "PATH_INFO": "/extra/path",
        "PATH_TRANSLATED": f"{www}/extra/path",
        "DOCUMENT_ROOT": str(www),
        "SERVER_NAME": "cgi.test",
        "SERVER_PORT": str(live.port),
        "SERVER_ADDR": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": "10",
        "HTTP_COOKIE": "a=1; b=2",
        "HTTP_X_THING": "t",
        "HTTP_HOST": "cgi.test",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "_cwd": f"{www}/cgi-bin",
        "_stdin": "name=value",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert env["SERVER_SOFTWARE"].startswith("colonnade/")
    assert env["REMOTE_PORT"].isdigit()
    # httpoxy, and a name that would pass for another header.
    assert "HTTP_PROXY" not in env
    assert not any("SNEAKY" in k for k in env)
    assert "HTTPS" not in env and "REMOTE_USER" not in env
    # Its three streams, and the one listdir opened: none of the server's descriptors.
    assert set(env.pop("_fds").split()) <= {"0", "1", "2", "3"}
    # The server's own environment stays out (only PATH, the configured ones and
    # the CGI variables; Python adds LC_CTYPE on some systems).
    own = {k for k in os.environ if k not in ("PATH", "LC_CTYPE")}
    assert not own & set(env), sorted(own & set(env))


def test_the_script_runs_from_an_extension_mapping(live: LiveServer) -> None:
    wire = get(live, "/hello.cgi")
    assert (wire.status, wire.body) == (200, b"hello from cgi")
    assert wire.headers["content-length"] == "14"


def test_a_file_that_is_no_script_never_runs(live: LiveServer) -> None:
    # *.cgi with resource type "file": evil.jpg is a file, /uploads/evil.jpg/x.cgi is
    # not, so the static handler answers (404), though evil.jpg is executable and listed.
    wire = get(live, "/uploads/evil.jpg/x.cgi")
    assert wire.status == 404
    assert b"EXECUTED" not in wire.body
    # A directory is no script either, and nothing past a plain file is.
    assert get(live, "/cgi-bin/").status == 404
    assert get(live, "/cgi-bin/missing.sh/x").status == 404


def test_a_program_off_the_restriction_list_is_404_2(live: LiveServer) -> None:
    wire = get(live, "/elsewhere/unlisted.sh")
    assert wire.status == 404
    assert b"should not run" not in wire.body
    assert b"404.2" in wire.body


def test_a_file_that_is_not_executable_is_403_1(live: LiveServer) -> None:
    wire = get(live, "/cgi-bin/data.txt/x")
    assert wire.status == 403
    assert b"403.1" in wire.body


# -- bodies both ways ------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_large_upload_is_streamed_to_the_script(live: LiveServer) -> None:
    size = 50 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    expected = hashlib.sha256(block * (size // len(block))).hexdigest()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            done.wait(0.005)

    before = _rss()
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with Conn(live.port) as conn:
            conn.send(
                b"POST /cgi-bin/sha.sh HTTP/1.1\r\nHost: cgi.test\r\n"
                b"Content-Type: application/octet-stream\r\n"
                + f"Content-Length: {size}\r\n\r\n".encode()
            )
            for _ in range(size // len(block)):
                conn.send(block)
            wire = conn.response()
    finally:
        done.set()
        sampler.join()
    assert wire.status == 200
    assert wire.body.strip().decode() == expected
    # The server (in this process) never held the body: far below its 50 MiB.
    assert peak[0] - before < 24 * 1024 * 1024, (peak[0] - before) / 2**20


def test_a_large_download_is_streamed_with_back_pressure(live: LiveServer, base: Path) -> None:
    blocks = 200
    progress = base / "progress"
    received = 0
    lead = 0
    with Conn(live.port, rcvbuf=65536) as conn:
        conn.send(f"GET /cgi-bin/download.py?{blocks} HTTP/1.1\r\nHost: cgi.test\r\n\r\n".encode())
        conn.await_head()
        head, _, conn.buf = conn.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
        raw = len(conn.buf)
        conn.buf = b""
        while True:
            data = conn.sock.recv(65536)
            if not data:
                break
            raw += len(data)
            if data.endswith(b"0\r\n\r\n") and raw >= blocks * 2**20:
                break
            text = progress.read_bytes().strip() if progress.exists() else b""
            if text:
                lead = max(lead, int(text) - raw)
    received = raw
    assert received >= blocks * 2**20  # the whole body (and its chunk framing)
    # The script is never far ahead of the client: it waits on a full pipe.
    assert lead < 32 * 2**20, lead / 2**20


# -- the head ------------------------------------------------------------------------------


def test_status_headers_and_cookies(live: LiveServer) -> None:
    wire = get(live, "/cgi-bin/status.sh")
    assert wire.status == 201
    assert wire.raw_head.startswith(b"HTTP/1.1 201 Made Here")
    assert wire.raw_head.count(b"set-cookie: ") == 2
    assert b"set-cookie: a=1; Path=/" in wire.raw_head
    assert b"set-cookie: b=2; Path=/" in wire.raw_head
    assert wire.headers["x-custom"] == "yes"
    assert wire.body == b"created"


def test_head_gets_no_body(live: LiveServer) -> None:
    wire = get(live, "/hello.cgi", method="HEAD")
    assert wire.status == 200
    assert wire.body == b""


def test_a_local_redirect_is_served_by_the_server(live: LiveServer) -> None:
    wire = get(live, "/cgi-bin/local.sh")
    assert wire.status == 200
    assert wire.body == b"the target\n"
    assert "location" not in wire.headers


def test_a_local_redirect_to_a_script_is_a_get(live: LiveServer) -> None:
    raw = (
        b"POST /cgi-bin/local_cgi.sh?q=1 HTTP/1.1\r\nHost: cgi.test\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nbody"
    )
    env = env_of(request(live, raw))
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["PATH_INFO"] == "/after"
    assert env["QUERY_STRING"] == "q=2"
    assert env["REQUEST_URI"] == "/cgi-bin/local_cgi.sh?q=1"  # what the client asked
    assert "CONTENT_LENGTH" not in env and env["_stdin"] == ""


def test_a_local_redirect_loop_ends_in_a_500(live: LiveServer) -> None:
    assert get(live, "/cgi-bin/loop.sh").status == 500


def test_a_client_redirect_is_a_302(live: LiveServer) -> None:
    wire = get(live, "/cgi-bin/client.sh")
    assert wire.status == 302
    assert wire.headers["location"] == "https://example.test/elsewhere"


# -- scripts that misbehave -----------------------------------------------------------------


def _gone(pid: int) -> bool:
    """True once ``pid`` runs no more: gone, or a zombie its parent must reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_script_that_hangs_is_killed_with_its_group(live: LiveServer, base: Path) -> None:
    pids = base / "pids"
    wire = get(live, "/cgi-bin/hang.sh")
    assert wire.status == 502
    assert b"502.1" in wire.body
    script = int((pids / "script").read_text())
    child = int(
        wait_for(lambda: (pids / "child").exists() and (pids / "child").read_text(), 5, "child pid")
    )
    wait_for(lambda: _gone(child), PATIENCE, "the script's child killed")
    # The script itself is reaped by the server: no zombie left.
    wait_for(lambda: not os.path.exists(f"/proc/{script}"), PATIENCE, "the script reaped")


def test_a_script_that_exits_without_a_head_is_502_2(live: LiveServer) -> None:
    wire = get(live, "/cgi-bin/nohead.sh")
    assert wire.status == 502
    assert b"502.2" in wire.body


def test_an_invalid_status_or_head_is_502_2(live: LiveServer) -> None:
    for target in ("/cgi-bin/badstatus.sh", "/cgi-bin/badhead.sh", "/cgi-bin/hugelength.sh"):
        wire = get(live, target)
        assert wire.status == 502, target
        assert b"502.2" in wire.body
        assert b"SCRIPTBODY" not in wire.body


def test_a_script_that_cannot_start_is_502_2(live: LiveServer) -> None:
    wire = get(live, "/cgi-bin/noshebang")
    assert wire.status == 502
    assert b"502.2" in wire.body


def test_a_chunked_upload_reaches_the_script(live: LiveServer) -> None:
    raw = (
        b"POST /cgi-bin/sha.sh HTTP/1.1\r\nHost: cgi.test\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    wire = request(live, raw)
    assert wire.status == 200
    assert wire.body.strip().decode() == hashlib.sha256(b"hello world").hexdigest()


def test_a_script_that_dies_mid_response(live: LiveServer) -> None:
    # A short response: still unsent when the script is killed: 502.2.
    wire = get(live, "/cgi-bin/dies.sh")
    assert wire.status == 502
    # A long one: already streaming, so the connection is dropped before the end.
    with Conn(live.port) as conn:
        conn.send(b"GET /cgi-bin/dies_late.py HTTP/1.1\r\nHost: cgi.test\r\n\r\n")
        with pytest.raises(EOFError):
            conn.response()


def test_a_client_that_leaves_kills_the_script(live: LiveServer, base: Path) -> None:
    marker = base / "pids" / "forever"
    marker.unlink(missing_ok=True)
    conn = Conn(live.port)
    conn.send(b"GET /cgi-bin/forever.sh HTTP/1.1\r\nHost: cgi.test\r\n\r\n")
    conn.await_head()
    pid = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), 5, "pid"))
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), PATIENCE, "the script killed and reaped")


def test_stderr_is_logged_and_bounded(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="colonnade.app"):
        wire = get(live, "/cgi-bin/stderr.sh")
        assert (wire.status, wire.body) == (200, b"ok")
        wait_for(
            lambda: any("not logged" in r.getMessage() for r in caplog.records),
            PATIENCE,
            "the dropped stderr reported",
        )
    lines = [r.getMessage() for r in caplog.records if "stderr.sh" in r.getMessage()]
    assert any(line.endswith(": first complaint") for line in lines)
    assert sum(len(line) for line in lines) < 4000  # max_stderr_log = 1000, and names


def test_a_script_that_ignores_a_large_body(live: LiveServer) -> None:
    size = 8 * 1024 * 1024
    with Conn(live.port) as conn:
        conn.send(
            b"POST /hello.cgi HTTP/1.1\r\nHost: cgi.test\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
        )
        sender = threading.Thread(target=lambda: _send_quietly(conn, size))
        sender.start()
        wire = conn.response()
        sender.join(PATIENCE)
    assert (wire.status, wire.body) == (200, b"hello from cgi")


def _send_quietly(conn: Conn, size: int) -> None:
    # The server may stop reading (and close) once it answered: that is its right.
    block = b"x" * 65536
    try:
        for _ in range(size // len(block)):
            conn.send(block)
    except OSError:
        pass


def test_a_script_running_after_its_response_ends_with_the_server(base: Path) -> None:
    marker = base / "pids" / "linger"
    marker.unlink(missing_ok=True)
    with LiveServer(server_config(base), base).start() as server:
        wire = get(server, "/cgi-bin/linger.sh")
        assert (wire.status, wire.body) == (200, b"done")
        pid = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), 5, "pid"))
        assert not _gone(pid)  # the response did not wait for it
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), PATIENCE, "the script stopped and reaped")


def test_over_http2(live: LiveServer) -> None:
    import httpx

    big = os.urandom(3 * 1024 * 1024 + 17)
    base_url = f"http://127.0.0.1:{live.port}"
    with httpx.Client(http1=False, http2=True, timeout=PATIENCE, base_url=base_url) as client:
        env = client.get("/cgi-bin/env.py/x?y=1", headers={"cookie": "a=1"}).json()
        assert env["SERVER_PROTOCOL"] == "HTTP/2.0"
        assert env["HTTP_HOST"] == f"127.0.0.1:{live.port}"
        assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == (
            "/cgi-bin/env.py",
            "/x",
            "y=1",
        )
        upload = client.post("/cgi-bin/sha.sh", content=big)
        assert upload.status_code == 200
        assert upload.text.strip() == hashlib.sha256(big).hexdigest()
        download = client.get("/cgi-bin/download.py?5")
        assert download.status_code == 200
        assert len(download.content) == 5 * 2**20
        made = client.get("/cgi-bin/status.sh")
        assert made.status_code == 201
        assert made.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
