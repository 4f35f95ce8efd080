"""Session stores: in the worker's memory, or in Redis (shared by workers and nodes).

A store keeps each session's data as bytes (the session module's JSON) under
its id, for ``lifetime`` seconds after it was last read or written (sliding
expiry), and an exclusive lock per session for read-write requests (ASP.NET's
``GetItemExclusive``): a lock is held until released, or for ``lock_ttl``
seconds at most, so a worker that died holding one blocks nobody for long.
Read-only requests take no lock (they run side by side), but wait for a
writer's changes, as ASP.NET's do.

:class:`SessionStore` is the protocol; :class:`MemorySessionStore` and
:class:`RedisSessionStore` implement it. A Redis store answers
:class:`~colonnade.providers.redis.RedisUnavailableError` when Redis cannot be
reached; the caller decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import TYPE_CHECKING, Any, Protocol

from colonnade.providers.redis import LuaScript

if TYPE_CHECKING:
    from colonnade.providers.redis import SharedRedis


class SessionBusy(Exception):  # noqa: N818 - a state, not a failure of the store
    """The session stayed locked by another request for the whole wait."""


class SessionStore(Protocol):
    """Where sessions live (one store per application)."""

    async def read(self, sid: str, wait: float = 0.0) -> bytes | None:
        """The data of ``sid`` without locking (None: unknown or expired); its
        expiry slides. While another request holds the lock, wait up to
        ``wait`` seconds for its changes (then read what is stored)."""

    async def acquire(self, sid: str, wait: float) -> tuple[str, bytes | None]:
        """Lock ``sid`` (waiting up to ``wait`` seconds, else :class:`SessionBusy`)
        and read it: ``(lock token, data or None)``; its expiry slides."""

    async def release(
        self,
        sid: str,
        token: str,
        *,
        data: bytes | None = None,
        delete: bool = False,
        move_to: str | None = None,
    ) -> bool:
        """End a request on ``sid``: unlock it (``token``; ``""`` for a new
        session, which was never locked), and write ``data`` (if given; under
        ``move_to`` instead when given, deleting ``sid``) or delete it. False,
        and nothing written, when ``token`` no longer holds the lock: it
        expired (``lock_ttl``), and another request may have taken it."""

    async def close(self) -> None:
        """Let the backing store go."""


def new_token() -> str:
    """A lock token: who holds a lock."""
    return secrets.token_hex(8)


class _Lock:
    __slots__ = ("expires", "released", "token")

    def __init__(self, token: str, expires: float) -> None:
        self.token = token
        self.expires = expires
        self.released = asyncio.Event()


class MemorySessionStore:
    """Sessions in this worker's memory (per worker process: with several
    workers a client must keep reaching the same one, or sessions are lost),
    ``capacity`` at most: beyond, the least recently used one is forgotten."""

    #: Expired sessions are swept at most this often (seconds).
    SWEEP_EVERY = 60.0

    def __init__(self, lifetime: float, lock_ttl: float, capacity: int = 100_000) -> None:
        self.lifetime = lifetime
        self.lock_ttl = lock_ttl
        self.capacity = capacity
        # Least recently used first (an entry used is moved to the end): when
        # full, the first one goes.
        self._data: dict[str, tuple[bytes, float]] = {}
        self._locks: dict[str, _Lock] = {}
        self._swept = time.monotonic()

    def __len__(self) -> int:
        return len(self._data)

    def _get(self, sid: str, now: float) -> bytes | None:
        found = self._data.pop(sid, None)
        if found is None:
            return None
        data, expires = found
        if expires <= now:
            return None
        self._data[sid] = (data, now + self.lifetime)
        return data

    def _put(self, sid: str, data: bytes, now: float) -> None:
        self._data.pop(sid, None)
        self._data[sid] = (data, now + self.lifetime)
        while len(self._data) > self.capacity:
            del self._data[next(iter(self._data))]

    def _sweep(self, now: float) -> None:
        if now - self._swept < self.SWEEP_EVERY:
            return
        self._swept = now
        for sid in [s for s, (_, expires) in self._data.items() if expires <= now]:
            del self._data[sid]
        for sid in [s for s, lock in self._locks.items() if lock.expires <= now]:
            self._locks.pop(sid).released.set()

    async def read(self, sid: str, wait: float = 0.0) -> bytes | None:
        """See :class:`SessionStore`."""
        deadline = time.monotonic() + wait
        while True:
            now = time.monotonic()
            held = self._locks.get(sid)
            if held is None or held.expires <= now or deadline <= now:
                return self._get(sid, now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.released.wait(), min(deadline, held.expires) - now)

    async def acquire(self, sid: str, wait: float) -> tuple[str, bytes | None]:
        """See :class:`SessionStore`: waiters are woken when the lock is released."""
        deadline = time.monotonic() + wait
        while True:
            now = time.monotonic()
            self._sweep(now)
            held = self._locks.get(sid)
            if held is None or held.expires <= now:
                if held is not None:
                    held.released.set()  # expired: its waiters look again
                token = new_token()
                self._locks[sid] = _Lock(token, now + self.lock_ttl)
                return token, self._get(sid, now)
            left = min(deadline, held.expires) - now
            if deadline <= now:
                raise SessionBusy(sid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.released.wait(), left)

    async def release(
        self,
        sid: str,
        token: str,
        *,
        data: bytes | None = None,
        delete: bool = False,
        move_to: str | None = None,
    ) -> bool:
        """See :class:`SessionStore`."""
        now = time.monotonic()
        held = self._locks.get(sid)
        if token:
            if held is None or held.token != token or held.expires <= now:
                return False  # the lock expired (and may be another's now)
            del self._locks[sid]
            held.released.set()
        if delete or move_to is not None:
            self._data.pop(sid, None)
        if data is not None:
            self._put(move_to or sid, data, now)
        return True

    async def close(self) -> None:
        """Forget every session."""
        self._data.clear()
        for lock in self._locks.values():
            lock.released.set()
        self._locks.clear()


# KEYS: data, lock, new data (or ""); ARGV: token, mode, data, ttl ms.
# mode: "s" save, "d" delete, "m" move (save under KEYS[3], delete KEYS[1]), "" none
# (the expiry slides from the request's end, as from its start).
_RELEASE = LuaScript("""
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
  redis.call('DEL', KEYS[2])
