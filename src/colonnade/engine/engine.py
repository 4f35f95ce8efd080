"""One configuration generation, and answering requests with it.

``Engine(config, registry)`` builds the generation (``engine/build.py``: enabled
modules imported, every level checked, plans compiled). ``start`` provisions the
modules (cleaning up all of them if one fails), ``startup``/``shutdown`` run on
the serving loop, ``close`` cleans up, and ``handle`` routes one request to its
application and runs the plan. On reload the new generation is built beside the
old one with ``previous=old``; ``retire`` then releases what the new one dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine, Iterator, Sequence
from time import monotonic
from typing import Any, Final

from colonnade.config.schema import ServerConfig
from colonnade.config.sections import SectionSet
from colonnade.config.toml_lines import KeyLines
from colonnade.config.tree import log_broken
from colonnade.core.app import Application
from colonnade.core.confine import FILE_CHECKS
from colonnade.core.context import NEW, Context, ResponseWriter
from colonnade.core.module import Module
from colonnade.core.registry import Registry
from colonnade.core.request import Request
from colonnade.core.response import Response
from colonnade.engine.build import Builder
from colonnade.engine.mapping import HandlerMap
from colonnade.engine.runtime import AppRuntime, make_runtime
from colonnade.engine.sites import Binding, Router
from colonnade.errors import ConfigError, HttpError, ModuleError, combined
from colonnade.pipeline.walker import Bookkeeping

log = logging.getLogger("colonnade.engine")

#: The walk of one request, which gives its context (what ``Engine.handle`` returns).
Walking = Coroutine[Any, Any, Context]

#: A request's route found before ``Engine.handle`` (by the response cache's verdict,
#: ``transport.respcache.ResponseCache.judge``): the engine generation that found it,
#: the application's runtime and the path's effective settings. ``handle`` takes it
#: in place of routing the request again where the generation is its own.
Route = tuple["Engine", AppRuntime, SectionSet]

#: Whether mypyc compiled this module. Then the request monitor's table is an
#: :class:`Executing` (a few native stores per request); the pure install keeps a
#: dict, whose store and delete are single C calls where Executing's methods
#: would be interpreted calls. The engine stores and deletes the same way in both
#: (``executing[ctx] = walk``, ``del executing[ctx]``).
_COMPILED: Final = not __file__.endswith(".py")
#: The clock of ``Context.started`` (as core.context reads it), bound once.
_MONOTONIC: Final = monotonic


class Executing:
    """The requests executing in this process (``Engine.executing``): each one's
    context and walk, for the request monitor, which reads them only when asked.

    A list linked through the contexts themselves (``Context.monitor_prev`` and
    ``monitor_next``, the walk in ``monitor_walk``): listing a request and taking it
    off are a few attribute stores, where a dict keyed by the context hashed,
    probed, and every few requests rebuilt its table (~470 instructions of the
    ASGI hello request). Read as a mapping of context to walk (``items()``,
    iteration, ``len``; equal to a dict of the same pairs), oldest first as a
    dict's insertion order (the monitor's sort by elapsed time breaks ties so). The
    compiled build's (the pure install keeps a dict: see ``_COMPILED``)."""

    __slots__ = ("_count", "_head", "_tail")

    def __init__(self) -> None:
        self._head: Context | None = None  # the oldest
        self._tail: Context | None = None  # the newest
        self._count = 0

    def __setitem__(self, ctx: Context, walk: Walking) -> None:
        """List ``ctx``, run by ``walk`` (not listed already)."""
        tail = self._tail
        ctx.monitor_walk = walk
        ctx.monitor_prev = tail
        ctx.monitor_next = None
        if tail is not None:
            tail.monitor_next = ctx
        else:
            self._head = ctx
        self._tail = ctx
        self._count += 1

    def __delitem__(self, ctx: Context) -> None:
        """Take ``ctx`` off the list (KeyError if it is not listed)."""
        try:
            walk = ctx.monitor_walk
        except AttributeError:  # never listed
            walk = None
        if walk is None:
            raise KeyError(ctx)
        prev = ctx.monitor_prev
        after = ctx.monitor_next
        if prev is not None:
            prev.monitor_next = after
        else:
            self._head = after
        if after is not None:
            after.monitor_prev = prev
        else:
            self._tail = prev
        ctx.monitor_walk = None
        ctx.monitor_prev = None
        ctx.monitor_next = None
        self._count -= 1

    def items(self) -> list[tuple[Context, Walking]]:
        """Every listed ``(context, walk)``, oldest first (a list: a snapshot)."""
        found: list[tuple[Context, Walking]] = []
        ctx = self._head
        while ctx is not None:
            found.append((ctx, ctx.monitor_walk))
            ctx = ctx.monitor_next
        return found

    def __iter__(self) -> Iterator[Context]:
        return iter([ctx for ctx, _ in self.items()])

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._head is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Executing):
            return other is self
        if isinstance(other, dict):
            return dict(self.items()) == other
        return NotImplemented


