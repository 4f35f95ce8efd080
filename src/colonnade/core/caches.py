"""The caches of this process that operators can count and purge.

A module that keeps responses (``cache.output``'s memory tier) registers each
store here under a kind (``"output_cache"``). The worker answers the master's
purge and statistics requests from this registry (``pools/worker.py``), so
neither side needs to know which modules are enabled. Stores are held weakly:
one that is dropped with its application leaves by itself.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable
from typing import Protocol


class PurgeableCache(Protocol):
    """What a registered store answers."""

    def purge(self, path: str, *, prefix: bool = False) -> int | Awaitable[int]:
        """Drop the entries of URL path ``path`` (or of every path under it with
        ``prefix``); the number dropped (a store over the network answers with
        an awaitable)."""

    def stats(self) -> dict[str, int]:
        """Counters and sizes, by name."""


_STORES: dict[str, weakref.WeakSet[PurgeableCache]] = {}


def register(kind: str, store: PurgeableCache) -> None:
    """Count and purge ``store`` with the other stores of ``kind``."""
    _STORES.setdefault(kind, weakref.WeakSet()).add(store)


def unregister(kind: str, store: PurgeableCache) -> None:
    """Forget ``store`` (closed)."""
    stores = _STORES.get(kind)
    if stores is not None:
        stores.discard(store)


async def purge(kind: str, path: str, *, prefix: bool = False) -> int:
    """Purge ``path`` from every store of ``kind``; the number of entries dropped."""
    dropped = 0
    for store in list(_STORES.get(kind, ())):
        count = store.purge(path, prefix=prefix)
        dropped += await count if inspect.isawaitable(count) else count
    return dropped


def totals() -> dict[str, dict[str, int]]:
    """Every kind's counters, added up over its stores (kinds with no store left out)."""
    out: dict[str, dict[str, int]] = {}
    for kind, stores in _STORES.items():
        summed: dict[str, int] = {}
        for store in list(stores):
            for name, value in store.stats().items():
                summed[name] = summed.get(name, 0) + value
        if summed:
            out[kind] = summed
    return out
