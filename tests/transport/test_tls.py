"""https:// bindings over real sockets: certificates by SNI, the store, refusal,
versions, resumption, rotation, passphrases, and clients that are not TLS at all.

The server runs in a thread (``LiveServer``) on the binding's own port; the
certificates come from a test CA made per test (trustme).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from colonnade.config.load import from_dict
from colonnade.errors import ConfigError
from colonnade.transport.tls import check_tls, require_valid_tls
from tests.e2e.conftest import LiveServer, Process
from tests.support.ports import free_port
from tests.support.tls import Issued, client_context, handshake, issue, request, tls_socket
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("Hello over TLS")
    return tmp_path


def config(port: int, sites: list[dict[str, Any]], **tls: Any) -> dict[str, Any]:
    return {
        "server": {"modules": ["handler.static"], "tls": {"reload_check": 0.05, **tls}},
        "sites": [
            {"root": "www", "bindings": [f"https://127.0.0.1:{port}"], **site} for site in sites
        ],
    }


def serve(cfg: dict[str, Any], folder: Path, port: int) -> LiveServer:
    require_valid_tls(from_dict(cfg, source=str(folder / "c.toml"), base_dir=str(folder)))
    return LiveServer(cfg, folder, port=port).start()


def serve_www(
    ca: trustme.CA, folder: Path, servers: list[LiveServer], **server: Any
) -> tuple[int, Issued]:
    """One site with a certificate for www.example.test; ``server``: [server.tls]
    settings, and ``limits`` and ``http2``."""
    port = free_port()
    www = issue(ca, folder / "certs", "www", "www.example.test")
    limits = server.pop("limits", None)
    http2 = server.pop("http2", None)
    cfg = config(
        port,
        [{"name": "main", "tls": {"certificate": str(www.cert), "key": str(www.key)}}],
        **server,
    )
    if limits is not None:
        cfg["server"]["limits"] = limits
    if http2 is not None:
        cfg["server"]["http2"] = http2
    servers.append(serve(cfg, folder, port))
    return port, www


def test_a_site_certificate_serves_http11_with_modern_settings(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port, www = serve_www(ca, folder, servers)
    seen = handshake(port, "www.example.test", client_context(ca, alpn=["h2", "http/1.1"]))
    assert seen.der == www.der
    assert seen.version == "TLSv1.3"
    assert seen.alpn == "h2"  # HTTP/2 is offered first
    trusted = client_context(ca, alpn=["http/1.1"])
    assert handshake(port, "www.example.test", trusted).alpn == "http/1.1"
    head, body = request(port, "www.example.test", trusted)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"Hello over TLS"
    # TLS 1.2 gets an ECDHE suite with AEAD, never CBC or RSA key exchange.
    tls12 = handshake(port, "www.example.test", client_context(ca, maximum=ssl.TLSVersion.TLSv1_2))
    assert tls12.version == "TLSv1.2"
    assert tls12.cipher.startswith("ECDHE-") and ("GCM" in tls12.cipher or "CHACHA" in tls12.cipher)


def test_tls_1_1_and_1_0_are_refused(
    ca: trustme.CA, folder: Path, servers: list[LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = serve_www(ca, folder, servers)
    with warnings.catch_warnings():  # asking for TLS 1.0/1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old = client_context(minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client try what it otherwise would not
    with caplog.at_level(logging.INFO, logger="colonnade.tls"):
        with pytest.raises(ssl.SSLError):
            handshake(port, "www.example.test", old)
        wait_for(
            lambda: any("no TLS version accepted" in r.getMessage() for r in caplog.records),
            PATIENCE,
            "the refused handshake logged",
        )
    assert servers[0].look(lambda s: (len(s.handshakes), len(s.connections))) == (0, 0)


def test_min_version_1_3_refuses_tls_1_2(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port, _ = serve_www(ca, folder, servers, min_version="1.3")
    with pytest.raises(ssl.SSLError):
        handshake(port, "www.example.test", client_context(maximum=ssl.TLSVersion.TLSv1_2))
    assert handshake(port, "www.example.test").version == "TLSv1.3"


def sni_setup(ca: trustme.CA, folder: Path, port: int, **server_tls: Any) -> dict[str, Issued]:
    certs = folder / "certs"
    store = folder / "store"
    return {
        "a": issue(ca, certs, "a", "a.test"),
        "b": issue(ca, certs, "b", "b.test", combined=True),
        "c": issue(ca, store, "c.test", "c.test"),
        "wild": issue(ca, store, "_.wild.test", "*.wild.test", combined=True),
        "exact": issue(ca, store, "x.wild.test", "x.wild.test"),
    }


def test_certificates_are_chosen_by_sni_from_sites_and_the_store(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port = free_port()
    made = sni_setup(ca, folder, port)
    cfg = config(
        port,
        [
            {
                "name": "a",
                "host_names": ["a.test"],
                "tls": {"certificate": str(made["a"].cert), "key": str(made["a"].key)},
            },
            {"name": "b", "host_names": ["B.test"], "tls": {"certificate": str(made["b"].cert)}},
            {"name": "rest"},
        ],
        certificate_store=str(folder / "store"),
    )
    servers.append(serve(cfg, folder, port))
    trusted = client_context(ca)
    assert handshake(port, "a.test", trusted).der == made["a"].der
    assert handshake(port, "b.test", trusted).der == made["b"].der
    assert handshake(port, "c.test", trusted).der == made["c"].der
    # The exact file wins over the wildcard one; the wildcard covers one label only.
    assert handshake(port, "x.wild.test", trusted).der == made["exact"].der
    assert handshake(port, "y.wild.test", trusted).der == made["wild"].der
    assert handshake(port, "C.TEST", trusted).der == made["c"].der  # names are case-blind
    # No certificate for these names, and no default: refused with unrecognized_name.
    for name in ("z.y.wild.test", "unknown.test", None):
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            handshake(port, name)
    head, body = request(port, "y.wild.test", trusted)
    assert head.startswith(b"HTTP/1.1 200") and body == b"Hello over TLS"
    assert servers[0].look(lambda s: s.tls.port(port).refused) == 3  # type: ignore[union-attr]


def test_unknown_names_get_the_default_certificate_when_there_is_one(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port = free_port()
    made = sni_setup(ca, folder, port)
    default = issue(ca, folder / "certs", "default", "default.test")
    cfg = config(
        port,
        [
            {
                "name": "a",
                "host_names": ["a.test", "c.test"],
                "tls": {"certificate_store": str(folder / "store")},
            }
        ],
        certificate=str(default.cert),
        key=str(default.key),
    )
    servers.append(serve(cfg, folder, port))
    assert handshake(port, "unknown.test").der == default.der
    assert handshake(port, None).der == default.der  # no SNI at all
    # The site's store serves its host names; a name it has no file for gets the default.
    assert handshake(port, "c.test").der == made["c"].der
    assert handshake(port, "a.test").der == default.der


def test_session_resumption_with_tickets(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port, _ = serve_www(ca, folder, servers)
    ctx = client_context(ca, maximum=ssl.TLSVersion.TLSv1_2)
    with tls_socket(port, "www.example.test", ctx) as s:
        first = s.session
        assert not s.session_reused
    assert handshake(port, "www.example.test", ctx, session=first).reused


def test_a_plain_http_client_on_the_tls_port_is_closed_cleanly(
    ca: trustme.CA, folder: Path, servers: list[LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = serve_www(ca, folder, servers)
    with caplog.at_level(logging.INFO, logger="colonnade.tls"):
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
            try:
                rest = s.recv(65536)
                while rest and not rest.startswith(b"HTTP/"):  # never an HTTP answer
                    rest = s.recv(65536)
            except ConnectionResetError:
                rest = b""
            assert rest == b""
        wait_for(
            lambda: [r for r in caplog.records if "plain HTTP request" in r.getMessage()],
            PATIENCE,
            "the plain HTTP client logged",
        )
    records = [r for r in caplog.records if r.name == "colonnade.tls"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].exc_info is None
    assert servers[0].look(lambda s: (len(s.handshakes), len(s.connections))) == (0, 0)
    head, _ = request(port, "www.example.test", client_context(ca))
    assert head.startswith(b"HTTP/1.1 200")


def test_a_stalled_handshake_times_out_and_frees_its_slot(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port, _ = serve_www(ca, folder, servers, handshake_timeout=0.3, limits={"max_connections": 1})
    server = servers[0]
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
        wait_for(lambda: server.look(lambda st: len(st.handshakes)) == 1, PATIENCE, "handshaking")
        # The one slot is taken: another connection is closed at once.
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            handshake(port, "www.example.test", client_context(ca))
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""  # closed by the server after handshake_timeout
    wait_for(lambda: server.look(lambda st: len(st.handshakes)) == 0, PATIENCE, "the slot freed")
    head, _ = request(port, "www.example.test", client_context(ca))
    assert head.startswith(b"HTTP/1.1 200")


def test_rotation_keeps_open_connections_and_new_handshakes_see_the_new_certificate(
    ca: trustme.CA, folder: Path, servers: list[LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    port, old = serve_www(ca, folder, servers)
    trusted = client_context(ca)
    with tls_socket(port, "www.example.test", trusted) as kept:
        assert kept.getpeercert(binary_form=True) == old.der

        def get() -> bytes:
            kept.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
            data = b""
            while not data.endswith(b"Hello over TLS"):
                chunk = kept.recv(65536)
                assert chunk, "the kept-alive connection was closed"
                data += chunk
            return data

        assert get().startswith(b"HTTP/1.1 200")
        # Rotation as tools do it: new files written beside, renamed over the old.
        new = issue(ca, folder / "next", "www", "www.example.test")
        assert new.key is not None and old.key is not None
        os.replace(new.key, old.key)
        os.replace(new.cert, old.cert)
        wait_for(
            lambda: handshake(port, "www.example.test", trusted).der == new.der,
            PATIENCE,
            "a new handshake presenting the new certificate",
        )
        assert get().startswith(b"HTTP/1.1 200")  # the old connection still serves

        # A broken file: the new certificate goes on serving, the log says why once.
        with caplog.at_level(logging.INFO, logger="colonnade.tls"):
            old.cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
            # Files are looked at when a handshake needs them (reload_check apart).
            wait_for(
                lambda: (
                    handshake(port, "www.example.test", trusted).der == new.der
                    and [r for r in caplog.records if "does not load" in r.getMessage()]
                ),
                PATIENCE,
                "the broken file logged",
            )
            for _ in range(5):
                assert handshake(port, "www.example.test", trusted).der == new.der
        broken = [r for r in caplog.records if "does not load" in r.getMessage()]
        assert len(broken) == 1
        assert str(old.cert) in broken[0].getMessage()
        assert get().startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("source", ["file", "env"])
def test_an_encrypted_key_is_unlocked_by_a_passphrase_file_or_variable(
    ca: trustme.CA,
    folder: Path,
    servers: list[LiveServer],
    source: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    secret = b"correct horse battery staple"
    www = issue(ca, folder / "certs", "www", "www.example.test", passphrase=secret)
    tls: dict[str, Any] = {"certificate": str(www.cert), "key": str(www.key)}
    if source == "file":
        (folder / "pass.txt").write_bytes(secret + b"\n")
        tls["passphrase_file"] = str(folder / "pass.txt")
    else:
        monkeypatch.setenv("WWW_KEY_PASSPHRASE", secret.decode())
        tls["passphrase_env"] = "WWW_KEY_PASSPHRASE"
    with caplog.at_level(logging.DEBUG):
        servers.append(serve(config(port, [{"name": "main", "tls": tls}]), folder, port))
        assert handshake(port, "www.example.test", client_context(ca)).der == www.der
    assert all(secret.decode() not in r.getMessage() for r in caplog.records)


def check(cfg: dict[str, Any], folder: Path) -> list[str]:
    return [
        f"{e.key}: {e.message}"
        for e in check_tls(from_dict(cfg, source=str(folder / "c.toml"), base_dir=str(folder)))
    ]


def test_the_check_names_what_is_wrong(ca: trustme.CA, folder: Path) -> None:
    secret = b"s3cret-passphrase"
    locked = issue(ca, folder / "certs", "locked", "www.example.test", passphrase=secret)
    (folder / "wrong.txt").write_text("not it\n")
    other = issue(ca, folder / "certs", "other", "other.test")
    mismatched = folder / "certs" / "mismatch.pem"
    mismatched.write_bytes(other.cert.read_bytes())
    cfg: dict[str, Any] = {
        "sites": [
            {
                "name": "a",
                "root": "www",
                "bindings": ["https://127.0.0.1:8443"],
                "tls": {"certificate": str(locked.cert), "key": str(locked.key)},
            },
            {
                "name": "b",
                "root": "www",
                "bindings": ["https://127.0.0.1:8444"],
                "host_names": ["b"],
                "tls": {
                    "certificate": str(locked.cert),
                    "key": str(locked.key),
                    "passphrase_file": "wrong.txt",
                },
            },
            {
                "name": "c",
                "root": "www",
                "bindings": ["https://127.0.0.1:8445"],
                "tls": {
                    "certificate": str(mismatched),
                    "key": str(locked.key),
                    "passphrase_file": "wrong.txt",
                },
            },
            {
                "name": "d",
                "root": "www",
                "bindings": ["http://127.0.0.1:8443"],
                "host_names": ["d"],
            },
            {"name": "e", "root": "www", "bindings": ["https://127.0.0.1:8446"]},
            {
                "name": "f",
                "root": "www",
                "bindings": ["http://127.0.0.1:8447"],
                "tls": {"certificate_store": "nowhere"},
            },
        ]
    }
    found = check(cfg, folder)
    assert found[0] == (
        f"sites[0].tls.certificate: {locked.cert}: the private key is encrypted: "
        "set passphrase_file or passphrase_env"
    )
    assert found[1].startswith(
        f"sites[1].tls.certificate: {locked.cert}: the private key does not decrypt"
    )
    assert found[2].startswith("sites[2].tls.certificate:")
    assert "sites[5].tls: the site has no https:// binding" in found[3]
    assert found[4] == f"sites[5].tls.certificate_store: no such folder: {folder / 'nowhere'}"
    assert found[5].startswith("sites[0].bindings[0]: port 8443 is bound as https here and as http")
    assert found[6].startswith("sites[4].bindings[0]: no certificate for port 8446")
    assert len(found) == 7
    assert all("not it" not in line for line in found)
    with pytest.raises(ConfigError):
        require_valid_tls(from_dict(cfg, source=str(folder / "c.toml"), base_dir=str(folder)))


def test_the_check_names_the_missing_file_certificate_or_key(ca: trustme.CA, folder: Path) -> None:
    www = issue(ca, folder / "certs", "www", "www.example.test")

    def site(certificate: Path, key: Path) -> dict[str, Any]:
        tls = {"certificate": str(certificate), "key": str(key)}
        return {"name": "a", "root": "www", "bindings": ["https://127.0.0.1:8443"], "tls": tls}

    gone = folder / "certs" / "gone.pem"
    # load_cert_chain's error does not say which file is missing: the check does.
    assert check({"sites": [site(www.cert, gone)]}, folder) == [
        f"sites[0].tls.key: cannot read {gone}: No such file or directory"
    ]
    assert check({"sites": [site(gone, www.key)]}, folder) == [
        f"sites[0].tls.certificate: cannot read {gone}: No such file or directory"
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_the_page_over_https_with_sni(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port = free_port()
    made = sni_setup(ca, folder, port)
    cfg = config(port, [{"name": "any"}], certificate_store=str(folder / "store"))
    servers.append(serve(cfg, folder, port))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    assert made["wild"].der
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--cacert",
            str(folder / "ca.pem"),
            "--resolve",
            f"q.wild.test:{port}:127.0.0.1",
            "-w",
            "\n%{http_code} %{http_version} %{ssl_verify_result}",
            f"https://q.wild.test:{port}/hello.txt",
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=True,
    ).stdout
    assert out == "Hello over TLS\n200 2 0"  # --http2: curl asks for h2 by ALPN and gets it
    refused = subprocess.run(
        [
            "curl",
            "-sS",
            "-k",
            "--resolve",
            f"nothing.test:{port}:127.0.0.1",
            f"https://nothing.test:{port}/hello.txt",
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert refused.returncode == 35, refused.stderr  # CURLE_SSL_CONNECT_ERROR
    assert "unrecognized name" in refused.stderr.lower()


def test_the_access_log_records_tls_version_cipher_and_sni(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    https, http = free_port(), free_port()
    www = issue(ca, folder / "certs", "www", "www.example.test", combined=True)
    log_file = folder / "access.log"
    cfg = config(https, [{"name": "main", "tls": {"certificate": str(www.cert)}}])
    cfg["sites"][0]["bindings"].append(f"http://127.0.0.1:{http}")
    cfg["server"]["modules"] = ["handler.static", "log.http"]
    cfg["http_logging"] = {
        "target": str(log_file),
        "buffer_size": 0,
        "fields": ["cs-uri-stem", "x-tls-version", "x-tls-cipher", "x-tls-sni"],
    }
    require_valid_tls(from_dict(cfg, source=str(folder / "c.toml"), base_dir=str(folder)))
    servers.append(LiveServer(cfg, folder, port=https, more_ports=(http,)).start())
    seen = handshake(https, "www.example.test", client_context(ca))
    request(https, "www.example.test", client_context(ca), "/hello.txt")
    request(https, "WWW.example.test", client_context(ca), "/hello.txt?upper")
    with socket.create_connection(("127.0.0.1", http), timeout=PATIENCE) as s:
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass

    def logged() -> list[str] | None:
        text = log_file.read_text() if log_file.exists() else ""
        found = [line for line in text.splitlines() if not line.startswith("#")]
        return found if len(found) == 3 else None

    lines = wait_for(logged, PATIENCE, "three access log lines")
    assert lines == [
        f"/hello.txt TLSv1.3 {seen.cipher} www.example.test",
        f"/hello.txt TLSv1.3 {seen.cipher} www.example.test",
        "/plain - - -",
    ]


def test_a_reload_whose_certificate_does_not_load_is_refused(ca: trustme.CA, folder: Path) -> None:
    port = free_port()
    www = issue(ca, folder / "certs", "www", "www.example.test", combined=True)
    config = folder / "colonnade.toml"
    text = f"""
