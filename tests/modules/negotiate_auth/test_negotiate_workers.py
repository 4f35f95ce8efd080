"""auth.negotiate in real ``colonnade serve`` processes: pool workers (each with its
own acceptor credentials and token threads) and a start-up refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Process
from tests.support.ports import free_port
from tests.support.wait import PATIENCE

from .conftest import HOST, REALM, USER
from .kdc import Realm

APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("REMOTE_USER", "-").encode()]
"""

CONFIG = """
[server]
modules = ["auth.negotiate", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[sites.applications]]
path = "/app"
root = "app"
app = "negotiate_worker_app:app"
app_dir = "app"

[windows_authentication]
enabled = true
keytab = "{keytab}"
replay_cache = "file2:{folder}/rcache"
"""


def tree(tmp_path: Path, port: int, keytab: Path) -> Path:
    (tmp_path / "www").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "negotiate_worker_app.py").write_text(APP)
    (tmp_path / "colonnade.toml").write_text(
        CONFIG.format(port=port, keytab=keytab, folder=tmp_path)
    )
    return tmp_path


@pytest.mark.parametrize("workers", ["0", "2"], ids=["single-process", "two-workers"])
def test_logons_in_serve_processes(tmp_path: Path, realm: Realm, workers: str) -> None:
    port = free_port()
    # The child inherits KRB5_CONFIG (the realm's) from this process.
    server = Process(
        ["-c", "colonnade.toml", "--workers", workers], tree(tmp_path, port, realm.keytab), port
    )
    try:
        with httpx.Client(timeout=PATIENCE) as client:
            for _ in range(8):  # new connections, to whichever worker accepts each
                response = client.get(
                    f"http://127.0.0.1:{port}/app/",
                    headers={
                        "Host": f"{HOST}:{port}",
                        "Authorization": realm.negotiate(),
                        "Connection": "close",
                    },
                )
                assert (response.status_code, response.text) == (200, f"{USER}@{REALM}")
            refused = client.get(
                f"http://127.0.0.1:{port}/app/",
                headers={"Host": f"{HOST}:{port}", "Authorization": "Negotiate AAAA"},
            )
            assert refused.status_code == 401
            assert refused.headers.get_list("www-authenticate") == ["Negotiate"]
    finally:
        server.kill()


def test_serve_refuses_to_start_naming_the_key(tmp_path: Path, realm: Realm) -> None:
    port = free_port()
    folder = tree(tmp_path, port, tmp_path / "missing.keytab")
    done = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "serve", "-c", "colonnade.toml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode != 0
    assert "windows_authentication.keytab" in done.stderr
    assert "missing.keytab (no such file" in done.stderr
