"""Build one configuration generation and answer requests with it.

``Engine(config, registry)`` resolves the enabled modules (importing only those),
checks every module section and handler mapping against them, creates each
application's module instances and compiles its plan. ``start`` provisions the
modules (cleaning up all of them if one fails), ``close`` cleans up, and
``handle`` routes one request to its application and runs the plan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from colonnade.config.schema import ServerConfig
from colonnade.config.sections import Raw, Section, decode_section
from colonnade.core.app import Application, Location, VirtualDirectory
from colonnade.core.context import Context, ResponseWriter
from colonnade.core.handler import Handler
from colonnade.core.module import Module
from colonnade.core.registry import Registry
from colonnade.core.request import Request
from colonnade.engine.sites import Binding, Router, Site, parse_binding
from colonnade.errors import ConfigError, HttpError, ModuleError
from colonnade.handlers.mapping import HandlerMap, compile_rule, execute
from colonnade.pipeline import Plan, compile_plan, run

log = logging.getLogger("colonnade.engine")


class AppRuntime:
    """An application with its module instances, handler map and plan."""

    __slots__ = ("app", "handler_map", "modules", "plan")

    def __init__(
        self, app: Application, modules: tuple[Module, ...], handler_map: HandlerMap, plan: Plan
    ) -> None:
        self.app = app
        self.modules = modules
        self.handler_map = handler_map
        self.plan = plan


class _NoSite(HandlerMap):
    """Requests for a host no site is bound to: 404.1, as IIS answers."""

    async def map(self, ctx: Context) -> None:
        raise HttpError(404, 1, "no site is configured for this host name")


class Engine:
    """One configuration generation, ready to serve."""

    def __init__(self, config: ServerConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.settings = config.server
        self.module_classes = self._load_modules(config.server.modules)
        self._check_sections()
        sites = [self._build_site(i) for i in range(len(config.sites))]
        if not sites:
            raise ConfigError("the configuration defines no site", file=config.source, key="sites")
        self.sites = tuple(sites)
        self.router = Router(self.sites)
        self._nowhere = self._runtime(
            Application(site="(none)", path="/", root=os.sep, settings={}), _NoSite(()), ()
        )
        self._started = False

    # -- building -------------------------------------------------------------

    def _load_modules(self, ids: Sequence[str]) -> tuple[type[Module], ...]:
        seen: set[str] = set()
        classes = []
        for i, module_id in enumerate(ids):
            if module_id in seen:
                raise ConfigError(
                    f"module {module_id!r} is listed twice",
                    file=self.config.source,
                    key=f"server.modules[{i}]",
                )
            seen.add(module_id)
            if module_id not in self.registry:
                raise ConfigError(
                    f"no module named {module_id!r} is installed",
                    file=self.config.source,
                    key=f"server.modules[{i}]",
                )
            classes.append(self.registry.load(module_id))
        return tuple(classes)

    def _section_types(self) -> dict[str, type[Section]]:
        return {cls.section.key: cls.section for cls in self.module_classes if cls.section}

    def _check_sections(self) -> None:
        known = self._section_types()
        source = self.config.source
        for key, raw in self.config.sections.items():
            if key not in known:
                raise ConfigError(
                    "no enabled module owns a section of this name", file=source, key=key
                )
            decode_section(known[key], raw, file=source)
        for i, loc in enumerate(self.config.locations):
            for key, raw in loc.items():
                if key == "path":
                    continue
                if key not in known or not isinstance(raw, dict):
                    raise ConfigError(
                        "no enabled module owns a section of this name",
                        file=source,
                        key=f"locations[{i}].{key}",
                    )
                section = known[key]
                try:
                    decode_section(section, raw, file=source)
                except ConfigError as exc:
                    exc.key = f"locations[{i}].{exc.key}"
                    raise ConfigError(exc.message, file=source, key=exc.key) from None

    def _locations_for(self, site: str) -> tuple[Location, ...]:
        found = []
        for i, loc in enumerate(self.config.locations):
            path = str(loc["path"])
            if not path.startswith("/"):
                name, _, rest = path.partition("/")
                if name != site:
                    continue
                path = "/" + rest
            raw: Raw = {k: v for k, v in loc.items() if k != "path"}
            found.append(
                Location(path.rstrip("/") or "/", raw, f"{self.config.source}: locations[{i}]")
            )
        return tuple(found)

    def _build_site(self, index: int) -> Site:
        site = self.config.sites[index]
        source = self.config.source
        bindings = [
            parse_binding(b, file=source, key=f"sites[{index}].bindings[{j}]")
            for j, b in enumerate(site.bindings)
        ]
        locations = self._locations_for(site.name)
        vdirs = tuple(
            VirtualDirectory(v.path.rstrip("/") or "/", v.root) for v in site.virtual_directories
        )
        apps = [
            Application(
                site=site.name,
                path="/",
                root=site.root,
                settings=dict(self.config.sections),
                locations=locations,
                virtual_directories=vdirs,
                pool=site.pool,
            )
        ]
        for a in site.applications:
            apps.append(
                Application(
                    site=site.name,
                    path=a.path,
                    root=a.root or os.path.join(site.root, a.path.strip("/")),
                    settings=dict(self.config.sections),
                    locations=locations,
                    virtual_directories=vdirs,
                    pool=a.pool or site.pool,
                    app=a.app,
                )
            )
        runtimes = [self._runtime_for(app) for app in apps]
        return Site(site.name, bindings, site.host_names, runtimes)

    def _runtime_for(self, app: Application) -> AppRuntime:
        modules = tuple(cls() for cls in self.module_classes)
        by_id = {m.id: m for m in modules}
        rules = []
        for i, mapping in enumerate(self.config.handlers):
            handler = by_id.get(mapping.handler)
            if not isinstance(handler, Handler):
                what = "not an enabled handler" if handler is None else "not a handler"
                raise ConfigError(
                    f"{mapping.handler!r} is {what}",
                    file=self.config.source,
                    key=f"handlers[{i}].handler",
                )
            rules.append(compile_rule(mapping.path, mapping.verbs, handler))
        return self._runtime(app, HandlerMap(rules), modules)

    def _runtime(
        self, app: Application, handler_map: HandlerMap, modules: tuple[Module, ...]
    ) -> AppRuntime:
        plan = compile_plan(
            modules,
            map_handler=handler_map.map,
            execute_handler=execute,
            flush=Context.finish_response,
        )
        return AppRuntime(app, modules, handler_map, plan)

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
            for rt in self.runtimes:
                for module in rt.modules:
                    provisioned.append(module)
                    module.provision(rt.app)
        except Exception as exc:
            self._cleanup(provisioned)
            if isinstance(exc, ConfigError | ModuleError):
                raise
            raise ModuleError(provisioned[-1].id, f"provisioning failed: {exc!r}") from exc
        self._started = True

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
        site = self.router.site_for(port, host)
        if site is not None:
            runtime = site.app_for(path)
            if runtime is not None:
                return runtime
        return self._nowhere

    async def handle(self, request: Request, writer: ResponseWriter) -> Context:
        """Run ``request`` through its application's plan; the response goes to ``writer``."""
        server = request.server
        runtime = self.route(server[1] if server else 0, request.host, request.path)
        ctx = Context(request, runtime.app, writer, runtime.plan.run_send_response)
        await run(runtime.plan, ctx)
        return ctx

    def describe(self) -> list[dict[str, Any]]:
        """Applications and their plans, for tools."""
        return [{**rt.app.describe(), "plan": rt.plan.describe()} for rt in self.runtimes]
