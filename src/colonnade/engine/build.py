"""Build one configuration generation: sites, applications, their modules and plans.

How this works: the server file's module sections are the root level of every
site; each ``[[locations]]`` entry and each ``web.toml`` found under the site's
content roots is a level at its URL path. Every level is checked against the
section types of the enabled modules (strictly, with file, line and key),
against where each section and key may be set (``Section.allowed``, by the
level's kind: server, an application's root, or a directory below one) and
against the locks; then, per application, the module list (the server's, changed
by the ``web.toml`` at the application's root), the handler mappings and the
plan are built, and the effective settings at every level's path are decoded
once so that a bad combination fails now, not on a request.

An application whose inputs are unchanged since the ``previous`` generation keeps
its runtime (modules, caches) as it is: a reload switches only what it affects.

Application modules and ASGI middleware declared in an application's root
``web.toml`` are checked and imported by ``integration/appmodules.py``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from colonnade.config.keys import check_dotted_key, did_you_mean
from colonnade.config.load import locate
from colonnade.config.schema import HandlerMapping, ServerConfig, SiteConfig
from colonnade.config.sections import Raw, Section, Where, merge_into, section_defaults
from colonnade.config.toml_lines import KeyLines
from colonnade.config.tree import DirConfig, discover
from colonnade.core.app import Application, Level, PythonApp, VirtualDirectory
from colonnade.core.handler import Handler
from colonnade.core.module import Module
from colonnade.core.pyapp import detect_interface, load_app
from colonnade.core.registry import Registry
from colonnade.core.urlpath import covers
from colonnade.engine.mapping import HandlerMap, Rule, compile_rule
from colonnade.engine.runtime import AppRuntime, make_runtime
from colonnade.engine.sites import Site, parse_binding
from colonnade.errors import ConfigError, ModuleError
from colonnade.integration.appmodules import AppModules


class Builder:
    """Turns a :class:`ServerConfig` into sites of application runtimes."""

    def __init__(
        self,
        config: ServerConfig,
        registry: Registry,
        previous: dict[tuple[str, str], AppRuntime] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.previous = previous or {}
        self.source = config.source
        # Application modules and middleware of this generation, from the apps' folders.
        self.app_modules = AppModules(registry, self._dir_error, self.source)
        self.server_ids = self._check_module_list(config.server.modules)
        self.sections: dict[str, type[Section]] = {}
        for module_id in self.server_ids:
            self._learn_sections(module_id)
        # A hosted Python app brings its handler even where the module list does
        # not name it, so the handlers' sections ([asgi], [wsgi]) are known too.
        if any(a.app for site in config.sites for a in site.applications):
            for module_id in ("handler.asgi", "handler.wsgi"):
                if module_id in registry:
                    self._learn_sections(module_id)
        self.reused: list[AppRuntime] = []
        self.fresh: list[AppRuntime] = []

    # -- errors -----------------------------------------------------------------------

    def _server_error(self, message: str, key: str) -> ConfigError:
        return locate(ConfigError(message, key=key), self.source, self.config.lines)

    @staticmethod
    def _dir_error(d: DirConfig, message: str, key: str) -> ConfigError:
        return ConfigError(message, file=d.file, line=d.lines.line_for(key), key=key)

    # -- modules and sections -----------------------------------------------------------

    def _check_module_list(self, ids: Sequence[str]) -> list[str]:
        seen: set[str] = set()
        for i, module_id in enumerate(ids):
            if module_id in seen:
                raise self._server_error(
                    f"module {module_id!r} is listed twice", f"server.modules[{i}]"
                )
            seen.add(module_id)
            if module_id not in self.registry:
                raise self._server_error(
                    f"no module named {module_id!r} is installed", f"server.modules[{i}]"
                )
            self.registry.load(module_id)
        return list(ids)

    def _module_class(self, module_id: str) -> type[Module]:
        local = self.app_modules.local.get(module_id)
        return local if local is not None else self.registry.load(module_id)

    def _learn_sections(self, module_id: str) -> None:
        section = self._module_class(module_id).section
        if section is not None:
            self.sections[section.key] = section

    def defaults(self) -> dict[str, Raw]:
        """Each known section's defaults, the base of collection operations."""
        return {key: section_defaults(cls) for key, cls in self.sections.items()}

    # -- the server file ------------------------------------------------------------

    def check_server_levels(self) -> None:
        """Module sections, locations and locks of the server file."""
        for key, raw in self.config.sections.items():
            self._check_table(key, raw, key, self._server_error)
            self._check_where(key, raw, Where.SERVER, "at the server level", self._server_error)
        for i, loc in enumerate(self.config.locations):
            for key, raw in loc.items():
                if key != "path":
                    self._check_table(key, raw, f"locations[{i}].{key}", self._server_error)
        for key in self.config.lock:
            name, _, rest = key.partition(".")
            section = self.sections.get(name)
            if section is None:
                hint = did_you_mean(name, self.sections)
                raise self._server_error(
                    f"no enabled module owns this section{hint}", f"lock.{key}"
                )
            # A misspelt key would lock nothing, in silence: a security setting
            # that does nothing. Only keys the section has may be locked.
            why = check_dotted_key(section, rest) if rest else None
            if why is not None:
                raise self._server_error(f"{name}: {why}", f"lock.{key}")

    def _check_table(self, key: str, raw: Any, where: str, error: Any) -> None:
        section = self.sections.get(key)
        if section is None or not isinstance(raw, dict):
            raise error("no enabled module owns a section of this name", where)
        try:
            msgspec.convert(_without_ops(raw), section, strict=True)
        except msgspec.ValidationError as exc:
            from colonnade.config.sections import _split_validation

            message, sub = _split_validation(str(exc), "")
            raise error(message, where + sub) from None

    def _check_where(
        self, key: str, raw: Any, level: Where, place: str, error: Any, prefix: str = ""
    ) -> None:
        """Refuse a key of section ``key`` set at a ``level`` its section does not allow."""
        section = self.sections[key]
        for dotted in _dotted_keys(key, raw):
            allowed = section.where_allowed(dotted[len(key) + 1 :])
            if level not in allowed:
                raise error(f"may be set {allowed.describe()} only, not {place}", prefix + dotted)

    def _check_locations(self, site: str, app_paths: set[str]) -> None:
        """Where the ``[[locations]]`` for ``site`` set what they set."""
        for i, path, raw in self._locations(site):
            at_root = path in app_paths
            level = Where.APPLICATION if at_root else Where.DIRECTORY
            how = "for" if at_root else "below"
            place = f"in a [[locations]] entry {how} an application's root (site {site}, {path})"
            for key, table in raw.items():
                self._check_where(key, table, level, place, self._server_error, f"locations[{i}].")

    # -- web.toml -------------------------------------------------------------------

    def _locked(self, dotted: str) -> str | None:
        """The lock entry that denies overriding ``dotted`` (section or key), if any."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            mode = self.config.lock.get(key)
            if mode is not None:
                return key if mode == "deny" else None
        section = self.sections.get(parts[0])
        if section is not None and section.locked:
            return parts[0]
        return None

    def check_dir(self, d: DirConfig, app_paths: set[str]) -> None:
        """One web.toml: known sections, valid values, where they may be set, locks,
        where modules may change."""
        at_root = d.path in app_paths
        level = Where.APPLICATION if at_root else Where.DIRECTORY
        place = "in the web.toml at an application's root" if at_root else "in a folder's web.toml"
        error = functools.partial(self._dir_error, d)
        for key, raw in d.sections.items():
            self._check_table(key, raw, key, error)
            self._check_where(key, raw, level, place, error)
            for dotted in _dotted_keys(key, raw):
                lock = self._locked(dotted)
                if lock is not None:
                    where = (
                        self.config.lines.line_for(f"lock.{lock}") if self.config.lines else None
                    )
                    at = f"{self.source}:{where}" if where else self.source
                    raise self._dir_error(
                        d, f"locked by the server configuration ({at}: lock.{lock})", dotted
                    )
        if (d.modules or d.handlers) and d.path not in app_paths:
            key = "modules" if d.modules else "handlers"
            raise self._dir_error(
                d, "modules and handlers can change only at an application's root", key
            )

    # -- sites ----------------------------------------------------------------------

    def build_site(self, index: int) -> Site:
        """Everything of ``sites[index]``; errors get the line of their key."""
        lines: dict[str, KeyLines] = {}
        try:
            return self._build_site(index, lines)
        except ConfigError as exc:
            if exc.line is None and exc.key:
                index_of = (
                    self.config.lines
                    if exc.file in (None, self.source)
                    else lines.get(exc.file or "")
                )
                if index_of is not None:
                    exc = ConfigError(
                        exc.message,
                        file=exc.file or self.source,
                        line=index_of.line_for(exc.key),
                        key=exc.key,
                    )
            raise exc from None

    def _build_site(self, index: int, lines: dict[str, KeyLines]) -> Site:
        site = self.config.sites[index]
        bindings = [
            parse_binding(b, file=self.source, key=f"sites[{index}].bindings[{j}]")
            for j, b in enumerate(site.bindings)
        ]
        apps = self._applications(site, index)
        roots = [
            ("/", site.root),
            *((a.path, a.root) for a in apps.values() if a.path != "/"),
            *((v.path, v.root) for v in site.virtual_directories),
        ]
        dirs = discover(site.name, roots)
        lines.update((d.file, d.lines) for d in dirs)
        for d in dirs:
            if d.app_modules or d.asgi_middleware:
                spec = apps.get(d.path)
                root = spec.root if spec is not None else None
                allowed = spec is not None and spec.allow_modules
                for module_id in self.app_modules.declare(d, root, allowed):
                    self._learn_sections(module_id)
        for d in dirs:
            for module_id in _added_modules(d):
                if module_id in self.app_modules.local:
                    continue
                if module_id not in self.registry:
                    raise self._dir_error(
                        d, f"no module named {module_id!r} is installed", "modules.add"
                    )
                self._learn_sections(module_id)
        for d in dirs:
            self.check_dir(d, set(apps))
        self._check_locations(site.name, set(apps))
        levels = self._levels(site.name, dirs)
        defaults = self.defaults()
        runtimes = []
        for path, spec in apps.items():
            app = Application(
                site=site.name,
                path=path,
                root=spec.root,
                levels=levels,
                defaults=defaults,
                virtual_directories=spec.vdirs,
                pool=spec.pool,
                python=spec.python,
            )
            root_dir = next((d for d in dirs if d.path == path), None)
            runtimes.append(self._runtime(app, root_dir, dirs))
        return Site(site.name, bindings, site.host_names, runtimes)

    def _applications(self, site: SiteConfig, index: int) -> dict[str, _AppSpec]:
        vdirs = tuple(
            VirtualDirectory(v.path.rstrip("/") or "/", v.root) for v in site.virtual_directories
        )
        apps = {"/": _AppSpec("/", site.root, site.pool, None, vdirs, site.allow_modules)}
        for j, a in enumerate(site.applications):
            path = a.path.rstrip("/") or "/"
            if path in apps and path != "/":
                raise self._server_error(
                    f"two applications at {path!r}", f"sites[{index}].applications[{j}].path"
                )
            python = PythonApp(a.app, a.interface, a.factory, a.app_dir) if a.app else None
            default_root = site.root if path == "/" else os.path.join(site.root, path.strip("/"))
            apps[path] = _AppSpec(
                path, a.root or default_root, a.pool or site.pool, python, vdirs, a.allow_modules
            )
        return apps

    def _locations(self, site: str) -> list[tuple[int, str, Raw]]:
        """``(index, URL path, section tables)`` of the ``[[locations]]`` for ``site``."""
        out = []
        for i, loc in enumerate(self.config.locations):
            path = str(loc["path"])
            if not path.startswith("/"):
                name, _, rest = path.partition("/")
                if name != site:
                    continue
                path = "/" + rest
            path = path.rstrip("/") or "/"
            out.append((i, path, {k: v for k, v in loc.items() if k != "path"}))
        return out

    def _levels(self, site: str, dirs: Iterable[DirConfig]) -> tuple[Level, ...]:
        ordered: list[tuple[int, int, int, Level]] = [
            (0, 0, 0, Level("/", dict(self.config.sections), self.source))
        ]
        for i, path, raw in self._locations(site):
            source = f"{self.source}: locations[{i}]"
            ordered.append((path.count("/") if path != "/" else 0, 1, i, Level(path, raw, source)))
        for i, d in enumerate(dirs):
            depth = d.path.count("/") if d.path != "/" else 0
            ordered.append((depth, 2, i, Level(d.path, d.sections, d.file)))
        ordered.sort(key=lambda row: row[:3])
        return tuple(row[3] for row in ordered)

    # -- applications -----------------------------------------------------------------

    def _module_ids(self, root_dir: DirConfig | None) -> list[str]:
        ids: list[str] = list(self.server_ids)
        if root_dir is not None and root_dir.modules:
            target: Raw = {}
            merge_into(target, {"modules": root_dir.modules}, defaults={"modules": ids})
            ids = target["modules"]
        # Declared application modules join the application, after the server's.
        return self.app_modules.module_ids(ids, root_dir)

    def _rules(
        self, by_id: dict[str, Module], mappings: Sequence[tuple[HandlerMapping, Any]]
    ) -> list[Rule]:
        rules = []
        for mapping, error in mappings:
            handler = by_id.get(mapping.handler)
            if not isinstance(handler, Handler):
                what = "not an enabled handler" if handler is None else "not a handler"
                raise error(f"{mapping.handler!r} is {what}")
            rules.append(compile_rule(mapping.path, mapping.verbs, handler, mapping.resource_type))
        return rules

    def _mappings(self, root_dir: DirConfig | None) -> list[tuple[HandlerMapping, Any]]:
        out: list[tuple[HandlerMapping, Any]] = []
        if root_dir is not None:
            for i, raw in enumerate(root_dir.handlers):
                key = f"handlers[{i}]"
                try:
                    mapping = msgspec.convert(raw, HandlerMapping, strict=True)
                except msgspec.ValidationError as exc:
                    from colonnade.config.sections import _split_validation

                    message, sub = _split_validation(str(exc), key)
                    raise self._dir_error(root_dir, message, sub) from None
                out.append(
                    (mapping, lambda m, d=root_dir, k=key: self._dir_error(d, m, k + ".handler"))
                )
        for i, mapping in enumerate(self.config.handlers):
            out.append((mapping, lambda m, k=f"handlers[{i}].handler": self._server_error(m, k)))
        return out

    def _runtime(
        self, app: Application, root_dir: DirConfig | None, dirs: Sequence[DirConfig]
    ) -> AppRuntime:

        ids = self._module_ids(root_dir)
        mappings = self._mappings(root_dir)
        fingerprint = msgspec.json.encode(
            [
                ids,
                [msgspec.to_builtins(m) for m, _ in mappings],
                app.python,
                app.root,
                app.virtual_directories,
                [vdir.path for _, vdir in self._vdirs_inside(app)],
                [(lvl.path, lvl.raw, lvl.source) for lvl in app.levels],
                root_dir.app_modules if root_dir is not None else None,
                root_dir.asgi_middleware if root_dir is not None else None,
                self.app_modules.fingerprint(app.site, app.path),
            ]
        )
        old = self.previous.get((app.site, app.path))
        if old is not None and old.fingerprint == fingerprint:
            self.reused.append(old)
            return old
        modules = [self._module_class(module_id)() for module_id in ids]
        by_id = {m.id: m for m in modules}
        if app.python is not None:
            # A hosted Python app answers everything but the paths a mapping sends
            # elsewhere explicitly: a catch-all "*" mapping (the default one to
            # handler.static too) never applies to it, so it is not checked either.
            mappings = [(m, error) for m, error in mappings if m.path != "*"]
        rules = self._rules(by_id, mappings)
        if app.python is not None:
            app_handler = self._python_handler(app)
            listed = by_id.get(app_handler.id)
            if isinstance(listed, Handler):
                app_handler = listed  # the module list's instance: the one provisioned
            else:
                modules.append(app_handler)
                by_id[app_handler.id] = app_handler
            rules.extend(self._static_vdir_rules(app, by_id, rules))
            rules.append(compile_rule("*", ["*"], app_handler))
        self.app_modules.attach(app.site, app.path, modules)
        self._check_effective(app, modules, dirs)
        runtime = make_runtime(app, HandlerMap(rules), tuple(modules), fingerprint)
        self.fresh.append(runtime)
        return runtime

    def _vdirs_inside(self, app: Application) -> list[tuple[str, VirtualDirectory]]:
        """The virtual directories strictly inside ``app``'s URL space, with their keys.

        A virtual directory inside a deeper application belongs to that one: its
        requests never reach ``app``.
        """
        found: list[tuple[str, VirtualDirectory]] = []
        for i, site in enumerate(self.config.sites):
            if site.name != app.site:
                continue
            others = [a.path.rstrip("/") or "/" for a in site.applications]
            for j, v in enumerate(site.virtual_directories):
                path = v.path.rstrip("/") or "/"
                if path == app.path or not covers(app.path, path):
                    continue
                if any(len(o) > len(app.path) and covers(o, path) for o in others):
                    continue
                key = f"sites[{i}].virtual_directories[{j}].path"
                found.append((key, VirtualDirectory(path, v.root)))
        return found

    def _static_vdir_rules(
        self, app: Application, by_id: dict[str, Module], explicit: Sequence[Rule]
    ) -> list[Rule]:
        """``handler.static`` for the virtual directories inside a Python application.

        As in IIS, a virtual directory's content is static files unless a handler
        mapping says otherwise: these rules come after the explicit mappings (which
        win, being matched first) and before the application's catch-all. Where
        ``handler.static`` is not enabled, a virtual directory that no explicit
        mapping covers whole is an error, rather than the application answering for
        its files in silence.
        """
        rules: list[Rule] = []
        static = by_id.get("handler.static")
        for key, vdir in self._vdirs_inside(app):
            if not isinstance(static, Handler):
                if any(_covers_whole(rule, vdir.path) for rule in explicit):
                    continue
                raise self._server_error(
                    f"the virtual directory {vdir.path} lies inside the Python application "
                    f"at {app.path} and is served by handler.static, which is not enabled "
                    "there: add handler.static to server.modules, or map the path to a "
                    "handler with [[handlers]]",
                    key,
                )
            literal = _fnmatch_literal(vdir.path)
            rules.append(compile_rule(literal, ["*"], static))
            rules.append(compile_rule(literal + "/*", ["*"], static))
        return rules

    def _python_handler(self, app: Application) -> Handler:
        python = app.python
        assert python is not None
        interface = python.interface
        if interface == "auto":
            try:
                obj = load_app(python.target, app_dir=python.app_dir, factory=python.factory)
            except ConfigError as exc:
                if self.config.lines is None:  # the APP of the command line: no file
                    raise
                raise self._server_error(exc.message, self._app_key(app)) from exc
            interface = detect_interface(obj)
        handler_id = f"handler.{interface}"
        handler = self.registry.load(handler_id)()
        if not isinstance(handler, Handler):
            raise ModuleError(handler_id, "is not a handler")
        return handler

    def _app_key(self, app: Application) -> str:
        """The dotted key of ``app``'s ``app`` setting in the server file."""
        for i, site in enumerate(self.config.sites):
            if site.name != app.site:
                continue
            for j, spec in enumerate(site.applications):
                if (spec.path.rstrip("/") or "/") == app.path:
                    return f"sites[{i}].applications[{j}].app"
        return "app"

    def _check_effective(
        self, app: Application, modules: Sequence[Module], dirs: Sequence[DirConfig]
    ) -> None:
        # Decode every section the app's modules read, at every level's path, so
        # a combination that is wrong fails at load, naming the file that set it.
        types = [m.section for m in modules if m.section is not None]
        lines = {d.file: d.lines for d in dirs}
        paths = {lvl.path for lvl in app.levels if covers(app.path, lvl.path)} | {app.path}
        for path in sorted(paths):
            found = app.sections_for(path)
            for section in types:
                try:
                    found.get(section)
                except ConfigError as exc:
                    origin = found.origins.get(exc.key, self.source).split(": locations[")[0]
                    index = lines.get(origin)
                    if origin == self.source:
                        raise self._server_error(exc.message, exc.key) from None
                    line = index.line_for(exc.key) if index else None
                    raise ConfigError(exc.message, file=origin, line=line, key=exc.key) from None


