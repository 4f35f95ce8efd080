"""The output cache (IIS HttpCacheModule): ``cache.output``.

How this works:

- *RESOLVE_REQUEST_CACHE* (after authentication and authorization, so a hit is
  only served to a client allowed to see the URL): the rule for the URL (a
  profile by extension, else the section's policy) says whether it may be
  cached. The key is looked up in the memory tier
  (:mod:`colonnade.providers.response_cache`); a hit is sent at once, as a
  304, a 206 of one range or whole (HEAD: the head), and the request is
  FINISHed: the handler and every stage up to UPDATE_REQUEST_CACHE are skipped,
  LOG_REQUEST and END_REQUEST still run. The bytes go straight to the writer,
  so SEND_RESPONSE hooks do not run again: what they did the first time
  (compression, custom headers) is in the entry.
- *A miss* of a plain GET (no conditional or range fields) fills the entry:
  the request takes the key's fill lock and its ``ctx.writer`` becomes a
  :class:`~colonnade.modules.output_cache.capture.CapturingWriter`, which
  copies the response as it goes out, after every SEND_RESPONSE hook and the
  compression writer (bounded by ``max_response_size``; a bigger one, or an
  endless stream, is passed through and forgotten). Other requests for the
  same key wait for the lock (up to ``wait_timeout``), then look again: one
  execution of the handler serves them all (no stampede). Whatever they find,
  they never fill the entry themselves.
- *UPDATE_REQUEST_CACHE* approves the store (the status is listed; for
  ``until_change`` the files the response came from are stamped). A buffered
  response is sent only after it, at the walk's SEND_RESPONSE point, so the
  entry is stored at *END_REQUEST*, which always runs and also releases the
  fill lock; the response's final head decides there (``Set-Cookie``,
  ``Cache-Control``, ``Expires``, ``Vary``).
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import stat
import time
from collections.abc import Coroutine
from typing import Any, NamedTuple

from colonnade.core.app import Application
from colonnade.core.cachegrant import CacheGrant
from colonnade.core.conditional import (
    FIELDS,
    NOT_MODIFIED,
    PARTIAL_CONTENT,
    PRECONDITION_FAILED,
    RANGE_NOT_SATISFIABLE,
    collect,
    decide,
    not_modified,
    precondition_failed,
    range_not_satisfiable,
)
from colonnade.core.context import Context
from colonnade.core.httputil import has_token, parse_http_date
from colonnade.core.module import FINISH, Module, Outcome, hook
from colonnade.core.ranges import content_range
from colonnade.core.request import Headers, Request
from colonnade.core.stages import Stage
from colonnade.modules.output_cache.capture import CapturingWriter
from colonnade.modules.output_cache.config import CacheRule, OutputCacheSection
from colonnade.modules.output_cache.keys import base_key, full_key
from colonnade.providers.redis import shared_redis
from colonnade.providers.response_cache import (
    RACY_SECONDS,
    Entry,
    FileStamp,
    MemoryTier,
    stamp,
)
from colonnade.providers.response_cache_redis import RedisTier

#: ``ctx.items`` key under which a handler lists the files (absolute paths) its
#: response was made from, for ``until_change`` rules: an iterable of str.
DEPENDS_ON = "cache.output.files"

#: ``ctx.items`` key of the fill in progress (this module's own).
_FILL = "cache.output.fill"

#: Response headers never stored: the transport writes its own.
_NOT_STORED = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date", b"age"}
)
#: Request headers that make a request unfit to fill an entry: its answer is
#: not the whole representation (or not a plain response at all).
_NO_FILL = FIELDS | {b"content-length", b"transfer-encoding"}
#: Request headers :meth:`OutputCache.resolve` looks for, in one pass.
_LOOKED_AT = _NO_FILL | {b"upgrade", b"authorization", b"accept-encoding"}
#: Fill locks held at once past which expired ones are swept.
MAX_FILLING = 4096

#: More names than this in a response's Vary and it is not cached.
MAX_VARY = 16


class _Fill:
    """One request filling an entry."""

    __slots__ = ("approved", "base", "capture", "files", "key", "lock", "rule", "url")

    def __init__(
        self,
        base: bytes,
        key: bytes,
        url: str,
        rule: CacheRule,
        lock: asyncio.Event,
        capture: CapturingWriter,
    ) -> None:
        self.base = base
        self.key = key
        self.url = url
        self.rule = rule
        self.lock = lock
        self.capture = capture
        self.approved = False
        self.files: tuple[FileStamp, ...] = ()


class _Lock(NamedTuple):
    event: asyncio.Event
    deadline: float  # past it, the lock is taken over (its filler never finished)


class OutputCache(Module):
    """``cache.output``: responses kept in the worker's memory and sent again."""

    id = "cache.output"
    section = OutputCacheSection
    grants_response_cache = True

    def __init__(self) -> None:
        defaults = OutputCacheSection()
        self.tier = MemoryTier(defaults.max_bytes, defaults.max_variants)
        #: The Redis tier, with ``store = "redis"`` (then the memory tier stays empty).
        self.shared: RedisTier | None = None
        self.counters = self.tier.counters
        self.memory_seconds = 0.0  # with Redis: how long the memory tier keeps a copy
        self.max_response_size = defaults.max_response_size
        self.wait_timeout = defaults.wait_timeout
        self._filling: dict[bytes, _Lock] = {}
        self._stores: set[asyncio.Task[None]] = set()

    def provision(self, app: Application) -> None:
        """Size the memory tier from the application's settings, or set up the
        Redis tier (``ConfigError`` without a ``[redis]`` table)."""
        section = app.section(OutputCacheSection)
        self.tier.close()
        self.tier = MemoryTier(section.max_bytes, section.max_variants)
        self.counters = self.tier.counters
        if section.store == "redis":
            self.shared = RedisTier(shared_redis(app.redis, user=self.id), section.max_variants)
            self.counters = self.shared.counters
        self.memory_seconds = section.memory_seconds if self.shared is not None else 0.0
        self.max_response_size = section.max_response_size
        self.wait_timeout = section.wait_timeout

    async def settle(self) -> None:
        """Wait for the stores under way (into Redis) to finish."""
        while self._stores:
            await asyncio.gather(*self._stores, return_exceptions=True)

    async def shutdown(self) -> None:
        """Finish the stores under way; let go of Redis."""
        await self.settle()
        if self.shared is not None:
            shared, self.shared = self.shared, None
            await shared.close()

    def cleanup(self) -> None:
        """Free the entries."""
        self.tier.close()

    def _local(self, request: Request, base: bytes, now: float) -> tuple[Entry | None, bytes]:
        """The entry for ``request`` in this worker's memory (None: not there)
        and its full key."""
        tier = self.tier
        varies = tier.varies(base)
        key = full_key(base, request, varies) if varies else base
        return tier.get(key, now), key

    async def _find(self, request: Request, base: bytes, now: float) -> tuple[Entry | None, bytes]:
        """The entry for ``request`` (None: a miss) and its full key."""
        shared = self.shared
        if shared is None or self.memory_seconds:
            entry, key = self._local(request, base, now)
            if shared is None or entry is not None:
                return entry, key
        assert shared is not None
        heard = shared.purges_heard
        if self.memory_seconds:
            shared.hear_purges(self.tier)
        entry, varies = await shared.find(base, lambda names: full_key(base, request, names), now)
        key = full_key(base, request, varies)
        if entry is not None and self.memory_seconds:
            self._keep(shared, heard, base, varies, key, entry, now)
        return entry, key

    def _keep(
        self,
        shared: RedisTier,
        heard: int,
        base: bytes,
        varies: tuple[bytes, ...],
        key: bytes,
        entry: Entry,
        now: float,
    ) -> None:
        """A copy of a Redis entry in this worker's memory, for ``memory_seconds``
        at most (the Redis entry keeps its own deadline), while purges made on
        any node reach this worker, and if none came since ``heard`` (the entry
        may be what it removed)."""
        if not shared.hearing or shared.purges_heard != heard:
            return
        local = copy.copy(entry)
        local.expires = min(entry.expires, now + self.memory_seconds)
        self.tier.put(base, varies, key, local)

    # -- RESOLVE_REQUEST_CACHE ----------------------------------------------------

    @hook(Stage.RESOLVE_REQUEST_CACHE)
    async def resolve(self, ctx: Context) -> Outcome | None:
        """Serve a hit, wait for a fill in progress, or start filling the entry."""
        request = ctx.request
        method = request.method
        if method != "GET" and method != "HEAD":
            return None
        rule = ctx.section(OutputCacheSection).rule_for(request.path)
        if rule is None:
            return None
        shared_content = rule.shared
        if not shared_content and (user := ctx.user) is not None and user.name:
            return None  # a signed-in user's answer may be theirs alone
        # One pass over the request's headers for every one looked at.
        conditional = unfit = authorized = False
        encodings: list[bytes] = []
        for name, value in request.headers:
            if name in _LOOKED_AT:
                if name == b"accept-encoding":
                    encodings.append(value)
                    continue
                if name == b"upgrade":
                    return None  # a WebSocket handshake is no document
                if name == b"authorization":
                    if not shared_content:
                        return None  # credentials: the answer may be theirs alone
                    authorized = True
                    continue
                unfit = True
                conditional = conditional or name in FIELDS
        base = base_key(request, rule, encodings)
        now = time.monotonic()
        if self.shared is None:  # no coroutine on the memory tier's path
            entry, key = self._local(request, base, now)
        else:
            entry, key = await self._find(request, base, now)
        if (trace := ctx.trace) is not None:
            trace.event(
                "cache", result="miss" if entry is None else "hit", redis=self.shared is not None
            )
        if entry is not None:
            if (
                rule.response_cache
                and not conditional
                and not authorized
                and entry.status == 200
                and self.shared is None
                and key is base  # the answer varies on no header the response named
                and not rule.header_names
                and not request.query
            ):
                self._grant(ctx, entry)
            return self._serve(ctx, entry, conditional)
        counters = self.counters
        lock = self._filling.get(key)
        if lock is not None and now < lock.deadline:
            try:
                await asyncio.wait_for(
                    lock.event.wait(), min(self.wait_timeout, lock.deadline - now)
                )
            except TimeoutError:
                counters.misses += 1
                return None
            entry, _ = await self._find(request, base, time.monotonic())
            if entry is not None:
                return self._serve(ctx, entry, conditional)
            counters.misses += 1
            return None  # not cacheable after all, or another variant: uncached
        counters.misses += 1
        if (
            method != "GET"
            or (self.shared is None and self.tier.max_bytes == 0)
            or (self.shared is not None and not self.shared.redis.available())
            or unfit
        ):
            return None
        event = asyncio.Event()
        filling = self._filling
        if len(filling) >= MAX_FILLING:
            # Locks whose filler never reached END_REQUEST (its task was
            # cancelled) are past their deadline: forget them.
            for stale in [k for k, held in filling.items() if held.deadline <= now]:
                del filling[stale]
        filling[key] = _Lock(event, now + self.wait_timeout)
        capture = CapturingWriter(ctx.writer, self.max_response_size)
        ctx.writer = capture
        ctx.items[_FILL] = _Fill(base, key, request.original_path, rule, event, capture)
        return None

    def _grant(self, ctx: Context, entry: Entry) -> None:
        """Let the response cache keep this hit's answer (IIS ``kernelCachePolicy``)
        until the entry expires (with source files to look at, for no longer than a
        static file's answer); revoked when the entry leaves the tier (a purge, an
        expiry, a changed file, eviction). The engine's rule decides whether the
        rest of the request lets it (docs/response-cache.md)."""
        grant = entry.grant
        if grant is None:
            # The Age header _serve adds last is computed from entry.stored.
            grant = entry.grant = CacheGrant(
                self.id, entry.expires, entry.stored, recheck=bool(entry.files)
            )
        ctx.cache_grant = grant

    def _serve(self, ctx: Context, entry: Entry, conditional: bool) -> Outcome:
        """Answer from ``entry``: 304, 206, 412, 416 or the whole response
        (``conditional``: the request has conditional or range fields)."""
        request = ctx.request
        response = ctx.response
        status = entry.status
        body = entry.body
        headers = [*entry.headers, (b"age", b"%d" % max(0, int(time.time() - entry.stored)))]
        if status == 200 and conditional and collect(request.headers) is not None:
            # A range of an encoded body is a range of other bytes than the
            # client may expect: served whole (RFC 9110 lets a server ignore Range).
            encoded = any(name == b"content-encoding" for name, _ in headers)
            length = len(body)
            decision = decide(request, entry.validators, length, max_ranges=0 if encoded else 1)
            if decision.status == PRECONDITION_FAILED:
                precondition_failed(ctx)
                return FINISH
            if decision.status == RANGE_NOT_SATISFIABLE:
                range_not_satisfiable(ctx, length)
                return FINISH
            if decision.status == PARTIAL_CONTENT:
                start, stop = span = decision.spans[0]
                status = PARTIAL_CONTENT
                body = body[start:stop]
                headers.append((b"content-range", content_range(span, length)))
            elif decision.status == NOT_MODIFIED:
                response.headers = headers
                not_modified(response)
                status, headers, body = NOT_MODIFIED, response.headers, b""
        response.status = status
        response.reason = entry.reason if status == entry.status else None
        response.headers = headers
        response.body = body
        response.headers_sent = True
        ctx.writer.send_all(status, response.reason, headers, body)
        return FINISH

    # -- UPDATE_REQUEST_CACHE and END_REQUEST --------------------------------------

    @hook(Stage.UPDATE_REQUEST_CACHE)
    def update(self, ctx: Context) -> None:
        """Approve storing the response this request is filling, if its rule allows."""
        fill = ctx.items.get(_FILL)
        if fill is None:
            return
        rule = fill.rule
        if ctx.response.status not in rule.statuses:
            return
        if rule.policy == "until_change":
            files = _sources(ctx)
            if not files:
                return  # nothing to watch: it could never be invalidated
            fill.files = files
        fill.approved = True

    @hook(Stage.END_REQUEST)
    def end(self, ctx: Context) -> None:
        """Store the response as it went out (if approved), and release the fill lock."""
        fill = ctx.items.pop(_FILL, None)
        if fill is None:
            return
        stored = None
        try:
            if fill.approved and ctx.error is None:
                stored = self._store(ctx.request, fill)
        finally:
            if stored is None:
                self._release(fill)
            else:
                # Into Redis without holding up the request; the waiters are let
                # go once it is there.
                task = asyncio.get_running_loop().create_task(stored)
                self._stores.add(task)
                task.add_done_callback(lambda done: self._stored(done, fill))

    def _stored(self, task: asyncio.Task[None], fill: _Fill) -> None:
        self._stores.discard(task)
        self._release(fill)

    def _release(self, fill: _Fill) -> None:
        lock = self._filling.get(fill.key)
        if lock is not None and lock.event is fill.lock:
            del self._filling[fill.key]
        fill.lock.set()

    def _store(self, request: Request, fill: _Fill) -> Coroutine[Any, Any, None] | None:
        """Store what ``fill`` captured (memory), or the coroutine that stores it
        (Redis); None when there is nothing to store."""
        capture = fill.capture
        if not capture.complete:
            return None
        if capture.spoiled:
            self.counters.rejected += 1
            return None
        rule = fill.rule
        if capture.status not in rule.statuses:
            return None  # replaced on the way out (an error page)
        verdict = storable(capture.headers, rule)
        if verdict is None:
            return None
        ttl, varies = verdict
        now_ns = time.time_ns()
        if any(f.racy(now_ns) for f in fill.files):
            ttl = min(ttl, RACY_SECONDS)
        headers = [(n, v) for n, v in capture.headers if n not in _NOT_STORED]
        entry = Entry(
            capture.status,
            capture.reason,
            headers,
            capture.body,
            url=fill.url,
            expires=time.monotonic() + ttl,
            files=fill.files,
        )
        key = full_key(fill.base, request, varies)
        if self.shared is not None:
            return self._put_shared(self.shared, fill.base, varies, key, entry)
        self.tier.put(fill.base, varies, key, entry)
        return None

    async def _put_shared(
        self, shared: RedisTier, base: bytes, varies: tuple[bytes, ...], key: bytes, entry: Entry
    ) -> None:
        heard = shared.purges_heard
        if await shared.put(base, varies, key, entry) and self.memory_seconds:
            self._keep(shared, heard, base, varies, key, entry, time.monotonic())


