"""Certificates made by a test CA (trustme), written where a server reads them, and
a TLS client that says which certificate the server presented."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import trustme
from cryptography.hazmat.primitives import serialization

from tests.support.wait import PATIENCE


class Issued(NamedTuple):
    """A certificate as files, and its DER form (what a client sees)."""

    cert: Path
    key: Path | None
    der: bytes


def issue(
    ca: trustme.CA,
    folder: Path,
    stem: str,
    *names: str,
    combined: bool = False,
    passphrase: bytes | None = None,
) -> Issued:
    """A certificate for ``names`` as ``folder/stem.pem`` (+ ``stem.key``, unless
    ``combined``); its key encrypted with ``passphrase`` when given."""
    issued = ca.issue_cert(*names)
    folder.mkdir(parents=True, exist_ok=True)
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    key_pem = issued.private_key_pem.bytes()
    if passphrase is not None:
        key = serialization.load_pem_private_key(key_pem, None)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
    cert_path = folder / f"{stem}.pem"
    key_path: Path | None = None
    if combined:
        cert_path.write_bytes(key_pem + chain)
    else:
        cert_path.write_bytes(chain)
        key_path = folder / f"{stem}.key"
        key_path.write_bytes(key_pem)
    der = ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode())
    return Issued(cert_path, key_path, der)


def client_context(
    ca: trustme.CA | None = None,
    *,
    alpn: list[str] | None = None,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context trusting ``ca`` (None: trusting anything, to look at what the
    server presents whatever it is)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        ca.configure_trust(ctx)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


@contextlib.contextmanager
def tls_socket(
    port: int,
    name: str | None,
    ctx: ssl.SSLContext,
    *,
    session: ssl.SSLSession | None = None,
) -> Iterator[ssl.SSLSocket]:
    """A TLS connection to ``127.0.0.1:port`` with SNI ``name`` (None: none)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as raw,
        ctx.wrap_socket(raw, server_hostname=name, session=session) as s,
    ):
        yield s


class Session(NamedTuple):
    """What one handshake showed."""

    der: bytes
    version: str
    cipher: str
    alpn: str | None
    reused: bool


def handshake(
    port: int,
    name: str | None,
    ctx: ssl.SSLContext | None = None,
    *,
    session: ssl.SSLSession | None = None,
) -> Session:
    """Connect, shake hands with SNI ``name`` (None: send none) and report."""
    with tls_socket(port, name, ctx or client_context(), session=session) as s:
        der = s.getpeercert(binary_form=True) or b""
        cipher = s.cipher()
        return Session(
            der,
            s.version() or "",
            cipher[0] if cipher else "",
            s.selected_alpn_protocol(),
            s.session_reused,
        )


def request(
    port: int, name: str, ctx: ssl.SSLContext, path: str = "/hello.txt"
) -> tuple[bytes, bytes]:
    """``GET path`` on a new TLS connection; the head and body of the answer."""
    with tls_socket(port, name, ctx) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def production_like(folder: Path, host: str) -> tuple[Path, Path]:
    """A CA and a certificate for ``host`` shaped like a public CA's (90 days, a CRL
    distribution point), for auditors that judge the certificate too; returns the
    combined PEM for the server and the CA's PEM for the auditor."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Colonnade audit CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    crl = x509.DistributionPoint(
        [x509.UniformResourceIdentifier(f"http://{host}/audit-ca.crl")], None, None, None
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.CRLDistributionPoints([crl]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    server = folder / f"{host}.pem"
    server.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(pem)
        + ca_cert.public_bytes(pem)
    )
    ca_file = folder / "audit-ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    return server, ca_file
