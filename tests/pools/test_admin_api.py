"""The admin API over a real master: HTTP on its control socket and on the admin binding."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.wait import PATIENCE

from .conftest import MODULES, Master, wait_for

pytestmark = pytest.mark.e2e

StartMaster = Callable[..., Master]

#: Every connection a test opened, closed after it.
OPENED: list[http.client.HTTPConnection] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


class UnixConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix socket (what ``curl --unix-socket`` does)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=PATIENCE)
        self.path = path
        OPENED.append(self)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(PATIENCE)
        sock.connect(self.path)
        self.sock = sock


def call(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, target, body=data, headers=headers or {})
    response = conn.getresponse()
    payload = json.loads(response.read())
    return response.status, payload, response


BLOG_TOML = """\
# The blog's own settings: kept by every write.
[custom_headers]
# which level answered
set = { X-Level = "blog" }  # changed by the API

[other_comment_block]
"""


@pytest.fixture
def served(start_master: StartMaster, tmp_path: Path) -> Master:
    blog = tmp_path / "www" / "blog"
    blog.mkdir(parents=True)
    (blog / "web.toml").write_text(BLOG_TOML.replace("[other_comment_block]\n", ""))
    (tmp_path / "tokens").write_text("# name token\nops s3cret-token-1\n")
    (tmp_path / "tokens").chmod(0o600)
    admin = free_port()
    master = start_master(
        {"default": {"start": "always"}},
        modules=[*MODULES, "http.custom_headers"],
        extra=(
            '[custom_headers]\nset = { X-Level = "server" }\n\n'
            '[lock]\n"custom_headers.remove" = "deny"\n\n'
            f'[admin]\nbind = "127.0.0.1:{admin}"\ntoken_file = "tokens"\n'
            'audit_log = "audit.jsonl"\n'
        ),
    )
    master.admin_port = admin  # type: ignore[attr-defined]
    wait_for(lambda: "admin API on" in master.log(), PATIENCE, "the admin binding")
    # The control socket answers before the pools are set up: wait for the worker.
    wait_for(
        lambda: any(w["state"] == "ready" for p in master.status()["pools"] for w in p["workers"]),
        PATIENCE,
        "a ready worker",
    )
    return master


def test_resources_on_the_control_socket(served: Master) -> None:
    conn = UnixConnection(served.control)
    status, body, _ = call(conn, "GET", "/api/server")
    assert status == 200 and body["server"]["config"] == str(served.config)
    status, body, _ = call(conn, "GET", "/api/sites")
    assert [s["name"] for s in body["sites"]] == ["main"]
    status, body, _ = call(conn, "GET", "/api/applications")
    assert body["applications"][0]["pool"] == "default"
    assert "http.custom_headers" in body["applications"][0]["modules"]
    status, body, _ = call(conn, "GET", "/api/workers")
    (worker,) = body["workers"]
    assert worker["pool"] == "default" and worker["state"] == "ready"
    assert worker["rss"] > 0 and worker["cpu"] >= 0 and worker["recycle_reason"] is None
    status, body, _ = call(conn, "GET", "/api/modules?app=/")
    plan = {row["stage"]: row["hooks"] for row in body["application"]["plan"]}
    assert any("http.custom_headers" in h for h in plan["SEND_RESPONSE"])
    status, body, _ = call(conn, "GET", "/api/config?path=/blog/x")
    origin = body["config"]["sections"]["custom_headers"]["set"]
    assert origin["value"] == {"X-Level": "blog"}
    assert origin["from"].endswith("blog/web.toml")
    # The key the server file's [lock] denies says so; the others carry nothing.
    assert body["config"]["sections"]["custom_headers"]["remove"]["locked"] == (
        "custom_headers.remove"
    )
    assert "locked" not in origin
    status, body, _ = call(conn, "GET", "/api/pools/nope")
    assert status == 404 and "no pool named 'nope'" in body["error"]
    status, body, _ = call(conn, "DELETE", "/api/pools")
    assert status == 405
    status, body, _ = call(conn, "GET", "/api/nothing")
    assert status == 404
    status, body, _ = call(conn, "GET", "/api/workers?bogus=1")
    assert status == 400 and "bogus" in body["error"]


def test_recycle_through_the_api(served: Master, tmp_path: Path) -> None:
    conn = UnixConnection(served.control)
    (before,) = served.pids("default")
    status, body, _ = call(conn, "POST", "/api/pools/default/recycle")
    assert status == 200 and "recycling 1 worker" in body["message"]
    wait_for(lambda: served.replaced({before}, 1), PATIENCE, "a new worker")
    status, body, _ = call(conn, "POST", "/api/pools/nope/stop")
    assert status == 404
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["op"], a["pool"], a["outcome"]) for a in audit] == [
        ("recycle", "default", "applied"),
        ("stop", "nope", "refused 404"),
    ]
    assert audit[0]["who"].startswith("uid ")


def test_config_write_lands_in_the_web_toml_keeps_comments_and_applies(
    served: Master, tmp_path: Path
) -> None:
    file = tmp_path / "www" / "blog" / "web.toml"
    assert served.get("/blog/x").headers["x-level"] == "blog"
    assert served.get("/x").headers["x-level"] == "server"
    conn = UnixConnection(served.control)
    status, found, response = call(conn, "GET", "/api/config/file?path=/blog")
    assert status == 200 and found["file"] == str(file) and found["exists"]
    assert response.headers["etag"] == f'"{found["version"]}"'
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/custom_headers?path=/blog",
        {"values": {"set": {"X-Level": "blog-new"}}, "version": found["version"]},
    )
    assert status == 200, body
    text = file.read_text()
    assert text.startswith("# The blog's own settings: kept by every write.\n")
    assert "# which level answered\n" in text and "# changed by the API" in text
    assert "blog-new" in text
    # Applied without a restart: the same worker answers with the new header.
    wait_for(
        lambda: served.get("/blog/x").headers.get("x-level") == "blog-new",
        PATIENCE,
        "the new header",
    )
    assert served.get("/x").headers["x-level"] == "server"
    # The version it was made against is stale now: a conflict, nothing written.
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/custom_headers?path=/blog",
        {"values": {"set": {"X-Level": "late"}}, "version": found["version"]},
    )
    assert status == 409 and body["version"] != found["version"]
    assert file.read_text() == text
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[0]["who"].startswith("uid ") and audit[0]["outcome"] == "applied"
    assert audit[0]["old"] == {"set": {"X-Level": "blog"}}
    assert audit[0]["new"] == {"set": {"X-Level": "blog-new"}}
    assert audit[1]["outcome"] == "refused 409"


def test_locked_and_invalid_writes_are_refused_and_change_nothing(
    served: Master, tmp_path: Path
) -> None:
    file = tmp_path / "www" / "blog" / "web.toml"
    before = file.read_bytes()
    conn = UnixConnection(served.control)
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/custom_headers?path=/blog",
        {"values": {"remove": ["Server"]}},
    )
    assert status == 403, body
    assert "locked by the server configuration" in body["error"]
    # Located as `colonnade check` locates it: file:line: key, and the lock's own line.
    assert re.search(r"blog/web\.toml:\d+: custom_headers\.remove: locked", body["error"])
    assert re.search(r"colonnade\.toml:\d+: lock\.custom_headers\.remove", body["error"])
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/custom_headers?path=/blog",
        {"values": {"set": {"Bad Name": "x"}}},
    )
    assert status == 422, body
    assert re.search(r"blog/web\.toml:\d+: custom_headers: set: 'Bad Name'", body["error"])
    assert file.read_bytes() == before
    # A folder that has no web.toml gets none from a refused write either.
    (tmp_path / "www" / "docs").mkdir()
    status, body, _ = call(
        conn, "PUT", "/api/config/sections/nosuch?path=/docs", {"values": {"a": 1}}
    )
    assert status == 422 and "nosuch" in body["error"]
    assert not (tmp_path / "www" / "docs" / "web.toml").exists()
    assert served.get("/blog/x").headers["x-level"] == "blog"


def test_server_file_write_reloads(served: Master) -> None:
    conn = UnixConnection(served.control)
    before = served.config.read_bytes()
    status, body, _ = call(
        conn, "PUT", "/api/config/sections/custom_headers", {"values": {"sett": {"X-A": "1"}}}
    )
    assert status == 422 and re.search(r"colonnade\.toml:\d+: custom_headers\.sett", body["error"])
    assert served.config.read_bytes() == before
    status, body, _ = call(conn, "PUT", "/api/config/sections/lock", {"values": {}})
    assert status == 400 and "not a section this API writes" in body["error"]
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/custom_headers",
        {"values": {"set": {"X-Level": "server-new"}}},
    )
    assert status == 200, body
    text = served.config.read_text()
    assert '"custom_headers.remove" = "deny"' in text and "server-new" in text
    wait_for(
        lambda: served.get("/x").headers.get("x-level") == "server-new",
        PATIENCE,
        "the reloaded header",
    )
    status, body, _ = call(conn, "DELETE", "/api/config/sections/custom_headers")
    assert status == 200, body
    assert "[custom_headers]" not in served.config.read_text()
    wait_for(lambda: "x-level" not in served.get("/x").headers, PATIENCE, "no header")


def test_admin_binding_needs_a_token(served: Master, tmp_path: Path) -> None:
    port = served.admin_port  # type: ignore[attr-defined]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    OPENED.append(conn)
    status, body, response = call(conn, "GET", "/api/pools")
    assert status == 401 and body == {"ok": False, "error": "not signed in"}
    assert response.headers["www-authenticate"].startswith("Bearer")
    status, body, _ = call(conn, "GET", "/api/pools", headers={"Authorization": "Bearer nope"})
    assert status == 403 and body == {"ok": False, "error": "forbidden"}
    auth = {"Authorization": "Bearer s3cret-token-1"}
    status, body, _ = call(conn, "GET", "/api/pools", headers=auth)
    assert status == 200 and body["pools"][0]["name"] == "default"
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/custom_headers?path=/blog",
        {"values": {"set": {"X-Level": "by-token"}}},
        headers=auth,
    )
    assert status == 200, body
    log = served.log()
    assert "refused 401" in log and "refused 403" in log
    assert "s3cret-token-1" not in log and "nope" not in log
    audit = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert audit["who"].startswith("token ops (127.0.0.1:")


def test_https_admin_binding_with_token_or_client_certificate(
    start_master: StartMaster, tmp_path: Path
) -> None:
    import ssl

    import trustme

    from tests.support.tls import client_context, issue

    ca = trustme.CA()
    server = issue(ca, tmp_path / "certs", "admin", "127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "certs" / "operators.pem"))
    (tmp_path / "tokens").write_text("ops s3cret-token-2\n")
    (tmp_path / "tokens").chmod(0o640)
    port = free_port()
    master = start_master(
        {"default": {}},
        extra=(
            f'[admin]\nbind = "https://127.0.0.1:{port}"\ntoken_file = "tokens"\n'
            'audit_log = "audit.jsonl"\n\n'
            f'[admin.tls]\ncertificate = "{server.cert}"\nkey = "{server.key}"\n'
            'client_ca = "certs/operators.pem"\n'
        ),
    )
    # The admin binding listens just after the control socket answers.
    wait_for(lambda: "admin API on" in master.log(), PATIENCE, "the admin binding")
    plain = client_context(ca)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=plain, timeout=PATIENCE)
    OPENED.append(conn)
    status, body, _ = call(conn, "GET", "/api/server")
    assert status == 401
    status, body, _ = call(
        conn, "GET", "/api/server", headers={"Authorization": "Bearer s3cret-token-2"}
    )
    assert status == 200 and body["server"]["admin_binding"] == f"https://127.0.0.1:{port}"
    # A client certificate the CA issued signs in without a token.
    signed = client_context(ca)
    ca.issue_cert("alice@example.com", common_name="alice").configure_cert(signed)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=signed, timeout=PATIENCE)
    OPENED.append(conn)
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/custom_headers",
        {"values": {"set": {"X-A": "1"}}},
    )
    # Signed in (the write is refused only because http.custom_headers is not enabled).
    assert status == 422 and "custom_headers" in body["error"]
    audit = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert audit["who"].startswith("certificate alice (127.0.0.1:")
    # One from another CA does not even finish the handshake.
    stranger = client_context(ca)
    trustme.CA().issue_cert("mallory@example.com").configure_cert(stranger)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=stranger, timeout=PATIENCE)
    OPENED.append(conn)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(conn, "GET", "/api/server")
    assert master.proc.poll() is None


def colonnade(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "colonnade"), *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 2,
    )


def test_cli_lists_and_writes_through_the_same_commands(served: Master, tmp_path: Path) -> None:
    control = ("--control", served.control)
    (pid,) = served.pids("default")
    shown = colonnade("workers", *control)
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split()[:4] == ["POOL", "PID", "STATE", "UPTIME"] and "CPU" in header
    assert row.split()[:3] == ["default", str(pid), "ready"]
    # Piped, not a terminal: no colour codes.
    assert "\x1b[" not in shown.stdout
    listed = json.loads(colonnade("workers", "--json", *control).stdout)
    assert [w["pid"] for w in listed] == [pid]
    sites = colonnade("sites", *control).stdout.splitlines()
    assert sites[0].split() == ["NAME", "BINDINGS", "POOL", "APPS", "ROOT"]
    assert sites[1].split()[:3] == ["main", f"http://127.0.0.1:{served.port}", "default"]
    apps = json.loads(colonnade("apps", "--json", *control).stdout)
    assert [(a["site"], a["path"]) for a in apps] == [("main", "/")]
    # A write: the same check, the same located errors, each on its own line.
    bad = colonnade(
        "config", "set", "custom_headers", "--path", "/blog", *control,
        "--values", '{"set": {"Bad Name": "x"}}',
    )  # fmt: skip
    assert bad.returncode == 1
    assert re.search(r"^colonnade: www/blog/web\.toml:\d+: custom_headers: set: ", bad.stderr)
    version = json.loads(colonnade("config", "file", "--path", "/blog", "--json", *control).stdout)
    done = colonnade(
        "config", "set", "custom_headers", "--path", "/blog", *control,
        "--values", '{"set": {"X-Level": "cli"}}', "--version", version["version"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "set [custom_headers] in " in done.stdout
    # Answered once every worker re-read it: the next request has it.
    assert served.get("/blog/x").headers.get("x-level") == "cli"
    # The server file's own sections too: [server], answered once applied.
    server = json.loads(colonnade("config", "file", "--json", *control).stdout)["sections"]
    done = colonnade(
        "config", "set", "server", *control,
        "--values", json.dumps({**server["server"], "server_header": "cli"}),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "set [server] in " in done.stdout
    assert served.get("/x").headers["server"] == "cli"
    (pid,) = served.pids("default")  # the pool was recycled for it
    # recycle --wait returns once the old worker is gone, saying so.
    recycled = colonnade("recycle", "default", "--wait", *control)
    assert recycled.returncode == 0, recycled.stderr
    assert recycled.stdout.splitlines()[-1].endswith("0 old one(s) left")
    assert pid not in served.pids("default")


def test_check_refuses_an_admin_binding_nobody_can_sign_in_to(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "tokens").write_text("ops t\n")
    (tmp_path / "tokens").chmod(0o644)
    site = '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:1"]\nroot = "www"\n\n'
    (tmp_path / "colonnade.toml").write_text(site + '[admin]\nbind = "127.0.0.1:2"\n')
    done = colonnade("check", "-c", str(tmp_path / "colonnade.toml"))
    assert done.returncode == 2
    assert re.search(r"colonnade\.toml:7: admin\.bind: an admin binding needs a way", done.stderr)
    (tmp_path / "colonnade.toml").write_text(
        site + '[admin]\nbind = "127.0.0.1:2"\ntoken_file = "tokens"\n'
    )
    done = colonnade("check", "-c", str(tmp_path / "colonnade.toml"))
    assert done.returncode == 2
    assert re.search(
        r"colonnade\.toml:8: admin\.token_file: .* may be read by every user", done.stderr
    )
    (tmp_path / "tokens").chmod(0o600)
    done = colonnade("check", "-c", str(tmp_path / "colonnade.toml"))
    assert done.returncode == 0, done.stderr


def test_a_client_that_expects_100_continue_is_told_to_send_the_body(served: Master) -> None:
    body = json.dumps({"values": {"set": {"X-Level": "x" * 2000}}}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(PATIENCE)
        sock.connect(served.control)
        sock.sendall(
            b"PUT /api/config/sections/custom_headers?path=/blog HTTP/1.1\r\nHost: c\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = b""
        while b'"ok"' not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_body_over_the_limit_is_refused_unread(served: Master) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(PATIENCE)
        sock.connect(served.control)
        sock.sendall(
            b"PUT /api/config/sections/custom_headers HTTP/1.1\r\nHost: c\r\n"
            b"Content-Length: %d\r\n\r\n" % (2 << 20)
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_server_pool_and_site_writes_answer_once_the_workers_serve_them(served: Master) -> None:
    conn = UnixConnection(served.control)
    status, body, _ = call(conn, "GET", "/api/config/file")
    assert status == 200 and {"server", "pools", "sites.main"} <= set(body["sections"])
    version = body["version"]
    server = body["sections"]["server"]
    assert server["timeouts"] == {"graceful": 5}
    before_pids = {w["pid"] for w in served.pool("default")["workers"]}

    # [server]: the Server header. The answer comes once the workers serve it, so
    # the very next request has the new header (no waiting here).
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/server",
        {"values": {**server, "server_header": "colonnade-ops"}, "version": version},
    )
    assert status == 200 and body["applied"] is True, body
    assert served.get("/x").headers["server"] == "colonnade-ops"
    text = served.config.read_text()
    assert 'server_header = "colonnade-ops"' in text and "[server.timeouts]\ngraceful = 5" in text
    # The old version is stale now: a conflict, the file untouched.
    status, body, _ = call(
        conn, "PUT", "/api/config/sections/server", {"values": server, "version": version}
    )
    assert status == 409 and body["version"] != version
    assert served.config.read_text() == text

    # [pools.default]: the pool recycles (a new worker), answered once it is ready.
    pool = {"start": "always", "recycling": {"requests": 100000}}
    status, body, _ = call(conn, "PUT", "/api/config/sections/pools.default", {"values": pool})
    assert status == 200 and body["applied"] is True, body
    ready = [w for w in served.pool("default")["workers"] if w["state"] == "ready"]
    assert ready and all(w["pid"] not in before_pids for w in ready)
    assert all(w["generation"] == body["generation"] for w in ready)
    assert "[pools.default]" in served.config.read_text()

    # [[sites]] by name: a bad value is refused where colonnade check would point.
    status, body, _ = call(conn, "GET", "/api/config/file")
    site = body["sections"]["sites.main"]
    text = served.config.read_text()
    status, body, _ = call(
        conn, "PUT", "/api/config/sections/sites.main", {"values": {**site, "pool": 7}}
    )
    assert status == 422 and re.search(r"colonnade\.toml:\d+: sites\[0\]\.pool|pool", body["error"])
    assert served.config.read_text() == text
    # A host name added to the site: served once answered.
    status, body, _ = call(
        conn,
        "PUT",
        "/api/config/sections/sites.main",
        {"values": {**site, "host_names": ["t"]}},
    )
    assert status == 200 and body["applied"] is True, body
    assert 'host_names = ["t"]' in served.config.read_text()
    assert served.get("/x").status == 200
    # [lock] and [admin] stay out of reach.
    for section in ("lock", "admin"):
        status, body, _ = call(conn, "PUT", f"/api/config/sections/{section}", {"values": {}})
        assert status == 400, section


def test_a_write_the_workers_cannot_apply_is_undone_and_says_so(served: Master) -> None:
    conn = UnixConnection(served.control)
    before = served.config.read_bytes()
    serving = {w["pid"] for w in served.pool("default")["workers"] if w["state"] == "ready"}
    # The master's check passes; the pool's new worker dies while it starts.
    pool = {"start": "always", "env": {"ACME_CRASH": "start"}}
    status, body, _ = call(conn, "PUT", "/api/config/sections/pools.default", {"values": pool})
    assert status == 500, body
    assert "could not apply" in body["error"] and "failed to start" in body["error"]
    assert "restored" in body["error"]
    assert served.config.read_bytes() == before
    # The previous configuration serves on: the worker that served before, or one
    # started with the restored file.
    assert served.get("/x").status == 200
    assert any(w["state"] == "ready" for w in served.pool("default")["workers"]), serving
    audit = json.loads((served.config.parent / "audit.jsonl").read_text().splitlines()[-1])
    assert audit["section"] == "pools.default" and audit["outcome"] == "refused 500"


def test_the_web_toml_tree_and_a_section_s_keys(served: Master, tmp_path: Path) -> None:
    conn = UnixConnection(served.control)
    status, body, _ = call(conn, "GET", "/api/config/tree")
    assert status == 200, body
    (site,) = body["sites"]
    (app,) = site["applications"]
    assert (site["name"], app["path"], app["pool"]) == ("main", "/", "default")
    assert app["folders"] == [
        {
            "path": "/blog",
            "file": str(tmp_path / "www" / "blog" / "web.toml"),
            "sections": ["custom_headers"],
            "broken": None,
        }
    ]
    status, body, _ = call(conn, "GET", "/api/config/tree?site=nosuch")
    assert status == 404
    status, body, _ = call(conn, "GET", "/api/config/schema/custom_headers")
    assert status == 200, body
    keys = {k["key"]: k for k in body["keys"]}
    assert keys["set"]["type"] == "json" and keys["set"]["default"] == {}
    status, body, _ = call(conn, "GET", "/api/config/schema/server")
    keys = {k["key"]: k for k in body["keys"]}
    assert keys["request_monitor"] == {
        "key": "request_monitor",
        "nullable": False,
        "type": "boolean",
        "default": True,
    }
    assert keys["control_socket"]["nullable"] and keys["control_socket"]["type"] == "string"
    status, body, _ = call(conn, "GET", "/api/config/schema/pools.default")
    keys = {k["key"]: k for k in body["keys"]}
    assert keys["start"]["type"] == "enum" and "always" in keys["start"]["choices"]
    status, body, _ = call(conn, "GET", "/api/config/schema/nosuch")
    assert status == 404 and "no loaded module" in body["error"]