def _sources(ctx: Context) -> tuple[FileStamp, ...]:
    """Stamps of the files the response came from: the file it sends, the file
    a static body was read from, the files a handler declared; else the
    request's physical path if that is a regular file."""
    response = ctx.response
    paths: list[str] = []
    for body in (response.file, response.source):
        if body is not None and body.path not in paths:
            paths.append(body.path)
    declared = ctx.items.get(DEPENDS_ON)
    if declared:
        paths.extend(str(p) for p in declared if str(p) not in paths)
    if not paths:
        path = ctx.physical_path
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return ()  # a folder, a device: not a source to watch
        except (OSError, ValueError):
            return ()
        paths.append(path)
    stamps = []
    for path in paths:
        found = stamp(path)
        if found is None:
            return ()  # a source that cannot be watched: not cached
        stamps.append(found)
    return tuple(stamps)


def storable(headers: Headers, rule: CacheRule) -> tuple[float, tuple[bytes, ...]] | None:
    """How long a response with ``headers`` may be kept under ``rule``, and the
    request headers its ``Vary`` adds to the key; None: it must not be stored."""
    ttl = rule.duration if rule.policy == "for_time_period" else math.inf
    max_age: float | None = None
    shared_max_age: float | None = None
    expires: bytes | None = None
    varies: list[bytes] = []
    for name, value in headers:
        if name == b"set-cookie":
            return None
        if name == b"cache-control":
            for directive in value.split(b","):
                token, _, arg = directive.strip().partition(b"=")
                token = token.strip().lower()
                if token in (b"private", b"no-store", b"no-cache"):
                    return None
                if token == b"s-maxage" or token == b"max-age":
                    seconds = _seconds(arg)
                    if seconds is None:
                        return None  # a malformed lifetime: be safe, keep nothing
                    if token == b"s-maxage":
                        shared_max_age = seconds
                    else:
                        max_age = seconds
        elif name == b"expires":
            expires = value
        elif name == b"vary":
            for part in value.split(b","):
                field = part.strip().lower()
                if field == b"*":
                    return None
                if (
                    field
                    and field != b"accept-encoding"
                    and field not in rule.header_names
                    and field not in varies
                ):
                    varies.append(field)
        elif name == b"content-range" or (name == b"pragma" and has_token(value, b"no-cache")):
            return None
    lifetime = shared_max_age if shared_max_age is not None else max_age
    if lifetime is None and expires is not None:
        when = parse_http_date(expires)
        lifetime = 0.0 if when is None else when - time.time()
    if lifetime is not None:
        ttl = min(ttl, lifetime)
    if ttl <= 0 or len(varies) > MAX_VARY:
        return None
    return ttl, tuple(sorted(varies))


def _seconds(arg: bytes) -> float | None:
    arg = arg.strip().strip(b'"')
    return float(int(arg)) if arg.isdigit() and len(arg) < 12 else None
