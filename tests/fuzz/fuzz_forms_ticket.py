"""The forms authentication ticket cookie (modules/forms_auth/ticket.py).

Two inputs in one: ``data[0]`` even, the rest is a cookie value as a client sends
it; odd, the rest is a ticket's plaintext, sealed with the ring's key as the
server would (what only a key holder, or a bug, could make) so that the
decoder behind the AEAD is fuzzed too. Property: ``KeyRing.open`` raises only
``BadTicketError`` (``StaleTicketError`` is one); a ticket it returns names a
user and is valid now.
"""

from __future__ import annotations

import base64

from colonnade.modules.forms_auth.ticket import (
    _HEAD,
    _ID_BYTES,
    VERSION,
    BadTicketError,
    KeyRing,
)

_RING = KeyRing([bytes(range(32))])
_COOKIE = ".ASPXAUTH"
_NOW = 1796464800.0


def _sealed(plain: bytes) -> bytes:
    # The ring's sealing key, used as KeyRing.seal uses it (seal takes a Ticket).
    key = _RING._first
    head = bytes((VERSION,)) + key.ident
    nonce = bytes(_HEAD - 1 - _ID_BYTES)  # fixed: the run stays deterministic
    sealed = key.cipher.encrypt(nonce, plain, head + _COOKIE.encode("ascii"))
    return base64.urlsafe_b64encode(head + nonce + sealed).rstrip(b"=")


def one_input(data: bytes) -> None:
    """See the module docstring."""
    if not data:
        return
    value = _sealed(data[1:]) if data[0] & 1 else data[1:]
    try:
        ticket = _RING.open(value, _COOKIE, _NOW)
    except BadTicketError:
        return
    assert ticket.name
    assert ticket.expires > _NOW
