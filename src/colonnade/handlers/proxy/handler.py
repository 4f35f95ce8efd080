"""The reverse-proxy handler: the requests mapped to ``handler.proxy`` are
forwarded to an HTTP/1.1 upstream and its answers relayed (IIS ARR's role).

How this works, per request: the upstream is chosen (``upstream`` or ``farm``
of the URL's ``[proxy]`` settings, or the farm and target of a
``core.handler.Route`` a module left in ``ctx.items``: URL Rewrite's route to
a farm, which hands the request here with ``Context.hand_to``); a connection
is borrowed from the worker's keep-alive
:class:`~colonnade.handlers.proxy.client.Pool` for that address; the request
head goes out with its hop-by-hop fields removed and the forwarding fields
added (:mod:`~colonnade.handlers.proxy.forward`); the request body is pumped
by a task of its own while this coroutine reads the response, so an upstream
that answers before it has read the whole body cannot deadlock us. Both ways
keep back-pressure: the pump reads the next piece of the client's body only
once the upstream took the last, and the response is read from the upstream
only as fast as the client takes it (the connection stops reading its socket
past ``buffer_size`` bytes). A response whose end arrives within
``buffer_size`` bytes is handed to the pipeline whole; a longer one is streamed.

``Expect: 100-continue`` is passed on: the client's body is not read (so the
client is not told to send it) until the upstream says ``100 Continue`` or
``continue_timeout`` passes; an upstream that answers at once (a 401, a 413)
spares the client the upload. A ``101 Switching Protocols`` answer to an
upgrade request (WebSocket) turns the exchange into a tunnel of bytes both ways.

Failures are answered as ARR does and logged naming the upstream: it cannot be
reached, it reset, closed early or sent what is not HTTP (an invalid status
line, headers over ``max_response_head``): 502.3; it did not answer within
``timeout``: 504.0. Once the response has begun, a failure can only cut the
client's connection (a truncated body must not look complete). The connection
to the upstream is then closed, never pooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Awaitable
from typing import Final

from colonnade.config.schema import FarmSettings
from colonnade.config.sections import SectionSet
from colonnade.core.app import Application
from colonnade.core.context import Context, RawStream
from colonnade.core.handler import ROUTE, UPSTREAM, Handler, Route
from colonnade.core.request import EMPTY_BODY
from colonnade.errors import ConfigError, HttpError
from colonnade.handlers.proxy import forward, wire
from colonnade.handlers.proxy.client import Connection, Pool, Upstream, Wait
from colonnade.handlers.proxy.config import ProxySection
from colonnade.handlers.proxy.errors import UpstreamConnectError, UpstreamTimeoutError
from colonnade.handlers.proxy.forward import Outgoing, outgoing
from colonnade.handlers.proxy.wire import END, Data, End, Event, Head, Interim
from colonnade.providers.farms import Farm, Member, Outcome, farm_for

log = logging.getLogger("colonnade.proxy")

# (The event classes are imported by name: compiled, ``wire.Head`` is a look-up in
# the module at each use, ``Head`` a static reference. The same for the names
# below: compiled, an imported constant is a look-up in this module's globals
# at each use, ~130 instructions; a Final one of its own is a static.)
_EMPTY_BODY: Final = EMPTY_BODY
_UPSTREAM: Final = UPSTREAM


class UpstreamFailedError(Exception):
    """The upstream failed (the message says how); ``timeout``: by not answering."""

    def __init__(self, what: str, *, timeout: bool = False) -> None:
        super().__init__(what)
        self.timeout = timeout


class _ConnectFailedError(Exception):
    """No connection to the upstream could be had; nothing of the request was
    sent (``error``: the 502.3 to answer with)."""

    def __init__(self, error: HttpError) -> None:
        super().__init__(error.detail)
        self.error = error


#: Methods a request may be sent again with (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class _StaleError(Exception):
    """A reused connection was closed before the upstream took any of the request."""


class ProxyHandler(Handler):
    """Forwards requests to an upstream (see the module docstring)."""

    id = "handler.proxy"
    section = ProxySection
    uses_session = False

    def __init__(self) -> None:
        self.pools: dict[tuple[str, int, str | None], Pool] = {}
        self.farms: dict[str, Farm] = {}
        # The route of each [proxy] section with an upstream, by the section's id
        # (the route holds the section, so the id is not reused meanwhile).
        self._routes: dict[int, _Route] = {}
        self._last_route: _Route | None = None  # the route execute last took
        # A farm's settings as last seen, and its live farm, by name; the route
        # to each member chosen so far.
        self._farms_seen: dict[str, tuple[FarmSettings, Farm]] = {}
        self._member_routes: dict[Member, _Route] = {}

    def provision(self, app: Application) -> None:
        """Check that a farm named at the application's root is defined (one named
        in a location is checked when a request reaches it: a 500 saying so)."""
        problem = _undefined_farm(app)
        if problem is not None:
            raise ConfigError(problem, key="proxy.farm")

    def config_warnings(self, app: Application, workers: int) -> list[str]:
        """``colonnade check`` (which provisions nothing) says it too."""
        problem = _undefined_farm(app)
        return [] if problem is None else [f"{problem}: the server will not start"]

    async def shutdown(self) -> None:
        """Close the idle connections; lent ones close when their request ends."""
        pools, self.pools = self.pools, {}
        self._routes = {}
        self._last_route = None
        self._farms_seen = {}
        self._member_routes = {}
        for pool in pools.values():
            pool.close()
        farms, self.farms = self.farms, {}
        for farm in farms.values():
            await farm.close()

    def pool_for(self, upstream: Upstream, settings: ProxySection) -> Pool:
        """The worker's pool for ``upstream`` (made on first use)."""
        pool = self.pools.get(upstream.key)
        if pool is None or pool.closed:
            pool = self.pools[upstream.key] = Pool(upstream, settings.pool_settings)
        return pool

    def execute(self, ctx: Context) -> Awaitable[None]:
        """Forward the request and relay the answer (the coroutine that does it:
        this call only chooses the way, so the walk awaits the exchange itself,
        a level of coroutines less at each of its waits)."""
        items = ctx.items
        if items:
            handed = items.get(ROUTE)
            if type(handed) is Route:  # handed here by a module: URL Rewrite's route to a farm
                settings = ctx.section(ProxySection)
                return self._via_farm(ctx, settings, handed.farm, handed.target)
        route = self._last_route  # the usual case: the settings of the last request
        sections = ctx.sections
        if route is None or route.sections is not sections or route.pool.closed:
            # Other settings than the last request's (a route knows the settings
            # of its section, and of the last URL whose settings it had).
            settings = ctx.section(ProxySection)
            route = self._routes.get(id(settings))
            if route is None or route.settings is not settings or route.pool.closed:
                # Not seen yet (only a section with an upstream has a route).
                if settings.farm:
                    return self._via_farm(ctx, settings, settings.farm)
                upstream = settings.target
                if upstream is None:
                    raise HttpError(
                        500,
                        0,
                        "the proxy is not configured",
                        detail="handler.proxy is mapped here, but [proxy] sets no upstream or farm",
                    )
                route = self._route(settings, upstream)
            route.sections = sections
            self._last_route = route
        items[_UPSTREAM] = route.upstream.name
        return _Exchange(ctx, route).run()

    def _route(self, settings: ProxySection, upstream: Upstream) -> _Route:
        # The route of a section that names an upstream, made and kept.
        routes = self._routes
        if len(routes) >= _ROUTES_MAX:
            routes.clear()  # sections of configurations gone (reloads)
        route = routes[id(settings)] = _Route(settings, self.pool_for(upstream, settings))
        return route

    async def _via_farm(
        self, ctx: Context, settings: ProxySection, name: str, target: bytes | None = None
    ) -> None:
        # A member chosen by the farm; one retry on another member when
        # connecting failed on an idempotent request (nothing of it was sent).
        # ``target``: what the upstream is asked for, when not the request's own.
        farm_settings = ctx.app.farms.get(name)
        if farm_settings is None:
            raise HttpError(
                500,
                0,
                "the proxy is not configured",
                detail=f"farm {name!r} is used here, but the server file defines no [farms.{name}]",
            )
        seen = self._farms_seen.get(name)
        if seen is not None and seen[0] is farm_settings:
            farm = seen[1]  # farm_for would answer it, unchanged
        else:
            farm = self.farms[name] = farm_for(farm_settings, name=name)
            self._farms_seen[name] = (farm_settings, farm)
        lease = farm.choose(ctx)
        if lease is None:
            raise HttpError(
                502, 4, "no server is available", detail=f"farm {name}: no member is available"
            )
        retried = False
        while True:
            member = lease.member
            ctx.items[_UPSTREAM] = member.name
            route = self._member_routes.get(member)
            if (
                route is None
                or route.settings is not settings
                or route.address != member.address
                or route.pool.closed
            ):
                route = self._member_route(settings, member)
            exchange = _Exchange(ctx, route, lease.set_cookie, target, retry=True)
            try:
                await exchange.run()
            except _ConnectFailedError as failed:
                lease.finished(exchange.outcome, time.monotonic() - lease.started)
                following = None
                if not retried and ctx.request.method in IDEMPOTENT:
                    following = farm.retry(ctx, lease)
                if following is None:
                    raise failed.error from None
                log.warning(
                    "farm %s: %s; the request goes to %s",
                    name,
                    failed.error.detail,
                    following.member.name,
                )
                lease, retried = following, True
                continue
            except BaseException:
                lease.finished(exchange.outcome, time.monotonic() - lease.started)
                raise
            lease.finished(exchange.outcome, time.monotonic() - lease.started)
            return

    def _member_route(self, settings: ProxySection, member: Member) -> _Route:
        # The route to a farm member (its address may change with a reload).
        routes = self._member_routes
        if len(routes) >= _ROUTES_MAX:
            routes.clear()  # members of configurations gone (reloads)
        upstream = Upstream(member.host, member.port, member.unix_path)
        route = routes[member] = _Route(settings, self.pool_for(upstream, settings))
        route.address = member.address
        return route


