"""Verification keys: a JWKS file, a PEM public key, an HMAC secret; re-read on change.

How this works:

- A :class:`KeyRing` is an immutable snapshot of the keys: each a
  :class:`VerificationKey` of one family (RSA, EC, OKP, oct) holding the parsed
  key object. :meth:`KeyRing.find` picks the key for a token's ``alg`` and
  ``kid``: only a key of the algorithm's own family (and, for EC, curve) is ever
  returned, so an RSA public key is never used as an HMAC secret.
- A :class:`KeySource` owns the files. It loads them once, then
  :meth:`KeySource.ring` checks them (one ``stat`` per file) at most every
  ``interval`` seconds and loads them again when one changed (modification time,
  size, inode). A new ring that cannot be built (a half-written file, a weak
  key) is not used: the previous ring keeps verifying, and the problem is
  logged once per change of the files.
- Error messages name the file and the key's index or ``kid``, never key
  material (PyJWT's own messages may quote a JWK whole, secret included, so they
  are not passed on).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from colonnade.errors import ConfigError
from colonnade.modules.jwt_auth.config import (
    ALGORITHMS,
    EC,
    EC_CURVES,
    HMAC,
    HMAC_MIN_BYTES,
    OKP,
    RSA,
    RSA_MIN_BITS,
)

log = logging.getLogger("colonnade.auth.jwt")

#: The largest key file read: a JWKS of a few dozen keys is a few KiB.
MAX_KEY_FILE = 1024 * 1024

#: cryptography's curve names → JOSE's (RFC 7518 6.2.1.1, RFC 8812).
_CURVES = {
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
    "secp256k1": "secp256k1",
}


class VerificationKey(NamedTuple):
    """One key, parsed once."""

    family: str
    """``RSA``, ``EC``, ``OKP`` or ``oct`` (an HMAC secret)."""
    key: Any
    """The public key object (cryptography's), or the secret's bytes."""
    kid: str | None = None
    """The JWK's ``kid``; None for the PEM key and the secret."""
    alg: str | None = None
    """The JWK's ``alg`` where it names one: then it verifies only that algorithm."""
    curve: str | None = None
    """The JOSE curve name of an EC key (``P-256``)."""

    def verifies(self, alg: str) -> bool:
        """Whether this key may verify a token signed with ``alg``."""
        family = ALGORITHMS.get(alg)
        if family != self.family or self.alg not in (None, alg):
            return False
        if family == EC:
            return self.curve == EC_CURVES[alg]
        if family == HMAC:
            return len(self.key) >= HMAC_MIN_BYTES[alg]
        return True


class KeyRing(NamedTuple):
    """The keys in force: by ``kid`` (from the JWKS) and those without one."""

    by_kid: dict[str, tuple[VerificationKey, ...]]
    """JWKS keys by ``kid``."""
    unnamed: tuple[VerificationKey, ...]
    """Keys for tokens whose ``kid`` names no JWKS key: the PEM key, the secret."""
    lone: VerificationKey | None
    """The JWKS's only key, which also verifies tokens without a ``kid``."""

    def find(self, alg: str, kid: str | None) -> VerificationKey | None:
        """The key that verifies a token with this header, or None."""
        candidates: tuple[VerificationKey, ...] = ()
        if kid is not None:
            candidates = self.by_kid.get(kid, ())
        if not candidates:
            candidates = self.unnamed
            if kid is None and self.lone is not None:
                candidates = (self.lone, *candidates)
        for key in candidates:
            if key.verifies(alg):
                return key
        return None

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.by_kid.values()) + len(self.unnamed)


class KeySettings(NamedTuple):
    """Where a section's keys come from (sections with equal ones share a source)."""

    jwks_file: str
    public_key_file: str
    secret_file: str
    secret_env: str
    algorithms: frozenset[str]
    interval: float