end
local mode = ARGV[2]
if mode == 's' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
elseif mode == 'd' then
  redis.call('DEL', KEYS[1])
elseif mode == 'm' then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
""")

#: A locked session is asked again after this many seconds, doubling up to
#: :data:`POLL_MAX` (ASP.NET polls every 500 ms).
POLL_MIN = 0.01
POLL_MAX = 0.5


class RedisSessionStore:
    """Sessions in Redis: ``<prefix><id>`` holds the data (expiring), and
    ``<prefix><id>:lock`` the lock token (expiring after ``lock_ttl``). Each
    call is one round trip: :meth:`acquire` pipelines ``SET NX PX`` (the lock),
    ``GET`` and ``PEXPIRE``; :meth:`read` ``GET``, ``EXISTS`` (the lock) and
    ``PEXPIRE``; :meth:`release` is one script (checks the lock, writes or
    slides the expiry, unlocks). A read-modify-write request costs two: one
    before the handler, one after it (a second one once after Redis lost its
    script cache). A locked session costs one more per poll."""

    def __init__(self, shared: SharedRedis, prefix: str, lifetime: float, lock_ttl: float) -> None:
        self.shared = shared
        self.prefix = prefix
        self.lifetime_ms = max(1, round(lifetime * 1000))
        self.lock_ms = max(1, round(lock_ttl * 1000))

    async def read(self, sid: str, wait: float = 0.0) -> bytes | None:
        """See :class:`SessionStore` (one round trip; polled while locked)."""
        key = self.prefix + sid

        async def go(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.get(key)
            pipe.exists(key + ":lock")
            pipe.pexpire(key, self.lifetime_ms)
            return await pipe.execute()

        deadline = time.monotonic() + wait
        pause = POLL_MIN
        while True:
            data, locked, _ = await self.shared.call(go)
            left = deadline - time.monotonic()
            if not locked or left <= 0:
                return bytes(data) if data is not None else None
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    async def acquire(self, sid: str, wait: float) -> tuple[str, bytes | None]:
        """See :class:`SessionStore`: a locked session is polled (10 ms, doubling
        to 500 ms) until it is free or ``wait`` has passed."""
        key = self.prefix + sid
        token = new_token()

        async def go(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.set(key + ":lock", token, nx=True, px=self.lock_ms)
            pipe.get(key)
            pipe.pexpire(key, self.lifetime_ms)
            return await pipe.execute()

        deadline = time.monotonic() + wait
        pause = POLL_MIN
        while True:
            locked, data, _ = await self.shared.call(go)
            if locked:
                return token, bytes(data) if data is not None else None
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionBusy(sid)
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    async def release(
        self,
        sid: str,
        token: str,
        *,
        data: bytes | None = None,
        delete: bool = False,
        move_to: str | None = None,
    ) -> bool:
        """See :class:`SessionStore` (one script: checks the lock, writes, unlocks)."""
        key = self.prefix + sid
        if move_to is not None and data is not None:
            mode = "m"
        elif delete:
            mode = "d"
        elif data is not None:
            mode = "s"
        else:
            mode = ""
        keys = [key, key + ":lock", self.prefix + move_to if move_to else ""]
        args = [token, mode, data or b"", self.lifetime_ms]
        done = await self.shared.call(lambda r: _RELEASE(r, keys, args))
        return bool(done)

    async def close(self) -> None:
        """Let the shared client go (the last user closes its pool)."""
        await self.shared.release()
