"""Keys made by the tests, and tokens signed with them (PyJWT, or by hand for the
attacks PyJWT refuses to produce)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any, NamedTuple

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


class Keys(NamedTuple):
    """Private keys the tests sign with; the server gets their public parts."""

    rsa: rsa.RSAPrivateKey
    rsa2: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    ed: ed25519.Ed25519PrivateKey
    secret: bytes


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        ed25519.Ed25519PrivateKey.generate(),
        secrets.token_bytes(64),
    )


def pem(private: Any) -> bytes:
    """The public key of ``private``, PEM."""
    return bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def jwk(private: Any, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    """The public JWK of ``private`` (an RSA, EC or OKP key)."""
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        out = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        out = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        out = OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        out["kid"] = kid
    out.update(extra)
    return dict(out)


def write_jwks(path: Path, *entries: dict[str, Any]) -> str:
    path.write_text(json.dumps({"keys": list(entries)}))
    return str(path)


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claim set for user ann, expiring in 5 minutes."""
    now = int(time.time())
    out: dict[str, Any] = {"sub": "ann", "iat": now, "exp": now + 300}
    for name, value in overrides.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def sign(key: Any, alg: str, payload: dict[str, Any] | None = None, **headers: Any) -> str:
    """A token signed by PyJWT."""
    return jwt.encode(payload if payload is not None else claims(), key, alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def hs256_by_hand(secret: bytes, payload: dict[str, Any], **header: Any) -> str:
    """An HS256 token signed with any bytes as the secret (PyJWT refuses a PEM)."""
    head = segment({"alg": "HS256", "typ": "JWT", **header})
    signing_input = f"{head}.{segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """An unsigned token (RFC 7519 6.1): what the alg=none attack sends."""
    return f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(payload)}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
