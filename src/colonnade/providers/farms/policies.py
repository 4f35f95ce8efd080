"""The load-balancing algorithms: each picks one member of the candidates.

A policy sees only the members that may take a new request now (healthy,
enabled, below their connection limit), never an empty list, and answers one of
them. It keeps what it needs between calls on itself or on the members
(``Member.current`` for smooth weighted round robin). Everything runs on one
event loop: no locks.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from colonnade.core.httputil import cookie_values
from colonnade.providers.farms.members import Member

if TYPE_CHECKING:
    from colonnade.core.context import Context

_MASK = (1 << 64) - 1


class Policy(Protocol):
    """Picks a member for a request."""

    def pick(self, candidates: Sequence[Member], ctx: Context | None) -> Member:
        """One of ``candidates`` (never empty)."""


class WeightedRoundRobin:
    """Smooth weighted round robin (nginx's): members take turns in proportion to
    their weights, interleaved (weights 5, 1, 1 give a a b a c a a, not a a a a a
    b c). Each pick adds every candidate's weight to its running score, takes the
    highest and subtracts the candidates' total from it."""

    def pick(self, candidates: Sequence[Member], ctx: Context | None) -> Member:
        best = candidates[0]
        total = 0
        for member in candidates:
            member.current += member.weight
            total += member.weight
            if member.current > best.current:
                best = member
        best.current -= total
        return best


class _Rotating:
    """Breaks ties among equally good members in turn, so that a cold farm (every
    member at 0) still spreads its first requests."""

    def __init__(self) -> None:
        self._turn = 0

    def _lowest(self, candidates: Sequence[Member], score: list[float]) -> Member:
        count = len(candidates)
        self._turn = (self._turn + 1) % count
        start = self._turn
        best = start
        for step in range(1, count):
            i = (start + step) % count
            if score[i] < score[best]:
                best = i
        return candidates[best]


class LeastRequests(_Rotating):
    """The member with the fewest requests in flight from this process, per weight
    (ARR's "least current request")."""

    def pick(self, candidates: Sequence[Member], ctx: Context | None) -> Member:
        return self._lowest(candidates, [m.in_flight / m.weight for m in candidates])


class LeastResponseTime(_Rotating):
    """The member with the lowest moving-average response time, times its requests
    in flight plus one, per weight (ARR's "least response time"; the in-flight
    factor keeps the fastest member from taking every request of a burst). A
    member with no time measured yet goes first; an unused member's time fades
    (``EWMA_FADE``) so that one slow moment does not exclude it for ever."""

    def pick(self, candidates: Sequence[Member], ctx: Context | None) -> Member:
        now = time.monotonic()
        return self._lowest(
            candidates,
            [m.response_time(now) * (m.in_flight + 1) / m.weight for m in candidates],
        )


def _mix(value: int) -> int:
    """SplitMix64's finaliser: a key hash and a member seed mixed into a
    well-spread 64-bit number."""
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK
    return value ^ (value >> 31)


def key_hash(key: bytes) -> int:
    """The 64-bit hash of a request's key."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def rendezvous(candidates: Sequence[Member], hashed: int) -> Member:
    """Weighted rendezvous (highest random weight) hashing: every member draws a
    score from the key and its own name, scaled by its weight; the highest wins.
    Adding a member moves only the keys it now wins (its share of them); removing
    one, or passing over one that is down, moves only its own keys."""
    best = candidates[0]
    best_score = -1.0
    for member in candidates:
        draw = _mix(hashed ^ member.seed)
        # A uniform number in (0, 1) from the top 53 bits; -w / ln(u) is the
        # weighted form (a member of weight 2 wins twice as many keys).
        uniform = ((draw >> 11) + 0.5) / 9007199254740992.0
        score = -member.weight / math.log(uniform)
        if score > best_score:
            best, best_score = member, score
    return best


class RequestHash:
    """The same key always reaches the same member while it is up (a cache array:
    each member holds its own part of the URLs). The key is the URL, the path,
    the client address, a header or a cookie; a request without it is balanced
    by weighted round robin."""

    def __init__(self, hash_by: str) -> None:
        self.hash_by = hash_by
        kind, _, name = hash_by.partition(":")
        self._kind = kind
        self._header = name.lower().encode("latin-1")
        self._cookie = name.encode("latin-1") + b"="
        self._fallback = WeightedRoundRobin()

    def key(self, ctx: Context | None) -> bytes | None:
        """The request's key, or None when it has none."""
        if ctx is None:
            return None
        request = ctx.request
        kind = self._kind
        if kind == "url":
            return request.raw_path + b"?" + request.query if request.query else request.raw_path
        if kind == "path":
            return request.path.encode("utf-8", "surrogateescape")
        if kind == "client":
            return request.client[0].encode() if request.client is not None else None
        if kind == "header":
            return request.header(self._header)
        found = cookie_values(request.headers, self._cookie, 1)
        return found[0] if found else None

    def pick(self, candidates: Sequence[Member], ctx: Context | None) -> Member:
        key = self.key(ctx)
        if key is None:
            return self._fallback.pick(candidates, ctx)
        return rendezvous(candidates, key_hash(key))


def make_policy(algorithm: str, hash_by: str) -> Policy:
    """The policy a farm's settings name."""
    if algorithm == "least_requests":
        return LeastRequests()
    if algorithm == "least_response_time":
        return LeastResponseTime()
    if algorithm == "request_hash":
        return RequestHash(hash_by)
    return WeightedRoundRobin()
