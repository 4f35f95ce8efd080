"""Keeping the master small: asyncio without ``ssl``.

``import asyncio`` imports ``ssl`` (``asyncio.base_events`` does, to offer TLS),
which maps OpenSSL's libssl and libcrypto: about 6 MiB of a process's RSS, a
third of an idle master's. The master terminates no TLS: an https port's
connections are handed to a worker of their pool before the handshake (its SNI
name is only peeked, ``transport/clienthello.py``; see docs/tls.md). Only an
https admin binding (``[admin] bind = "https://…"``, fixed while the master runs)
needs TLS in the master. Otherwise :func:`import_asyncio` imports asyncio with
``ssl`` hidden, so asyncio's own modules take "no TLS here" (their ``ssl`` is
None); ``ssl`` itself stays importable afterwards for whatever needs it, but
asyncio in that process then serves no TLS. The master then also runs asyncio's
own event loop instead of uvloop, whose import needs ``ssl`` (:func:`loop_factory`).

The same way (:func:`without`), the master's image and a worker import msgspec
without ``typing_extensions`` (~0.2 MiB of an idle master, ~0.45 MiB of a worker,
measured with tracemalloc): msgspec takes it only where it can (``try: import``),
for what Python 3.11's ``typing`` has itself. There msgspec answers the same
without it, also for an application's own types in a worker: it asks
``get_type_hints`` with ``include_extras=True``, for which typing_extensions'
version returns ``typing.get_type_hints``'s answer as it is (its own work is for
Python < 3.11 or without extras), and its ``Required`` and ``NotRequired`` are
``typing``'s. ``typing_extensions`` stays importable for the application.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Hide the modules ``names`` from what is imported in the block (those not
    imported yet: an imported one is there to stay); importable again after it."""
    hidden = [name for name in names if name not in sys.modules]
    # None in sys.modules makes an import raise ImportError: the documented way to hide one.
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def import_asyncio(*, tls: bool) -> bool:
    """Import asyncio, without ``ssl`` unless ``tls`` (or unless either is imported
    already); whether asyncio came without it."""
    if tls or "asyncio" in sys.modules or "ssl" in sys.modules:
        return False
    with without("ssl"):
        import asyncio  # noqa: F401 - imported for the rest of the process
    return True


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop where ``ssl`` is imported already (its cost is paid), else
    asyncio's own (importing uvloop would import ``ssl``)."""
    import asyncio

    if "ssl" not in sys.modules or asyncio.base_events.ssl is None:  # type: ignore[attr-defined]
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop
    return uvloop.new_event_loop
