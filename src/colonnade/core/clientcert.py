"""A TLS client certificate as modules, handlers and applications see it.

The transport keeps the certificate a client presented as DER bytes on the
connection's :class:`~colonnade.core.request.TlsInfo`; it is parsed here (with
``cryptography``, imported only then) the first time something asks, once per
connection. The handshake has already checked that it chains to the site's
``client_ca``, but not its dates (see ``transport/tls.py``): :meth:`problem`
says whether it is valid now, and every user of a certificate asks it.

What applications get is built here once, for every gateway: the ``SSL_*``
variables Apache's mod_ssl defines (:func:`ssl_variables`, for WSGI and CGI).
"""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.x509 import Name

#: :meth:`ClientCertificate.problem`'s words (OpenSSL's, as mod_ssl's
#: ``SSL_CLIENT_VERIFY`` and the ASGI ``client_cert_error`` carry them).
EXPIRED = "certificate has expired"
NOT_YET_VALID = "certificate is not yet valid"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Short names of the distinguished-name attributes, by dotted OID (RFC 4514 and
#: OpenSSL's; ``ST`` is IIS's ``S``, ``emailAddress`` IIS's ``E``).
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.11": "OU",
    "2.5.4.10": "O",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "2.5.4.5": "serialNumber",
    "2.5.4.4": "SN",
    "2.5.4.42": "GN",
    "2.5.4.12": "title",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
    "1.2.840.113549.1.9.1": "emailAddress",
}

#: Other spellings of a field name a mapping rule may use (upper case), and the
#: name it means (upper case): IIS writes ``S`` and ``E``.
FIELD_ALIASES = {"S": "ST", "E": "EMAILADDRESS", "EMAIL": "EMAILADDRESS"}

#: The mod_ssl names of the ``SSL_CLIENT_S_DN_*`` component variables.
_MOD_SSL_COMPONENTS = {
    "CN": "CN",
    "OU": "OU",
    "O": "O",
    "L": "L",
    "ST": "ST",
    "C": "C",
    "emailAddress": "Email",
    "UID": "UID",
}


class ClientCertificate:
    """The parsed client certificate of one connection (immutable once made)."""

    __slots__ = (
        "der",
        "issuer",
        "issuer_fields",
        "not_after",
        "not_before",
        "serial",
        "sha1",
        "sha256",
        "subject",
        "subject_fields",
    )

    def __init__(
        self,
        der: bytes,
        subject: str,
        issuer: str,
        subject_fields: tuple[tuple[str, str], ...],
        issuer_fields: tuple[tuple[str, str], ...],
        serial: int,
        not_before: float,
        not_after: float,
    ) -> None:
        self.der = der
        self.subject = subject
        """The subject's distinguished name, RFC 4514 (``CN=alice,O=Example``)."""
        self.issuer = issuer
        """The issuer's distinguished name, RFC 4514."""
        self.subject_fields = subject_fields
        """The subject's attributes in certificate order: (short name, value)."""
        self.issuer_fields = issuer_fields
        """The issuer's attributes in certificate order: (short name, value)."""
        self.serial = serial
        self.not_before = not_before
        """The start of validity (POSIX seconds)."""
        self.not_after = not_after
        """The end of validity (POSIX seconds)."""
        import hashlib  # here: only a client certificate needs it (OpenSSL's libcrypto)

        self.sha256 = hashlib.sha256(der).hexdigest()
        """The SHA-256 fingerprint of the DER form, lower-case hex without colons."""
        self.sha1 = hashlib.sha1(der, usedforsecurity=False).hexdigest()
        """The SHA-1 fingerprint (IIS's "thumbprint"), lower-case hex."""

    def problem(self, now: float | None = None) -> str | None:
        """Why the certificate is not valid at ``now`` (default: this moment), or
        None when it is (:data:`EXPIRED`, :data:`NOT_YET_VALID`)."""
        if now is None:
            now = time.time()
        if now > self.not_after:
            return EXPIRED
        if now < self.not_before:
            return NOT_YET_VALID
        return None

    def values(self, field: str, *, issuer: bool = False) -> list[str]:
        """The values of attribute ``field`` (``CN``, ``O``, ``OU``, ``S``, ``E``, …;
        any case) of the subject (or the ``issuer``), in certificate order."""
        wanted = field.upper()
        wanted = FIELD_ALIASES.get(wanted, wanted)
        fields = self.issuer_fields if issuer else self.subject_fields
        return [value for name, value in fields if name.upper() == wanted]

    @property
    def pem(self) -> str:
        """The certificate in PEM form."""
        return ssl.DER_cert_to_PEM_cert(self.der)

    @property
    def serial_hex(self) -> str:
        """The serial number as mod_ssl shows it: upper-case hex, an even number of digits."""
        text = format(self.serial, "X")
        return text if len(text) % 2 == 0 else "0" + text

    def __repr__(self) -> str:
        return f"<ClientCertificate {self.subject!r} issuer={self.issuer!r}>"


