"""Cached responses in Redis: the output cache's tier shared by workers and nodes.

How this works
--------------
Keys live under ``[redis] key_prefix`` + ``"cache:"`` (the digests in hex):

- ``e:<key>``: one entry, a msgpack array (status, reason, headers, body, when
  stored, when it expires, URL path, source files), with Redis's own expiry
  (``PX``) at the entry's deadline (a day at most for an entry without one);
- ``v:<base>``: the request headers the responses at a base key vary on (the
  response's ``Vary``), comma-separated, empty for none;
- ``u:<path>``: the set of entry keys stored for a URL path: what a purge
  deletes, and what ``max_variants`` counts.

A lookup is one round trip (``MGET v:<base> e:<base>``): a base key whose
responses vary on nothing more has its entry at ``e:<base>``; otherwise a
second ``GET`` fetches the variant. A store is one pipelined transaction. An
entry that does not decode (another version wrote it, or it is corrupt) is a
miss and is deleted; nothing read from Redis is trusted beyond its shape.

A purge deletes the URL's entries, then publishes the purge on the channel
``purge`` (``PUBLISH``; a JSON object: ``path``, ``prefix``). A worker that keeps
copies of Redis entries in its memory (``memory_seconds``) subscribes to it
(:meth:`RedisTier.hear_purges`, on its serving loop) and drops the matching
copies, whichever node the purge came from; while it cannot hear (the
subscription broke) it drops every copy and keeps none.

Source files (``until_change``) are compared by modification time and size only:
inode numbers and change times differ from node to node.

Every failure — Redis down, slow, answering an error — is a miss or a store not
done, never an error for the request: :class:`~colonnade.providers.redis.SharedRedis`
logs an outage once and fails calls at once while it lasts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from colonnade.core import caches
from colonnade.providers.redis import RedisUnavailableError, SharedRedis, Subscription
from colonnade.providers.response_cache import (
    KIND,
    Counters,
    Entry,
    FileStamp,
    MemoryTier,
    unchanged,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: Redis keeps an entry without a deadline of its own at most this long (seconds).
MAX_TTL = 86_400.0

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

#: The longest URL path a purge message names (as ``colonnade cache purge``).
MAX_PURGE_PATH = 8192


class PurgeMessage(msgspec.Struct, frozen=True):
    """What a purge publishes for the other nodes' memory copies."""

    path: str
    prefix: bool = False


_encode_purge = msgspec.json.Encoder().encode
_decode_purge = msgspec.json.Decoder(PurgeMessage).decode


