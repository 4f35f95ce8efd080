"""An application ready to serve: its module instances, handler map and compiled walk.

The builder (``engine/build.py``) makes one per application and configuration
generation with :func:`make_runtime`; the engine routes each request to one and
runs its walk; the process model (``pools/routing.py``) makes the runtimes that
hand a request on to another pool.
"""

from __future__ import annotations

from typing import Any

from colonnade.config.sections import SectionSet
from colonnade.core.app import Application
from colonnade.core.context import MAPPING_CLOSED, Context, SendHook
from colonnade.core.metrics import SiteCounters
from colonnade.core.module import Module
from colonnade.engine.mapping import (
    EXECUTE_INLINE,
    MAP_INLINE,
    HandlerMap,
    close_mapping,
    execute,
    needs_close,
)
from colonnade.errors import each_error
from colonnade.pipeline import (
    Plan,
    Serve,
    Walk,
    compile_plan,
    compile_serve,
    compile_walk,
    compile_walker,
)
from colonnade.pipeline.plan import Inline
from colonnade.pipeline.walker import Walker


class AppRuntime:
    """An application with its module instances, handler map and plan."""

    __slots__ = (
        "app",
        "fingerprint",
        "handler_map",
        "metrics",
        "modules",
        "path_sections",
        "plan",
        "send_response",
        "serve",
        "walk",
        "walker",
    )

    def __init__(
        self,
        app: Application,
        modules: tuple[Module, ...],
        handler_map: HandlerMap,
        plan: Plan,
        fingerprint: bytes = b"",
    ) -> None:
        self.app = app
        # The site's counters, held here too: the compiled engine reads a native
        # attribute where the application's costs a Python attribute lookup.
        self.metrics: SiteCounters = app.metrics
        # The application's effective settings by path, held here for the same
        # reason (the same dict: the application fills and clears it, never
        # replaces it): Engine.handle hands the request's to its Context.
        self.path_sections: dict[str, SectionSet] = app.path_sections
        self.modules = modules
        self.handler_map = handler_map
        self.plan = plan
        # The plan's SEND_RESPONSE chain, held here for the same reason as metrics.
        self.send_response: SendHook | None = plan.run_send_response
        self.fingerprint = fingerprint  # what it was built from; equal → reusable
        self.walk: Walk = compile_walk(plan)
        #: The compiled walker, whose ``serve`` the engine calls natively (no bound
        #: method, no arguments unpacked); None in the pure-Python build.
        self.walker: Walker | None = compile_walker(plan)
        #: The walk with the engine's bookkeeping in one coroutine, or None for an
        #: application with a broken web.toml: the engine wraps its refusing
        #: ``walk`` (see ``Engine.handle``).
        self.serve: Serve | None = (
            self.walker.serve if self.walker is not None else compile_serve(plan)
        )
        if app.broken:
            self.walk = _refusing_broken(self.walk)
            self.serve = None
            self.walker = None
        # Where a URL becomes a file path (Context.physical_path), the MAP_PATH
        # hooks join in; one application object serves one runtime.
        app.map_path_hooks = plan.run_map_path
        app.handler_map = handler_map  # for handlers' local redirects (CGI Location)


#: The message of a 500.19 for every client (IIS: "Configuration data is invalid").
CONFIG_INVALID = "the configuration data for this page is invalid"


def _refusing_broken(walk: Walk) -> Walk:
    """``walk``, answering 500.19 where a broken ``web.toml`` covers the request's path.

    Only an application with a broken level in its tree gets this: elsewhere a
    request pays nothing for it. The page names the file, line and key to local
    clients (the detail), the log line to the administrator; the always-run
    stages (error pages, headers, the access log) still run, with the settings
    of the levels that are sound.
    """

    async def refusing(ctx: Context) -> None:
        error = ctx.sections.broken
        if error is not None:
            detail = "; ".join(str(e) for e in each_error(error))  # one log line
            ctx.error_response(500, 19, CONFIG_INVALID, detail)
            ctx.finished = True
        await walk(ctx)

    return refusing


def make_runtime(
    app: Application, handler_map: HandlerMap, modules: tuple[Module, ...], fingerprint: bytes = b""
) -> AppRuntime:
    """Compile the plan of ``app`` and wrap everything in an :class:`AppRuntime`."""
    map_handler = handler_map.map
    # The two built-in steps' common cases, inline in the pure install's walk.
    inline: dict[Any, Inline] = {execute: (EXECUTE_INLINE, {"closed": MAPPING_CLOSED})}
    map_values = handler_map.inline()
    if map_values is not None:
        inline[map_handler] = (MAP_INLINE, map_values)
    plan = compile_plan(
        modules,
        map_handler=map_handler,
        execute_handler=execute,
        flush=Context.flush,
        close_mapping=close_mapping if needs_close(modules) else None,
        mapped=tuple(rule.handler for rule in handler_map.rules),
        inline=inline,
    )
    return AppRuntime(app, modules, handler_map, plan, fingerprint)
