"""Per-client counters in Redis, shared by every node of a farm.

The same counters as :mod:`colonnade.providers.client_counters` (in flight, a
sliding-window request count, a sliding-window failure count), kept in one
Redis hash per client and policy and updated by a Lua script: one round trip
per request to admit it, one (not waited for) when it ends. The time is the
Redis server's (``TIME``), so nodes with skewed clocks agree on the windows.
Every key expires after twice its longest window (at least a minute) without
requests, so Redis holds only active clients and a node that died with
requests in flight leaves nothing behind for long.

Redis is asked through the worker's shared client
(:mod:`colonnade.providers.redis`): its timeouts, its back-off (an outage
costs requests no waiting beyond the first) and its log lines (once when Redis
goes, once when it is back). When it cannot be reached the caller decides
(fail open or closed); this class says once per outage what that means.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from colonnade.providers.client_counters import ADMIT, Policy, Verdict, client_key
from colonnade.providers.redis import RedisUnavailableError, SharedRedis

#: Seconds between attempts while Redis is unreachable (``redis_url``: the
#: ``[redis]`` table's ``retry_min``/``retry_max`` otherwise).
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
    """The counters in one Redis, over the worker's shared client
    (:mod:`colonnade.providers.redis`), for one module instance."""

    def __init__(
        self, shared: SharedRedis, *, prefix: str, log: logging.Logger, meanwhile: str = ""
    ) -> None:
        self.shared = shared
        self.meanwhile = meanwhile  # what happens to requests while it is down, for the log
        self.prefix = prefix
        self.log = log
        self._scripts: tuple[Any, Any] | None = None
        self.down = False  # unreachable, as last seen by this instance
        self._tasks: set[asyncio.Task[None]] = set()

    def _register(self) -> tuple[Any, Any]:
        # The scripts are called with the client of the running loop (client=):
        # registering only computes their digests.
        client = self.shared.client()
        self._scripts = client.register_script(_ADMIT), client.register_script(_RELEASE)
        return self._scripts

    def key(self, host: str, policy: Policy) -> str | None:
        """The Redis key of ``host`` under ``policy`` (None: not an IP address)."""
        packed = client_key(host, policy.ipv6_prefix)
        if packed is None:
            return None
        return f"{self.prefix}{policy.scope:08x}:{packed.hex()}"

    def available(self) -> bool:
        """False while Redis is known to be unreachable (and not due to be retried)."""
        return self.shared.available()

    async def admit(self, host: str, policy: Policy) -> Verdict | None:
        """As ``ClientCounters.admit``, in Redis; None when Redis cannot be reached."""
        key = self.key(host, policy)
        if key is None:
            return ADMIT
        scripts = self._scripts or self._register()
        args = [
            policy.max_concurrent,
            policy.max_requests,
            policy.interval_ms,
            policy.max_failures,
            policy.failure_interval_ms,
            _ttl_ms(policy),
        ]
        try:
            code, wait = await self.shared.call(
                lambda r: scripts[0](keys=[key], args=args, client=r)
            )
        except RedisUnavailableError:
            self._failed()
            return None
        self.down = False
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
        script = self._scripts[1]
        args = [int(admitted), int(failed), policy.failure_interval_ms, _ttl_ms(policy)]
        try:
            await self.shared.call(lambda r: script(keys=[key], args=args, client=r))
        except RedisUnavailableError:
            self._failed()
            return
        self.down = False

    def _failed(self) -> None:
        # The shared client says once that Redis is gone; this says, once per
        # outage, what the module does meanwhile.
        if not self.down:
            self.down = True
            if self.meanwhile:
                self.log.warning("Redis at %s unavailable: %s", self.shared.url, self.meanwhile)

    async def close(self) -> None:
        """Wait briefly for releases in flight, then let the shared client go."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.shared.settings.command_timeout)
        self._scripts = None
        await self.shared.release()
