"""The client certificate as the core hands it on: parsed fields, mod_ssl's
variables (made once per connection), validity at the moment, and a certificate
that does not parse."""

from __future__ import annotations

import calendar
import logging
import ssl
import time

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from colonnade.core.clientcert import asn1_time, certificate_variables, parse_certificate
from colonnade.core.request import TlsInfo


def der_of(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def made(subject: list[tuple[x509.ObjectIdentifier, str]], serial: int) -> bytes:
    """A self-signed certificate with ``subject`` and ``serial`` (DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
    now = time.time()
    import datetime

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime.datetime.fromtimestamp(now - 60, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(now + 3600, datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def test_fields_in_mod_ssl_form() -> None:
    der = made(
        [
            (NameOID.COUNTRY_NAME, "DE"),
            (NameOID.ORGANIZATION_NAME, "Example"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "Eng"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"),
            (NameOID.COMMON_NAME, "alice"),
            (NameOID.EMAIL_ADDRESS, "alice@example.test"),
        ],
        0xABC,
    )
    cert = parse_certificate(der)
    # RFC 4514: the last attribute first, as mod_ssl (2.4) writes SSL_CLIENT_S_DN.
    assert cert.subject == "emailAddress=alice@example.test,CN=alice,OU=Ops,OU=Eng,O=Example,C=DE"
    assert cert.values("OU") == ["Eng", "Ops"]
    assert cert.values("E") == cert.values("emailaddress") == ["alice@example.test"]
    assert cert.serial_hex == "0ABC"
    variables = certificate_variables(cert)
    assert variables["SSL_CLIENT_S_DN_OU"] == "Eng"
    assert variables["SSL_CLIENT_S_DN_OU_1"] == "Ops"
    assert variables["SSL_CLIENT_S_DN_Email"] == "alice@example.test"
    assert variables["SSL_CLIENT_I_DN_CN"] == "alice"  # self-signed
    assert variables["SSL_CLIENT_M_SERIAL"] == "0ABC"
    assert variables["SSL_CLIENT_M_VERSION"] == "3"
    assert ssl.PEM_cert_to_DER_cert(variables["SSL_CLIENT_CERT"]) == der


def test_asn1_time_is_openssls() -> None:
    assert asn1_time(0) == "Jan  1 00:00:00 1970 GMT"
    assert asn1_time(calendar.timegm((2026, 12, 15, 9, 20, 7))) == "Dec 15 09:20:07 2026 GMT"


def test_ssl_variables_are_made_once_per_connection_and_verify_per_request() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("a@example.test", common_name="alice")
    der = der_of(leaf)
    tls = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", "www.test", "h2", "accept", der)
    first = tls.ssl_variables()
    assert first["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert first["SSL_TLS_SNI"] == "www.test" and first["HTTPS"] == "on"
    assert tls.client is tls.client  # parsed once
    # No certificate: the same dict every time (nothing made per request).
    bare = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", None, None, "accept")
    assert bare.ssl_variables() is bare.ssl_variables()
    assert bare.ssl_variables()["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_TLS_SNI" not in bare.ssl_variables()
    # A site that does not ask: no SSL_CLIENT_* at all.
    ignore = TlsInfo("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", None, None)
    assert not any(k.startswith("SSL_CLIENT") for k in ignore.ssl_variables())


def test_a_certificate_that_does_not_parse(caplog: pytest.LogCaptureFixture) -> None:
    tls = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", None, None, "require", b"\x30\x03junk")
    with caplog.at_level(logging.WARNING, logger="colonnade.tls"):
        assert tls.client is None
        assert tls.client is None
        assert tls.client_invalid
        assert tls.ssl_variables()["SSL_CLIENT_VERIFY"] == "FAILED:certificate does not parse"
    # Said once per connection, without a traceback.
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
