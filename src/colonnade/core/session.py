"""The session of a request, as modules and applications see it.

The session state module (``state.session``) loads it at ACQUIRE_REQUEST_STATE
and puts it in ``ctx.items[SESSION]`` (also ``ctx.session``; WSGI
``environ["colonnade.session"]``; ASGI ``scope["session"]``), and saves it at
RELEASE_REQUEST_STATE if it changed. It is a mutable mapping of JSON values
(str keys; str, int, float, bool, None, lists and dicts of them), like the
dict Starlette's ``SessionMiddleware`` gives, plus what ASP.NET's
``HttpSessionState`` has: :attr:`Session.id`, :attr:`Session.is_new`,
:attr:`Session.read_only`, :meth:`Session.abandon` and
:meth:`Session.regenerate_id`.

Changes are noticed on assignment and deletion (``session["cart"] = cart``);
changing a nested value in place (``session["cart"].append(x)``) is not seen
unless the session is marked with :meth:`Session.changed` or assigned again.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonnade.core.context import Context

#: ``ctx.items`` key of the request's :class:`Session` (absent: no session here).
SESSION = "colonnade.session"

#: The id alphabet (ASP.NET's: lower-case letters and 0-5, 5 bits a character).
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz012345"
#: Characters of an id: 26 x 5 = 130 random bits (ASP.NET: 24, 120 bits).
ID_LENGTH = 26
_ID_CHARS = frozenset(ID_ALPHABET)


def new_session_id() -> str:
    """A fresh session id: 130 bits from the operating system's CSPRNG."""
    import secrets  # here: a worker without sessions never needs it (nor hmac, libcrypto)

    n = secrets.randbits(ID_LENGTH * 5)
    return "".join(ID_ALPHABET[(n >> (5 * i)) & 31] for i in range(ID_LENGTH))


def valid_session_id(value: str) -> bool:
    """Whether ``value`` has the form of an id this server issues (checked
    before any store is asked: a forged cookie never reaches it otherwise)."""
    return len(value) == ID_LENGTH and _ID_CHARS.issuperset(value)


class Session(MutableMapping[str, Any]):
    """One request's view of a session (see the module docstring)."""

    __slots__ = ("_data", "_id", "abandoned", "is_new", "modified", "previous_id", "read_only")

    def __init__(
        self, sid: str | None, data: dict[str, Any], *, is_new: bool, read_only: bool
    ) -> None:
        self._id = sid
        self._data = data
        #: True for a session this request started (no usable cookie came).
        self.is_new = is_new
        #: True where the location's ``mode`` is ``read_only``: changes are not saved.
        self.read_only = read_only
        #: Whether something was written (the session is saved at the end).
        self.modified = False
        #: :meth:`abandon` was called: the session is deleted at the end.
        self.abandoned = False
        #: The id before :meth:`regenerate_id` (None: not regenerated).
        self.previous_id: str | None = None

    @property
    def id(self) -> str:
        """The session id (a new session's is made when first asked for)."""
        if self._id is None:
            self._id = new_session_id()
        return self._id

    @property
    def has_id(self) -> bool:
        """Whether an id was made or came with the request."""
        return self._id is not None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys are strings, not {type(key).__name__}")
        self._data[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"<Session {'new' if self.is_new else 'existing'}, {len(self._data)} keys>"

    def clear(self) -> None:
        """Remove every value (the session and its id stay)."""
        if self._data:
            self._data.clear()
            self.modified = True

    def changed(self) -> None:
        """Mark the session changed (after changing a nested value in place)."""
        self.modified = True

    def abandon(self) -> None:
        """End the session: its data is deleted at the end of the request and
        its cookie cleared (ASP.NET ``Session.Abandon``)."""
        self._data.clear()
        self.abandoned = True
        self.modified = True

    def regenerate_id(self) -> None:
        """Give the session a new id, keeping its data: the old id stops working
        at the end of the request. Forms authentication calls it on sign-in, so
        an id an attacker planted before the sign-in is worth nothing after it
        (session fixation)."""
        if self.previous_id is None and self._id is not None and not self.is_new:
            self.previous_id = self._id
        self._id = new_session_id()
        self.modified = True

    def data(self) -> dict[str, Any]:
        """The values, as a dict (the live one: what is saved)."""
        return self._data


def renew_session_id(ctx: Context) -> None:
    """Give the request's session a new id, if it has one: for a module that
    signs a user in (``auth.forms``), against session fixation."""
    found = ctx.session
    if found is not None and not found.read_only:
        found.regenerate_id()
