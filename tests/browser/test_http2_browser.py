"""Chromium loads a page over HTTPS and speaks HTTP/2 to Colonnade, as a browser does.

The server is started here with an ``https://`` binding and a certificate from a
test CA (trustme) for ``www.example.test``; Chromium (headless, driven over the
DevTools protocol) resolves that name to 127.0.0.1 (``--host-resolver-rules``,
so the handshake carries the SNI name as a real one would) and trusts the
certificate by its public key (``--ignore-certificate-errors-spki-list``: the
switch Chromium offers for a test server's certificate; it needs no system
trust store, no NSS database and no tool to fill one). The page's script and the
test read the protocol the browser negotiated from the Navigation/Resource
Timing API (``nextHopProtocol``), and the server's access log must say HTTP/2
for the same requests.

Needs Debian's ``chromium`` (skipped without it, except under CI).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.browser.test_forms_browser import DevTools
from tests.browser.test_listing_browser import chromium
from tests.e2e.conftest import LiveServer
from tests.support.ports import free_port
from tests.support.tls import issue
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

NAME = "www.example.test"
PAGE = """<!doctype html>
<html><head><title>over h2</title><script src="/app.js"></script></head>
<body><p id="protocol">not run</p></body></html>
"""
# Written by the page itself: what the browser says it spoke for the page and for
# the script it loaded on the same connection.
SCRIPT = """
addEventListener("DOMContentLoaded", () => {
  const page = performance.getEntriesByType("navigation")[0].nextHopProtocol;
  const script = performance.getEntriesByName(new URL("/app.js", location).href)[0];
  document.getElementById("protocol").textContent =
    page + " " + (script ? script.nextHopProtocol : "none");
});
"""


def spki_hash(der: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): how Chromium's switch names a key."""
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[LiveServer, Path, str]]:
    """A site over https on its own port; (server, its access log, the SPKI hash)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text(PAGE)
    (www / "app.js").write_text(SCRIPT)
    cert = issue(trustme.CA(), tmp_path / "certs", "www", NAME)
    port = free_port()
    log = tmp_path / "access.log"
    config = {
        "server": {"modules": ["handler.static", "log.http"]},
        "sites": [
            {
                "name": "main",
                "root": "www",
                "host_names": [NAME],
                "bindings": [f"https://127.0.0.1:{port}"],
                "tls": {"certificate": str(cert.cert), "key": str(cert.key)},
            }
        ],
        "http_logging": {
            "target": str(log),
            "buffer_size": 0,
            "fields": ["cs-uri-stem", "cs-version", "sc-status", "x-tls-version", "x-tls-sni"],
        },
    }
    server = LiveServer(config, tmp_path, port=port).start()
    yield server, log, spki_hash(cert.der)
    server.stop()


def test_chromium_loads_a_page_over_https_with_http2(
    site: tuple[LiveServer, Path, str], tmp_path: Path
) -> None:
    server, log, spki = site
    browser = DevTools(
        chromium(),
        tmp_path / "profile",
        f"--host-resolver-rules=MAP {NAME} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={spki}",
    )
    try:
        browser.goto(f"https://{NAME}:{server.port}/index.html")
        assert browser.evaluate("location.protocol") == "https:"
        # The page's own script ran and reports h2 for the page and for itself.
        assert browser.evaluate("document.getElementById('protocol').textContent") == "h2 h2"
        navigation = "performance.getEntriesByType('navigation')[0].nextHopProtocol"
        assert browser.evaluate(navigation) == "h2"
    finally:
        browser.close()

    def logged() -> dict[str, list[str]] | None:
        lines = [x.split() for x in log.read_text().splitlines() if not x.startswith("#")]
        found = {x[0]: x[1:] for x in lines if x[0] in ("/index.html", "/app.js")}
        return found if len(found) == 2 else None

    found = wait_for(logged, PATIENCE, "the page and its script in the access log")
    assert found == {
        "/index.html": ["HTTP/2", "200", "TLSv1.3", NAME],
        "/app.js": ["HTTP/2", "200", "TLSv1.3", NAME],
    }
