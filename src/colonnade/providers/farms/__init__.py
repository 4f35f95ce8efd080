"""Server farms: the members a reverse proxy spreads requests over (ARR's web farms).

The server file's ``[farms.NAME]`` tables
(:class:`~colonnade.config.schema.FarmSettings`) reach handlers as
``Application.farms``. A handler that sends requests to a farm (the proxy)
does this::

    from colonnade.providers.farms import farm_for

    farm = farm_for(app.farms["app"], name="app")   # at provision
    ...
    lease = farm.choose(ctx)            # None: no member may take it -> 502.4
    if lease is None: ...
    member = lease.member               # .name (logs), .host/.port or .unix_path
    if lease.set_cookie is not None:    # client affinity
        ctx.response.headers.append((b"set-cookie", lease.set_cookie))
    ...connect and send...
    lease.finished("ok" | "connect_failed" | "failed", elapsed_seconds)
    # once, when connecting failed on an idempotent request whose body was not sent:
    lease = farm.retry(ctx, lease)

The API (stable; the proxy handler codes against it):

- :func:`farm_for` ``(settings, *, name) -> Farm``: the process's live farm of
  that name (the same object across configuration reloads while the name
  exists: members that keep their name keep their state and counters).
- :meth:`Farm.choose` ``(ctx) -> Lease | None`` and :meth:`Farm.retry`
  ``(ctx, failed) -> Lease | None``.
- :class:`Lease`: ``member``, ``set_cookie``, :meth:`Lease.finished`
  ``(outcome, elapsed)`` exactly once.
- :class:`Member`: ``name``, ``host``, ``port``, ``unix_path``, ``state``.
- :meth:`Farm.stats`, :func:`farms`: what ``colonnade farms`` reports.

What this process does is its own: each worker counts requests in flight, finds
members down and probes them by itself (``colonnade farms`` adds the workers'
counters up). The administrative state an operator sets (drain, disable)
comes from the master and is the same in every worker.
"""

from __future__ import annotations

from colonnade.config.schema import FarmSettings
from colonnade.core import farms as farm_states
from colonnade.providers.farms.farm import Farm, Lease, Outcome
from colonnade.providers.farms.members import ADMIN_STATES, Admin, Member

__all__ = [
    "ADMIN_STATES",
    "Admin",
    "Farm",
    "Lease",
    "Member",
    "Outcome",
    "farm_for",
    "farms",
]

#: The process's farms, by name.
_FARMS: dict[str, Farm] = {}


def farm_for(settings: FarmSettings, *, name: str) -> Farm:
    """The live :class:`Farm` called ``name`` of this process, made on first use
    and brought up to date with ``settings`` (a reloaded configuration) after."""
    farm = _FARMS.get(name)
    if farm is None:
        farm = _FARMS[name] = Farm(name, settings)
        farm_states.register(farm)
    elif not farm.takes(settings):
        farm.update(settings)
    return farm


def farms() -> dict[str, Farm]:
    """Every farm of this process that a handler asked for, by name."""
    return dict(_FARMS)
