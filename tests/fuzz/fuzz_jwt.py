"""Bearer tokens (modules/jwt_auth/verifier.py over PyJWT).

``data[0]`` even: the rest is the token as a client sends it. Odd: the rest is a
JOSE header and a claims set (JSON, split at the first NUL) signed HS256 with the
server's secret, so that what follows the signature check (claims, audience,
issuer, the name and roles claims) is fuzzed too. Property: ``verify`` raises
only ``TokenRefused``; a token it accepts names a user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import msgspec

from colonnade.modules.jwt_auth.config import JwtAuthenticationSection
from colonnade.modules.jwt_auth.keys import KeySettings, KeySource
from colonnade.modules.jwt_auth.verifier import TokenRefused, Verifier

_SECRET = b"a fuzzing secret of more than thirty-two bytes, used as it is"
_ENV = "COLONNADE_FUZZ_JWT_SECRET"
os.environ[_ENV] = _SECRET.decode()
_SECTION = msgspec.convert(
    {
        "enabled": True,
        "algorithms": ["HS256"],
        "secret_env": _ENV,
        "issuer": "https://issuer.example",
        "audience": ["api"],
        "roles_claim": "roles",
        "cache_seconds": 0,
    },
    JwtAuthenticationSection,
)
_VERIFIER = Verifier(
    _SECTION,
    KeySource(KeySettings("", "", "", _ENV, _SECTION.policy.algorithms, 3600.0)),
    wall=lambda: 1796464800.0,
)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _signed(header: bytes, claims: bytes) -> bytes:
    signing = _b64(header) + b"." + _b64(claims)
    return signing + b"." + _b64(hmac.new(_SECRET, signing, hashlib.sha256).digest())


def one_input(data: bytes) -> None:
    """See the module docstring."""
    if not data:
        return
    if data[0] & 1:
        header, _, claims = data[1:].partition(b"\x00")
        token = _signed(header, claims)
    else:
        token = data[1:]
    try:
        verified = _VERIFIER.verify(token)
    except TokenRefused:
        return
    assert isinstance(verified.user.name, str) and verified.user.name
