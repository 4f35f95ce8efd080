"""Basic authentication over real sockets: a WSGI and an ASGI app see the user,
the access log names it, bad headers are 401 with the challenge."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.hosting.support import EXTRA
from tests.modules.basic_auth.support import RequireUser, basic, htpasswd, needs_htpasswd
from tests.support.wait import PATIENCE, wait_for

pytestmark = needs_htpasswd


def _config(tmp_path: Path, app: str) -> dict[str, Any]:
    return {
        "server": {"modules": ["auth.basic", "test.require_user", "log.http", "handler.static"]},
        "sites": [
            {
                "name": "s",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [{"path": "/private", "app": app}],
            }
        ],
        "basic_authentication": {
            "enabled": True,
            "realm": "Colonnade test",
            "user_file": str(tmp_path / "users.htpasswd"),
        },
        "http_logging": {"target": str(tmp_path / "access.log"), "buffer_size": 0},
    }


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    htpasswd(tmp_path / "users.htpasswd", "alice", "wonder-land")
    return tmp_path


def test_wsgi_app_sees_remote_user_and_the_access_log_names_it(files: Path) -> None:
    config = _config(files, "tests.hosting.apps.wsgi_apps:environ_app")
    with LiveServer(config, files, modules=[*EXTRA, RequireUser]).start() as server:
        status, headers, body = _get(server.port, "/private/env", basic("alice", "wonder-land"))
        assert status == 200
        environ = json.loads(body)
        assert (environ["REMOTE_USER"], environ["AUTH_TYPE"]) == ("alice", "Basic")
        status, headers, _ = _get(server.port, "/private/env", {})
        assert status == 401
        assert headers["www-authenticate"] == 'Basic realm="Colonnade test", charset="UTF-8"'
        status, headers, _ = _get(server.port, "/private/env", basic("alice", "Wonder-land"))
        assert status == 401 and "www-authenticate" in headers
    log = files / "access.log"
    lines = wait_for(
        lambda: [ln for ln in log.read_text().splitlines() if "/private/env" in ln],
        PATIENCE,
        "three requests in the access log",
    )
    fields = next(ln for ln in log.read_text().splitlines() if ln.startswith("#Fields:")).split()
    user, status_at, sub = (
        fields.index(f) - 1 for f in ("cs-username", "sc-status", "sc-substatus")
    )
    assert [(ln.split()[user], ln.split()[status_at], ln.split()[sub]) for ln in lines] == [
        ("alice", "200", "0"),
        ("-", "401", "2"),
        ("-", "401", "1"),
    ]
    assert "Wonder-land" not in log.read_text() and "wonder-land" not in log.read_text()


def test_asgi_app_sees_the_user(files: Path) -> None:
    config = _config(files, "tests.hosting.apps.asgi_apps:scope_app")
    with LiveServer(config, files, modules=[*EXTRA, RequireUser]).start() as server:
        status, _, body = _get(server.port, "/private/scope", basic("alice", "wonder-land"))
        assert status == 200
        assert json.loads(body)["user"] == "alice"


@pytest.mark.parametrize(
    "value",
    [
        "Basic " + "A" * 20000,  # over the core's limit for any Authorization value
        "Basic " + base64.b64encode(b"\xc3\x28:pw").decode(),  # not UTF-8
        "Basic not base64!",
    ],
)
def test_bad_headers_over_the_wire_are_401_with_the_challenge(files: Path, value: str) -> None:
    config = _config(files, "tests.hosting.apps.wsgi_apps:environ_app")
    with LiveServer(config, files, modules=[*EXTRA, RequireUser]).start() as server:
        status, headers, _ = _get(server.port, "/private/env", {"Authorization": value})
    assert status == 401
    assert headers["www-authenticate"].startswith('Basic realm="Colonnade test"')
