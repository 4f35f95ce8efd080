"""Session state (ASP.NET SessionStateModule) at ACQUIRE/RELEASE_REQUEST_STATE.

ACQUIRE_REQUEST_STATE reads the session cookie, locks the session (read-write
locations) and loads it into ``ctx.items[SESSION]`` (a
:class:`~colonnade.core.session.Session`, also ``ctx.session``); the WSGI and
ASGI handlers pass it on. RELEASE_REQUEST_STATE saves it if it changed and
unlocks it, in one store call. SEND_RESPONSE sets the cookie when the client
needs a new id (a new session that was written, or an id regenerated at
sign-in) and clears it when the session was abandoned.

Bad input never costs more than a fresh session: a cookie that is not an id
of ours (wrong length or alphabet) is not looked up; an id the store does not
know (expired, forged) or whose data does not decode gives a new, empty session
under a new id (ASP.NET's ``regenerateExpiredSessionId``), never the data of
another id. A new session that nothing was written to is not stored and gets
no cookie.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from colonnade.core.context import Context
from colonnade.core.httputil import COOKIE_DELETED, cookie_attributes, cookie_values
from colonnade.core.module import FINISH, Module, Outcome, Priority, hook
from colonnade.core.response import keep_private
from colonnade.core.session import ID_LENGTH, SESSION, Session, valid_session_id
from colonnade.core.stages import Stage
from colonnade.modules.session_state.config import SessionSection
from colonnade.providers.sessions import MemorySessionStore, SessionBusy, SessionStore

if TYPE_CHECKING:
    from colonnade.core.app import Application

log = logging.getLogger("colonnade.session")

#: ``ctx.items``: (id loaded from the store or None, lock token or "").
_LOADED = "session_state.loaded"
#: ``ctx.items``: the cookie went out with the response head.
_COOKIE_SENT = "session_state.cookie_sent"
#: ``ctx.items``: RELEASE_REQUEST_STATE ran (the session is saved and unlocked).
_RELEASED = "session_state.released"
#: Cookie values of the session's name looked at, at most (several can come:
#: for other paths or domains, or forged).
_MAX_CANDIDATES = 4
#: A kind of problem (corrupt data, a session too large) is logged at most this
#: often (seconds): a client cannot flood the log.
LOG_EVERY = 60.0


class SessionState(Module):
    """``state.session``: per-user values kept between requests, behind a cookie."""

    id = "state.session"
    section = SessionSection

    def __init__(self) -> None:
        self._store: SessionStore | None = None
        self._name_eq = b""
        self._cookie_tail = b""
        self._closed_answer = True  # redis_failure = closed
        self._secure = False  # require_ssl
        self._logged: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def provision(self, app: Application) -> None:
        """Open the application's store and prepare its cookie."""
        settings = app.section(SessionSection)
        lifetime = settings.timeout * 60.0
        if settings.provider == "redis":
            from colonnade.providers.redis import shared_redis
            from colonnade.providers.sessions import RedisSessionStore

            shared = shared_redis(app.redis, user=self.id)
            # Per application, the same on every node of a farm.
            prefix = f"{shared.prefix}session:{app.id}:"
            self._store = RedisSessionStore(shared, prefix, lifetime, settings.lock_timeout)
        else:
            self._store = MemorySessionStore(lifetime, settings.lock_timeout, settings.max_sessions)
        self._closed_answer = settings.redis_failure == "closed"
        self._secure = settings.require_ssl
        self._name_eq = settings.cookie_name.encode("ascii") + b"="
        self._cookie_tail = cookie_attributes(
            settings.cookie_path or app.path,
            settings.cookie_domain,
            settings.require_ssl,
            settings.same_site,
        )

    async def shutdown(self) -> None:
        """Let the store go (Redis: the shared client's last user closes it)."""
        if self._store is not None:
            await self._store.close()
            self._store = None

    def config_warnings(self, app: Application, workers: int) -> list[str]:
        """``colonnade check``: in-memory sessions in a pool of several workers."""
        settings = app.section(SessionSection)
        if settings.provider == "memory" and workers > 1:
            return [
                f"session_state.provider is 'memory' and the pool {app.pool!r} has {workers} "
                "workers: each worker keeps its own sessions, so a user whose requests reach "
                "another worker loses theirs. Use provider = 'redis' (and [redis]), or one "
                "worker."
            ]
        return []

    # -- the hooks ---------------------------------------------------------------------

    @hook(Stage.ACQUIRE_REQUEST_STATE)
    async def acquire(self, ctx: Context) -> Outcome | None:
        """Lock (read-write) and load the session named by the cookie."""
        section = ctx.section(SessionSection)
        if section.mode == "off":
            return None
        handler = ctx.handler
        if handler is not None and not handler.uses_session:
            return None  # static files and the like: no session, no store asked
        store = self._store
        assert store is not None  # provisioned
        request = ctx.request
        if self._secure and request.scheme != "https":
            # require_ssl: an id that travelled in clear is not used, and none
            # is issued (a session that is not saved).
            ctx.items[SESSION] = Session(None, {}, is_new=True, read_only=True)
            return None
        # A WebSocket lives long: it never holds the session's lock.
        read_only = section.mode == "read_only" or request.header(b"upgrade") is not None
        sid = self._cookie_id(ctx)
        if sid is None:
            ctx.items[SESSION] = Session(None, {}, is_new=True, read_only=read_only)
            return None
        token = ""
        try:
            if read_only:
                raw = await store.read(sid, section.lock_timeout)
            else:
                token, raw = await store.acquire(sid, section.lock_timeout)
        except SessionBusy:
            self._once(
                "busy",
                "a request waited %g s for its session's lock in vain (session_state."
                "lock_timeout): answered 503",
                section.lock_timeout,
            )
            return _unavailable(ctx, "the session is in use by another request")
        except Exception as exc:
            from colonnade.providers.redis import RedisUnavailableError

            if not isinstance(exc, RedisUnavailableError):
                raise
            if self._closed_answer:
                return _unavailable(ctx, "the session store is unavailable")
            # redis_failure = open: an empty session that is never saved.
            ctx.items[SESSION] = Session(None, {}, is_new=True, read_only=True)
            return None
        data = self._decode(raw) if raw is not None else None
        if data is None:
            if token:
                # Unknown or corrupt: unlocked (a corrupt entry deleted), a fresh
                # session under a new id instead, never this id's data.
                await self._release(store, sid, token, delete=raw is not None)
            ctx.items[SESSION] = Session(None, {}, is_new=True, read_only=read_only)
            return None
        ctx.items[SESSION] = Session(sid, data, is_new=False, read_only=read_only)
        ctx.items[_LOADED] = (sid, token)
        return None

    @hook(Stage.RELEASE_REQUEST_STATE)
    async def release(self, ctx: Context) -> None:
        """Save the session if it changed; unlock it."""
        items = ctx.items
        session = items.get(SESSION)
        if not isinstance(session, Session):
            return
        items[_RELEASED] = True
        loaded, token = items.pop(_LOADED, (None, ""))
        store = self._store
        assert store is not None
        if session.read_only:
            return  # no lock was taken; nothing is saved
        if ctx.error is not None or not session.modified:
            if loaded is not None:
                await self._release(store, loaded, token)
            return
        if session.abandoned:
            if loaded is not None:
                await self._release(store, loaded, token, delete=True)
            return
        payload = self._encode(ctx, session)
        if payload is None:
            if loaded is not None:
                await self._release(store, loaded, token)
            return
        if loaded is None:
            if ctx.response.headers_sent and not items.get(_COOKIE_SENT):
                # Streamed: the head (without a cookie) went out before the
                # session was first written; nobody could find it again.
                self._once(
                    "late",
                    "a new session was written after the response started (%s): not saved",
                    ctx.request.path,
                )
                return
            await self._release(store, session.id, "", data=payload)
        elif session.id != loaded:
            await self._release(store, loaded, token, data=payload, move_to=session.id)
        else:
            await self._release(store, loaded, token, data=payload)

    @hook(Stage.SEND_RESPONSE, priority=Priority.LOW)
    async def send_cookie(self, ctx: Context) -> None:
        """Set the cookie for a new or regenerated id; clear it for an abandoned
        session. A coroutine because of one case: a new session whose cookie goes
        out before it is saved (the application streams its response, so the
        head leaves during the handler) is locked under its new id first, so
        that the client's next request, on any node, waits for the save."""
        items = ctx.items
        session = items.get(SESSION) if items else None
        if not isinstance(session, Session) or session.read_only or not session.modified:
            return
        if ctx.error is not None:
            return
        response = ctx.response
        if session.abandoned:
            if not session.is_new:
                cleared = self._name_eq + self._cookie_tail + COOKIE_DELETED
                response.headers.append((b"set-cookie", cleared))
            return
        if not (session.is_new or session.previous_id is not None):
            return
        if session.is_new and not items.get(_RELEASED) and _LOADED not in items:
            store = self._store
            assert store is not None
            try:
                token, _ = await store.acquire(session.id, 0.0)
            except Exception as exc:
                from colonnade.providers.redis import RedisUnavailableError

                if not isinstance(exc, RedisUnavailableError | SessionBusy):
                    raise
                return  # no cookie: the session could not be kept
            items[_LOADED] = (session.id, token)
        value = self._name_eq + session.id.encode("ascii") + self._cookie_tail
        response.headers.append((b"set-cookie", value))
        keep_private(response)
        items[_COOKIE_SENT] = True

    # -- helpers -----------------------------------------------------------------------

    def _cookie_id(self, ctx: Context) -> str | None:
        for value in cookie_values(ctx.request.headers, self._name_eq, _MAX_CANDIDATES):
            if len(value) == ID_LENGTH:  # anything else is not looked at further
                text = value.decode("ascii", "replace")
                if valid_session_id(text):
                    return text
        return None

    def _decode(self, raw: bytes) -> dict[str, Any] | None:
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            data = None
        if not isinstance(data, dict):
            self._once("corrupt", "a stored session did not decode as a JSON object: replaced")
            return None
        return data

    def _encode(self, ctx: Context, session: Session) -> bytes | None:
        section = ctx.section(SessionSection)
        try:
            payload = json.dumps(
                session.data(), ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            self._once("type", "a session was not saved (%s): %s", ctx.request.path, exc)
            return None
        if len(payload) > section.max_size:
            self._once(
                "size",
                "a session was not saved (%s): %d bytes, more than session_state.max_size %d",
                ctx.request.path,
                len(payload),
                section.max_size,
            )
            return None
        return payload

    async def _release(
        self,
        store: SessionStore,
        sid: str,
        token: str,
        *,
        data: bytes | None = None,
        delete: bool = False,
        move_to: str | None = None,
    ) -> None:
        try:
            done = await store.release(sid, token, data=data, delete=delete, move_to=move_to)
        except Exception as exc:
            from colonnade.providers.redis import RedisUnavailableError

            if not isinstance(exc, RedisUnavailableError):
                raise
            return  # said once by the shared client; the lock expires by itself
        if not done:
            self._once(
                "lost",
                "a request held its session's lock longer than session_state.lock_timeout; "
                "another took it over, and this one's changes were not saved",
            )

    def _once(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_EVERY) >= LOG_EVERY:
            self._logged[kind] = now
            log.warning(message, *args)


def _unavailable(ctx: Context, message: str) -> Outcome:
    ctx.error_response(503, 0, f"Service Unavailable: {message}; try again shortly")
    ctx.response.headers.append((b"retry-after", b"1"))
    return FINISH
