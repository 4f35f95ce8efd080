"""Per-client counters for rate limits, shared by every worker of the server.

How this works
--------------
One table per server lives in a shared memory zone (``core/shared.py``): every
worker updates the same counters, so ``--workers 4`` does not allow four times
the limit. The table is set-associative: a client's key (its address, 16 bytes,
IPv4 as IPv4-mapped IPv6, plus a 32-bit *scope* naming the policy) hashes with a
per-server secret key (so no client can aim at another's set) to one set of
:data:`WAYS` slots of 64 bytes. A set's slots are searched with one
``mmap.find``; a client not found takes a free slot, else the slot seen least
recently (idle ones first): memory is fixed, and when the table is full the
oldest entry goes. Sets are guarded by :data:`STRIPES` robust mutexes.

Each slot holds, for one client and policy:

- the requests in flight (``BEGIN_REQUEST`` adds one, ``END_REQUEST`` takes it
  back);
- a sliding-window request count: the count of the current fixed window and
  of the previous one, weighted by how much of the previous window the sliding
  window still covers (``prev * (interval - elapsed) / interval + current``;
  Cloudflare's "sliding window counter"). Exact when requests are spread
  evenly; it can only err by the previous window's unevenness, in 64 bytes
  per client whatever the limit;
- the same for authentication failures.

Only requests let through are counted: a client over its rate gets through
again as soon as its window has room, so a client that never stops asking is
served exactly at the configured rate.

Times are ``CLOCK_MONOTONIC`` milliseconds, one clock for every process of a
machine. A worker that dies with requests in flight leaves their in-flight
counts behind; they clear when the client's entry is evicted or re-created.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from colonnade.core.shared import (
    SharedMemory,
    Zone,
    mutex_lock,
    mutex_unlock,
    recover,
    server_memory,
)

#: Slots per set (one ``find`` covers a set: 512 bytes).
WAYS = 8
#: Mutexes guarding the sets (set ``i`` is guarded by mutex ``i % STRIPES``).
STRIPES = 64
SLOT = 64
_SLOT = struct.Struct("<16sIiqqIIqII")
# key, scope, inflight, last seen, rate window, rate current, rate previous,
# failure window, failure current, failure previous.
assert _SLOT.size == SLOT
_HEADER = 8192  # hash key (16 bytes at 0), then the stripe mutexes from 64
_KEY_CACHE = 4096

T = TypeVar("T")

ALLOWED = 0
CONCURRENCY = 1
RATE = 2
FAILURES = 3


class Policy(NamedTuple):
    """What is counted for a client, and the limits (0: that limit is off)."""

    scope: int
    """A nonzero 32-bit number naming the policy: counters are per client and
    scope (every URL with the same settings shares them)."""
    max_concurrent: int
    max_requests: int
    interval_ms: int
    max_failures: int
    failure_interval_ms: int
    ipv6_prefix: int = 64
    """IPv6 clients are counted by this prefix of their address (IPv4: per address)."""


class Verdict(NamedTuple):
    """The answer for one request: ``code`` (ALLOWED, CONCURRENCY, RATE, FAILURES)
    and, when refused, in how many milliseconds asking again may succeed."""

    code: int
    retry_ms: int = 0


ADMIT = Verdict(ALLOWED)
BUSY = Verdict(CONCURRENCY, 1000)


def client_key(host: str, ipv6_prefix: int = 128) -> bytes | None:
    """The 16-byte key of an IP address (IPv4 as IPv4-mapped IPv6), an IPv6 address
    cut to its first ``ipv6_prefix`` bits; None for anything else (a Unix socket's
    path)."""
    try:
        if ":" in host:
            packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            if packed[:12] == _MAPPED or ipv6_prefix >= 128:
                return packed
            kept = int.from_bytes(packed, "big") >> (128 - ipv6_prefix) << (128 - ipv6_prefix)
            return kept.to_bytes(16, "big")
        return _MAPPED + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return None


_MAPPED = b"\0" * 10 + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped IPv6


def now_ms() -> int:
    """The counters' clock: ``CLOCK_MONOTONIC`` in milliseconds."""
    return time.monotonic_ns() // 1_000_000


def _roll(
    now: int, interval: int, window: int, current: int, prev: int
) -> tuple[int, int, int, int]:
    """(ms into the window, window, current, previous count) at ``now``: the
    counts moved on when a new window began (the old one is the previous only
    if they are adjacent)."""
    index, elapsed = divmod(now, interval)
    if index != window:
        prev = current if index == window + 1 else 0
        current, window = 0, index
    return elapsed, window, current, prev


