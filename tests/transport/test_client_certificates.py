"""Client certificates over real sockets: asked for in the handshake per SNI name,
checked against the site's CA, judged per path by ``security.ssl`` (403.7, 403.17),
passed to WSGI and ASGI applications and to the access log; curl with ``--cert``.

Certificates come from test CAs made per test (trustme); the expired one too.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.sync.client import connect as ws_connect

from colonnade.config.load import from_dict
from colonnade.transport.tls import TlsSet, check_tls, require_valid_tls
from tests.e2e.conftest import LiveServer
from tests.support.ports import free_port
from tests.support.tls import client_context, issue, request, tls_socket
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

UTC = datetime.UTC

WSGI_APP = """
import json


def app(environ, start_response):
    seen = {k: v for k, v in environ.items() if k.startswith("SSL_") or k == "HTTPS"}
    seen["REMOTE_USER"] = environ.get("REMOTE_USER")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]
"""

ASGI_APP = """
import json


async def app(scope, receive, send):
    tls = scope["extensions"].get("tls") if scope["type"] != "lifespan" else None
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(tls)})
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(tls).encode()})
"""


class Tree:
    """A server folder: content, apps, the server's certificate, the client CA."""

    def __init__(self, root: Path, ca: trustme.CA) -> None:
        self.root = root
        self.ca = ca
        www = root / "www"
        (www / "secure").mkdir(parents=True)
        (www / "hello.txt").write_text("hello")
        (www / "secure" / "inner.txt").write_text("inner")
        for name, source in (("wsgi", WSGI_APP), ("asgi", ASGI_APP)):
            (root / name).mkdir()
            # A module name of its own: apps are imported by name, once per process.
            (root / name / f"cc_{name}_app.py").write_text(source)
        self.client_ca = root / "clients.pem"
        ca.cert_pem.write_to_path(str(self.client_ca))
        self.server = issue(ca, root / "certs", "www", "www.test", "other.test")

    def config(
        self, port: int, site_tls: dict[str, Any], modules: list[str] | None = None
    ) -> dict[str, Any]:
        tls = {"certificate": str(self.server.cert), "key": str(self.server.key), **site_tls}
        return {
            "server": {
                "modules": modules or ["security.ssl", "handler.static", "log.http"],
                "tls": {"reload_check": 0.05},
            },
            "sites": [
                {
                    "name": "main",
                    "root": "www",
                    "bindings": [f"https://127.0.0.1:{port}"],
                    "tls": tls,
                    "applications": [
                        {
                            "path": "/wsgi",
                            "root": "wsgi",
                            "app": "cc_wsgi_app:app",
                            "app_dir": "wsgi",
                        },
                        {
                            "path": "/asgi",
                            "root": "asgi",
                            "app": "cc_asgi_app:app",
                            "app_dir": "asgi",
                        },
                    ],
                }
            ],
            "http_logging": {
                "target": str(self.root / "access.log"),
                "buffer_size": 0,
                "fields": [
                    "cs-uri-stem",
                    "sc-status",
                    "sc-substatus",
                    "x-tls-client-subject",
                    "x-tls-client-sha256",
                ],
            },
        }

    def serve(self, cfg: dict[str, Any], port: int, servers: list[LiveServer]) -> None:
        require_valid_tls(from_dict(cfg, source=str(self.root / "c.toml"), base_dir=str(self.root)))
        servers.append(LiveServer(cfg, self.root, port=port).start())

    def start(self, mode: str, servers: list[LiveServer]) -> int:
        """Serve with ``client_certificates = mode`` and the test CA; the port."""
        port = free_port()
        cfg = self.config(port, {"client_certificates": mode, "client_ca": str(self.client_ca)})
        self.serve(cfg, port, servers)
        return port

    def log_lines(self, count: int) -> list[str]:
        path = self.root / "access.log"

        def lines() -> list[str] | None:
            text = path.read_text() if path.exists() else ""
            found = [line for line in text.splitlines() if not line.startswith("#")]
            return found if len(found) >= count else None

        return wait_for(lines, PATIENCE, f"{count} access log lines")


