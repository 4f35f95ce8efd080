"""The one Redis client setup of a worker process, shared by every module.

The server file's ``[redis]`` table (:class:`~colonnade.config.schema.RedisSettings`)
says where Redis is and how to talk to it; ``Application.redis`` carries it to
the modules. A module that keeps state in Redis (session state, the output
cache's shared tier, dynamic IP restrictions) does this::

    from colonnade.providers.redis import RedisUnavailableError, shared_redis

    class MyModule(Module):
        def provision(self, app):
            # ConfigError when the server file has no [redis] table, the redis
            # package is missing or the password file cannot be read.
            self._redis = shared_redis(app.redis, user=self.id)

        async def shutdown(self):
            await self._redis.release()    # the last user closes the pool

        async def some_hook(self, ctx):
            key = self._redis.prefix + "mine:" + name
            try:
                value = await self._redis.call(lambda r: r.get(key))
            except RedisUnavailableError:
                ...   # serve without it, or 503: the module decides

The API (stable; other modules code against it):

- :func:`shared_redis` ``(settings, *, user) -> SharedRedis``: the process's
  client for those settings (one per distinct ``[redis]`` table, so a
  reloaded configuration with the same table keeps the same pool), counted as
  used by one more module instance until its :meth:`SharedRedis.release`.
- :meth:`SharedRedis.call` ``(fn)``: ``await fn(client)`` with the
  ``redis.asyncio.Redis`` of the running loop; any failure (refused, timed
  out, an error answer) is raised as :class:`RedisUnavailableError`, after it was
  counted and, for an outage, logged once.
- :meth:`SharedRedis.available`: False while Redis is known to be down and the
  back-off has not passed (``call`` would fail at once).
- :meth:`SharedRedis.client`: the raw ``redis.asyncio.Redis`` of the running
  loop, for what ``call`` does not fit (a caller then reports failures itself
  with :meth:`SharedRedis.failed` / :meth:`SharedRedis.answered`).
- :attr:`SharedRedis.prefix`: ``[redis] key_prefix``; each module adds its own
  part (``"session:"``, ``"cache:"``).
- :class:`LuaScript` ``(body)``: a Lua script that costs one round trip
  (``await script(client, keys, args)`` inside ``call``), also the first time.
- :meth:`SharedRedis.subscribe` ``(channel, on_message, on_lost)``: hear what
  any node publishes on ``channel`` (``PUBLISH``, through :meth:`SharedRedis.call`):
  ``on_message(data)`` for each message, ``on_lost()`` when the subscription
  broke (messages published until it is back are not heard). One connection of
  its own per channel and event loop, shared by the subscribers of the process.
- :meth:`SharedRedis.stats`: ``{"url", "state", "outages", "errors",
  "commands"}``; :func:`clients` lists the process's clients.

How it behaves:

- **Lazily, on the serving loop.** Nothing connects when the configuration is
  built (the master never does); the connection pool (``pool_size``
  connections at most, a command waiting up to ``connect_timeout`` for a free
  one) is made on the first call, on the worker's running event loop. A call
  from another event loop (tests that run several) gets a pool of its own.
- **Outages.** A refused connection, a timeout (``connect_timeout``,
  ``command_timeout``) or a dropped connection marks Redis down: one log line
  (error) says so, with the URL (password hidden) and the reason; until the
  back-off has passed (``retry_min``, doubled after each failed retry up to
  ``retry_max``) every call fails at once, without a network wait. Then one
  call (not every call waiting at that moment) tries again; the first answer
  ends the outage with one log line (warning). A stale pooled connection
  (Redis restarted) is reconnected once within the same call, so a restart
  that is over by the next request costs nothing.
- **Errors that are answers** (``WRONGTYPE``, ``OOM``, a script error) are not
  outages: counted in ``errors``, logged at most once a minute, raised as
  :class:`RedisUnavailableError` too (the caller falls back the same way).
- **Subscriptions** start on the first :meth:`SharedRedis.subscribe`, on that
  event loop; a broken one (Redis went away) is made again when the back-off
  the calls follow allows, and lasts until its last subscriber closes.
- **Secrets.** The password comes from ``password_file`` / ``password_env`` (or
  the URL); it is never logged, and the URL is shown with :func:`safe_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from colonnade.config.schema import RedisSettings
from colonnade.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "LuaScript",
    "RedisUnavailableError",
    "SharedRedis",
    "Subscription",
    "clients",
    "safe_url",
    "shared_redis",
]

log = logging.getLogger("colonnade.redis")

T = TypeVar("T")

#: An error answer (not an outage) is logged at most this often (seconds).
ERROR_LOG_EVERY = 60.0

#: The process's clients, by their settings (JSON).
_clients: dict[bytes, SharedRedis] = {}


class RedisUnavailableError(Exception):
    """Redis did not answer (down, timed out) or answered with an error."""


def safe_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: what logs and
    ``colonnade config show`` may show. A lone user part is hidden too (some
    write the password there)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    auth, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = auth.partition(":")
    return f"{scheme}://{user + ':' if colon else ''}***@{host}"


def _password(settings: RedisSettings) -> str | None:
    if settings.password_file is not None:
        try:
            with open(settings.password_file, encoding="utf-8") as f:
                first = f.readline().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the password file: {exc.strerror or exc}",
                key="redis.password_file",
            ) from None
        if not first:
            raise ConfigError("the password file's first line is empty", key="redis.password_file")
        return first
    if settings.password_env is not None:
        value = os.environ.get(settings.password_env)
        if not value:
            raise ConfigError(
                f"the environment variable {settings.password_env} is not set (or empty)",
                key="redis.password_env",
            )
        return value
    return None


def shared_redis(settings: RedisSettings | None, *, user: str) -> SharedRedis:
    """The worker's client for ``settings`` (``Application.redis``), used by one
    more module instance (``user``, its id: named in errors) until it calls
    :meth:`SharedRedis.release`.

    ``ConfigError`` when there is no ``[redis]`` table, when the ``redis``
    package is not installed, or when the password cannot be read: the
    configuration generation is refused, nothing is served half-configured.
    """
    if settings is None:
        raise ConfigError(f"{user} uses Redis: the server file needs a [redis] table", key="redis")
    try:
        import redis  # noqa: F401 - the optional dependency, checked now
    except ImportError:
        raise ConfigError(
            f"{user} uses Redis: install the redis package (pip install 'colonnade[redis]')",
            key="redis",
        ) from None
    key = msgspec.json.encode(settings)
    password = _password(settings)  # read now: a changed file takes effect on reload
    found = _clients.get(key)
    if found is None or found.password != password:
        found = _clients[key] = SharedRedis(settings, password)
    found.users += 1
    return found


def clients() -> list[SharedRedis]:
    """The clients of this process (for status and counters)."""
    return list(_clients.values())


class LuaScript:
    """A Lua script run in one round trip: ``EVALSHA`` by its digest, and where
    Redis does not know it (its first use, a restarted Redis) ``EVAL`` with the
    body, which also caches it. redis-py's ``register_script`` answers that case
    with ``SCRIPT LOAD`` and a second ``EVALSHA``: three round trips."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode("utf-8"), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Redis, keys: list[str], args: list[Any]) -> Any:
        """Run it with ``client`` (the one :meth:`SharedRedis.call` passes)."""
        from redis.exceptions import NoScriptError

        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.body, len(keys), *keys, *args)