def _full(prev: int, current: int, elapsed: int, interval: int, limit: int) -> int:
    """0 while the sliding count is below ``limit``, else the milliseconds until it is."""
    # The weighted count times ``interval``: integers, no rounding drift.
    if prev * (interval - elapsed) + current * interval < limit * interval:
        return 0
    return max(1, rate_retry_ms(prev, current, elapsed, interval, limit))


def rate_retry_ms(prev: int, current: int, elapsed: int, interval: int, limit: int) -> int:
    """Milliseconds until the sliding count of (``prev``, ``current``) at
    ``elapsed`` ms into the window drops below ``limit``."""
    if current < limit:
        # Within this window, once enough of the previous one slid out.
        if prev == 0:
            return 0
        need = interval - elapsed - ((limit - current) * interval) // prev
        return max(1, need + 1)
    # Not before the next window, where this one is the previous.
    rest = interval - elapsed
    return rest + interval - (limit * interval) // current + 1


class ClientCounters:
    """The per-client table in shared memory (see the module docstring)."""

    def __init__(self, arena: SharedMemory, name: str, max_clients: int) -> None:
        sets = 1
        while sets * WAYS < max_clients:
            sets *= 2
        self.sets = sets
        self.capacity = sets * WAYS
        size = _HEADER + sets * WAYS * SLOT
        zone = arena.zone(f"{name}:{sets}", size, self._initialize)
        self.zone = zone
        self.buffer: mmap.mmap = zone.buffer
        self._slots = zone.offset + _HEADER
        self._hash_key = bytes(self.buffer[zone.offset : zone.offset + 16])
        self._mutexes = [zone.mutex(64 + i * 64) for i in range(STRIPES)]
        self._addresses = [m.address for m in self._mutexes]
        self._places: dict[tuple[str, int], tuple[int, int, bytes] | None] = {}

    @classmethod
    def for_server(cls, name: str, max_clients: int) -> ClientCounters:
        """The table ``name`` of this server (made on first use)."""
        return cls(server_memory(), name, max_clients)

    @staticmethod
    def _initialize(zone: Zone) -> None:
        zone.buffer[zone.offset : zone.offset + 16] = os.urandom(16)
        for i in range(STRIPES):
            zone.mutex(64 + i * 64).initialize()

    def close(self) -> None:
        """Drop this process's references into the shared memory."""
        for mutex in self._mutexes:
            mutex.release()
        self._mutexes = []

    # -- finding a client's slot ---------------------------------------------------------

    def _where(self, host: str, scope: int, ipv6_prefix: int) -> tuple[int, int, bytes] | None:
        """(offset of the set, address of its mutex, key + scope) of ``host`` under
        ``scope``; None for a client that is no IP address. Cached per process:
        hashing costs ~1.5 µs, the lookup ~0.1."""
        places = self._places
        try:
            return places[host, scope]
        except KeyError:
            pass
        key = client_key(host, ipv6_prefix)
        found = None
        if key is not None:
            digest = hashlib.blake2b(
                key + scope.to_bytes(4, "little"), digest_size=8, key=self._hash_key
            ).digest()
            index = int.from_bytes(digest, "little") & (self.sets - 1)
            found = (
                self._slots + index * WAYS * SLOT,
                self._addresses[index % STRIPES],
                key + scope.to_bytes(4, "little"),
            )
        if len(places) >= _KEY_CACHE:
            places.clear()
        places[host, scope] = found
        return found

    def _find(self, needle: bytes, base: int) -> int:
        """The slot of ``needle`` (key + scope) in the set at ``base``, or -1."""
        buffer = self.buffer
        end = base + WAYS * SLOT
        at = buffer.find(needle, base, end)
        while at >= 0 and (at - base) % SLOT:
            # Matched across fields of other slots: keep looking (rare).
            at = buffer.find(needle, at + 1, end)
        return at

    def _victim(self, base: int) -> int:
        """A free slot of the set at ``base``, else the idle one seen least
        recently, else the one seen least recently."""
        best = base
        best_rank: tuple[bool, int] | None = None
        unpack = _SLOT.unpack_from
        buffer = self.buffer
        for at in range(base, base + WAYS * SLOT, SLOT):
            fields = unpack(buffer, at)
            if not fields[1]:
                return at  # scope 0: never used
            rank = (fields[2] > 0, fields[3])
            if best_rank is None or rank < best_rank:
                best, best_rank = at, rank
        return best

    def _locked(self, op: Callable[..., T], host: str, policy: Policy, *args: Any) -> T | None:
        """``op(base, needle, policy, *args)`` with the lock of ``host``'s set held
        (``base``: the set's offset, ``needle``: key + scope); None for a client
        that is no IP address."""
        where = self._where(host, policy.scope, policy.ipv6_prefix)
        if where is None:
            return None
        base, address, needle = where
        code = mutex_lock(address)
        if code:
            recover(address, code)
        try:
            return op(base, needle, policy, *args)
        finally:
            mutex_unlock(address)

    # -- the two operations --------------------------------------------------------------

    def admit(self, host: str, policy: Policy, now: int) -> Verdict:
        """Count a request of ``host`` if it is within ``policy``, else say why not.

        Let through: its in-flight count (when ``max_concurrent`` is set) and its
        rate count went up; :meth:`release` must follow when the request ends.
        Unknown clients (no IP address) are always let through, uncounted.
        """
        return self._locked(self._admit, host, policy, now) or ADMIT

    def _admit(self, base: int, needle: bytes, policy: Policy, now: int) -> Verdict:
        buffer = self.buffer
        at = self._find(needle, base)
        if at < 0:
            at = self._victim(base)
            inflight = rwin = rcur = rprev = fwin = fcur = fprev = 0
        else:
            (_k, _s, inflight, _last, rwin, rcur, rprev, fwin, fcur, fprev) = _SLOT.unpack_from(
                buffer, at
            )
        verdict = ADMIT
        if policy.max_failures:
            interval = policy.failure_interval_ms
            elapsed, fwin, fcur, fprev = _roll(now, interval, fwin, fcur, fprev)
            retry = _full(fprev, fcur, elapsed, interval, policy.max_failures)
            if retry:
                verdict = Verdict(FAILURES, retry)
        if verdict is ADMIT and policy.max_concurrent and inflight >= policy.max_concurrent:
            verdict = BUSY
        if policy.max_requests:
            interval = policy.interval_ms
            elapsed, rwin, rcur, rprev = _roll(now, interval, rwin, rcur, rprev)
            if verdict is ADMIT:
                retry = _full(rprev, rcur, elapsed, interval, policy.max_requests)
                if retry:
                    verdict = Verdict(RATE, retry)
                else:
                    rcur += 1
        if verdict is ADMIT and policy.max_concurrent:
            inflight += 1
        _SLOT.pack_into(
            buffer,
            at,
            needle[:16],
            policy.scope,
            inflight,
            now,
            rwin,
            rcur,
            rprev,
            fwin,
            fcur,
            fprev,
        )
        return verdict

    def release(self, host: str, policy: Policy, now: int, *, admitted: bool, failed: bool) -> None:
        """A request of ``host`` ended: its in-flight count goes down (``admitted``:
        :meth:`admit` counted it in flight), and with ``failed`` its
        authentication failure is counted."""
        self._locked(self._release, host, policy, now, admitted, failed)

    def _release(
        self, base: int, needle: bytes, policy: Policy, now: int, admitted: bool, failed: bool
    ) -> None:
        buffer = self.buffer
        at = self._find(needle, base)
        if at < 0:
            if not failed:
                return  # evicted meanwhile: nothing to take back
            at = self._victim(base)
            fields = (needle[:16], policy.scope, 0, now, 0, 0, 0, 0, 0, 0)
        else:
            fields = _SLOT.unpack_from(buffer, at)
        key, scope, inflight, _last, rwin, rcur, rprev, fwin, fcur, fprev = fields
        if admitted and inflight > 0:
            inflight -= 1
        if failed and policy.failure_interval_ms:
            _e, fwin, fcur, fprev = _roll(now, policy.failure_interval_ms, fwin, fcur, fprev)
            fcur += 1
        _SLOT.pack_into(buffer, at, key, scope, inflight, now, rwin, rcur, rprev, fwin, fcur, fprev)

    def peek(self, host: str, policy: Policy) -> tuple[int, int, int] | None:
        """(in flight, rate count of the current window, failures of the current
        window) of ``host`` under ``policy``, or None: for tests and tools."""
        return self._locked(self._peek, host, policy)

    def _peek(self, base: int, needle: bytes, policy: Policy) -> tuple[int, int, int] | None:
        at = self._find(needle, base)
        if at < 0:
            return None
        fields = _SLOT.unpack_from(self.buffer, at)
        return fields[2], fields[5], fields[8]
