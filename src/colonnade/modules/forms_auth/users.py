"""The user store of the server's own login page: an htpasswd file.

Lines are ``name:hash`` as Apache's ``htpasswd`` writes them; blank lines and
``#`` comments are skipped. Two hash formats are verified here: bcrypt
(``$2y$``/``$2b$``/``$2a$``, ``htpasswd -B``, the one to use) and ``{SHA}``
(``htpasswd -s``: unsalted SHA-1, accepted for old files). A user whose line has
another format (apr1-MD5, crypt) is skipped with a warning naming the user: such
files also serve Basic authentication, which reads every format, so they are not
refused whole.

bcrypt is slow on purpose (tens to hundreds of milliseconds): the caller runs
:meth:`Users.verify` on a thread, and an unknown user costs the same as a known
one, so the time taken does not tell whether a name exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import NamedTuple

import bcrypt

log = logging.getLogger("colonnade.auth")

#: bcrypt reads the first 72 bytes of a password (as htpasswd does); bcrypt 5
#: refuses longer ones instead of cutting them.
_BCRYPT_BYTES = 72
_BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")


class _Entry(NamedTuple):
    kind: str  # "bcrypt" or "sha"
    hashed: bytes


class Users:
    """The verifiable users of one htpasswd file."""

    __slots__ = ("_entries", "_stand_in")

    def __init__(self, entries: dict[str, _Entry]) -> None:
        self._entries = entries
        #: The entry an unknown name is checked against (the slowest kind there is).
        self._stand_in = next(
            (e for e in entries.values() if e.kind == "bcrypt"), next(iter(entries.values()), None)
        )

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, name: str, password: str) -> bool:
        """True if ``password`` is ``name``'s. Blocking (bcrypt): call on a thread."""
        secret = password.encode("utf-8")
        entry = self._entries.get(name)
        if entry is None:
            # Spend what a listed name costs (another entry's hash, so the same
            # bcrypt cost), so the time of a refusal does not tell which names exist.
            stand_in = self._stand_in
            if stand_in is not None:
                self._check(stand_in, secret, name)
            return False
        return self._check(entry, secret, name)

    def _check(self, entry: _Entry, secret: bytes, name: str) -> bool:
        if entry.kind == "bcrypt":
            # A $2y$ hash is $2b$ (PHP's name for the fixed algorithm).
            hashed = b"$2b$" + entry.hashed[4:] if entry.hashed[:4] == b"$2y$" else entry.hashed
            try:
                return bcrypt.checkpw(secret[:_BCRYPT_BYTES], hashed)
            except ValueError:  # a damaged hash in the file
                log.warning("forms authentication: the bcrypt hash of user %r is damaged", name)
                return False
        digest = base64.b64encode(hashlib.sha1(secret).digest())
        return hmac.compare_digest(digest, entry.hashed)


def parse_users(text: str) -> Users:
    """The users of htpasswd ``text``; ``ValueError`` names the line of a malformed one."""
    entries: dict[str, _Entry] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, hashed = line.partition(":")
        if not colon or not name or not hashed:
            raise ValueError(f"line {n}: not 'name:hash'")
        if hashed.startswith(_BCRYPT_PREFIXES):
            entries[name] = _Entry("bcrypt", hashed.encode("ascii", "replace"))
        elif hashed.startswith("{SHA}"):
            entries[name] = _Entry("sha", hashed[5:].encode("ascii", "replace"))
        else:
            log.warning(
                "forms authentication: user %r (line %d): hash format not supported by the "
                "login page (write it with `htpasswd -B`); that user cannot sign in there",
                name,
                n,
            )
    return Users(entries)