def _undefined_farm(app: Application) -> str | None:
    # The root's farm, when the server file does not define it.
    farm = app.section(ProxySection).farm
    if not farm or farm in app.farms:
        return None
    defined = ", ".join(sorted(app.farms)) or "none"
    return (
        f"[proxy] farm = {farm!r}, but the server file defines no [farms.{farm}] "
        f"(defined: {defined})"
    )


def _target(ctx: Context) -> bytes:
    # The request target for the upstream: the client's, unless a module
    # remapped the path (URL rewrite), then the new path, quoted.
    request = ctx.request
    if request.path == request.original_path:
        return request.target
    path = urllib.parse.quote(request.path, safe="/:@!$&'()*+,;=-._~").encode("ascii")
    return path + (b"?" + request.query if request.query else b"")


#: Routes kept by a handler before it forgets them all (each reload brings new sections).
_ROUTES_MAX = 256


class _Route:
    """What the requests sent one way share: the settings of their URL, the pool
    of their upstream, and the ``Host`` they send (None: the client's)."""

    __slots__ = (
        "address",
        "buffer_size",
        "continue_timeout",
        "forwarded",
        "host",
        "pool",
        "rewrite",
        "rfc7239",
        "sections",
        "settings",
        "timeout",
        "upstream",
    )

    def __init__(self, settings: ProxySection, pool: Pool) -> None:
        upstream = pool.upstream
        self.settings = settings
        #: The settings of a URL whose [proxy] section is ``settings`` (the last
        #: seen): a request with the same is sent this way without looking.
        self.sections: SectionSet | None = None
        self.pool = pool
        self.upstream = upstream
        #: A farm member's address, as its configuration says it ("": not a member).
        self.address = ""
        self.timeout: float = settings.timeout
        self.continue_timeout: float = settings.continue_timeout
        self.buffer_size: int = settings.buffer_size
        self.forwarded: bool = settings.forwarded_headers
        self.rfc7239: bool = settings.forwarded_rfc7239
        # A unix socket's upstream is sent the client's Host: it has no name of its own.
        self.host = (
            None
            if settings.preserve_host or upstream.unix_path is not None
            else upstream.name.encode("latin-1")
        )
        #: Rewrite the upstream's host in the response back to the public one.
        self.rewrite = self.host is not None and settings.reverse_rewrite_host


