"""Dynamic IP restrictions (IIS DynamicIpRestrictionModule) at BEGIN_REQUEST and END_REQUEST.

BEGIN_REQUEST (priority HIGH: after ``security.trusted_proxies`` has set the
real client at FIRST) asks the counters whether the client is within its
limits and counts the request; END_REQUEST takes its in-flight count back and
counts a failed logon (``ctx.items[AUTH_FAILURE]``, set with a 401.1 by every
authentication scheme through ``core.auth.refuse_credentials``).

The counters are the server's shared-memory table
(``providers/client_counters.py``: every worker sees the same counts) or,
with ``store = "redis"``, the server's ``[redis]`` (``providers/redis_counters.py``
over ``providers/redis.py``: every node does; ``redis_url``, deprecated, names a
Redis of its own).
The BEGIN_REQUEST hook is a coroutine because the Redis round trip is awaited;
with shared memory it never waits.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from colonnade.config.schema import RedisSettings
from colonnade.core.auth import AUTH_FAILURE
from colonnade.core.compiled import PerSection
from colonnade.core.context import Context
from colonnade.core.module import FINISH, Module, Outcome, Priority, hook
from colonnade.core.shared import SharedMemoryError
from colonnade.core.stages import Stage
from colonnade.errors import ModuleError
from colonnade.modules.dynamic_ip.config import DynamicIpSection, scope_of
from colonnade.providers.client_counters import (
    ALLOWED,
    CONCURRENCY,
    FAILURES,
    RATE,
    ClientCounters,
    Policy,
    Verdict,
    now_ms,
)

if TYPE_CHECKING:
    from colonnade.core.app import Application
    from colonnade.providers.redis_counters import RedisCounters

log = logging.getLogger("colonnade.dynamic_ip")

#: ``ctx.items``: (client, policy) of a request counted in flight, for END_REQUEST.
ADMITTED = "dynamic_ip.admitted"
#: ``ctx.items``: why a request would have been refused (``logging_only``).
WOULD_DENY = "dynamic_ip.would_deny"

#: The shared-memory table's zone name.
ZONE = "dynamic_ip"

_SUBSTATUS = {CONCURRENCY: 501, RATE: 502, FAILURES: 502}
_MESSAGE = {
    CONCURRENCY: "too many concurrent requests from this address",
    RATE: "too many requests from this address",
    FAILURES: "too many failed logons from this address",
}
#: A client refused for the same reason is logged at most this often (seconds).
LOG_EVERY = 10.0
_LOG_MEMORY = 4096


class DynamicIpRestrictions(Module):
    """``security.dynamic_ip``: refuse clients over their concurrency, rate or
    failed-logon limits."""

    id = "security.dynamic_ip"
    section = DynamicIpSection

    def __init__(self) -> None:
        self._site = ""
        self._policies: PerSection[DynamicIpSection, Policy] = PerSection(self._compile)
        self._table: ClientCounters | None = None
        self._redis: RedisCounters | None = None
        self._logged: dict[tuple[str, int, bool], float] = {}

    def provision(self, app: Application) -> None:
        """Attach to the server's counters (or prepare the Redis client)."""
        self._site = app.site
        settings = app.section(DynamicIpSection)
        if settings.redis_url or settings.store == "redis":
            from colonnade.providers.redis import shared_redis
            from colonnade.providers.redis_counters import RETRY, RedisCounters

            if settings.redis_url:
                # The deprecated key: its own pool, timeout and prefix, as before.
                _deprecated_once()
                redis = RedisSettings(
                    url=settings.redis_url,
                    connect_timeout=settings.redis_timeout,
                    command_timeout=settings.redis_timeout,
                    retry_min=RETRY,
                    retry_max=RETRY,
                    key_prefix=settings.redis_prefix,
                )
                shared = shared_redis(redis, user=self.id)
                prefix = settings.redis_prefix
            else:
                shared = shared_redis(app.redis, user=self.id)
                prefix = shared.prefix + "dynip:"
            meanwhile = (
                "requests are let through uncounted until it answers (redis_failure = open)"
                if settings.redis_failure == "open"
                else "requests are refused with 503 until it answers (redis_failure = closed)"
            )
            self._redis = RedisCounters(shared, prefix=prefix, log=log, meanwhile=meanwhile)
            return
        try:
            self._table = ClientCounters.for_server(ZONE, settings.max_clients)
        except SharedMemoryError as exc:
            raise ModuleError(self.id, str(exc)) from None

    async def shutdown(self) -> None:
        """Close the Redis connections (after the last request)."""
        if self._redis is not None:
            await self._redis.close()

    def cleanup(self) -> None:
        """Forget compiled policies; the shared table stays (other workers use it)."""
        self._policies.clear()
        self._table = None

    def _compile(self, section: DynamicIpSection) -> Policy:
        counting = section.counting()
        return Policy(scope_of(self._site, counting), *counting)

    # -- the hooks ---------------------------------------------------------------------

    @hook(Stage.BEGIN_REQUEST, priority=Priority.HIGH)
    async def begin(self, ctx: Context) -> Outcome | None:
        """Count the request, or refuse it when the client is over a limit."""
        section = ctx.section(DynamicIpSection)
        if not section.active:
            return None
        client = ctx.request.client
        if client is None:
            return None
        host = client[0]
        # PerSection's fast path: the policy kept in the section's own dict.
        policy = section.__dict__.get(self._policies.key) or self._policies.get(section)
        table = self._table
        if table is not None:
            verdict = table.admit(host, policy, now_ms())
        else:
            assert self._redis is not None
            found = await self._redis.admit(host, policy)
            if found is None:
                return self._unreachable(ctx, section)
            verdict = found
        if verdict.code == ALLOWED:
            if policy.max_concurrent:
                ctx.items[ADMITTED] = (host, policy)
            return None
        return self._refuse(ctx, section, host, verdict)

    @hook(Stage.END_REQUEST)
    def end(self, ctx: Context) -> None:
        """Take the request's in-flight count back; count a failed logon."""
        items = ctx.items
        if not items:
            return
        admitted = items.pop(ADMITTED, None)
        failed = AUTH_FAILURE in items
        if admitted is None:
            if not failed:
                return
            section = ctx.section(DynamicIpSection)
            client = ctx.request.client
            if not section.deny_by_auth_failures or client is None:
                return
            host, policy = client[0], self._policies.get(section)
        else:
            host, policy = admitted
        failed = failed and policy.max_failures > 0
        if self._table is not None:
            self._table.release(
                host, policy, now_ms(), admitted=admitted is not None, failed=failed
            )
        elif self._redis is not None:
            self._redis.release(host, policy, admitted=admitted is not None, failed=failed)

    # -- refusing ------------------------------------------------------------------------

    def _refuse(
        self, ctx: Context, section: DynamicIpSection, host: str, verdict: Verdict
    ) -> Outcome | None:
        code = verdict.code
        substatus = _SUBSTATUS[code]
        self._log_refusal(host, code, section, verdict)
        if section.logging_only:
            ctx.items[WOULD_DENY] = ("", "concurrency", "rate", "auth_failures")[code]
            return None
        status, retry_after = section.deny
        ctx.error_response(status or 403, substatus, _MESSAGE[code], _detail(code, section))
        if not status:
            # IIS AbortRequest: no answer at all. The response stays for the
            # access log; marked as sent, nothing tries to send it.
            ctx.request.keep_alive = False
            ctx.response.headers_sent = True
            ctx.writer.abort()
            return FINISH
        if retry_after:
            seconds = max(1, -(-verdict.retry_ms // 1000))
            ctx.response.headers.append((b"retry-after", str(seconds).encode()))
        return FINISH

    def _unreachable(self, ctx: Context, section: DynamicIpSection) -> Outcome | None:
        if section.redis_failure == "open":
            return None
        # No detail: a 5xx detail is logged on every request, and the outage is
        # said once (providers.redis, RedisCounters).
        ctx.error_response(503, 0, "the service is unavailable; try again shortly")
        ctx.response.headers.append((b"retry-after", b"1"))
        return FINISH

    def _log_refusal(
        self, host: str, code: int, section: DynamicIpSection, verdict: Verdict
    ) -> None:
        # Once per client and reason every LOG_EVERY seconds: a flood does not
        # flood the log.
        key = (host, code, section.logging_only)
        now = time.monotonic()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_EVERY:
            return
        if len(self._logged) >= _LOG_MEMORY:
            self._logged.clear()
        self._logged[key] = now
        log.warning(
            "%s %s: %s (retry after %d ms)",
            "would refuse (logging_only)" if section.logging_only else "refused",
            host,
            _detail(code, section),
            verdict.retry_ms,
        )


_DEPRECATION_SAID: list[bool] = []


def _deprecated_once() -> None:
    if not _DEPRECATION_SAID:
        _DEPRECATION_SAID.append(True)
        log.warning(
            "dynamic_ip_security.redis_url is deprecated: set [redis] url (and its "
            'password_file) and dynamic_ip_security.store = "redis"'
        )


def _detail(code: int, section: DynamicIpSection) -> str:
    if code == CONCURRENCY:
        return (
            f"dynamic_ip_security.max_concurrent_requests = {section.max_concurrent_requests} "
            "requests in flight"
        )
    if code == RATE:
        return (
            f"dynamic_ip_security.max_requests = {section.max_requests} per "
            f"interval = {section.interval:g} s"
        )
    return (
        f"dynamic_ip_security.max_auth_failures = {section.max_auth_failures} per "
        f"auth_failure_interval = {section.auth_failure_interval:g} s"
    )
