"""User stores: where a name and a password are checked.

Every store answers :meth:`PasswordStore.check` with a :class:`Logon`, or None
when it does not know the name (the caller may ask the next store, as Apache's
``AuthBasicProvider file pam`` does), and raises :class:`UserStoreError` when it
cannot answer at all (a file that cannot be read, a hash it cannot check, PAM
failing): a server problem, not a refusal. Checks block (bcrypt, crypt(3), PAM):
call them from a worker thread, never on the event loop.

- :mod:`.htpasswd`: Apache's htpasswd files, every format ``htpasswd`` writes
  (:mod:`.hashes`, :mod:`.syscrypt`), re-read when they change;
- :mod:`.pam`: system accounts through PAM, the user's Unix groups as roles.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Logon(NamedTuple):
    """What a store found for a name and a password it knows."""

    ok: bool
    """The password is right and the account may log on now."""
    name: str
    """The user's name as the store spells it (PAM may map the name it was given)."""
    roles: frozenset[str] = frozenset()
    """Roles the store knows for the user (PAM: the Unix groups)."""
    reason: str = ""
    """Why the logon failed, for the log (never the password); "" when ``ok``."""
    delay: float = 0.0
    """Seconds the store asks the caller to wait before answering a failure
    (PAM's fail delay), without holding a thread."""


class UserStoreError(Exception):
    """The store cannot answer (its configuration or the system is at fault)."""


class PasswordStore(Protocol):
    """A user store that checks passwords."""

    def check(self, name: str, password: str, client: str | None = None) -> Logon | None:
        """The logon of ``name`` with ``password``, or None if the store does not
        know ``name``. ``client``: the client's address, for stores that log or
        rate-limit by it. Blocking; raises :class:`UserStoreError`."""
