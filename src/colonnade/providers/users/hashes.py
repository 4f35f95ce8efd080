"""The password hashes of htpasswd files, as Apache's ``htpasswd`` writes them.

=================  =======================  ======================================
``htpasswd``       stored as                checked with
=================  =======================  ======================================
``-B`` bcrypt      ``$2y$05$...``           the ``bcrypt`` package
``-m`` (default)   ``$apr1$salt$...``       :func:`apr1` below (Apache's MD5 crypt)
``-2`` / ``-5``    ``$5$...`` / ``$6$...``  the platform's crypt(3)
``-d`` DES crypt   13 characters            the platform's crypt(3), if it has DES
``-s`` SHA-1       ``{SHA}base64``          hashlib (unsalted: weak)
``-p`` plain text  the password itself      a comparison (insecure)
=================  =======================  ======================================

nginx's ``{SSHA}`` and ``{PLAIN}`` forms are read too, and any other ``$id$`` hash
the platform's crypt(3) knows (yescrypt ``$y$``, MD5 ``$1$``). Every comparison of a
computed hash with the stored one is constant-time. A stored value that looks
like a hash is never taken for a plain-text password: that would let the hash
itself, read from a leaked file, serve as the password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from colonnade.providers.users import syscrypt

#: The alphabet of crypt(3) hashes and salts.
ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DES = re.compile(rb"[./0-9A-Za-z]{13}")
_APR1 = b"$apr1$"
#: bcrypt reads at most this many bytes of a password (and so does Apache).
BCRYPT_MAX = 72
#: The longest password crypt(3) hashes (libxcrypt's CRYPT_MAX_PASSPHRASE_SIZE is
#: 512 with the NUL): it refuses a longer one, so no stored hash is of one.
CRYPT_MAX = 511


def method(stored: bytes) -> str:
    """The hash method of a stored value: ``bcrypt``, ``apr1``, ``sha1``, ``ssha``,
    ``crypt``, ``des``, ``plain``, or ``unknown`` (a ``{...}`` form we do not read)."""
    if stored[:4] in (b"$2y$", b"$2b$", b"$2a$"):
        return "bcrypt"
    if stored.startswith(_APR1):
        return "apr1"
    if stored.startswith(b"{SHA}"):
        return "sha1"
    if stored.startswith(b"{SSHA}"):
        return "ssha"
    if stored.startswith(b"{PLAIN}"):
        return "plain"
    if stored.startswith(b"$"):
        return "crypt"
    if _DES.fullmatch(stored) is not None:
        return "des"
    if stored.startswith(b"{"):
        return "unknown"
    return "plain"


def _to64(value: int, count: int) -> bytes:
    out = bytearray()
    for _ in range(count):
        out.append(ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)


def apr1(password: bytes, salt: bytes) -> bytes:
    """Apache's MD5 crypt (``$apr1$``): Poul-Henning Kamp's FreeBSD MD5 crypt with
    its own magic string; 1000 rounds of MD5. ``salt``: up to 8 characters."""
    salt = salt[:8]
    digest = hashlib.md5(password + salt + password).digest()
    ctx = hashlib.md5(password + _APR1 + salt)
    remaining = len(password)
    while remaining > 0:
        ctx.update(digest[: min(16, remaining)])
        remaining -= 16
    bits = len(password)
    while bits:
        ctx.update(b"\x00" if bits & 1 else password[:1])
        bits >>= 1
    final = ctx.digest()
    for i in range(1000):
        step = hashlib.md5(password if i & 1 else final)
        if i % 3:
            step.update(salt)
        if i % 7:
            step.update(password)
        step.update(final if i & 1 else password)
        final = step.digest()
    f = final
    encoded = b"".join(
        (
            _to64((f[0] << 16) | (f[6] << 8) | f[12], 4),
            _to64((f[1] << 16) | (f[7] << 8) | f[13], 4),
            _to64((f[2] << 16) | (f[8] << 8) | f[14], 4),
            _to64((f[3] << 16) | (f[9] << 8) | f[15], 4),
            _to64((f[4] << 16) | (f[10] << 8) | f[5], 4),
            _to64(f[11], 2),
        )
    )
    return _APR1 + salt + b"$" + encoded


class UnusableHashError(ValueError):
    """The stored value cannot be checked here (its method is unknown or missing)."""


def verify(stored: bytes, password: bytes) -> bool:
    """True if ``password`` matches ``stored`` (a value of an htpasswd line).

    Raises :class:`UnusableHashError` when the stored value cannot be checked: a
    malformed bcrypt or apr1 value, a crypt(3) method this platform lacks, an
    unknown ``{...}`` form, an empty value. Slow for bcrypt and crypt by design:
    call it off the event loop.
    """
    kind = method(stored)
    if kind == "bcrypt":
        import bcrypt  # imported on first use: most files never need it

        if b"\x00" in password[:BCRYPT_MAX]:
            return False  # as crypt(3) below: no hash was made from such a password
        try:
            return bool(bcrypt.checkpw(password[:BCRYPT_MAX], stored))
        except ValueError:
            raise UnusableHashError("a malformed bcrypt hash") from None
    if kind == "apr1":
        salt, sep, _ = stored[len(_APR1) :].partition(b"$")
        if not sep:
            raise UnusableHashError("a malformed apr1 hash (no salt)")
        return hmac.compare_digest(apr1(password, salt), stored)
    if kind == "sha1":
        computed = b"{SHA}" + base64.b64encode(hashlib.sha1(password).digest())
        return hmac.compare_digest(computed, stored)
    if kind == "ssha":
        try:
            raw = base64.b64decode(stored[6:], validate=True)
        except binascii.Error:
            raise UnusableHashError("a malformed {SSHA} value") from None
        if len(raw) <= 20:
            raise UnusableHashError("a malformed {SSHA} value (no salt)")
        digest, salt = raw[:20], raw[20:]
        return hmac.compare_digest(hashlib.sha1(password + salt).digest(), digest)
    if kind in ("crypt", "des"):
        if b"\x00" in password or len(password) > CRYPT_MAX:
            # crypt(3) reads a C string: no stored hash was made from a password
            # with a NUL, and hashing one would check only what precedes it. Nor
            # from a longer one than it takes (it refuses it: not an unusable hash).
            return False
        hashed = syscrypt.crypt(password, stored)
        if hashed is None:
            prefix = stored[: stored.find(b"$", 1) + 1] if kind == "crypt" else b"DES"
            raise UnusableHashError(f"this platform's crypt(3) cannot check {prefix!r} hashes")
        return hmac.compare_digest(hashed, stored)
    if kind == "plain":
        text = stored[7:] if stored.startswith(b"{PLAIN}") else stored
        if not text:
            raise UnusableHashError("an empty password")
        return hmac.compare_digest(text, password)
    raise UnusableHashError(f"an unknown hash form {stored.partition(b'}')[0][:16]!r}")