def client(
    ca: trustme.CA, cert: trustme.LeafCert | None = None, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = client_context(ca, alpn=["http/1.1"], maximum=maximum)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


def get(port: int, path: str, ctx: ssl.SSLContext, name: str = "www.test") -> tuple[str, bytes]:
    """``GET path`` over a new TLS connection: the status line and the body."""
    head, body = request(port, name, ctx, path)
    return head.split(b"\r\n")[0].decode(), body


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when a request over a new connection gets no HTTP answer at all."""
    try:
        status, body = get(port, "/hello.txt", ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    return status == "" and body == b""


def expired(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(
        "old@example.test",
        common_name="old",
        not_before=datetime.datetime(2019, 1, 1, tzinfo=UTC),
        not_after=datetime.datetime(2020, 1, 1, tzinfo=UTC),
    )


def test_accept_passes_the_certificate_to_wsgi_asgi_and_the_log(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer]
) -> None:
    tree = Tree(tmp_path, ca)
    port = tree.start("accept", servers)
    alice = ca.issue_cert(
        "alice@example.test",
        common_name="alice",
        organization_name="Example",
        organization_unit_name="Eng",
    )
    alice_pem = alice.cert_chain_pems[0].bytes().decode()
    alice_der = ssl.PEM_cert_to_DER_cert(alice_pem)

    status, body = get(port, "/wsgi/", client(ca, alice))
    assert status == "HTTP/1.1 200 OK"
    env = json.loads(body)
    assert env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == "TLSv1.3"
    assert env["SSL_TLS_SNI"] == "www.test"
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == "CN=alice,OU=Eng,O=Example"
    assert env["SSL_CLIENT_S_DN_CN"] == "alice"
    assert env["SSL_CLIENT_S_DN_O"] == "Example"
    assert env["SSL_CLIENT_I_DN"].startswith("OU=") and "O=trustme" in env["SSL_CLIENT_I_DN"]
    assert ssl.PEM_cert_to_DER_cert(env["SSL_CLIENT_CERT"]) == alice_der
    # mod_ssl's forms: upper-case hex serial, OpenSSL's ASN.1 time.
    assert int(env["SSL_CLIENT_M_SERIAL"], 16) > 0 and env["SSL_CLIENT_M_SERIAL"].isupper()
    assert len(env["SSL_CLIENT_M_SERIAL"]) % 2 == 0
    assert env["SSL_CLIENT_V_END"].endswith(" GMT")
    datetime.datetime.strptime(env["SSL_CLIENT_V_START"], "%b %d %H:%M:%S %Y GMT")

    status, body = get(port, "/asgi/", client(ca, alice))
    ext = json.loads(body)
    assert ext["client_cert_name"] == "CN=alice,OU=Eng,O=Example"
    assert [ssl.PEM_cert_to_DER_cert(p) for p in ext["client_cert_chain"]] == [alice_der]
    assert ext["client_cert_error"] is None
    assert ext["tls_version"] == 0x0304
    assert ext["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    assert ssl.PEM_cert_to_DER_cert(ext["server_cert"]) == tree.server.der

    # A WebSocket's scope has the extension too.
    with ws_connect(
        f"wss://www.test:{port}/asgi/ws",
        ssl=client(ca, alice),
        sock=socket.create_connection(("127.0.0.1", port), timeout=PATIENCE),
        server_hostname="www.test",
    ) as ws:
        assert json.loads(ws.recv(timeout=PATIENCE))["client_cert_name"] == (
            "CN=alice,OU=Eng,O=Example"
        )

    # accept: a client without a certificate is served, and sees none.
    status, body = get(port, "/wsgi/", client(ca))
    assert status == "HTTP/1.1 200 OK"
    env = json.loads(body)
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in env and "SSL_CLIENT_CERT" not in env
    ext = json.loads(get(port, "/asgi/", client(ca))[1])
    assert ext["client_cert_chain"] == [] and ext["client_cert_name"] is None
    # TLS 1.2 asks for the certificate too.
    env = json.loads(get(port, "/wsgi/", client(ca, alice, ssl.TLSVersion.TLSv1_2))[1])
    assert env["SSL_PROTOCOL"] == "TLSv1.2" and env["SSL_CLIENT_VERIFY"] == "SUCCESS"

    fingerprint = hashlib.sha256(alice_der).hexdigest()
    lines = tree.log_lines(6)
    assert lines[0] == f"/wsgi/ 200 0 CN=alice,OU=Eng,O=Example {fingerprint}"
    assert f"/asgi/ws 101 0 CN=alice,OU=Eng,O=Example {fingerprint}" in lines
    assert "/wsgi/ 200 0 - -" in lines


def test_require_answers_403_7_without_a_certificate_and_403_17_to_an_expired_one(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    tree = Tree(tmp_path, ca)
    port = tree.start("require", servers)
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    assert get(port, "/hello.txt", client(ca, alice)) == ("HTTP/1.1 200 OK", b"hello")
    with caplog.at_level(logging.INFO):
        for maximum in (None, ssl.TLSVersion.TLSv1_2):
            status, body = get(port, "/hello.txt", client(ca, maximum=maximum))
            assert status == "HTTP/1.1 403 Forbidden"
            assert b"403.7" in body and b"client certificate required" in body.lower()
            status, body = get(port, "/hello.txt", client(ca, expired(ca), maximum))
            assert status == "HTTP/1.1 403 Forbidden"
            assert b"403.17" in body
        # The WSGI application is not reached, nor is any handler.
        assert get(port, "/wsgi/", client(ca))[0] == "HTTP/1.1 403 Forbidden"
    lines = tree.log_lines(6)
    assert [line.split()[1:3] for line in lines[1:5]] == [["403", "7"], ["403", "17"]] * 2
    assert "CN=old" in lines[2]
    # Logged once each per application and reason (the WSGI app is another
    # application), at INFO, never with a traceback.
    refusals = [r.getMessage() for r in caplog.records if "403." in r.getMessage()]
    assert len(refusals) == 3, refusals
    assert [m.split(": ")[0:2] for m in refusals] == [
        ["GET /hello.txt", "403.7 Forbidden"],
        ["GET /hello.txt", "403.17 Forbidden"],
        ["GET /wsgi/", "403.7 Forbidden"],
    ]
    refusals = [r for r in caplog.records if "403." in r.getMessage()]
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in refusals)


def test_an_untrusted_certificate_fails_the_handshake_logged_once(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    tree = Tree(tmp_path, ca)
    port = tree.start("accept", servers)
    stranger = trustme.CA().issue_cert("mallory@example.test")
    with caplog.at_level(logging.INFO, logger="colonnade.tls"):
        for maximum in (None, ssl.TLSVersion.TLSv1_2):
            # The connection closes without an answer. (TLS 1.3: the client's
            # handshake is over before the server has read its certificate, so
            # the client sees the close at its first read.)
            assert refused(port, client(ca, stranger, maximum))
        wait_for(
            lambda: len([r for r in caplog.records if "not trusted" in r.getMessage()]) == 2,
            PATIENCE,
            "two refused handshakes logged",
        )
    failures = [r for r in caplog.records if "not trusted" in r.getMessage()]
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in failures)
    assert "unable to get local issuer certificate" in failures[0].getMessage()
    assert servers[0].look(lambda s: (len(s.handshakes), len(s.connections))) == (0, 0)
    # The port goes on serving.
    assert get(port, "/hello.txt", client(ca))[0] == "HTTP/1.1 200 OK"


def test_a_resumed_session_keeps_its_certificate(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer]
) -> None:
    tree = Tree(tmp_path, ca)
    port = tree.start("require", servers)
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    for maximum in (None, ssl.TLSVersion.TLSv1_2):
        ctx = client(ca, alice, maximum)
        session = None
        for _ in range(2):
            with tls_socket(port, "www.test", ctx, session=session) as s:
                s.sendall(b"GET /wsgi/ HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                session, reused = s.session, s.session_reused
            env = json.loads(data.partition(b"\r\n\r\n")[2])
            assert env["SSL_CLIENT_S_DN_CN"] == "alice"
        assert reused  # the second connection resumed, and still has the certificate


def test_the_choice_is_made_per_sni_name(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer]
) -> None:
    """Two sites on one port: one asks for certificates, one does not."""
    tree = Tree(tmp_path, ca)
    port = free_port()
    cfg = tree.config(port, {"client_certificates": "require", "client_ca": str(tree.client_ca)})
    cfg["sites"][0]["host_names"] = ["www.test"]
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "hello.txt").write_text("open")
    cfg["sites"].append(
        {
            "name": "open",
            "root": "open",
            "host_names": ["other.test"],
            "bindings": [f"https://127.0.0.1:{port}"],
            "tls": {"certificate": str(tree.server.cert), "key": str(tree.server.key)},
        }
    )
    tree.serve(cfg, port, servers)
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    assert get(port, "/hello.txt", client(ca, alice)) == ("HTTP/1.1 200 OK", b"hello")
    assert get(port, "/hello.txt", client(ca))[0] == "HTTP/1.1 403 Forbidden"
    # The other site's handshake asks for nothing: even a certificate from another
    # CA does not matter there (it is never sent).
    stranger = trustme.CA().issue_cert("mallory@example.test")
    assert get(port, "/hello.txt", client(ca, stranger), "other.test") == (
        "HTTP/1.1 200 OK",
        b"open",
    )


def test_web_toml_requires_a_certificate_for_a_folder(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer]
) -> None:
    tree = Tree(tmp_path, ca)
    port = free_port()
    cfg = tree.config(port, {"client_certificates": "accept", "client_ca": str(tree.client_ca)})
    cfg["lock"] = {"ssl_settings": "allow"}
    (tmp_path / "www" / "secure" / "web.toml").write_text(
        '[ssl_settings]\nclient_certificates = "require"\n'
    )
    tree.serve(cfg, port, servers)
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    assert get(port, "/hello.txt", client(ca))[0] == "HTTP/1.1 200 OK"
    status, body = get(port, "/secure/inner.txt", client(ca))
    assert status == "HTTP/1.1 403 Forbidden" and b"403.7" in body
    assert get(port, "/secure/inner.txt", client(ca, alice)) == ("HTTP/1.1 200 OK", b"inner")


def test_a_handshake_started_for_another_name_is_refused(ca: trustme.CA, tmp_path: Path) -> None:
    """The front context is chosen from the name peeked before the handshake; the
    SNI callback refuses a name whose site would start another (a ClientHello split
    over records hides its name from the peek), so that no site's certificate is
    asked for or checked by another site's rules."""
    tree = Tree(tmp_path, ca)
    crl = tmp_path / "clients.crl"
    crl.write_bytes(revocation_list(ca))
    cfg = tree.config(443, {"client_certificates": "accept", "client_ca": str(tree.client_ca)})
    cfg["sites"].append(
        {
            "name": "strict",
            "root": "www",
            "host_names": ["other.test"],
            "bindings": ["https://127.0.0.1:443"],
            "tls": {**cfg["sites"][0]["tls"], "client_crl": str(crl)},
        }
    )
    config = from_dict(cfg, source=str(tmp_path / "c.toml"), base_dir=str(tmp_path))
    port = TlsSet.build(config, ["http/1.1"]).ports[443]
    assert port.peek and len(port.fronts) == 2
    assert port.front(None) is port.front("www.test") is not port.front("other.test")

    class Conn:
        context: ssl.SSLContext | None = None

    assert port._sni(Conn(), "other.test", port.front("other.test")) is None  # type: ignore[arg-type]
    refused = port._sni(Conn(), "other.test", port.front(None))  # type: ignore[arg-type]
    assert refused == ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE


def test_a_folder_cannot_require_what_the_handshake_does_not_ask(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer]
) -> None:
    tree = Tree(tmp_path, ca)
    port = free_port()
    cfg = tree.config(port, {})
    cfg["locations"] = [{"path": "main/secure", "ssl_settings": {"client_certificates": "require"}}]
    tree.serve(cfg, port, servers)
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    status, body = get(port, "/secure/inner.txt", client(ca, alice))
    assert status == "HTTP/1.1 403 Forbidden" and b"403.7" in body
    # The administrator (a local client) is told what to change.
    assert b"does not ask for one" in body


