"""The forms authentication ticket, sealed with AES-256-GCM under a key ring.

How this works:

- *Contents.* A :class:`Ticket` says who (name), which roles, when it was issued,
  when it expires and whether the cookie outlives the browser session; it is
  encoded as a MessagePack array (msgspec, strict on decode).
- *Sealing.* The cookie value is the unpadded base64url of
  ``version (1 byte) | key id (4) | nonce (12) | ciphertext and tag (16)``.
  AES-GCM (``cryptography``, OpenSSL underneath) both encrypts and authenticates:
  a changed bit anywhere fails the tag. The associated data is the version, key id
  and cookie name, so a ticket made for one cookie name is refused under another
  (two applications sharing keys under different names do not share users).
  Nonces are random (96 bits); with a key per deployment and rotation this stays
  far below GCM's random-nonce limit.
- *Keys.* The ring's first key seals, every key opens: rotation puts a new key on
  top and removes the old one once the tickets it sealed have expired, so nobody
  is signed out. A ticket names its key by a 4-byte id (a hash of the key, which
  reveals nothing of it), so opening never tries keys in turn. What is configured
  is a master key; the AES key is derived from it with HKDF for this one purpose,
  so the same secret used elsewhere cannot be turned against tickets.
- *Never the key.* Errors name the file and line or the variable and position of
  a bad key, never its text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import time
from collections.abc import Sequence
from typing import NamedTuple

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from colonnade.errors import ConfigError
from colonnade.modules.forms_auth.files import WatchedFile

VERSION = 1
#: The size of a configured key (AES-256), decoded.
KEY_BYTES = 32
_ID_BYTES = 4
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEAD = 1 + _ID_BYTES + _NONCE_BYTES
#: The longest cookie value issued or read. Browsers keep about 4096 bytes per
#: cookie, name and attributes included; a longer value would be dropped there.
MAX_COOKIE = 3800
#: The longest user name and role name a ticket carries, and the most roles.
MAX_NAME = 256
#: The size of a ticket's sign-in id (``providers.revocations.ID_BYTES``).
SIGN_IN_BYTES = 16
MAX_ROLES = 64
#: A ticket issued this many seconds ahead of this server's clock is still good
#: (farm nodes' clocks differ a little); further ahead it is refused.
CLOCK_SKEW = 60

_KDF_INFO = b"colonnade auth.forms ticket v1"
_ID_LABEL = b"colonnade auth.forms key id"
_SEPARATORS = re.compile(r"[\s,]+")


class Ticket(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """What a forms ticket says (ASP.NET's ``FormsAuthenticationTicket``)."""

    name: str
    roles: tuple[str, ...]
    issued: int
    """Unix time (seconds) it was issued."""
    expires: int
    """Unix time (seconds) it expires."""
    persistent: bool = False
    """The cookie carries ``Max-Age`` (outlives the browser session)."""
    sign_in: bytes = b""
    """Random, one per sign-in, kept by renewals: what a sign-out revokes
    (``providers/revocations.py``). Empty in tickets issued before it existed."""

    def renewable(self, now: float) -> bool:
        """Past half its lifetime: ASP.NET renews when the time left is no more
        than the time elapsed."""
        return self.expires - now <= now - self.issued

    def renewed(self, now: int) -> Ticket:
        """The same ticket issued ``now`` with its original total lifetime."""
        lifetime = self.expires - self.issued
        return Ticket(self.name, self.roles, now, now + lifetime, self.persistent, self.sign_in)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Ticket).decode


class BadTicketError(Exception):
    """A cookie that is no valid ticket; the message is the reason (never its content)."""


class StaleTicketError(BadTicketError):
    """A ticket that was good once, or elsewhere: expired, or sealed with a key no
    longer (or never) in this ring. Browsers keep sending such a cookie: it is no
    attack, and no failed logon."""


