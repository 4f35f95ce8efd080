"""Who made the request, as the authentication modules decided."""

from __future__ import annotations

from typing import Annotated, NamedTuple

from msgspec import Meta

#: A user or role name as a configuration section takes it (URL authorization
#: rules, certificate mappings): no commas (lists of them are written with
#: commas), no leading or trailing spaces.
PrincipalName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=256,
        pattern=r"^[^\s,]+(?: [^\s,]+)*$",
        description="a user or role name (no commas, no leading or trailing spaces)",
    ),
]


class Principal(NamedTuple):
    """An authenticated (or anonymous) user.

    It also answers as a Starlette-style user (``is_authenticated``,
    ``display_name``, ``identity``): ASGI applications get it as ``scope["user"]``.
    """

    name: str
    auth_type: str = ""
    roles: frozenset[str] = frozenset()

    @property
    def anonymous(self) -> bool:
        """True for the anonymous user (an empty name)."""
        return not self.name

    @property
    def is_authenticated(self) -> bool:
        """True unless anonymous (Starlette's ``BaseUser`` interface)."""
        return bool(self.name)

    @property
    def display_name(self) -> str:
        """The user name ("" for the anonymous user)."""
        return self.name

    @property
    def identity(self) -> str:
        """The user name, as Starlette's ``BaseUser.identity``."""
        return self.name


ANONYMOUS = Principal("", "anonymous")