def _is_outage(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | TimeoutError | OSError)


class SharedRedis:
    """One ``[redis]`` table's client in this process: a connection pool per
    event loop, outage state and counters. Made by :func:`shared_redis`."""

    def __init__(self, settings: RedisSettings, password: str | None) -> None:
        self.settings = settings
        self.password = password
        #: ``[redis] key_prefix``: every key a module writes starts with it.
        self.prefix = settings.key_prefix
        #: The URL as logs and tools may show it.
        self.url = safe_url(settings.url)
        self.users = 0
        #: Outages so far (each logged once), errors (failed calls, outages
        #: included), commands (calls made).
        self.outages = 0
        self.errors = 0
        self.commands = 0
        self.down = False
        self._retry_at = 0.0  # monotonic: while down, no call before this
        self._backoff = settings.retry_min
        self._probing = False  # one call tries while down; the others fail at once
        self._error_logged = -ERROR_LOG_EVERY
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: dict[tuple[str, asyncio.AbstractEventLoop], _Listener] = {}

    # -- the client -------------------------------------------------------------------

    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` of the running event loop (made at the
        first use on that loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client of a loop that is gone cannot be closed from this one: dropped.
            self._client = self._make()
            self._loop = loop
        return self._client

    def _make(self, connections: int | None = None) -> Redis:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        s = self.settings
        options: dict[str, Any] = {
            "max_connections": connections or s.pool_size,
            "timeout": s.connect_timeout,  # waiting for a free pooled connection
            "socket_timeout": s.command_timeout,
            "socket_connect_timeout": s.connect_timeout,
            # One reconnect for a pooled connection Redis dropped (a restart):
            # never redis-py's default of several back-offs, which would make
            # every request of an outage wait seconds for a refusal.
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }
        if self.password is not None:
            options["password"] = self.password
        if s.url.startswith("rediss://"):
            options["ssl_cert_reqs"] = "required"
            options["ssl_check_hostname"] = s.tls_check_hostname
            if s.tls_ca is not None:
                options["ssl_ca_certs"] = s.tls_ca
            if s.tls_certificate is not None:
                options["ssl_certfile"] = s.tls_certificate
                options["ssl_keyfile"] = s.tls_key
        pool = BlockingConnectionPool.from_url(s.url, **options)
        return Redis.from_pool(pool)

    # -- calls ------------------------------------------------------------------------

    def available(self) -> bool:
        """False while Redis is known to be down and not due to be tried again."""
        return not self.down or (not self._probing and time.monotonic() >= self._retry_at)

    async def call(self, fn: Callable[[Redis], Awaitable[T]]) -> T:
        """``await fn(client)``; :class:`RedisUnavailableError` when Redis is down
        (at once while the back-off runs) or the call fails."""
        if self.down:
            if not self.available():
                raise RedisUnavailableError(f"Redis at {self.url} is unavailable")
            self._probing = True
        self.commands += 1
        try:
            result = await fn(self.client())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed(exc)
            raise RedisUnavailableError(str(exc) or type(exc).__name__) from exc
        finally:
            self._probing = False
        self.answered()
        return result

    def failed(self, exc: BaseException) -> None:
        """Count a failed call; an outage (not an error answer) is logged once
        and starts (or lengthens) the back-off."""
        self.errors += 1
        now = time.monotonic()
        if not _is_outage(exc):
            if now - self._error_logged >= ERROR_LOG_EVERY:
                self._error_logged = now
                log.warning("Redis at %s answered with an error: %s", self.url, exc)
            return
        if self.down:
            if now < self._retry_at:
                return  # a call in flight when the outage began: nothing new
            self._backoff = min(self._backoff * 2, self.settings.retry_max)
        else:
            self.down = True
            self.outages += 1
            self._backoff = self.settings.retry_min
            log.error(
                "Redis at %s cannot be reached (%s): modules that use it do without "
                "until it answers",
                self.url,
                str(exc) or type(exc).__name__,
            )
        self._retry_at = now + self._backoff

    def answered(self) -> None:
        """Redis answered: the end of an outage, if there was one (logged once)."""
        if self.down:
            self.down = False
            self._backoff = self.settings.retry_min
            log.warning("Redis at %s answers again", self.url)

    def retry_in(self) -> float:
        """Seconds until Redis, known to be down, is due to be tried again (0: now)."""
        return max(0.0, self._retry_at - time.monotonic()) if self.down else 0.0

    # -- subscriptions ----------------------------------------------------------------

    def subscribe(
        self, channel: str, on_message: Callable[[bytes], None], on_lost: Callable[[], None]
    ) -> Subscription:
        """Hear the messages published on ``channel`` (from the running event
        loop's subscription to it, started now if there is none)."""
        loop = asyncio.get_running_loop()
        listener = self._listeners.get((channel, loop))
        if listener is None:
            listener = self._listeners[channel, loop] = _Listener(self, channel, loop)
        found = Subscription(listener, on_message, on_lost)
        listener.add(found)
        return found

    def _unlisten(self, listener: _Listener) -> None:
        if self._listeners.get((listener.channel, listener.loop)) is listener:
            del self._listeners[listener.channel, listener.loop]

    def stats(self) -> dict[str, Any]:
        """The counters, for status tools."""
        return {
            "url": self.url,
            "state": "down" if self.down else "up",
            "outages": self.outages,
            "errors": self.errors,
            "commands": self.commands,
        }

    # -- the end ----------------------------------------------------------------------

    async def release(self) -> None:
        """One module instance is done with it (its ``shutdown``); the last one
        closes the connection pool (if one was made on this loop).
        Subscriptions end with their subscribers (:meth:`Subscription.close`)."""
        self.users -= 1
        if self.users > 0:
            return
        for key, found in list(_clients.items()):
            if found is self:
                del _clients[key]
        client, self._client = self._client, None
        loop, self._loop = self._loop, None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()


class Subscription:
    """One subscriber's hold on a channel (:meth:`SharedRedis.subscribe`)."""

    __slots__ = ("_listener", "on_lost", "on_message")

    def __init__(
        self,
        listener: _Listener,
        on_message: Callable[[bytes], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._listener = listener
        self.on_message = on_message
        self.on_lost = on_lost

    @property
    def live(self) -> bool:
        """True while Redis has confirmed the subscription (messages are heard)."""
        return self._listener.live

    async def close(self) -> None:
        """Stop hearing; the channel's last subscriber ends the subscription
        (and waits for its connection to close, from the loop it runs on)."""
        await self._listener.remove(self)


class _Listener:
    """The subscription of one channel on one event loop: a task holding a
    connection of its own (never one of the pool's: a ``pool_size`` of 1 would
    leave no connection for commands), made again after a failure when the
    shared client's back-off allows."""

    def __init__(self, shared: SharedRedis, channel: str, loop: asyncio.AbstractEventLoop) -> None:
        self.shared = shared
        self.channel = channel
        self.loop = loop
        self.live = False
        self._subscribers: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, subscription: Subscription) -> None:
        self._subscribers.append(subscription)
        if self._task is None:
            self._task = self.loop.create_task(self._run())

    async def remove(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
        if self._subscribers:
            return
        self.shared._unlisten(self)
        task, self._task = self._task, None
        if task is None or self.loop.is_closed():
            return
        task.cancel()
        if asyncio.get_running_loop() is self.loop:
            await asyncio.wait([task])  # its end, not its CancelledError

    async def _run(self) -> None:
        while self._subscribers:
            await asyncio.sleep(self.shared.retry_in())
            client = self.shared._make(connections=1)
            try:
                await self._listen(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.shared.failed(exc)
            finally:
                if self.live:
                    self.live = False
                    for subscriber in list(self._subscribers):
                        subscriber.on_lost()
                with contextlib.suppress(Exception):
                    await asyncio.shield(client.aclose())
            # Not an outage (an error answer): no back-off was set; pause anyway.
            await asyncio.sleep(max(self.shared.retry_in(), self.shared.settings.retry_min))

    async def _listen(self, client: Redis) -> None:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            while True:
                # Blocks without a timeout (redis-py does not apply
                # command_timeout here): a closed connection ends it.
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "subscribe":
                    if self.live:
                        # redis-py reconnected and subscribed again by itself:
                        # what was published meanwhile went unheard.
                        for subscriber in list(self._subscribers):
                            subscriber.on_lost()
                    self.live = True
                    self.shared.answered()
                elif kind == "message" and isinstance(message.get("data"), bytes):
                    for subscriber in list(self._subscribers):
                        subscriber.on_message(message["data"])
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())
