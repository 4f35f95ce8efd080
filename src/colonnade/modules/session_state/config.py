"""``[session_state]``: session state (ASP.NET ``system.web/sessionState``)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from colonnade.config.sections import Section, Where

#: A cookie name: an RFC 6265 token.
_COOKIE_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"

PER_APPLICATION = Where.SERVER | Where.APPLICATION


class SessionSection(Section, frozen=True, dict=True):
    """Session state (ASP.NET `sessionState`): values an application keeps per
    user between requests, found again by a cookie that holds only a random id
    (130 bits). Applications reach the session as WSGI
    `environ["colonnade.session"]`, ASGI `scope["session"]` (a mapping, as
    Starlette's `SessionMiddleware` gives) and modules as `ctx.session`. Values
    are JSON (never pickle); a session is written back only when it changed.

    A read-write request locks its session until it ends: two requests of one
    session run one after the other, as in ASP.NET. Where an application only
    reads the session (an AJAX endpoint, a page that shows the cart), set
    `mode = "read_only"` for that location: such requests take no lock and run
    side by side (they wait only for a writer). See [sessions](sessions.md).
    """

    key = "session_state"
    allowed_keys: ClassVar[dict[str, Where]] = {
        "provider": PER_APPLICATION,
        "cookie_name": PER_APPLICATION,
        "cookie_path": PER_APPLICATION,
        "cookie_domain": PER_APPLICATION,
        "require_ssl": PER_APPLICATION,
        "same_site": PER_APPLICATION,
        "timeout": PER_APPLICATION,
        "max_size": PER_APPLICATION,
        "max_sessions": PER_APPLICATION,
        "lock_timeout": PER_APPLICATION,
        "redis_failure": PER_APPLICATION,
    }

    mode: Literal["read_write", "read_only", "off"] = "read_write"
    """What requests here do with the session (ASP.NET `EnableSessionState`):
    `"read_write"` reads it and saves changes, holding the session's lock for
    the whole request; `"read_only"` reads it without a lock, side by side
    with other read-only requests (a read-write request still running is
    waited for, up to `lock_timeout`; changes are not saved); `"off"` gives no
    session at all (static files, health checks).
    Settable per location."""
    provider: Literal["memory", "redis"] = "memory"
    """Where sessions live (ASP.NET `mode`): `"memory"`, the worker process's
    memory (ASP.NET InProc: lost on recycle, and not shared by the workers of a
    pool: `colonnade check` warns when the pool has several), or `"redis"`, the
    server's `[redis]` (shared by every worker and node)."""
    cookie_name: Annotated[str, Meta(pattern=_COOKIE_NAME, description="a cookie name")] = (
        "ColonnadeSessionId"
    )
    """The session cookie (ASP.NET `cookieName`, there `ASP.NET_SessionId`)."""
    cookie_path: str = ""
    """The cookie's `Path`; empty: the application's path (each application has
    its own sessions)."""
    cookie_domain: str = ""
    """The cookie's `Domain`; empty: none, the cookie goes back to this host only."""
    require_ssl: bool = False
    """Mark the cookie `Secure`: browsers send it over HTTPS only. A request
    over plain HTTP then gets an empty session that is not saved (a cookie it
    carries is not used)."""
    same_site: Literal["Lax", "Strict", "None"] = "Lax"
    """The cookie's `SameSite`. `None` requires `require_ssl`."""
    timeout: Annotated[int, Meta(ge=1, le=525_600)] = 20
    """Minutes a session lives after its last request (ASP.NET `timeout`: every
    request, read-only ones too, starts the time again)."""
    max_size: Annotated[int, Meta(ge=256, le=16 * 1024 * 1024)] = 65_536
    """Bytes a session's data may take (as JSON). A larger session is not saved
    (the previous one stays), and the log says so."""
    max_sessions: Annotated[int, Meta(ge=1, le=100_000_000)] = 100_000
    """With `provider = "memory"`: sessions a worker keeps at most (each up to
    `max_size`); beyond, the least recently used one is forgotten. (Redis
    bounds its memory itself: `maxmemory` with `volatile-lru`.)"""
    lock_timeout: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    """Seconds a read-write request waits for its session's lock before it is
    answered 503 (with `Retry-After`); also the longest a lock is held: a
    request still running after it loses the lock (its changes are then not
    saved), as ASP.NET releases a lock older than the execution timeout."""
    redis_failure: Literal["closed", "open"] = "closed"
    """With `provider = "redis"`, while Redis cannot be reached: `"closed"`
    answers requests that use the session 503 (with `Retry-After`), `"open"`
    runs them with an empty session that is not saved."""

    def redis_key(self) -> str | None:
        """``provider`` when it is ``"redis"`` (the server's ``[redis]`` table)."""
        return "provider" if self.provider == "redis" else None

    def __post_init__(self) -> None:
        if self.same_site == "None" and not self.require_ssl:
            raise ValueError("same_site: 'None' needs require_ssl = true (browsers refuse it)")
        if self.cookie_path and not self.cookie_path.startswith("/"):
            raise ValueError("cookie_path: a URL path, starting with '/'")
        for name in ("cookie_path", "cookie_domain"):
            value = getattr(self, name)
            if any(c in value for c in ";,\r\n\t ") or not value.isascii():
                raise ValueError(f"{name}: no spaces, ';' or ',' (it goes into Set-Cookie)")
