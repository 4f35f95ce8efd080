"""Basic authentication (``auth.basic``): IIS BasicAuthenticationModule on Linux.

How a request goes:

1. AUTHENTICATE_REQUEST, where ``basic_authentication.enabled``: a request with
   an ``Authorization`` header is looked up in the cache of verified
   credentials first (a keyed hash of the header value; one dict lookup, no
   parsing, no thread, no hash of the password). A hit makes the user and costs
   nothing more: that is the common case, a browser resends the same header
   with every request. A miss whose header names another scheme is left alone.
2. On a miss the credentials are decoded (:mod:`.credentials`: anything
   malformed is a 401.1 with its reason) and checked in a worker thread against
   the user stores of ``colonnade.providers.users``: the user file, then PAM
   for a user the file does not list. Requests that carry the same credentials while
   a check runs wait for that one check instead of starting their own (a page
   that loads twenty files right after the logon box costs one bcrypt). PAM's
   fail delay is waited on the loop, not in the thread; a PAM check that takes
   longer than ``pam_timeout`` is answered 503. At most :data:`MAX_CHECKS`
   checks wait or run at once; more are answered 503 at once, so a flood of
   wrong passwords cannot queue without bound.
3. SEND_RESPONSE: every 401 (from this module, anonymous authentication, URL
   authorization or the application) gets the Basic challenge, at
   ``core.auth.CHALLENGE_PRIORITY`` with ``add_challenge``: before custom errors
   (SEND_RESPONSE runs in reverse), so a custom error page keeps it, and in the
   configuration's order among the other schemes' challenges.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

from colonnade.core.auth import (
    CHALLENGE_PRIORITY,
    add_challenge,
    authorization,
    refuse_credentials,
)
from colonnade.core.context import Context
from colonnade.core.httputil import split_host
from colonnade.core.module import FINISH, Module, Outcome, hook
from colonnade.core.principal import Principal
from colonnade.core.stages import Stage
from colonnade.errors import ModuleError
from colonnade.modules.basic_auth.config import BasicAuthenticationSection, challenge_for
from colonnade.modules.basic_auth.credentials import CredentialCache, Credentials, parse, shown
from colonnade.providers.users import PasswordStore, UserStoreError, pam
from colonnade.providers.users.htpasswd import HtpasswdFile
from colonnade.providers.users.pam import PamService

if TYPE_CHECKING:
    from colonnade.core.app import Application

log = logging.getLogger("colonnade.auth")

AUTH_TYPE = "Basic"
_SCHEME = "Basic"
_WWW_AUTHENTICATE = b"www-authenticate"
#: Checks (hashing or PAM) that may wait or run at once per module instance.
MAX_CHECKS = 64
#: Worker threads for checks. bcrypt and crypt(3) release the GIL, so they run in
#: parallel on several cores.
THREADS = min(4, os.cpu_count() or 1)
#: The longest PAM fail delay honoured (seconds).
MAX_DELAY = 5.0
#: The source of a ``[[locations]]`` entry: "FILE: locations[N]".
_LOCATION = re.compile(r": locations\[\d+\]$")


class Verdict(NamedTuple):
    """The outcome of checking one set of credentials."""

    status: int
    """200 (logged on), 401 (refused), 500 (a store is broken), 503 (too busy/slow)."""
    user: Principal | None = None
    reason: str = ""
    """Why it failed, for the log and the administrator (never the password)."""
    delay: float = 0.0
    """Seconds to wait before answering a refusal (PAM's fail delay)."""


class Stores:
    """The user stores of a section (a user file, a PAM service, or both, asked in
    that order) and the memory of credentials verified against them. Shared by
    every section naming the same stores."""

    def __init__(self, user_file: str | None, pam_service: str) -> None:
        # With PAM behind it, an unknown name spends PAM's time: the file need
        # not spend a hash of its own on it.
        self.file = HtpasswdFile(user_file, equalize=not pam_service) if user_file else None
        self.pam = PamService(pam_service) if pam_service else None
        self.cache = CredentialCache()
        #: Checks running now, by cache key: later requests await the same task.
        self.pending: dict[object, asyncio.Task[Verdict]] = {}

    def check(self, store: PasswordStore, creds: Credentials, client: str | None) -> Verdict | None:
        """The verdict of ``store``; None if it does not know the user. Blocking."""
        try:
            logon = store.check(creds.user, creds.password, client)
        except UserStoreError as exc:
            setting = "user_file" if store is self.file else "pam"
            return Verdict(500, reason=f"basic_authentication.{setting}: {exc}")
        if logon is None:
            return None
        if logon.ok:
            return Verdict(200, Principal(logon.name, AUTH_TYPE, logon.roles))
        where = " (user file)" if store is self.file else ""
        return Verdict(
            401,
            reason=f"user {shown(creds.user)}: {logon.reason}{where}",
            delay=min(logon.delay, MAX_DELAY),
        )


class BasicAuthentication(Module):
    """``auth.basic``: Basic credentials checked against an htpasswd file and PAM."""

    id = "auth.basic"
    section = BasicAuthenticationSection

    def __init__(self) -> None:
        self._compiled: dict[int, tuple[BasicAuthenticationSection, Stores]] = {}
        self._stores: dict[tuple[str | None, str], Stores] = {}
        #: Where a section's own dict keeps its stores (unique to this instance).
        self._stores_key = f"_basic_auth_stores_{id(self)}"
        self._executor: ThreadPoolExecutor | None = None
        self._checks = 0
        #: How many times a password was checked (a hash computed or PAM asked):
        #: what the cache saves, visible to tests and diagnostics.
        self.verifications = 0

    def provision(self, app: Application) -> None:
        """Refuse PAM where libpam is missing; warn now, not at the first logon,
        about an application-level user file that cannot be read."""
        settings = app.section(BasicAuthenticationSection)
        if not settings.enabled:
            return
        if settings.pam and not pam.available():
            raise ModuleError(
                self.id, "basic_authentication.pam is set, but libpam cannot be loaded"
            )
        path = resolve_user_file(app.settings.origins, app.root, settings)
        if path is not None and not os.access(path, os.R_OK):
            log.error("basic_authentication.user_file: %s cannot be read", path)

    def cleanup(self) -> None:
        """Stop the check threads and forget what was verified."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        for settings, _ in self._compiled.values():
            settings.__dict__.pop(self._stores_key, None)
        self._compiled.clear()
        self._stores.clear()

    # -- AUTHENTICATE_REQUEST ---------------------------------------------------------

    @hook(Stage.AUTHENTICATE_REQUEST, awaits=True)
    def authenticate(self, ctx: Context) -> Awaitable[Outcome | None] | None:
        """Make the user of valid Basic credentials; 401.1 for invalid ones.

        Remembered credentials are the common case: answered here, without a
        coroutine. Others are checked by :meth:`_verify`, awaited by the pipeline.
        """
        settings = ctx.section(BasicAuthenticationSection)
        if not settings.enabled:
            return None
        value = ctx.request.header(b"authorization")
        if value is None:
            return None
        # Kept in the section's own dict by _stores_for: no call on the way.
        stores = settings.__dict__.get(self._stores_key) or self._stores_for(ctx, settings)
        now = time.monotonic()
        if stores.file is not None and stores.file.changed(now):
            stores.cache.clear()
        # The cache is keyed by the whole header value: a hit needs no parsing.
        key = stores.cache.key(value)
        user = stores.cache.get(key, now)
        if user is not None:
            ctx.user = user
            return None
        auth = authorization(ctx.request)
        if auth is None or auth.scheme != "basic":
            return None
        return self._verify(ctx, settings, stores, key, auth.credentials)

    async def _verify(
        self,
        ctx: Context,
        settings: BasicAuthenticationSection,
        stores: Stores,
        key: object,
        credentials: bytes,
    ) -> Outcome | None:
        creds = parse(credentials)
        if isinstance(creds, str):
            refuse_credentials(ctx, _SCHEME, creds)
            return FINISH
        task = stores.pending.get(key)
        if task is None:
            if self._checks >= MAX_CHECKS:
                return self._unavailable(ctx, "too many logons being checked at once")
            client = ctx.request.client
            task = asyncio.ensure_future(
                self._check(stores, settings, key, creds, str(client[0]) if client else None)
            )
            stores.pending[key] = task
        verdict = await asyncio.shield(task)
        if verdict.status == 200:
            ctx.user = verdict.user
            return None
        if verdict.status == 401:
            if verdict.delay:
                await asyncio.sleep(verdict.delay)
            refuse_credentials(ctx, _SCHEME, verdict.reason)
            return FINISH
        if verdict.status == 503:
            return self._unavailable(ctx, verdict.reason)
        ctx.error_response(500, 0, "Internal Server Error", detail=verdict.reason)
        return FINISH

    def _unavailable(self, ctx: Context, reason: str) -> Outcome:
        ctx.error_response(503, 0, "Service Unavailable", detail=f"auth.basic: {reason}")
        ctx.response.headers.append((b"retry-after", b"1"))
        return FINISH

    async def _check(
        self,
        stores: Stores,
        settings: BasicAuthenticationSection,
        key: object,
        creds: Credentials,
        rhost: str | None,
    ) -> Verdict:
        """Check ``creds`` against the stores in a thread; remember a success."""
        self._checks += 1
        try:
            verdict = await self._run_checks(stores, settings, creds, rhost)
        finally:
            self._checks -= 1
            del stores.pending[key]
        if verdict.user is not None and settings.cache_seconds:
            stores.cache.put(key, verdict.user, time.monotonic() + settings.cache_seconds)
        return verdict

    async def _run_checks(
        self,
        stores: Stores,
        settings: BasicAuthenticationSection,
        creds: Credentials,
        rhost: str | None,
    ) -> Verdict:
        loop = asyncio.get_running_loop()
        executor = self._pool()
        verdict: Verdict | None = None
        if stores.file is not None:
            self.verifications += 1
            verdict = await loop.run_in_executor(executor, stores.check, stores.file, creds, rhost)
        if verdict is None and stores.pam is not None:
            self.verifications += 1
            future: Future[Verdict | None] = executor.submit(stores.check, stores.pam, creds, rhost)
            try:
                verdict = await asyncio.wait_for(asyncio.wrap_future(future), settings.pam_timeout)
            except TimeoutError:
                future.cancel()
                log.warning(
                    "auth.basic: PAM service %r did not answer within %g s",
                    stores.pam.service,
                    settings.pam_timeout,
                )
                return Verdict(503, reason=f"PAM did not answer within {settings.pam_timeout} s")
        if verdict is None:
            return Verdict(401, reason=f"user {shown(creds.user)}: unknown user")
        return verdict

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="colonnade-auth")
        return self._executor

    def _stores_for(self, ctx: Context, settings: BasicAuthenticationSection) -> Stores:
        """The stores of ``settings`` (resolved once per section object)."""
        found = self._compiled.get(id(settings))
        if found is not None:
            return found[1]
        path = resolve_user_file(ctx.sections.origins, ctx.app.root, settings)
        stores = self._stores.get((path, settings.pam))
        if stores is None:
            stores = self._stores[(path, settings.pam)] = Stores(path, settings.pam)
        if len(self._compiled) >= 256:
            for kept, _ in self._compiled.values():
                kept.__dict__.pop(self._stores_key, None)
            self._compiled.clear()
        self._compiled[id(settings)] = (settings, stores)
        settings.__dict__[self._stores_key] = stores
        return stores

    # -- SEND_RESPONSE ----------------------------------------------------------------

    @hook(Stage.SEND_RESPONSE, priority=CHALLENGE_PRIORITY)
    def challenge(self, ctx: Context) -> None:
        """Add ``WWW-Authenticate: Basic`` to a 401 response where Basic is enabled."""
        response = ctx.response
        if response.status != 401:
            return
        settings = ctx.section(BasicAuthenticationSection)
        if not settings.enabled:
            return
        value = settings.challenge
        if value is None:
            host = ctx.request.host
            value = challenge_for(split_host(host) if host else "")
        for name, present in response.headers:
            if name == _WWW_AUTHENTICATE and present[:6].lower() == b"basic ":
                return  # the application sent its own Basic challenge
        add_challenge(ctx, value)


def resolve_user_file(
    origins: Mapping[str, str], root: str, settings: BasicAuthenticationSection
) -> str | None:
    """The absolute path of ``settings.user_file``: a relative one is taken from the
    folder of the configuration file that set it (``origins``: the effective
    settings' sources), or from ``root`` (the application's folder) when no file
    did, as for settings given in tests."""
    path = settings.user_file
    if not path:
        return None
    if not os.path.isabs(path):
        source = _LOCATION.sub("", origins.get(f"{settings.key}.user_file", ""))
        base = os.path.dirname(source) if os.path.isabs(source) else root
        path = os.path.join(base, path)
    return os.path.normpath(path)
