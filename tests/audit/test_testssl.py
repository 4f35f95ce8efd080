"""testssl.sh against a live https binding of ``colonnade serve``: no finding of
severity HIGH or CRITICAL, TLS 1.2 and 1.3 only. About a minute: run by
``make tls-audit`` (the ``tls_audit`` marker), not by ``make test``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Process
from tests.support.ports import free_port
from tests.support.tls import production_like

pytestmark = [pytest.mark.e2e, pytest.mark.tls_audit]

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")


@pytest.mark.skipif(TESTSSL is None, reason="testssl.sh is not installed (make sysdeps)")
def test_testssl_finds_nothing_high_or_critical(tmp_path: Path) -> None:
    assert TESTSSL is not None
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<!DOCTYPE html><title>audit</title>")
    server_pem, ca_pem = production_like(tmp_path, "localhost")
    port = free_port()
    (tmp_path / "colonnade.toml").write_text(
        f"""
[server]
modules = ["http.hsts", "static.default_document", "handler.static"]

[hsts]
enabled = true
max_age = 31536000

[[sites]]
name = "audit"
root = "www"
bindings = ["https://127.0.0.1:{port}"]

[sites.tls]
certificate = "{server_pem}"
"""
    )
    server = Process(["-c", "colonnade.toml", "--no-watch"], tmp_path, port)
    try:
        report = tmp_path / "testssl.json"
        run = subprocess.run(
            [
                TESTSSL,
                "--quiet",
                "--color",
                "0",
                "--warnings",
                "off",
                "--add-ca",
                str(ca_pem),
                "--jsonfile",
                str(report),
                f"https://localhost:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        # The human-readable report, for docs/tls.md's summary: printed when -s.
        print(run.stdout)
        findings = json.loads(report.read_text())
    finally:
        server.kill()
    by_id = {f["id"]: f for f in findings}
    bad = [
        f"{f['id']}: {f['severity']} {f['finding']}"
        for f in findings
        if f["severity"] in ("HIGH", "CRITICAL")
    ]
    assert bad == [], "\n".join(bad)
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert by_id[old]["finding"].startswith("not offered"), by_id[old]
    for new in ("TLS1_2", "TLS1_3"):
        assert by_id[new]["finding"].startswith("offered"), by_id[new]
    assert by_id["HSTS_time"]["severity"] == "OK", by_id["HSTS_time"]
