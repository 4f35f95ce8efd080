"""Who made the request, as the authentication modules decided."""

from __future__ import annotations

from typing import NamedTuple


class Principal(NamedTuple):
    """An authenticated (or anonymous) user."""

    name: str
    auth_type: str = ""
    roles: frozenset[str] = frozenset()

    @property
    def anonymous(self) -> bool:
        """True for the anonymous user (an empty name)."""
        return not self.name


ANONYMOUS = Principal("", "anonymous")
