"""How another thread wakes an event loop that watches an ``eventfd``: the 8-byte
write (the thread's) and the read that resets the counter (the loop's).

os's ``eventfd_write`` and ``eventfd_read`` release the GIL around their system
call, as for any call that may block, and take it back after: two more passes
through the GIL's functions per call (~0.5k instructions each way, callgrind),
and on the writing thread a wait for the GIL where the loop it just woke took it
meanwhile. A descriptor made with ``EFD_NONBLOCK`` and drained by its loop never
blocks (a write would fail with EAGAIN only with the counter at 2**64 - 2, a read
of a zero counter fails with EAGAIN at once), so the compiled build's worker
installs (:func:`install`) colonnade/_libc.c's pair, which keep the GIL held over the
system call. The pure build keeps os's.

Who wakes a loop this way (handlers/wsgi/bridge.py's ``Outbox``) reads
:data:`eventfd_write` and :data:`eventfd_read` here when it makes its descriptor;
the pool layer, above the handlers, installs the pair with the process's event
loop (pools/single.py's ``new_event_loop``), before anything serves.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: ``eventfd_write(fd, value)`` for a non-blocking eventfd (None: no eventfd here).
eventfd_write: Callable[[int, int], None] | None = getattr(os, "eventfd_write", None)
#: ``eventfd_read(fd)``, the counter (BlockingIOError where it is zero).
eventfd_read: Callable[[int], int] | None = getattr(os, "eventfd_read", None)


def install(write: Callable[[int, int], None], read: Callable[[int], int]) -> None:
    """Use ``write`` and ``read`` (os's functions' signatures and errors) for every
    descriptor made from now on."""
    global eventfd_write, eventfd_read
    eventfd_write = write
    eventfd_read = read