class _NoSite(HandlerMap):
    """Requests for a host no site is bound to: 404.1, as IIS answers."""

    def map(self, ctx: Context) -> None:
        raise HttpError(404, 1, "no site is configured for this host name")


class Engine(Bookkeeping):
    """One configuration generation, ready to serve.

    With ``previous`` (the generation being replaced), applications whose inputs
    did not change keep their runtimes; only the others are built, provisioned
    and started anew.
    """

    def __init__(
        self, config: ServerConfig, registry: Registry, *, previous: Engine | None = None
    ) -> None:
        self.config = config
        self.registry = registry
        self.settings = config.server
        builder = Builder(
            config,
            registry,
            {(rt.app.site, rt.app.path): rt for rt in previous.runtimes} if previous else None,
        )
        builder.check_server_levels()
        builder.check_sites()
        if not config.sites:
            builder.errors.append(
                ConfigError("the configuration defines no site", file=config.source, key="sites")
            )
        self.sites = tuple(builder.build_site(i) for i in range(len(config.sites)))
        if builder.errors:
            # Every mistake at once (the broken web.toml files are mistakes too):
            # the server file's first, then each file's in the order of its lines.
            found = [*builder.errors, *(b.error for b in builder.broken)]
            raise combined(sorted(found, key=lambda e: _reading_order(e, config.source)))
        #: The ``web.toml`` files that cannot be used: the requests of their URL
        #: subtrees are answered 500.19; every other one is served.
        self.broken = tuple(builder.broken)
        self.fresh = tuple(builder.fresh)
        self.reused = tuple(builder.reused)
        #: The files application modules and middleware were imported from: watched
        #: with the configuration files, a change rebuilds their application.
        self.sources = frozenset(f for files in builder.app_modules.sources.values() for f in files)
        #: The line index of each configuration file of this generation (the server
        #: file, each web.toml read), for the tools that point at a key's line.
        self.lines: dict[str, KeyLines] = dict(builder.key_lines)
        if config.lines is not None:
            self.lines[config.source] = config.lines
        self.router = Router(self.sites)
        self._only = self.router.only
        self._nowhere = make_runtime(
            Application(site="(none)", path="/", root=os.sep), _NoSite(()), ()
        )
        self._started = False
        self.active = 0  # requests in flight on this generation
        #: Every request executing in this process, whatever its generation (shared
        #: with the previous one): its context and the walk running it, for the
        #: request monitor, which reads them only when asked.
        self.executing: Executing | dict[Context, Walking] = (
            previous.executing if previous is not None else Executing() if _COMPILED else {}
        )
        #: The operator's switches (``[server] request_monitor``, ``metrics``): off, a
        #: request writes nothing for the monitor or the counters.
        self.monitor = config.server.request_monitor
        self.counting = config.server.metrics
        self._idle: asyncio.Event | None = None  # set when active drops to 0 (retiring)

    # -- lifecycle ------------------------------------------------------------

    @property
    def runtimes(self) -> list[AppRuntime]:
        """Every application of every site."""
        return [rt for site in self.sites for rt in site.apps]

    def bindings(self) -> list[Binding]:
        """Every distinct address to listen on."""
        seen: dict[tuple[str, int], Binding] = {}
        for site in self.sites:
            for b in site.bindings:
                seen.setdefault((b.host, b.port), b)
        return list(seen.values())

    def start(self) -> None:
        """Provision every module of every application; all or nothing."""
        provisioned: list[Module] = []
        try:
            for rt in self.fresh:
                for module in rt.modules:
                    provisioned.append(module)
                    module.provision(rt.app)
        except Exception as exc:
            self._cleanup(provisioned)
            if isinstance(exc, ConfigError | ModuleError):
                raise
            raise ModuleError(provisioned[-1].id, f"provisioning failed: {exc!r}") from exc
        self._started = True

    async def startup(self) -> None:
        """Run every module's ``startup`` on the serving loop; all or nothing."""
        FILE_CHECKS.configure(self.config.server.file_check_cache)  # phpperf3 (#18)
        started: list[Module] = []
        try:
            for rt in self.fresh:
                for module in rt.modules:
                    started.append(module)
                    await module.startup()
        except BaseException:
            await self._shutdown(started)
            raise

    async def shutdown(self) -> None:
        """Run every module's ``shutdown`` (reverse order), logging failures."""
        await self._shutdown([m for rt in self.runtimes for m in rt.modules])

    @staticmethod
    async def _shutdown(modules: Sequence[Module]) -> None:
        for module in reversed(modules):
            try:
                await module.shutdown()
            except Exception:
                log.exception("shutdown of module %s failed", module.id)

    async def retire(self, successor: Engine, deadline: float) -> None:
        """After a swap: let requests in flight finish, then release the runtimes
        ``successor`` did not keep."""
        keep = {id(rt) for rt in successor.runtimes}
        modules = [m for rt in self.runtimes if id(rt) not in keep for m in rt.modules]
        if self.active:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), deadline)
        await self._shutdown(modules)
        self._cleanup(modules)
        self._started = False

    async def abandon(self) -> None:
        """A new generation that failed to start: release only what it created."""
        modules = [m for rt in self.fresh for m in rt.modules]
        await self._shutdown(modules)
        self._cleanup(modules)
        self._started = False

    def close(self) -> None:
        """Clean up every module (idempotent)."""
        if self._started:
            self._started = False
            self._cleanup([m for rt in self.runtimes for m in rt.modules])

    @staticmethod
    def _cleanup(modules: Sequence[Module]) -> None:
        for module in reversed(modules):
            try:
                module.cleanup()
            except Exception:
                log.exception("cleanup of module %s failed", module.id)

    # -- serving --------------------------------------------------------------

    def route(self, port: int, host: str, path: str) -> AppRuntime:
        """The application for a request on ``port`` for ``Host: host`` and ``path``."""
        only = self.router.only
        if only is not None:
            return only
        site = self.router.site_for(port, host)
        if site is not None:
            runtime = site.app_for(path)
            if runtime is not None:
                return runtime
        return self._nowhere

    def handle(
        self, request: Request, writer: ResponseWriter, route: Route | None = None
    ) -> Walking:
        """Run ``request`` through its application's plan; the response goes to ``writer``.

        Returns the coroutine that runs it, to await at once (it gives the request's
        context); the request counts as in flight from this call on. It is the
        walk's own coroutine (``AppRuntime.serve``), the bookkeeping of
        :meth:`ended` in its ``finally``: one coroutine per request to create and
        resume, not two.

        ``route``: the request's :data:`Route`, where its connection found it already
        (the response cache's verdict routes a candidate request): used as it is
        when this generation found it, else (a reload came in between) the request
        is routed here, as without one.
        """
        if route is not None and route[0] is self:
            runtime = route[1]
            sections: SectionSet | None = route[2]
        else:
            # A server of one application (``serve app``): no routing to do.
            only = self._only
            if only is None:
                server = request.server
                runtime = self.route(server[1] if server else 0, request.host, request.path)
            else:
                runtime = only
            sections = runtime.path_sections.get(request.path)
        if _COMPILED:
            ctx = Context(request, runtime.app, writer, runtime.send_response, sections)
        else:
            # Interpreted, Context.__init__'s stores made here (see core.context.NEW,
            # and its Response's there): its call is one more Python frame per
            # request (~540 instructions). The same values as Context(...) with the
            # arguments above (tests/core/test_new_objects.py); the sections of a
            # path not in the runtime's dict (the application's own) are made here.
            ctx = NEW(Context)
            ctx.request = request
            ctx.response = response = NEW(Response)
            response.status = 200
            response.substatus = 0
            response.reason = None
            response.headers = []
            response.block = None
            response.answer = None
            response.answer_body = b""
            response.body = b""
            response.file = None
            response.source = None
            response.headers_sent = False
            response.bytes_sent = 0
            response.skip_custom_errors = False
            response.streaming = False
            ctx.app = app = runtime.app
            ctx.writer = writer
            ctx.user = None
            ctx.handler = None
            ctx.items = {}
            ctx.sections = sections if sections is not None else app.sections_for(request.path)
            ctx.finished = False
            ctx.state_acquired = False
            ctx.error = None
            ctx.started = _MONOTONIC()
            ctx.ended_at = 0.0
            ctx._correlation_id = None
            ctx._physical_path = None
            ctx.file_stat = None
            ctx._send_response = runtime.send_response
            ctx.remapper = None
            ctx._remaps = 0
            ctx.trace = None
            ctx.waiting = None
            ctx.cache_grant = None
        walker = runtime.walker
        if walker is not None:  # the compiled build: a native call
            walk: Walking = walker.serve(ctx, self)
        else:
            serve = runtime.serve
            walk = serve(ctx, self) if serve is not None else self._walked(runtime, ctx)
        if self.monitor:
            self.executing[ctx] = walk
        self.active += 1
        return walk

    async def _walked(self, runtime: AppRuntime, ctx: Context) -> Context:
        # The request of an application with a broken web.toml (its walk checks
        # first): the walk, then the same bookkeeping.
        try:
            await runtime.walk(ctx)
        finally:
            self.ended(ctx)
        return ctx

    def ended(self, ctx: Context) -> None:
        """Where a request's walk ends, ended or failed: off the request monitor's
        map, counted in its site's counters (GET /metrics), no longer in flight.

        This generation's switches are read here, as when the request began: they
        are set once per generation (a reload that flips them makes a new one)."""
        if self.monitor:
            del self.executing[ctx]
        if self.counting:
            # The runtime's counters (a native read) where there is one application.
            only = self._only
            counters = only.metrics if only is not None else ctx.app.metrics
            if _COMPILED:
                counters.done(ctx)
            else:
                # SiteCounters.done's common case (a 2xx within its first bucket),
                # inline: interpreted, its call is a Python frame per request.
                # Every other request goes to done, which decides again
                # (tests/engine/test_ended.py compares the two).
                ended = ctx.ended_at
                if not ended:
                    ended = ctx.ended_at = _MONOTONIC()
                elapsed = ended - ctx.started
                if elapsed <= 0.001 and 200 <= ctx.response.status < 300:
                    counters.duration_sum += elapsed
                    counters.bytes_out += ctx.writer.bytes_sent
                    counters.d0 += 1
                    counters.s2xx += 1
                else:
                    counters.done(ctx)
        self.active -= 1
        if not self.active and self._idle is not None:
            self._idle.set()

    def log_broken(self, logger: logging.Logger) -> None:
        """Log each ``web.toml`` that cannot be used, with the URLs it takes down."""
        log_broken(self.broken, logger)

    def describe(self) -> list[dict[str, Any]]:
        """Applications and their plans, for tools."""
        return [{**rt.app.describe(), "plan": rt.plan.describe()} for rt in self.runtimes]


def _reading_order(error: ConfigError, source: str) -> tuple[bool, str, int]:
    return error.file != source, error.file or "", error.line or 0