def _glob_escape(text: str) -> str:
    # SCAN MATCH patterns: a path's own * ? [ ] \ must match themselves.
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisTier:
    """The shared tier: entries in Redis, counted in this worker."""

    def __init__(self, redis: SharedRedis, max_variants: int) -> None:
        self.redis = redis
        self.max_variants = max_variants
        self.prefix = redis.prefix + "cache:"
        self.counters = Counters()
        self.errors = 0  # calls that failed (Redis down or answering an error)
        #: Where purges are published, and heard by every node's workers.
        self.channel = self.prefix + "purge"
        #: Purges heard (and subscriptions lost): a copy read from Redis before
        #: this changed may be what the purge removed, and is not kept.
        self.purges_heard = 0
        self._copies: MemoryTier | None = None
        self._subscription: Subscription | None = None
        caches.register(KIND, self)

    # -- the memory copies -------------------------------------------------------------

    def hear_purges(self, copies: MemoryTier) -> None:
        """Drop from ``copies`` what any node purges (subscribes once, on the
        running loop)."""
        if self._subscription is None:
            self._copies = copies
            self._subscription = self.redis.subscribe(self.channel, self._heard, self._deaf)

    @property
    def hearing(self) -> bool:
        """True while purges published by any node reach this worker."""
        return self._subscription is not None and self._subscription.live

    def _heard(self, data: bytes) -> None:
        try:
            message = _decode_purge(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # not ours
        if not message.path.startswith("/") or len(message.path) > MAX_PURGE_PATH:
            return
        self.purges_heard += 1
        if self._copies is not None:
            self._copies.purge(message.path, prefix=message.prefix)

    def _deaf(self) -> None:
        # Purges published from now until the subscription is back go unheard:
        # no copy may outlive one of them.
        self.purges_heard += 1
        if self._copies is not None:
            self._copies.clear()

    # -- lookups ----------------------------------------------------------------------

    async def find(
        self, base: bytes, full: Callable[[tuple[bytes, ...]], bytes], now: float
    ) -> tuple[Entry | None, tuple[bytes, ...]]:
        """The fresh entry for ``base`` (``full(varies)`` makes the variant's key)
        and the names it varies on; ``(None, varies)`` on a miss or a failure."""
        prefix = self.prefix
        base_hex = base.hex()
        try:
            varies_raw, data = await self.redis.call(
                lambda r: r.mget(prefix + "v:" + base_hex, prefix + "e:" + base_hex)
            )
        except RedisUnavailableError:
            self.errors += 1
            return None, ()
        varies = _names(_as_bytes(varies_raw))
        key = base
        if varies:
            key = full(varies)
            try:
                data = await self.redis.call(lambda r: r.get(prefix + "e:" + key.hex()))
            except RedisUnavailableError:
                self.errors += 1
                return None, varies
        raw = _as_bytes(data)
        if raw is None:
            return None, varies
        entry = self._load(raw, now)
        if entry is None:
            await self._delete(key)
            return None, varies
        self.counters.hits += 1
        return entry, varies

    def _load(self, data: bytes, now: float) -> Entry | None:
        try:
            status, reason, headers, body, stored, expires, url, files = _decode(data)
            entry = Entry(
                int(status),
                None if reason is None else bytes(reason),
                [(bytes(n), bytes(v)) for n, v in headers],
                bytes(body),
                url=str(url),
                expires=now + (float(expires) - time.time()),
                files=tuple(FileStamp(str(p), int(m), 0, int(s), 0) for p, m, s in files),
                stored=float(stored),
            )
        except (msgspec.DecodeError, TypeError, ValueError):
            self.counters.purged += 1  # unreadable: dropped like an expired one
            return None
        if now >= entry.expires or not unchanged(entry.files):
            self.counters.purged += 1
            return None
        return entry

    async def _delete(self, key: bytes) -> None:
        try:
            await self.redis.call(lambda r: r.delete(self.prefix + "e:" + key.hex()))
        except RedisUnavailableError:
            self.errors += 1

    # -- stores -----------------------------------------------------------------------

    async def put(self, base: bytes, varies: tuple[bytes, ...], key: bytes, entry: Entry) -> bool:
        """Store ``entry`` at ``key``; False when it was not (its URL at
        ``max_variants``, or Redis failed)."""
        prefix = self.prefix
        url_key = prefix + "u:" + entry.url
        entry_key = prefix + "e:" + key.hex()
        try:
            if not await self._room(url_key, entry_key):
                self.counters.rejected += 1
                return False
            ttl = entry.expires - time.monotonic()
            ttl_ms = int(1000 * min(ttl, MAX_TTL)) if ttl != math.inf else int(1000 * MAX_TTL)
            if ttl_ms <= 0:
                return False
            data = _encode(
                (
                    entry.status,
                    entry.reason,
                    entry.headers,
                    entry.body,
                    entry.stored,
                    time.time() + ttl_ms / 1000,
                    entry.url,
                    [(f.path, f.mtime_ns, f.size) for f in entry.files],
                )
            )
            names = b",".join(varies)

            async def store(r: Redis) -> Any:
                async with r.pipeline(transaction=True) as pipe:
                    pipe.set(entry_key, data, px=ttl_ms)
                    pipe.set(prefix + "v:" + base.hex(), names, px=int(1000 * MAX_TTL))
                    pipe.sadd(url_key, entry_key)
                    pipe.pexpire(url_key, int(1000 * MAX_TTL))
                    return await pipe.execute()

            await self.redis.call(store)
        except RedisUnavailableError:
            self.errors += 1
            return False
        self.counters.stores += 1
        return True

    async def _room(self, url_key: str, entry_key: str) -> bool:
        """True if the URL may have one more variant (expired ones are forgotten)."""
        found = await self.redis.call(lambda r: r.smembers(url_key))
        members = {m for m in map(_as_bytes, found) if m is not None}
        if len(members) < self.max_variants or entry_key.encode() in members:
            return True
        listed = sorted(members)
        alive = await self.redis.call(lambda r: r.mget(listed))
        gone = [m for m, value in zip(listed, alive, strict=True) if value is None]
        if gone:
            await self.redis.call(lambda r: r.srem(url_key, *gone))
        return len(members) - len(gone) < self.max_variants

    # -- purge and counters -----------------------------------------------------------

    async def purge(self, path: str, *, prefix: bool = False) -> int:
        """Delete every entry of URL path ``path`` (or of every path under it);
        the number deleted (0 when Redis failed)."""
        base = self.prefix + "u:"
        try:
            if prefix:
                pattern = base + _glob_escape(path) + "*"
                url_keys: list[bytes] = []

                async def scan(r: Redis) -> None:
                    async for found in r.scan_iter(match=pattern, count=500):
                        url_keys.append(found)

                await self.redis.call(scan)
            else:
                url_keys = [(base + path).encode()]
            dropped = 0
            for url_key in url_keys:
                dropped += await self.redis.call(_purge_url(url_key))
            # After the deletes: a node that drops its copy and asks Redis finds none.
            message = _encode_purge(PurgeMessage(path, prefix))
            await self.redis.call(lambda r: r.publish(self.channel, message))
        except RedisUnavailableError:
            self.errors += 1
            return 0
        self.counters.purged += dropped
        return int(dropped)

    def stats(self) -> dict[str, int]:
        """This worker's counters of the shared tier (evictions are Redis's own)."""
        counters = self.counters.as_dict()
        del counters["evictions"]
        return {**counters, "redis_errors": self.errors}

    async def close(self) -> None:
        """Leave the registry, stop hearing purges and release the shared client."""
        caches.unregister(KIND, self)
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.close()
        await self.redis.release()


def _names(raw: bytes | None) -> tuple[bytes, ...]:
    if not raw:
        return ()
    # At most what a store writes (MAX_VARY names); more is not ours: ignored.
    return tuple(n for n in raw.split(b",")[:16] if n)


def _purge_url(url_key: bytes) -> Callable[[Redis], Awaitable[int]]:
    """The call that deletes a URL's entries and its set; the entries deleted."""

    async def purge(r: Redis) -> int:
        members = await r.smembers(url_key)
        dropped = int(await r.delete(*members)) if members else 0
        await r.delete(url_key)
        return dropped

    return purge


def _as_bytes(value: object) -> bytes | None:
    # redis-py answers bytes (no decode_responses); anything else is not ours.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return None