def test_the_client_ca_file_reloads_when_it_changes(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    tree = Tree(tmp_path, ca)
    port = tree.start("require", servers)
    other = trustme.CA()
    bob = other.issue_cert("bob@example.test", common_name="bob")
    assert refused(port, client(ca, bob))
    # Now the bundle trusts both CAs (written anew and renamed over, as tools do).
    new = tmp_path / "clients.new"
    new.write_bytes(ca.cert_pem.bytes() + other.cert_pem.bytes())
    new.replace(tree.client_ca)

    wait_for(lambda: not refused(port, client(ca, bob)), PATIENCE, "the new client CA in use")
    # A broken file keeps the last good one serving, and says why.
    with caplog.at_level(logging.ERROR, logger="colonnade.tls"):
        tree.client_ca.write_text("not a certificate\n")

        def reported() -> bool:
            # Files are looked at when a handshake needs them.
            assert get(port, "/hello.txt", client(ca, bob))[0] == "HTTP/1.1 200 OK"
            return any("holds no PEM certificate" in r.getMessage() for r in caplog.records)

        wait_for(reported, PATIENCE, "the broken client CA file reported")
    assert get(port, "/hello.txt", client(ca, bob))[0] == "HTTP/1.1 200 OK"
    broken = [r for r in caplog.records if "holds no PEM certificate" in r.getMessage()]
    assert len(broken) == 1 and "the previous one goes on serving" in broken[0].getMessage()


def revocation_list(ca: trustme.CA, *revoked: trustme.LeafCert) -> bytes:
    """A CRL of ``ca`` (PEM) listing ``revoked``; its next update is past already."""
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject
    now = datetime.datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(now - datetime.timedelta(days=8))
        .next_update(now - datetime.timedelta(days=1))
    )
    for leaf in revoked:
        serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_revoked_certificate_fails_the_handshake(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    tree = Tree(tmp_path, ca)
    alice = ca.issue_cert("alice@example.test", common_name="alice")
    bob = ca.issue_cert("bob@example.test", common_name="bob")
    crl = tmp_path / "clients.crl"
    crl.write_bytes(revocation_list(ca, bob))
    port = free_port()
    cfg = tree.config(
        port,
        {
            "client_certificates": "require",
            "client_ca": str(tree.client_ca),
            "client_crl": str(crl),
        },
    )
    tree.serve(cfg, port, servers)
    with caplog.at_level(logging.INFO, logger="colonnade.tls"):
        # An out-of-date list still counts (dates are not checked in the handshake).
        assert get(port, "/hello.txt", client(ca, alice))[0] == "HTTP/1.1 200 OK"
        assert refused(port, client(ca, bob))
        wait_for(
            lambda: any("(certificate revoked)" in r.getMessage() for r in caplog.records),
            PATIENCE,
            "the revoked certificate logged",
        )
    # A new list is read for new handshakes.
    new = tmp_path / "clients.crl.new"
    new.write_bytes(revocation_list(ca, alice))
    new.replace(crl)
    wait_for(lambda: refused(port, client(ca, alice)), PATIENCE, "alice revoked")
    assert get(port, "/hello.txt", client(ca, bob))[0] == "HTTP/1.1 200 OK"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_and_without_cert_over_http2_and_http11(
    ca: trustme.CA, tmp_path: Path, servers: list[LiveServer]
) -> None:
    tree = Tree(tmp_path, ca)
    port = tree.start("require", servers)
    alice = ca.issue_cert("alice@example.test", common_name="alice", organization_name="Example")
    alice.cert_chain_pems[0].write_to_path(str(tmp_path / "alice.pem"))
    alice.private_key_pem.write_to_path(str(tmp_path / "alice.key"))
    old = expired(ca)
    old.cert_chain_pems[0].write_to_path(str(tmp_path / "old.pem"))
    old.private_key_pem.write_to_path(str(tmp_path / "old.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    def curl(*args: str) -> str:
        return subprocess.run(
            [
                "curl",
                "-sS",
                "--cacert",
                str(tmp_path / "ca.pem"),
                "--resolve",
                f"www.test:{port}:127.0.0.1",
                "-w",
                "\n%{http_code} %{http_version}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=True,
        ).stdout

    cert = ["--cert", str(tmp_path / "alice.pem"), "--key", str(tmp_path / "alice.key")]
    for version in ("--http2", "--http1.1"):
        expect = "2" if version == "--http2" else "1.1"
        out = curl(version, *cert, f"https://www.test:{port}/wsgi/")
        body, _, code = out.rpartition("\n")
        assert code == f"200 {expect}"
        assert json.loads(body)["SSL_CLIENT_S_DN_CN"] == "alice"
        out = curl(version, f"https://www.test:{port}/hello.txt")
        assert out.endswith(f"\n403 {expect}") and "403.7" in out
        out = curl(
            version,
            "--cert",
            str(tmp_path / "old.pem"),
            "--key",
            str(tmp_path / "old.key"),
            f"https://www.test:{port}/hello.txt",
        )
        assert out.endswith(f"\n403 {expect}") and "403.17" in out


def check(cfg: dict[str, Any], folder: Path) -> list[str]:
    config = from_dict(cfg, source=str(folder / "c.toml"), base_dir=str(folder))
    return [f"{e.key}: {e.message}" for e in check_tls(config)]


def test_the_check_names_what_is_wrong(ca: trustme.CA, tmp_path: Path) -> None:
    tree = Tree(tmp_path, ca)
    (tmp_path / "junk.pem").write_text("this is not a certificate\n")
    port = free_port()
    assert (
        check(
            tree.config(port, {"client_certificates": "require", "client_ca": str(tree.client_ca)}),
            tmp_path,
        )
        == []
    )
    # require without a CA to check against
    assert check(tree.config(port, {"client_certificates": "accept"}), tmp_path) == [
        "sites[0].tls.client_certificates: client_certificates = 'accept' needs client_ca: "
        "the CA certificates (PEM) client certificates must chain to"
    ]
    # a CA file that is no certificate, or missing
    junk = check(
        tree.config(port, {"client_certificates": "accept", "client_ca": "junk.pem"}), tmp_path
    )
    assert junk == [
        f"sites[0].tls.client_ca: the client CA file {tmp_path / 'junk.pem'} "
        "holds no PEM certificate"
    ]
    # A comment in another script is fine; a block that is not base64 DER is not.
    (tmp_path / "commented.pem").write_bytes("Zürich staff CA\n".encode() + ca.cert_pem.bytes())
    commented = {"client_certificates": "accept", "client_ca": "commented.pem"}
    assert check(tree.config(port, commented), tmp_path) == []
    (tmp_path / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    broken = check(tree.config(port, {"client_ca": "broken.pem"}), tmp_path)
    assert len(broken) == 1 and "broken.pem does not load" in broken[0], broken
    no_crl = check(
        tree.config(port, {"client_ca": str(tree.client_ca), "client_crl": "junk.pem"}), tmp_path
    )
    assert no_crl == [
        f"sites[0].tls.client_crl: the client CRL file {tmp_path / 'junk.pem'} holds no PEM "
        "revocation list"
    ]
    missing = check(tree.config(port, {"client_ca": "nowhere.pem"}), tmp_path)
    assert len(missing) == 1 and "cannot read the client CA file" in missing[0]
    # require with nobody to enforce it
    lax = tree.config(
        port,
        {"client_certificates": "require", "client_ca": str(tree.client_ca)},
        ["handler.static"],
    )
    assert check(lax, tmp_path) == [
        "sites[0].tls.client_certificates: client_certificates = 'require' is enforced by the "
        "module security.ssl (it answers 403.7 to a request without a certificate), which is "
        "not in server.modules"
    ]
    # inherited from [server.tls]
    cfg = tree.config(port, {})
    cfg["server"]["tls"].update(client_certificates="accept", client_ca=str(tree.client_ca))
    assert check(cfg, tmp_path) == []
