"""Basic credentials: the header's ``base64(user ":" password)``, checked strictly,
and the short-lived memory of credentials that were verified.

Every way the header can be wrong has a reason for the log (never the password)
and ends in 401.1; nothing here can raise for client input.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
import sys
from collections.abc import Callable
from typing import NamedTuple

from colonnade.core.principal import Principal

#: The longest credentials read (base64 characters): a 256-byte name and a 512-byte
#: password fit with room to spare.
MAX_CREDENTIALS = 2048
#: Longest user name and password, in UTF-8 bytes. 512 is crypt(3)'s and PAM's limit
#: for a passphrase: a longer one could not be checked the same way everywhere.
MAX_USER = 256
MAX_PASSWORD = 512

#: C0 controls and DEL: never in a user name (RFC 7617 2); NUL never in a password
#: either (C would end the string there, and "secret\0junk" would pass as "secret").
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class Credentials(NamedTuple):
    """A user name and password, decoded."""

    user: str
    password: str


def parse(value: bytes) -> Credentials | str:
    """The credentials of ``Authorization: Basic <value>``, or why they are refused."""
    if not value:
        return "empty or oversized credentials"
    if len(value) > MAX_CREDENTIALS:
        return f"credentials longer than {MAX_CREDENTIALS} characters"
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        return "credentials are not valid base64"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "credentials are not UTF-8"
    user, sep, password = text.partition(":")
    if not sep:
        return "credentials without ':' between user and password"
    if not user:
        return "an empty user name"
    if _CONTROL.search(user) is not None:
        return "a control character in the user name"
    if "\x00" in password:
        return "a NUL character in the password"
    if len(user.encode("utf-8")) > MAX_USER:
        return f"a user name longer than {MAX_USER} bytes"
    if len(password.encode("utf-8")) > MAX_PASSWORD:
        return f"a password longer than {MAX_PASSWORD} bytes"
    return Credentials(user, password)


def shown(user: str) -> str:
    """``user`` as the log shows it: quoted and cut short (people type passwords
    into the name field too, so a name is never logged whole when long)."""
    return repr(user if len(user) <= 64 else user[:64] + "...")


class CredentialCache:
    """Credentials verified recently: key → (user, expiry), bounded, on one thread.

    The key is a keyed hash of the ``Authorization`` header value, with a secret
    random key of this process: neither the password nor an unkeyed hash that
    could be attacked offline is kept. Where Python's hash randomization is on
    (the default) that hash is ``hash(value)``, CPython's SipHash-1-3 under the
    per-process secret: 64 bits, computed in C once per request, the cost that
    keeps a cached logon cheap. A forged header would have to match a cached
    one's 64 bits under a key it cannot see, and each miss costs the attacker a
    full check. With randomization off (``PYTHONHASHSEED=0``) the key is a keyed
    BLAKE2b with a secret of our own instead. Past ``limit`` entries the oldest
    goes. Only the event loop touches it (verification threads hand their result
    back to the loop), so it needs no lock.
    """

    __slots__ = ("_entries", "_secret", "key", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self._secret = secrets.token_bytes(32)
        self._entries: dict[object, tuple[Principal, float]] = {}
        self.limit = limit
        #: The cache key of a header value.
        self.key: Callable[[bytes], object] = (
            hash if sys.flags.hash_randomization else self._blake2b
        )

    def _blake2b(self, value: bytes) -> object:
        return hashlib.blake2b(value, key=self._secret, digest_size=16).digest()

    def get(self, key: object, now: float) -> Principal | None:
        """The user of ``key`` if it was verified less than its lifetime ago."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: object, user: Principal, expires: float) -> None:
        """Remember ``user`` for ``key`` until ``expires`` (monotonic seconds)."""
        entries = self._entries
        entries.pop(key, None)
        while len(entries) >= self.limit:
            del entries[next(iter(entries))]
        entries[key] = (user, expires)

    def clear(self) -> None:
        """Forget everything (the user file changed)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