class _AppSpec:
    __slots__ = ("allow_modules", "path", "pool", "python", "root", "vdirs")

    def __init__(
        self,
        path: str,
        root: str,
        pool: str,
        python: PythonApp | None,
        vdirs: tuple[VirtualDirectory, ...],
        allow_modules: bool = False,
    ) -> None:
        self.path = path
        self.root = root
        self.pool = pool
        self.allow_modules = allow_modules
        self.python = python
        self.vdirs = vdirs


def _without_ops(raw: Any) -> Any:
    # Collection operations are checked when merged; here only plain values.
    from colonnade.config.sections import is_collection_ops

    if isinstance(raw, dict):
        return {k: _without_ops(v) for k, v in raw.items() if not is_collection_ops(v)}
    return raw


def _dotted_keys(prefix: str, raw: Any) -> list[str]:
    if isinstance(raw, dict) and raw:
        out = [prefix]
        for key, value in raw.items():
            out.extend(_dotted_keys(f"{prefix}.{key}", value))
        return out
    return [prefix]


def _added_modules(d: DirConfig) -> list[str]:
    added = (d.modules or {}).get("add", [])
    return [m for m in added if isinstance(m, str)]


def _fnmatch_literal(path: str) -> str:
    # A virtual directory's path as a mapping pattern that matches it literally.
    return re.sub(r"([*?[])", r"[\1]", path)


def _covers_whole(rule: Rule, path: str) -> bool:
    """True if ``rule`` takes every verb of every URL below ``path`` (``path/...``)."""
    pattern = rule.pattern
    if rule.verbs is not None or not pattern.startswith("/") or not pattern.endswith("*"):
        return False
    stem = pattern[:-1]
    return not any(c in stem for c in "*?[") and (path + "/").startswith(stem)