def parse_certificate(der: bytes) -> ClientCertificate:
    """The certificate encoded by ``der``; ``ValueError`` when it does not parse."""
    from cryptography import x509  # only where client certificates are in use

    cert = x509.load_der_x509_certificate(der)
    return ClientCertificate(
        der,
        _rfc4514(cert.subject),
        _rfc4514(cert.issuer),
        _fields(cert.subject),
        _fields(cert.issuer),
        cert.serial_number,
        cert.not_valid_before_utc.timestamp(),
        cert.not_valid_after_utc.timestamp(),
    )


def _rfc4514(name: Name) -> str:
    from cryptography.x509.oid import NameOID

    return name.rfc4514_string({NameOID.EMAIL_ADDRESS: "emailAddress"})


def _fields(name: Name) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    for attribute in name:
        oid = attribute.oid.dotted_string
        value = attribute.value
        text = value if isinstance(value, str) else value.hex()
        found.append((_SHORT_NAMES.get(oid, oid), text))
    return tuple(found)


def asn1_time(seconds: float) -> str:
    """A time as OpenSSL prints an ASN.1 time (mod_ssl's ``SSL_CLIENT_V_START``):
    ``Dec  5 09:00:00 2026 GMT``."""
    t = time.gmtime(seconds)
    return (
        f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year} GMT"
    )


def verify_result(cert: ClientCertificate | None, invalid: bool) -> str:
    """mod_ssl's ``SSL_CLIENT_VERIFY``: ``NONE`` (no certificate), ``SUCCESS``, or
    ``FAILED:reason``."""
    if cert is None:
        return "FAILED:certificate does not parse" if invalid else "NONE"
    problem = cert.problem()
    return "SUCCESS" if problem is None else f"FAILED:{problem}"


def certificate_variables(cert: ClientCertificate) -> dict[str, str]:
    """The ``SSL_CLIENT_*`` variables of mod_ssl for ``cert`` (not ``SSL_CLIENT_VERIFY``,
    which depends on the time of the request)."""
    variables = {
        "SSL_CLIENT_S_DN": cert.subject,
        "SSL_CLIENT_I_DN": cert.issuer,
        "SSL_CLIENT_M_SERIAL": cert.serial_hex,
        "SSL_CLIENT_M_VERSION": "3",
        "SSL_CLIENT_V_START": asn1_time(cert.not_before),
        "SSL_CLIENT_V_END": asn1_time(cert.not_after),
        "SSL_CLIENT_CERT": cert.pem,
    }
    for prefix, fields in (
        ("SSL_CLIENT_S_DN_", cert.subject_fields),
        ("SSL_CLIENT_I_DN_", cert.issuer_fields),
    ):
        for name, value in fields:
            component = _MOD_SSL_COMPONENTS.get(name)
            if component is not None:
                # mod_ssl's plain name is the first value; further ones get _1, _2.
                key = prefix + component
                n = 0
                while key in variables:
                    n += 1
                    key = f"{prefix}{component}_{n}"
                variables[key] = value
    return variables
