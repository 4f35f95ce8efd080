"""Revoked sign-ins, shared by every worker of the server.

A stateless ticket (``auth.forms``) stays valid until it expires: clearing the
cookie at sign-out does not stop a copy of it (a shared computer's history, a
proxy's log, a stolen cookie) from signing in again. A :class:`RevocationList`
remembers the sign-ins that ended before their tickets expired, by the random
*sign-in id* every ticket of one sign-in carries (renewals keep it), until the
last ticket of that sign-in has expired.

How this works
--------------
One zone of the server's shared memory (``core/shared.py``) holds a ring of
:data:`CAPACITY` entries ``(id, until)`` and a count of revocations so far; a
revocation writes the next entry and adds one to the count under the zone's
mutex. Each process keeps its own dictionary of the entries, and reads the
shared count (one 8-byte read) on every lookup: when it moved, the new entries
are copied in (under the mutex). A lookup therefore costs a read of shared
memory and a dictionary probe, with no lock and no system call; a sign-out is
seen by every worker from its next request on.

The ring is bounded: with more than :data:`CAPACITY` revocations within one
ticket lifetime the oldest are overwritten, and their tickets would open again;
that is logged when it happens to an entry not yet expired.
"""

from __future__ import annotations

import logging
import mmap
import struct
import time

from colonnade.core.shared import Mutex, SharedMemory, Zone, server_memory

log = logging.getLogger("colonnade.auth")

#: Revocations remembered at once (the ring's entries): 64 Ki x 24 bytes.
CAPACITY = 65536
#: The size of a sign-in id.
ID_BYTES = 16
_ENTRY = struct.Struct("<16sq")  # id, until (Unix time, seconds)
_COUNT = struct.Struct("<q")
_MUTEX_AT = 64
_ENTRIES_AT = 128


class RevocationList:
    """The server's revoked sign-ins (see the module docstring)."""

    def __init__(
        self, arena: SharedMemory, name: str = "auth:revoked", capacity: int = CAPACITY
    ) -> None:
        self.capacity = capacity
        size = _ENTRIES_AT + capacity * _ENTRY.size
        zone: Zone = arena.zone(f"{name}:{capacity}", size, _initialize)
        self._buffer: mmap.mmap = zone.buffer
        self._base = zone.offset
        self._mutex: Mutex = zone.mutex(_MUTEX_AT)
        # The shared count as a C integer view: reading it costs an index, where
        # struct.unpack_from costs a call and a tuple (it is read per request).
        self._count = memoryview(zone.buffer)[zone.offset : zone.offset + 8].cast("q")
        self._seen = 0
        self._local: dict[bytes, int] = {}

    @classmethod
    def for_server(cls) -> RevocationList:
        """This server's list (made on first use)."""
        return cls(server_memory())

    def revoke(self, sign_in: bytes, until: float) -> None:
        """Tickets of ``sign_in`` no longer open, until ``until`` (Unix time)."""
        entry = _ENTRY.pack(sign_in.ljust(ID_BYTES, b"\0")[:ID_BYTES], int(until) + 1)
        buffer, base = self._buffer, self._base
        self._mutex.lock()
        try:
            (count,) = _COUNT.unpack_from(buffer, base)
            at = base + _ENTRIES_AT + (count % self.capacity) * _ENTRY.size
            _old, old_until = _ENTRY.unpack_from(buffer, at)
            buffer[at : at + _ENTRY.size] = entry
            _COUNT.pack_into(buffer, base, count + 1)
        finally:
            self._mutex.unlock()
        if count >= self.capacity and old_until > time.time():
            log.warning(
                "forms authentication: more than %d sign-outs within a ticket lifetime: "
                "the oldest revoked sign-in is forgotten before its tickets expired",
                self.capacity,
            )

    def revoked(self, sign_in: bytes, now: float) -> bool:
        """Whether tickets of ``sign_in`` were revoked at ``now`` (Unix time)."""
        if self._count[0] != self._seen:
            self._catch_up()
        until = self._local.get(sign_in)
        return until is not None and until > now

    def close(self) -> None:
        """Drop this process's views of the shared memory (before the arena closes)."""
        self._count.release()
        self._mutex.release()

    def _catch_up(self) -> None:
        # Copy the entries written since the last look (those the ring still
        # holds, when more were written meanwhile), leaving out expired ones.
        # What this process knew is kept: an entry overwritten in the ring
        # stays revoked here until it expires.
        buffer, base = self._buffer, self._base
        local = self._local
        now = time.time()
        self._mutex.lock()
        try:
            (count,) = _COUNT.unpack_from(buffer, base)
            first = max(self._seen, count - self.capacity)
            for n in range(first, count):
                at = base + _ENTRIES_AT + (n % self.capacity) * _ENTRY.size
                sign_in, until = _ENTRY.unpack_from(buffer, at)
                if until > now:
                    local[sign_in] = until
        finally:
            self._mutex.unlock()
        self._seen = count
        if len(local) > 2 * self.capacity:
            # Entries the ring has overwritten since: forget the expired ones.
            for sign_in in [k for k, until in local.items() if until <= now]:
                del local[sign_in]


def _initialize(zone: Zone) -> None:
    _COUNT.pack_into(zone.buffer, zone.offset, 0)
    zone.mutex(_MUTEX_AT).initialize()