class _Exchange(Outgoing):
    """One request forwarded: the connection, the pump, the relay. It is its own
    request as it goes upstream (an :class:`~colonnade.handlers.proxy.forward.Outgoing`
    that ``outgoing`` fills: ``head``, ``upgrade``, ``chunked``,
    ``expect_continue``), one object per request rather than two, and never
    shared: each request has its own exchange."""

    def __init__(
        self,
        ctx: Context,
        route: _Route,
        set_cookie: bytes | None = None,
        target: bytes | None = None,
        *,
        retry: bool = False,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        #: A failed connect raises _ConnectFailedError (a farm tries another
        #: member), else the 502.3 itself.
        self.retry = retry
        self.set_cookie = set_cookie  # a farm's affinity cookie for the response
        #: For the farm: "ok" (the upstream answered), "connect_failed", "failed".
        self.outcome: Outcome = "ok"
        self.route = route
        self.pool = route.pool
        self.upstream = route.upstream
        self.timeout = route.timeout
        self.pump_error: BaseException | None = None
        self.body_started = False  # the pump read from the client's body
        self.body_sent = False  # all of it went out
        self.go: asyncio.Event | None = None  # set: the pump may send the body
        self.pumping = False  # the pump is sending the body
        self.last_sent = 0.0  # when the upstream last took bytes of the request (loop time)
        request = ctx.request
        # Read once: attributes of interpreted objects cost a look-up each time.
        self.method = request.method
        self.response = ctx.response
        self.status = 0  # the upstream's, once its head came
        self.has_body = request.body is not _EMPTY_BODY
        host = route.host
        # The upstream's host in response URLs and cookies rewritten back: made
        # when a response has such a field (see _rewrite), not for every request.
        self.rewrites = host is not None and route.rewrite and bool(request.host)
        self._rewriter: forward.HostRewrite | None = None
        outgoing(
            request,
            target or _target(ctx),
            host,
            forwarded=route.forwarded,
            rfc7239=route.rfc7239,
            out=self,
        )

    # -- the whole exchange ---------------------------------------------------------------

    async def run(self) -> None:
        # The request out, the response back, on a connection of the pool (again
        # on a new one when an idle one proves stale). One coroutine: the response
        # head is awaited here and a response that came whole with it handed over
        # here, not in coroutines of their own (each level of coroutines costs at
        # every wait, and its making and clearing at every request).
        pool = self.pool
        ctx = self.ctx
        conn = pool.reuse()  # an idle connection, without a coroutine
        if conn is None:
            try:
                conn = await pool.acquire()
            except (UpstreamConnectError, UpstreamTimeoutError) as exc:
                self.outcome = "connect_failed"
                raise self._connect_failed(f"cannot connect: {exc}") from None
        reusable = False
        try:
            while True:
                try:
                    reused = conn.requests > 0
                    conn.requests += 1
                    timeout = self.timeout
                    conn.parser.start(self.method)
                    try:
                        if conn.write(self.head):  # no coroutine for the usual case
                            await conn.drain(timeout)
                    except ConnectionError:
                        if reused:
                            raise _StaleError from None
                        raise UpstreamFailedError("the upstream closed the connection") from None
                    except UpstreamTimeoutError as exc:
                        raise UpstreamFailedError(
                            f"sending the request: {exc}", timeout=True
                        ) from None
                    self.last_sent = conn.clock()
                    pump: asyncio.Task[None] | None = None
                    if self.has_body:
                        self.go = asyncio.Event()
                        if not self.expect_continue:
                            self.go.set()
                        self.pumping = True
                        pump = conn.loop.create_task(self._pump(conn))
                    try:
                        head: Head | None = None
                        rest = _NOTHING
                        while head is None:
                            try:
                                events = self._poll(conn, True, False)
                                while not events:
                                    await self._waiter(conn, True)
                                    events = self._poll(conn, True, True)
                            except UpstreamFailedError:
                                if reused and not conn.parser.started and not self.body_started:
                                    raise _StaleError from None
                                raise
                            if events is _WHOLE:
                                reusable = self._reusable(
                                    conn
                                )  # the usual small answer, taken whole
                                return
                            for i, event in enumerate(events):
                                if type(event) is Interim:
                                    if event.status == 100 and self.go is not None:
                                        self.go.set()
                                elif type(event) is Head:
                                    head = event
                                    rest = events[i + 1 :]
                                    break
                        if head.status == 101:
                            if self.upgrade is None:
                                raise UpstreamFailedError("the upstream switched protocols unasked")
                            await self._tunnel(conn, head)
                            return  # not reusable
                        if self.go is not None and not self.go.is_set():
                            # Answered before it asked for the body: the client is spared the
                            # upload, and the connection (whose body is owed) is not reused.
                            self.go.set()
                            self.body_started = True
                            self.has_body = False
                            conn.parser.reusable = False
                        self.status = head.status
                        if rest and rest[-1] is END and not self._bodiless():
                            # The whole response came with its head (the usual small answer):
                            # its fields without the Content-Length the engine writes.
                            self._set_head(head.status, head.reason, head.plain, head.bare)
                            body = [event.data for event in rest if type(event) is Data]
                            self.response.body = body[0] if len(body) == 1 else b"".join(body)
                            reusable = self._reusable(conn)
                            return
                        self._set_head(head.status, head.reason, head.plain, head.fields)
                        reusable = await self._relay(conn, rest)
                        return
                    finally:
                        if pump is not None and not pump.done():
                            pump.cancel()
                            with contextlib.suppress(BaseException):
                                await pump
                except _StaleError:
                    # An idle connection the upstream had closed: nothing of the
                    # request was taken, so it goes again on a new connection.
                    pool.release(conn, reusable=False)
                    try:
                        conn = await pool.acquire()
                    except (UpstreamConnectError, UpstreamTimeoutError) as exc:
                        # Still nothing of the request went out: a failed connect
                        # like any other, which a farm retries on another member
                        # (an upstream killed with idle pooled connections).
                        self.outcome = "connect_failed"
                        raise self._connect_failed(f"cannot connect again: {exc}") from None
        except UpstreamFailedError as exc:
            self.outcome = "failed"
            if ctx.response.headers_sent:
                log.warning(
                    "upstream %s: %s %s: %s (the response was cut)",
                    self.upstream.name,
                    ctx.request.method,
                    _shown_target(ctx),
                    exc,
                )
                raise HttpError(502, 3, "bad gateway") from None
            if exc.timeout:
                raise self._error(str(exc), 504, 0) from None
            raise self._error(str(exc), 502, 3) from None
        finally:
            pool.release(conn, reusable=reusable)

    def _connect_failed(self, what: str) -> Exception:
        # Nothing of the request went out: the 502.3, or for a farm the news to retry.
        error = self._error(what, 502, 3)
        return _ConnectFailedError(error) if self.retry else error

    def _error(self, what: str, status: int, substatus: int) -> HttpError:
        message = "the upstream did not answer in time" if status == 504 else "bad gateway"
        detail = f"upstream {self.upstream.name}: {what}"
        return HttpError(status, substatus, message, detail=detail)

    async def _pump(self, conn: Connection) -> None:
        # The client's body to the upstream, a piece at a time; each piece is
        # taken by the upstream before the next is read from the client.
        go = self.go
        assert go is not None
        route = self.route
        if not go.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(route.continue_timeout):
                    await go.wait()
        body = self.ctx.request.body
        loop = conn.loop
        size = route.buffer_size
        timeout = self.timeout
        chunked = self.chunked
        try:
            while True:
                self.body_started = True
                try:
                    data = await body.read(size)
                except Exception as exc:
                    # The client's body failed (413, 400, gone): the reader reports it.
                    self.pump_error = exc
                    conn.close()
                    return
                if not data:
                    if chunked:
                        await conn.send(wire.LAST_CHUNK, timeout)
                    self.body_sent = True
                    return
                await conn.send(wire.chunk(data) if chunked else data, timeout)
                self.last_sent = loop.time()
        except ConnectionError:
            return  # the upstream closed: it may have answered (the reader reads it)
        except UpstreamTimeoutError as exc:
            self.pump_error = UpstreamFailedError(f"sending the body: {exc}", timeout=True)
            conn.close()
        finally:
            self.pumping = False
            self.last_sent = loop.time()

    # Reading the response: _poll what arrived; while that completes no event,
    # await _waiter and _poll again (``waited``). ``head``: the response head is
    # awaited, and must be whole within ``timeout`` of the last byte of the
    # request the upstream took (bytes that trickle in do not buy more time).
    # While the body is still being pumped, the client sets the pace: each wait
    # is bounded alone. The upstream's failures come as UpstreamFailedError.

    def _waiter(self, conn: Connection, head: bool) -> Wait:
        if head and not self.pumping:
            return conn.waiter_at(self.last_sent + self.timeout)
        return conn.waiter(self.timeout)

    def _poll(self, conn: Connection, head: bool, waited: bool) -> list[Event]:
        # The events of what arrived ([]: none complete yet, or nothing arrived
        # and ``waited`` is False).
        parser = conn.parser
        try:
            if waited:
                data: bytes | None = conn.taken(self.timeout)
            else:
                data = conn.take()
                if data is None:
                    return _NOTHING
        except UpstreamTimeoutError as exc:
            timeout = self.timeout
            if head and parser.started:
                raise UpstreamFailedError(
                    f"the response head did not arrive whole within {timeout:g} s "
                    "(its bytes trickled in)"
                ) from None
            what = str(exc)
            if head and not self.pumping:
                what = f"no response head within {timeout:g} s"
            raise UpstreamFailedError(what, timeout=True) from None
        except ConnectionError as exc:
            self._pump_failed()
            raise UpstreamFailedError(f"the connection failed: {exc}") from None
        try:
            if not data:
                self._pump_failed()
                return parser.eof()
            if head and self.go is None:
                # No body sent: the usual small answer, its head and its whole
                # body in one read, is taken without events (as the branch of run
                # that hands a whole response over would take it).
                parsed = parser.whole(data)
                if parsed is not None:
                    self._set_head(parsed.status, parsed.reason, parsed.plain, parsed.bare)
                    response = self.response
                    body = response.body = data[parsed.end :]
                    if self.set_cookie is None:
                        # The head as its bytes came, where the writer would write
                        # it so: written as they are, unless a module changes it
                        # (and the whole answer, where it came as the writer would
                        # send it).
                        parsed.block(data, response, body)
                    return _WHOLE
            return parser.feed(data)
        except wire.UpstreamProtocolError as exc:
            raise UpstreamFailedError(str(exc)) from None

    async def _events(self, conn: Connection) -> list[Event]:
        # The next events of the response body.
        events = self._poll(conn, False, False)
        while not events:
            await self._waiter(conn, False)
            events = self._poll(conn, False, True)
        return events

    def _pump_failed(self) -> None:
        # The connection ended: the pump's failure, if it made it end, is the news.
        error = self.pump_error
        if error is not None:
            raise error

    def _set_head(self, status: int, reason: bytes, plain: bool, fields: wire.Headers) -> None:
        # The response head's status, reason and fields: the head's, or the same
        # without Content-Length (a body handed on whole), lists made for this
        # response alone (the parser never reads them again). ``plain``: no field to remove
        # or rewrite.
        response = self.response
        self.status = response.status = status
        response.reason = reason or None
        # No field to remove or rewrite (the usual answer): its headers as they came.
        response.headers = fields if plain else forward.response_headers(fields, self._rewrite())
        # The upstream's own error pages are kept (custom errors replace them only
        # with existing_response = "replace"), as for any gateway.
        response.skip_custom_errors = True
        if self.set_cookie is not None:
            response.headers.append((b"set-cookie", self.set_cookie))

    def _rewrite(self) -> forward.HostRewrite | None:
        # What rewrites the upstream's host back to the public one (None: nothing).
        rewriter = self._rewriter
        if rewriter is None and self.rewrites:
            host = self.route.host
            request = self.ctx.request
            if host is not None:
                rewriter = self._rewriter = forward.HostRewrite(host, request.scheme, request.host)
        return rewriter

    def _bodiless(self) -> bool:
        # The response has no body whatever its head declares.
        return self.method == "HEAD" or self.status == 204 or self.status == 304

    def _give_whole(self, body: list[bytes]) -> None:
        # A body that ended within buffer_size, handed to the pipeline whole: its
        # length is that of the body now (the engine writes the field).
        response = self.response
        headers = response.headers  # this response's own list (see _set_head)
        i = len(headers)
        while i:
            i -= 1
            if headers[i][0] == b"content-length":
                del headers[i]
        response.body = body[0] if len(body) == 1 else b"".join(body)

    async def _relay(self, conn: Connection, events: list[Event]) -> bool:
        # The body: whole when it ends within buffer_size, else streamed.
        ctx = self.ctx
        limit = self.route.buffer_size
        buffered: list[bytes] = []
        size = 0
        ended = False
        while True:
            for event in events:
                if type(event) is Data:
                    buffered.append(event.data)
                    size += len(event.data)
                elif type(event) is End:
                    ended = True
            if ended or size > limit:
                break
            due = conn.parser.length_due
            if due is not None and size + due > limit:
                break  # its length says it will not end within the limit: stream now
            events = await self._events(conn)
        if ended:
            if self._bodiless():
                await ctx.start_response()  # the declared length, no body
            else:
                self._give_whole(buffered)
            return self._reusable(conn)
        await ctx.write(b"".join(buffered))
        del buffered
        while True:
            for event in await self._events(conn):
                if type(event) is Data:
                    await ctx.write(event.data)
                elif type(event) is End:
                    return self._reusable(conn)

    def _reusable(self, conn: Connection) -> bool:
        return conn.parser.reusable and (not self.has_body or self.body_sent)

    # -- upgrade ----------------------------------------------------------------------

    async def _tunnel(self, conn: Connection, head: Head) -> None:
        # 101: the client's connection and the upstream's become one pipe.
        ctx = self.ctx
        stream = ctx.upgrade()
        if stream is None:
            raise UpstreamFailedError("the client's connection cannot switch protocols")
        headers = forward.response_headers(head.fields, self._rewrite())
        headers += [(b"connection", b"upgrade"), (b"upgrade", self.upgrade or b"")]
        ctx.response.headers = headers
        lines = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        lines += [b"%s: %s\r\n" % field for field in headers]
        lines.append(b"\r\n")
        leftover = conn.parser.leftover()
        try:
            await stream.send(b"".join(lines) + leftover)
        except ConnectionError:
            stream.close()
            return
        await _pipe(stream, conn)


async def _pipe(stream: RawStream, conn: Connection) -> None:
    # Bytes both ways until either side closes; then both are closed.
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finished(_: object = None) -> None:
        if not done.done():
            done.set_result(None)

    async def up() -> None:
        try:
            while data := await stream.receive():
                await conn.send(data, 86400.0)
            conn.write_eof()
            # The client is done sending; the upstream may still answer.
            return
        except (ConnectionError, UpstreamTimeoutError):
            finished()

    async def down() -> None:
        try:
            while data := await conn.recv(None):
                await stream.send(data)
        except ConnectionError:
            pass
        finished()

    stream.on_shutdown(finished)
    tasks = [loop.create_task(up()), loop.create_task(down())]
    try:
        await done
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        conn.close()
        stream.close()


#: What _poll answers for a response it took whole (see ResponseParser.whole).
_WHOLE: Final[list[Event]] = [END]
#: No events (yet): one list, never changed, rather than a new empty one per poll.
_NOTHING: Final[list[Event]] = []


def _shown_target(ctx: Context) -> str:
    return ctx.request.target.decode("latin-1")[:200]
