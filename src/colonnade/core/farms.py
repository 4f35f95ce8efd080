"""What the process model knows of server farms: the operator's states and the counters.

The master keeps the administrative state of farm members (``colonnade farm
drain|enable|disable FARM MEMBER``) and hands it to every worker, at start and
on each change (``pools/worker.py`` calls :func:`set_admin`). The farms of the
process (``colonnade.providers.farms``) register here, take their members'
states from :func:`admin_of` and are told of changes; the worker reports their
counters to the master with :func:`stats`. Neither side needs to know the
other: the pools layer never imports a provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class AdminAware(Protocol):
    """A farm as seen from here."""

    name: str

    def set_admin(self, states: Mapping[str, str]) -> None:
        """Take the operator's states of this farm's members (by member name;
        a member not named is enabled)."""

    def stats(self) -> dict[str, dict[str, int | float | str]]:
        """Every member's counters and state, by member name."""


#: farm -> member -> "draining" | "disabled" (an enabled member is not listed).
_ADMIN: dict[str, dict[str, str]] = {}
_FARMS: dict[str, AdminAware] = {}


def register(farm: AdminAware) -> None:
    """Give ``farm`` the operator's states now and on every change."""
    _FARMS[farm.name] = farm
    farm.set_admin(_ADMIN.get(farm.name, {}))


def set_admin(states: Mapping[str, Mapping[str, str]]) -> None:
    """The master's whole map of administrative states (farm -> member -> state)."""
    _ADMIN.clear()
    _ADMIN.update({farm: dict(members) for farm, members in states.items() if members})
    for farm in list(_FARMS.values()):
        farm.set_admin(_ADMIN.get(farm.name, {}))


def admin_of(farm: str) -> Mapping[str, str]:
    """The operator's states of ``farm``'s members."""
    return _ADMIN.get(farm, {})


def stats() -> dict[str, dict[str, dict[str, int | float | str]]]:
    """Every registered farm's member counters: farm -> member -> counters."""
    return {name: farm.stats() for name, farm in _FARMS.items()}
