"""Per-client counters in Redis, shared by every node of a farm.

The same counters as :mod:`colonnade.providers.client_counters` (in flight, a
sliding-window request count, a sliding-window failure count), kept in one
Redis hash per client and policy and updated by a Lua script: one round trip
per request to admit it, one (not waited for) when it ends. The time is the
Redis server's (``TIME``), so nodes with skewed clocks agree on the windows.
Every key expires after twice its longest window (at least a minute) without
requests, so Redis holds only active clients and a node that died with
requests in flight leaves nothing behind for long.

Redis is asked with a short timeout (``timeout``, connecting and answering).
When it cannot be reached the caller decides (fail open or closed); this class
says so in the log once when it happens and once when Redis answers again, and
does not ask again for :data:`RETRY` seconds, so an outage costs requests no
waiting beyond the first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from colonnade.providers.client_counters import ADMIT, Policy, Verdict, client_key
from colonnade.providers.redis import safe_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: Seconds between attempts while Redis is unreachable.
RETRY = 1.0

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local maxc, maxr, ri, maxf, fi, ttl =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'i', 'rw', 'rc', 'rp', 'fw', 'fc', 'fp')
local inflight = tonumber(h[1]) or 0
local rw, rc, rp = tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0
local fw, fc, fp = tonumber(h[5]) or 0, tonumber(h[6]) or 0, tonumber(h[7]) or 0
local function retry(prev, cur, elapsed, interval, limit)
  if cur < limit then
    if prev == 0 then return 0 end
    return math.max(1, interval - elapsed - math.floor((limit - cur) * interval / prev) + 1)
  end
  return interval - elapsed + interval - math.floor(limit * interval / cur) + 1
end
local function roll(interval, w0, cur, prev)
  local w = math.floor(now / interval)
  if w ~= w0 then
    if w == w0 + 1 then prev = cur else prev = 0 end
    cur = 0
  end
  return now - w * interval, w, cur, prev
end
local code, wait = 0, 0
local e
if maxf > 0 then
  e, fw, fc, fp = roll(fi, fw, fc, fp)
  if fp * (fi - e) + fc * fi >= maxf * fi then code, wait = 3, retry(fp, fc, e, fi, maxf) end
end
if code == 0 and maxc > 0 and inflight >= maxc then code, wait = 1, 1000 end
if maxr > 0 then
  e, rw, rc, rp = roll(ri, rw, rc, rp)
  if code == 0 then
    if rp * (ri - e) + rc * ri >= maxr * ri then
      code, wait = 2, retry(rp, rc, e, ri, maxr)
    else
      rc = rc + 1
    end
  end
end
if code == 0 and maxc > 0 then inflight = inflight + 1 end
redis.call('HSET', KEYS[1], 'i', inflight, 'rw', rw, 'rc', rc, 'rp', rp,
  'fw', fw, 'fc', fc, 'fp', fp)
redis.call('PEXPIRE', KEYS[1], ttl)
return {code, wait}
"""

_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local admitted, failed, fi, ttl =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if admitted == 1 then
  local i = tonumber(redis.call('HGET', KEYS[1], 'i') or '0') or 0
  if i > 0 then redis.call('HINCRBY', KEYS[1], 'i', -1) end
end
if failed == 1 then
  local h = redis.call('HMGET', KEYS[1], 'fw', 'fc')
  local fw, fc = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  local w = math.floor(now / fi)
  if w ~= fw then
    local fp = 0
    if w == fw + 1 then fp = fc end
    redis.call('HSET', KEYS[1], 'fp', fp, 'fw', w, 'fc', 1)
  else
    redis.call('HINCRBY', KEYS[1], 'fc', 1)
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 0
"""


def _ttl_ms(policy: Policy) -> int:
    return max(60_000, 2 * policy.interval_ms, 2 * policy.failure_interval_ms)


class RedisCounters:
    """The counters of one Redis server (one client per module instance)."""

    def __init__(
        self, url: str, *, prefix: str, timeout: float, log: logging.Logger, meanwhile: str = ""
    ) -> None:
        self.url = url
        self.meanwhile = meanwhile  # what happens to requests while it is down, for the log
        self.prefix = prefix
        self.timeout = timeout
        self.log = log
        self._client: Redis | None = None
        self._scripts: tuple[Any, Any] | None = None
        self._down_until = 0.0  # monotonic time before which Redis is not asked
        self.down = False  # unreachable, as last seen
        self._tasks: set[asyncio.Task[None]] = set()

    def _connect(self) -> tuple[Any, Any]:
        # redis.asyncio binds to the running loop: made on the first request.
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            # redis-py retries 10 times with back-off by default: a request would
            # wait many timeouts for an answer that decides nothing anyway.
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._client = client
        self._scripts = client.register_script(_ADMIT), client.register_script(_RELEASE)
        return self._scripts

    def key(self, host: str, policy: Policy) -> str | None:
        """The Redis key of ``host`` under ``policy`` (None: not an IP address)."""
        packed = client_key(host, policy.ipv6_prefix)
        if packed is None:
            return None
        return f"{self.prefix}{policy.scope:08x}:{packed.hex()}"

    def available(self) -> bool:
        """False while Redis is known to be unreachable (retried every RETRY s)."""
        return not self.down or time.monotonic() >= self._down_until

    async def admit(self, host: str, policy: Policy) -> Verdict | None:
        """As ``ClientCounters.admit``, in Redis; None when Redis cannot be reached."""
        key = self.key(host, policy)
        if key is None:
            return ADMIT
        if not self.available():
            return None
        scripts = self._scripts or self._connect()
        try:
            code, wait = await scripts[0](
                keys=[key],
                args=[
                    policy.max_concurrent,
                    policy.max_requests,
                    policy.interval_ms,
                    policy.max_failures,
                    policy.failure_interval_ms,
                    _ttl_ms(policy),
                ],
            )
        except Exception as exc:  # redis errors, timeouts, refused connections
            self._failed(exc)
            return None
        self._answered()
        return ADMIT if not code else Verdict(int(code), int(wait))

    def release(self, host: str, policy: Policy, *, admitted: bool, failed: bool) -> None:
        """As ``ClientCounters.release``, sent without waiting for the answer."""
        key = self.key(host, policy)
        if key is None or self._scripts is None or not self.available():
            return
        task = asyncio.get_running_loop().create_task(
            self._release(key, policy, admitted=admitted, failed=failed)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, key: str, policy: Policy, *, admitted: bool, failed: bool) -> None:
        assert self._scripts is not None
        try:
            await self._scripts[1](
                keys=[key],
                args=[int(admitted), int(failed), policy.failure_interval_ms, _ttl_ms(policy)],
            )
        except Exception as exc:
            self._failed(exc)
            return
        self._answered()

    def _failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + RETRY
        if not self.down:
            self.down = True
            self.log.error(
                "Redis at %s cannot be reached (%s)%s",
                safe_url(self.url),
                str(exc) or repr(exc),
                f": {self.meanwhile}" if self.meanwhile else "",
            )

    def _answered(self) -> None:
        if self.down:
            self.down = False
            self.log.warning("Redis at %s answers again", safe_url(self.url))

    async def close(self) -> None:
        """Wait briefly for releases in flight, then close the connections."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.timeout)
        client, self._client, self._scripts = self._client, None, None
        if client is not None:
            await client.aclose()
