"""[jwt_authentication]: what the configuration refuses, at load, naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from colonnade.errors import ConfigError
from colonnade.testing import Client, build_engine

from .conftest import Keys, jwk, pem, write_jwks


def start(tmp_path: Path, settings: dict[str, Any]) -> None:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    config = {
        "server": {"modules": ["auth.jwt", "handler.static"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(site)}],
        "jwt_authentication": settings,
    }
    with Client(build_engine(config)):
        pass


@pytest.fixture
def rsa_pem(tmp_path: Path, keys: Keys) -> str:
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem(keys.rsa))
    return str(path)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"algorithms": ["RS256", "none"]}, "'none' (unsigned tokens) is never accepted"),
        ({"algorithms": ["NONE"], "enabled": False}, "'none' (unsigned tokens) is never accepted"),
        ({"algorithms": ["RS257"]}, "'RS257' is not a supported JWS algorithm"),
        ({"algorithms": ["rs256"]}, "'rs256' is not a supported JWS algorithm"),
        ({"algorithms": []}, "required when jwt_authentication is enabled"),
        ({"secret_env": "A", "secret_file": "/x"}, "set one of them, not both"),
        (
            {"secret_env": "NOT-A-NAME", "algorithms": ["HS256"]},
            "secret_env: 'NOT-A-NAME': expected an environment variable name",
        ),
        ({"secret_env": "SECRET"}, "a secret only verifies HS256, HS384 or HS512"),
        ({"algorithms": ["HS256"], "public_key_file": ""}, "enabled without a key"),
        ({"algorithms": ["RS256", "HS256"]}, "never with public_key_file"),
        ({"realm": 'a"b'}, "without quotes or backslashes"),
        ({"public_key_file": "keys/rsa.pem"}, "an absolute file path"),
        ({"leeway": -1}, "jwt_authentication.leeway"),
        ({"max_token_bytes": 100}, "jwt_authentication.max_token_bytes"),
        ({"algorithm": ["RS256"]}, "algorithm"),
    ],
)
def test_refused_settings(
    tmp_path: Path, rsa_pem: str, settings: dict[str, Any], words: str
) -> None:
    base: dict[str, Any] = {"enabled": True, "algorithms": ["RS256"], "public_key_file": rsa_pem}
    with pytest.raises(ConfigError) as info:
        start(tmp_path, {**base, **settings})
    assert words in str(info.value)
    assert "jwt_authentication" in str(info.value)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d, k: {"public_key_file": str(d / "missing.pem")}, "No such file"),
        (lambda d, k: {"public_key_file": _write(d / "p", b"hello")}, "not a PEM public key"),
        (
            lambda d, k: {"public_key_file": _write(d / "p", _private_pem(k))},
            "holds a private key",
        ),
        (
            lambda d, k: {"public_key_file": _write(d / "p", pem(_small_rsa()))},
            "1024-bit RSA key; at least 2048",
        ),
        (
            lambda d, k: {
                "algorithms": ["HS256"],
                "public_key_file": "",
                "secret_file": _write(d / "s", b"short"),
            },
            "the HMAC secret has 5 bytes; HS256 need at least 32",
        ),
        (
            lambda d, k: {
                "algorithms": ["HS512"],
                "public_key_file": "",
                "secret_file": _write(d / "s", b"x" * 40),
            },
            "HS512 need at least 64",
        ),
        (
            lambda d, k: {
                "algorithms": ["HS256"],
                "public_key_file": "",
                "secret_file": _write(d / "s", pem(k.rsa) * 2),
            },
            "is a PEM or SSH key",
        ),
        (
            lambda d, k: {"algorithms": ["HS256"], "public_key_file": "", "secret_env": "NO_SUCH"},
            "environment variable NO_SUCH is not set",
        ),
        (lambda d, k: {"jwks_file": _write(d / "j", b"{")}, "not JSON"),
        (lambda d, k: {"jwks_file": _write(d / "j", b"[]")}, 'no "keys" list'),
        (
            lambda d, k: {"jwks_file": write_jwks(d / "j", {"kty": "RSA", "n": "!!", "e": "AQAB"})},
            "key 0: not a valid RSA key",
        ),
        (
            lambda d, k: {"jwks_file": write_jwks(d / "j", jwk(k.rsa), jwk(k.rsa2))},
            "several signing keys, not all with a kid",
        ),
        (
            lambda d, k: {"jwks_file": write_jwks(d / "j", jwk(k.rsa, "a", alg="none"))},
            "alg 'none' is never accepted",
        ),
        (
            lambda d, k: {"jwks_file": write_jwks(d / "j", jwk(k.rsa, "a", alg="ES256"))},
            "alg ES256 does not fit kty 'RSA'",
        ),
        (
            lambda d, k: {"jwks_file": write_jwks(d / "j", jwk(k.rsa, "a", use="enc"))},
            "no signing key",
        ),
        (
            lambda d, k: {"algorithms": ["ES256"], "public_key_file": _write(d / "p", pem(k.rsa))},
            "no configured key verifies any of the algorithms ES256",
        ),
    ],
)
def test_unusable_keys_fail_the_start(
    tmp_path: Path, keys: Keys, rsa_pem: str, make: Any, words: str
) -> None:
    settings: dict[str, Any] = {
        "enabled": True,
        "algorithms": ["RS256"],
        "public_key_file": rsa_pem,
        "jwks_file": "",
    }
    settings.update(make(tmp_path, keys))
    if not settings["public_key_file"]:
        del settings["public_key_file"]
    if not settings["jwks_file"]:
        del settings["jwks_file"]
    with pytest.raises(ConfigError) as info:
        start(tmp_path, settings)
    assert words in str(info.value)


def test_an_oct_key_error_never_quotes_the_secret(tmp_path: Path) -> None:
    secret = "c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQ"
    entry = {"kty": "oct", "k": secret, "kid": "h", "alg": "HS256"}
    path = write_jwks(tmp_path / "j.json", {**entry, "k": 17})  # not a string: unusable
    with pytest.raises(ConfigError) as info:
        start(tmp_path, {"enabled": True, "algorithms": ["HS256"], "jwks_file": path})
    assert "not a valid oct key" in str(info.value)
    short = write_jwks(tmp_path / "k.json", {**entry, "k": "c2hvcnQ"})
    with pytest.raises(ConfigError) as info:
        start(tmp_path, {"enabled": True, "algorithms": ["HS256"], "jwks_file": short})
    assert "5 bytes" in str(info.value)
    assert "c2hvcnQ" not in str(info.value) and "short" not in str(info.value)
    good = write_jwks(tmp_path / "g.json", entry)
    start(tmp_path, {"enabled": True, "algorithms": ["HS256"], "jwks_file": good})


def test_a_secret_file_inside_the_content_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    secret = site / "jwt.secret"
    secret.write_bytes(b"k" * 64)
    with pytest.raises(ConfigError, match="inside the application's content folders"):
        start(tmp_path, {"enabled": True, "algorithms": ["HS256"], "secret_file": str(secret)})


def test_disabled_sections_load_no_keys(tmp_path: Path) -> None:
    # A server-wide setting switched on per location only: nothing to read until then.
    start(tmp_path, {"algorithms": ["RS256"], "public_key_file": str(tmp_path / "later.pem")})


def test_jwks_private_parts_are_ignored_and_encryption_keys_skipped(
    tmp_path: Path, keys: Keys
) -> None:
    from jwt.algorithms import RSAAlgorithm

    private = json.loads(RSAAlgorithm.to_jwk(keys.rsa))
    private["kid"] = "p"
    path = write_jwks(tmp_path / "j.json", private, jwk(keys.rsa2, "e", use="enc"))
    start(tmp_path, {"enabled": True, "algorithms": ["RS256"], "jwks_file": path})


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _private_pem(keys: Keys) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return keys.rsa.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _small_rsa() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=1024)