def new_ticket(name: str, roles: Sequence[str], lifetime: int, persistent: bool = False) -> Ticket:
    """A ticket for ``name`` issued now, valid ``lifetime`` seconds.

    ``ValueError`` for a name that is empty, too long or holds control
    characters, and the same for roles (at most :data:`MAX_ROLES`).
    """
    _check_name("user name", name)
    if len(roles) > MAX_ROLES:
        raise ValueError(f"at most {MAX_ROLES} roles fit in a ticket")
    for role in roles:
        _check_name("role", role)
    now = int(time.time())
    sign_in = secrets.token_bytes(SIGN_IN_BYTES)
    return Ticket(name, tuple(roles), now, now + lifetime, persistent, sign_in)


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {what} must be a non-empty string")
    if len(name) > MAX_NAME:
        raise ValueError(f"a {what} is at most {MAX_NAME} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError(f"a {what} must not contain control characters")


class _Key(NamedTuple):
    ident: bytes
    cipher: AESGCM


class KeyRing:
    """Keys that open tickets; the first one also seals them."""

    __slots__ = ("_by_id", "_first")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("the key ring is empty")
        by_id: dict[bytes, _Key] = {}
        for n, key in enumerate(keys, 1):
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {n} is {len(key)} bytes, not {KEY_BYTES}")
            ident = hashlib.sha256(_ID_LABEL + key).digest()[:_ID_BYTES]
            if ident in by_id:
                raise ValueError(f"key {n} is in the ring twice")
            derived = HKDF(SHA256(), KEY_BYTES, salt=None, info=_KDF_INFO).derive(key)
            by_id[ident] = _Key(ident, AESGCM(derived))
        self._by_id = by_id
        self._first = next(iter(by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def seal(self, ticket: Ticket, cookie_name: str) -> str:
        """The cookie value carrying ``ticket`` (``ValueError`` if it would be too long)."""
        key = self._first
        head = bytes((VERSION,)) + key.ident
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = key.cipher.encrypt(nonce, _encode(ticket), head + cookie_name.encode("ascii"))
        value = base64.urlsafe_b64encode(head + nonce + sealed).rstrip(b"=").decode("ascii")
        if len(value) > MAX_COOKIE:
            raise ValueError(f"the ticket would be {len(value)} bytes, over {MAX_COOKIE}")
        return value

    def open(self, value: bytes, cookie_name: str, now: float) -> Ticket:
        """The ticket in cookie ``value``, valid at ``now``; :class:`BadTicketError` (with
        the reason) for anything else."""
        if len(value) > MAX_COOKIE:
            raise BadTicketError(f"oversized ({len(value)} bytes)")
        try:
            raw = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise BadTicketError("not base64url") from None
        if len(raw) < _HEAD + _TAG_BYTES or raw[0] != VERSION:
            raise BadTicketError("malformed")
        key = self._by_id.get(raw[1 : 1 + _ID_BYTES])
        if key is None:
            raise StaleTicketError("sealed with a key not in the ring (rotated out?)")
        head = raw[: 1 + _ID_BYTES]
        try:
            plain = key.cipher.decrypt(
                raw[1 + _ID_BYTES : _HEAD], raw[_HEAD:], head + cookie_name.encode("ascii")
            )
        except InvalidTag:
            raise BadTicketError("tampered with (authentication tag mismatch)") from None
        try:
            ticket = _decode(plain)
        except msgspec.DecodeError:
            # Only a holder of a key can get here: a bug or a foreign issuer.
            raise BadTicketError("unreadable contents") from None
        if ticket.expires <= now:
            raise StaleTicketError(f"expired {int(now - ticket.expires)} s ago")
        if ticket.issued > now + CLOCK_SKEW:
            raise BadTicketError("issued in the future")
        if not ticket.name:
            raise BadTicketError("no user name")
        return ticket


def parse_keys(text: str, where: str, *, lines: bool) -> list[bytes]:
    """The keys written in ``text``: base64 (standard or URL-safe, padding optional)
    of :data:`KEY_BYTES` bytes each.

    ``lines``: one key per line with ``#`` comments (a key file); else keys
    separated by spaces or commas (an environment variable). ``ValueError`` starts
    with ``where`` and names the line or position of a bad key, never the key.
    """
    if lines:
        items = [
            (f"line {n}", line.strip())
            for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    else:
        items = [(f"key {n}", part) for n, part in enumerate(_SEPARATORS.split(text.strip()), 1)]
        items = [(at, part) for at, part in items if part]
    if not items:
        raise ValueError(f"{where}no key (create one with `openssl rand -base64 32`)")
    keys: list[bytes] = []
    for at, item in items:
        try:
            key = base64.b64decode(
                item.replace("-", "+").replace("_", "/") + "=" * (-len(item) % 4), validate=True
            )
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise ValueError(
                f"{where}{at}: not the base64 of {KEY_BYTES} bytes "
                "(create a key with `openssl rand -base64 32`)"
            )
        keys.append(key)
    return keys


def key_source(*, path: str = "", env: str = "") -> WatchedFile[KeyRing] | KeyRing:
    """The application's key ring: from ``key_file`` (a :class:`WatchedFile`, read
    again when it changes) or from ``key_env`` (read once). ``ConfigError`` when
    neither is set or the keys are unusable."""
    if path:
        return WatchedFile(
            path,
            lambda text: KeyRing(parse_keys(text, "", lines=True)),
            "forms_authentication.key_file",
            warn_shared=True,
        )
    if not env:
        raise ConfigError(
            "forms authentication needs a key ring: set key_file or key_env "
            "(a key: `openssl rand -base64 32`)",
            key="forms_authentication.key_file",
        )
    text = os.environ.get(env)
    if text is None:
        raise ConfigError(
            f"the environment variable {env} (the key ring) is not set",
            key="forms_authentication.key_env",
        )
    try:
        return KeyRing(parse_keys(text, f"{env}: ", lines=False))
    except ValueError as exc:
        raise ConfigError(str(exc), key="forms_authentication.key_env") from None
