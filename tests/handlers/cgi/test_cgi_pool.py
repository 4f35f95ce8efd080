"""handler.cgi in a pool's worker process: the script runs as the worker's child,
inside the pool's Landlock sandbox, with none of the worker's environment."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Process
from tests.e2e.wire import Conn
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

SITE = """[server]
modules = ["handler.static", "handler.cgi"]

[pools.default]
sandbox = true

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[handlers]]
path = "*.cgi"
handler = "handler.cgi"
resource_type = "file"

[[handlers]]
path = "*"
handler = "handler.static"

[cgi]
allowed_programs = ["{www}/*.cgi"]
environment = {{ SECRET = "{secret}" }}
"""

SCRIPT = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
if cat "$SECRET" >/dev/null 2>&1; then echo read=ok; else echo read=denied; fi
if echo x > "$DOCUMENT_ROOT/written" 2>/dev/null; then echo write=ok; else echo write=denied; fi
echo "pool=$COLONNADE_POOL"
echo "parent=$PPID"
"""


def test_a_script_runs_inside_the_pools_sandbox(tmp_path: Path) -> None:
    from colonnade.pools.sandbox import landlock_abi

    if landlock_abi() < 1:
        pytest.skip("this kernel has no Landlock")
    base = Path(os.path.realpath(tmp_path))
    www = base / "www"
    www.mkdir()
    secret = base / "secret.txt"
    secret.write_text("not for scripts")
    script = www / "probe.cgi"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    port = free_port()
    (base / "colonnade.toml").write_text(SITE.format(port=port, www=www, secret=secret))
    server = Process(["-c", "colonnade.toml", "--workers", "1"], cwd=base, port=port)
    try:
        with Conn(port) as conn:
            conn.send(b"GET /probe.cgi HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            wire = conn.response()
        assert wire.status == 200, wire.body
        lines = dict(line.split("=", 1) for line in wire.body.decode().split())
        assert lines["read"] == "denied"  # outside the site's folders
        assert lines["write"] == "denied"  # the content is read-only to the pool
        assert lines["pool"] == ""  # none of the worker's environment
        parent = int(lines["parent"])
        assert parent != server.proc.pid  # the worker's child, not the master's
        assert not (www / "written").exists()
    finally:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(15)
        finally:
            server.kill()