class KeySource:
    """A section's key files, loaded once and loaded again when they change."""

    def __init__(self, settings: KeySettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._files = tuple(
            path
            for path in (settings.jwks_file, settings.public_key_file, settings.secret_file)
            if path
        )
        self._stamp = self._stat()
        self._ring = load_ring(settings)  # ConfigError at start-up: refuse to serve
        self._checked = clock()
        self._failed_stamp: tuple[object, ...] | None = None

    def ring(self) -> KeyRing:
        """The keys in force: the current ring, loaded again if a file changed."""
        now = self._clock()
        if now - self._checked < self.settings.interval:
            return self._ring
        self._checked = now
        stamp = self._stat()
        if stamp != self._stamp and stamp != self._failed_stamp:
            try:
                ring = load_ring(self.settings)
            except ConfigError as exc:
                # Keep verifying with the keys that worked (a file being rewritten
                # is read again at the next check); say so once per change.
                self._failed_stamp = stamp
                log.error("JWT keys not reloaded, the previous keys stay in use: %s", exc)
            else:
                self._stamp, self._ring, self._failed_stamp = stamp, ring, None
                log.info("JWT keys reloaded: %d key(s) from %s", len(ring), ", ".join(self._files))
        return self._ring

    def _stat(self) -> tuple[object, ...]:
        out: list[object] = []
        for path in self._files:
            try:
                st = os.stat(path)
            except OSError as exc:
                out.append(exc.errno)
            else:
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)


def load_ring(settings: KeySettings) -> KeyRing:
    """Read every configured key; ConfigError naming the setting when one is unusable."""
    by_kid: dict[str, tuple[VerificationKey, ...]] = {}
    unnamed: list[VerificationKey] = []
    lone: VerificationKey | None = None
    hs = [alg for alg in settings.algorithms if ALGORITHMS[alg] == HMAC]
    if settings.jwks_file:
        keys = _jwks(settings.jwks_file, hs)
        for key in keys:
            if key.kid is not None:
                by_kid[key.kid] = (*by_kid.get(key.kid, ()), key)
        if len(keys) == 1:
            lone = keys[0]
    if settings.public_key_file:
        unnamed.append(_pem(settings.public_key_file))
    if settings.secret_file or settings.secret_env:
        unnamed.append(_secret(settings, hs))
    ring = KeyRing(by_kid, tuple(unnamed), lone)
    every = [*ring.unnamed, *(key for keys in by_kid.values() for key in keys)]
    if lone is not None:
        every.append(lone)
    usable = [alg for alg in settings.algorithms if any(key.verifies(alg) for key in every)]
    if not usable:
        raise ConfigError(
            "no configured key verifies any of the algorithms "
            + ", ".join(sorted(settings.algorithms)),
            key="jwt_authentication.algorithms",
        )
    return ring


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or 'cannot be read'}", key=key) from None
    if len(data) > MAX_KEY_FILE:
        raise ConfigError(f"{path}: larger than {MAX_KEY_FILE} bytes", key=key)
    return data


def _public(key: Any) -> Any:
    # A private key given where a public one is needed: verify with its public part.
    public = getattr(key, "public_key", None)
    return public() if callable(public) else key


