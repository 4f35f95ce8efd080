"""IP and domain restrictions (IIS IpRestrictionModule) at BEGIN_REQUEST.

Priority FIRST: a refused client reaches no other module's logic (only
``security.trusted_proxies``, which leads, runs before it and sets the client
address checked here). Per request: one address parse and one ``bisect`` in the
compiled ranges. Host names are looked up only with ``enable_reverse_dns``, and
only when a domain rule comes before the first address rule holding the client:
on a small thread pool of this module's (never the event loop), bounded by
``dns_timeout``, one lookup per address at a time, results cached per section.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from colonnade.core.context import Context
from colonnade.core.ipnet import parse_address
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage
from colonnade.modules.ip_security.config import (
    ADDRESS_DENIED,
    NAME_DENIED,
    NO_RULE,
    IpSecuritySection,
    Rules,
)

log = logging.getLogger("colonnade.security")

#: Threads doing reverse lookups per application, at most.
LOOKUP_THREADS = 4
#: Lookups waiting or running per section, at most: beyond that a new address
#: counts as nameless at once instead of queueing behind a slow DNS server.
MAX_PENDING = 256


class IpSecurity(Module):
    """``security.ip``: allow or deny the client by address or host name."""

    id = "security.ip"
    section = IpSecuritySection

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    @hook(Stage.BEGIN_REQUEST, priority=Priority.FIRST)
    async def begin_request(self, ctx: Context) -> Outcome:
        """Refuse the request if the client's address or name is denied."""
        rules = ctx.sections.get(IpSecuritySection).compiled
        client = ctx.request.client
        address = parse_address(client[0]) if client is not None else None
        entry = None
        if address is not None:
            entry = rules.table.get(address)
            before = NO_RULE if entry is None else entry.order
            if rules.first_name < before:
                # A domain rule comes first: it decides if the client's name matches.
                named = rules.match_name(await self._name(rules, str(address)), before)
                if named is not None:
                    entry = named
        if entry is None:
            if rules.allow_unlisted:
                return CONTINUE
            return self._deny(ctx, rules, ADDRESS_DENIED, _UNLISTED)
        if entry.allowed:
            return CONTINUE
        substatus = NAME_DENIED if entry.by_name else ADDRESS_DENIED
        return self._deny(
            ctx, rules, substatus, f"the client matches the ip_security rule {entry.detail}"
        )

    def _deny(self, ctx: Context, rules: Rules, substatus: int, detail: str) -> Outcome:
        ctx.error_response(rules.status, substatus, "the client is not allowed here", detail)
        if rules.abort:
            # IIS's AbortRequest: no answer at all. The response stays for the
            # access log; marked as sent, nothing tries to send it.
            ctx.request.keep_alive = False
            ctx.response.headers_sent = True
            ctx.writer.abort()
        return FINISH

    async def _name(self, rules: Rules, address: str) -> str | None:
        known, name = rules.cached_name(address)
        if known:
            return name
        pending = rules.pending()
        job = pending.get(address)
        if job is None:
            if len(pending) >= MAX_PENDING:
                return None  # not remembered: the next request tries again
            job = self._lookups().submit(rules.reverse_lookup, address)
            pending[address] = job
            job.add_done_callback(lambda done: _settle(rules, address, done))
        try:
            return await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(job)), rules.dns_timeout
            )
        except TimeoutError:
            # The lookup runs on; its result is cached when it comes. This
            # request goes on without a name.
            return None
        except Exception:  # logged once by _settle; no name is the answer
            return None

    def _lookups(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="colonnade-rdns")
        return self._executor

    def cleanup(self) -> None:
        """Let the lookup threads end (a lookup under way is not waited for)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


_UNLISTED = "no ip_security rule matches the client and ip_security.allow_unlisted = false"


def _settle(rules: Rules, address: str, job: Future[str | None]) -> None:
    # On the lookup thread (or at once, if already done): cache and forget it.
    rules.pending().pop(address, None)
    if job.cancelled():
        return
    error = job.exception()
    if error is not None:
        log.warning("ip_security: the reverse lookup of %s failed: %r", address, error)
        rules.remember(address, None)
        return
    rules.remember(address, job.result())