[[sites]]
name = "main"
root = "www"
bindings = ["https://127.0.0.1:{port}"]

[sites.tls]
certificate = "{www.cert}"
"""
    config.write_text(text)
    server = Process(["-c", str(config), "--no-watch"], folder, port)
    try:
        # The socket listens before the signal handlers are in place: wait for them.
        wait_for(lambda: "listening on https://" in server.stderr(), PATIENCE, "serving")
        config.write_text(text.replace(str(www.cert), str(folder / "certs" / "missing.pem")))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "refused" in server.stderr(), PATIENCE, "the reload refused")
        assert "sites[0].tls.certificate:" in server.stderr()
        assert f"cannot read {folder / 'certs' / 'missing.pem'}: No such file" in server.stderr()
        assert handshake(port, "www.example.test", client_context(ca)).der == www.der
    finally:
        server.kill()


def test_the_store_notices_files_added_and_removed(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port = free_port()
    store = folder / "store"
    store.mkdir()
    servers.append(
        serve(config(port, [{"name": "any"}], certificate_store=str(store)), folder, port)
    )
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        handshake(port, "new.test")
    added = issue(ca, folder / "made", "new.test", "new.test")
    assert added.key is not None
    # The key first, then the certificate: the name appears with both in place.
    os.replace(added.key, store / "new.test.key")
    os.replace(added.cert, store / "new.test.pem")
    wait_for(lambda: _presented(port, "new.test") == added.der, PATIENCE, "the added file served")
    (store / "new.test.pem").unlink()
    wait_for(lambda: _presented(port, "new.test") is None, PATIENCE, "the removed file gone")


def _presented(port: int, name: str) -> bytes | None:
    try:
        return handshake(port, name).der
    except ssl.SSLError:
        return None


def test_alpn_h2_serves_http2_over_tls_and_can_be_turned_off(
    ca: trustme.CA, folder: Path, servers: list[LiveServer]
) -> None:
    port, _ = serve_www(ca, folder, servers)
    ctx = client_context(ca)
    with httpx.Client(http1=False, http2=True, verify=ctx) as client:
        for _ in range(3):  # several streams on the one connection
            got = client.get(
                f"https://127.0.0.1:{port}/hello.txt",
                headers={"host": "www.example.test"},
                extensions={"sni_hostname": "www.example.test"},
            )
            assert got.http_version == "HTTP/2" and got.status_code == 200
            assert got.text == "Hello over TLS"
    off, _ = serve_www(ca, folder, servers, http2={"enabled": False})
    assert handshake(off, "www.example.test", client_context(ca, alpn=["h2", "http/1.1"])).alpn == (
        "http/1.1"
    )