def _of_key(key: Any, where: str, setting: str) -> VerificationKey:
    """A cryptography public key as a VerificationKey (its family and curve)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            raise ConfigError(
                f"{where}: a {key.key_size}-bit RSA key; at least {RSA_MIN_BITS} bits are needed",
                key=setting,
            )
        return VerificationKey(RSA, key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVES.get(key.curve.name)
        if curve is None:
            raise ConfigError(f"{where}: EC curve {key.curve.name} is not used by JWS", key=setting)
        return VerificationKey(EC, key, curve=curve)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return VerificationKey(OKP, key)
    raise ConfigError(f"{where}: not an RSA, EC, Ed25519 or Ed448 key", key=setting)


def _pem(path: str) -> VerificationKey:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    setting = "jwt_authentication.public_key_file"
    data = _read(path, setting)
    if b"PRIVATE KEY-----" in data:
        raise ConfigError(
            f"{path}: holds a private key; give the server the public key only "
            "(openssl pkey -pubout)",
            key=setting,
        )
    key: Any
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: not a PEM public key or certificate", key=setting) from None
    return _of_key(key, path, setting)


def _secret(settings: KeySettings, hs: list[str]) -> VerificationKey:
    if settings.secret_env:
        setting = "jwt_authentication.secret_env"
        where = f"environment variable {settings.secret_env}"
        value = os.environ.get(settings.secret_env)
        if value is None:
            raise ConfigError(f"{where} is not set", key=setting)
        secret = value.encode("utf-8")
    else:
        setting = "jwt_authentication.secret_file"
        where = settings.secret_file
        secret = _read(settings.secret_file, setting)
        if secret.endswith(b"\r\n"):
            secret = secret[:-2]
        elif secret.endswith(b"\n"):
            secret = secret[:-1]
    return _hmac_key(secret, hs, where, setting)


def _hmac_key(
    secret: bytes,
    hs: list[str],
    where: str,
    setting: str,
    kid: str | None = None,
    alg: str | None = None,
) -> VerificationKey:
    needed = max((HMAC_MIN_BYTES[a] for a in ([alg] if alg else hs)), default=32)
    if len(secret) < needed:
        # The length only: never a byte of the secret.
        raise ConfigError(
            f"{where}: the HMAC secret has {len(secret)} bytes; "
            f"{', '.join(hs) or alg} need at least {needed} (RFC 7518 3.2)",
            key=setting,
        )
    if secret.lstrip().startswith((b"-----BEGIN", b"ssh-")):
        raise ConfigError(
            f"{where}: the HMAC secret is a PEM or SSH key; HS* tokens need a random secret",
            key=setting,
        )
    return VerificationKey(HMAC, secret, kid=kid, alg=alg)


def _jwks(path: str, hs: list[str]) -> list[VerificationKey]:
    from jwt import PyJWK
    from jwt.exceptions import PyJWTError

    setting = "jwt_authentication.jwks_file"
    try:
        document = json.loads(_read(path, setting))
    except ValueError:
        raise ConfigError(f"{path}: not JSON", key=setting) from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{path}: not a JSON Web Key Set (no "keys" list)', key=setting)
    keys: list[VerificationKey] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: key {index} is not a JSON object", key=setting)
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key (use = enc) verifies no signature
        kid = entry.get("kid")
        where = f"{path}: key {index}" + (f" (kid {kid!r})" if isinstance(kid, str) else "")
        if kid is not None and not isinstance(kid, str):
            raise ConfigError(f"{where}: kid must be a string", key=setting)
        alg = entry.get("alg")
        if alg is not None and alg not in ALGORITHMS:
            if str(alg).lower() == "none":
                raise ConfigError(f"{where}: alg 'none' is never accepted", key=setting)
            continue  # a key for an algorithm we do not verify (RSA-OAEP, ...)
        kty = entry.get("kty")
        if alg is not None and ALGORITHMS[alg] != kty:
            raise ConfigError(f"{where}: alg {alg} does not fit kty {kty!r}", key=setting)
        try:
            parsed = PyJWK(entry).key
        except (PyJWTError, ValueError, TypeError, KeyError):
            # PyJWT's message may quote the JWK, secret and all: say it without.
            raise ConfigError(f"{where}: not a valid {kty} key", key=setting) from None
        if kty == HMAC:
            key = _hmac_key(bytes(parsed), hs, where, setting, kid=kid, alg=alg)
        else:
            key = _of_key(_public(parsed), where, setting)._replace(kid=kid, alg=alg)
        keys.append(key)
    if len(keys) > 1 and any(key.kid is None for key in keys):
        raise ConfigError(
            f"{path}: several signing keys, not all with a kid; a token could not say "
            "which one verifies it",
            key=setting,
        )
    if not keys:
        raise ConfigError(f"{path}: no signing key", key=setting)
    return keys
