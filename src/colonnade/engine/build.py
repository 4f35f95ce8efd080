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

import contextlib
import functools
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec

from colonnade.config.keys import check_dotted_key, did_you_mean
from colonnade.config.load import locate
from colonnade.config.schema import (
    DEFAULT_HANDLERS,
    STAND_IN_ROOT,
    ApplicationConfig,
    HandlerMapping,
    ServerConfig,
    SiteConfig,
    VirtualDirectoryConfig,
)
from colonnade.config.sections import (
    Raw,
    Section,
    SettingError,
    Where,
    merge_into,
    section_defaults,
)
from colonnade.config.toml_lines import KeyLines
from colonnade.config.tree import BrokenDir, DirConfig, discover
from colonnade.config.validation import convert
from colonnade.core.app import Application, Level, PythonApp, VirtualDirectory
from colonnade.core.handler import Handler
from colonnade.core.module import Module
from colonnade.core.pyapp import detect_interface, load_app
from colonnade.core.registry import Registry
from colonnade.core.urlpath import covers
from colonnade.engine.mapping import HandlerMap, Origin, Rule, compile_rule
from colonnade.engine.runtime import AppRuntime, make_runtime
from colonnade.engine.sites import Site, parse_binding
from colonnade.errors import ConfigError, ModuleError, combined, each_error
from colonnade.integration.appmodules import AppModules

#: The handlers of hosted Python applications: one joins an application that
#: hosts one, whether the module list names it or not.
PYTHON_HANDLERS = ("handler.asgi", "handler.wsgi")


def lock_for(lock: Mapping[str, str], section: type[Section] | None, dotted: str) -> str | None:
    """The entry of the server file's ``[lock]`` that denies a ``web.toml``
    overriding ``dotted`` (a section or a key in it), or the section's name when
    the section is locked by default (``Section.locked``); None when it may be set."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        mode = lock.get(key)
        if mode is not None:
            return key if mode == "deny" else None
    if section is not None and section.locked:
        return parts[0]
    return None


class Builder:
    """Turns a :class:`ServerConfig` into sites of application runtimes.

    Errors are collected, not raised one by one: ``errors`` refuse the
    generation (the engine raises them all at once), ``broken`` are the
    ``web.toml`` files confined to their URL subtrees (see :class:`Level`).
    Where a later check depends on an earlier one (the module list before the
    sections it enables), the builder stops at the earlier one instead.
    """

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
        self.errors: list[ConfigError] = []
        self.broken: list[BrokenDir] = []
        # (location index or None for the server level, section): tables that are
        # wrong on their own; they are reported once and not merged anywhere.
        self._bad_tables: set[tuple[int | None, str]] = set()
        # The handler mappings of each location ([[locations.handlers]]), decoded.
        self._location_handlers: dict[int, list[HandlerMapping]] = {}
        self._lines: dict[str, KeyLines] = {}  # web.toml files and their key lines
        # Application modules and middleware of this generation, from the apps' folders.
        self.app_modules = AppModules(registry, self._dir_error, self.source)
        self.server_ids = self._check_module_list(config.server.modules)
        if self.errors:  # every other check depends on the module list
            raise combined(self.errors)
        self.sections: dict[str, type[Section]] = {}
        for module_id in self.server_ids:
            self._learn_sections(module_id)
        # A hosted Python app brings its handler even where the module list does
        # not name it, so the handlers' sections ([asgi], [wsgi]) are always known
        # (their section types only: the handlers stay unimported). Not only where
        # this view of the configuration hosts an app: the master checks the
        # configuration without its apps, and a pool's worker sees only its own
        # pool's, yet a server-level [asgi] (serve --root-path) applies to them all.
        for module_id in PYTHON_HANDLERS:
            if module_id in registry:
                self._learn_sections(module_id)
        self.reused: list[AppRuntime] = []
        self.fresh: list[AppRuntime] = []

    @property
    def key_lines(self) -> dict[str, KeyLines]:
        """The ``web.toml`` files read, and the line index of each."""
        return self._lines

    # -- errors -----------------------------------------------------------------------

    def _server_error(self, message: str, key: str) -> ConfigError:
        return locate(ConfigError(message, key=key), self.source, self.config.lines)

    @staticmethod
    def _dir_error(d: DirConfig, message: str, key: str) -> ConfigError:
        return ConfigError(message, file=d.file, line=d.lines.line_for(key), key=key)

    def _located(self, exc: ConfigError) -> list[ConfigError]:
        """The errors in ``exc``, each with its file and the line of its key."""
        out = []
        for error in each_error(exc):
            lines = self._lines.get(error.file or "")
            if error.file is None and self.config.lines is None:
                pass  # the command line's configuration: no file to name
            elif error.file in (None, self.source):
                error = locate(error, self.source, self.config.lines)
            elif error.line is None and lines is not None and error.key:
                error = ConfigError(
                    error.message, file=error.file, line=lines.line_for(error.key), key=error.key
                )
            out.append(error)
        return out

    def _fail(self, exc: ConfigError) -> None:
        """Record ``exc``: it refuses the generation."""
        self.errors.extend(self._located(exc))

    def _break(self, d: BrokenDir) -> None:
        """Record a ``web.toml`` that cannot be used: its subtree answers 500.19."""
        self.broken.append(d._replace(error=combined(self._located(d.error))))

    # -- modules and sections -----------------------------------------------------------

    def _check_module_list(self, ids: Sequence[str]) -> list[str]:
        seen: set[str] = set()
        found = []
        for i, module_id in enumerate(ids):
            key = f"server.modules[{i}]"
            if module_id in seen:
                self._fail(self._server_error(f"module {module_id!r} is listed twice", key))
                continue
            seen.add(module_id)
            if module_id not in self.registry:
                hint = did_you_mean(module_id, self.registry.ids())
                self._fail(
                    self._server_error(f"no module named {module_id!r} is installed{hint}", key)
                )
                continue
            self.registry.load(module_id)
            found.append(module_id)
        return found

    def _module_class(self, module_id: str) -> type[Module]:
        local = self.app_modules.local.get(module_id)
        return local if local is not None else self.registry.load(module_id)

    def _section_of(self, module_id: str) -> type[Section] | None:
        """The section ``module_id`` reads; a built-in that names its section (the
        Python handlers) stays unimported until an application uses it."""
        local = self.app_modules.local.get(module_id)
        return local.section if local is not None else self.registry.section(module_id)

    def _learn_sections(self, module_id: str) -> None:
        section = self._section_of(module_id)
        if section is not None:
            self.sections[section.key] = section

    def defaults(self) -> dict[str, Raw]:
        """Each known section's defaults, the base of collection operations."""
        return {key: section_defaults(cls) for key, cls in self.sections.items()}

    def _unknown_section(self, name: str) -> str:
        """Why no enabled module reads section ``name``, and what was probably meant."""
        for module_id in self.registry.ids():
            if module_id in self.server_ids:
                continue
            try:  # only on this error's path: modules that are not enabled stay unloaded
                section = self.registry.load(module_id).section
            except ModuleError:
                continue
            if section is not None and section.key == name:
                return (
                    f"no enabled module owns this section: it belongs to {module_id!r}, "
                    "which is not in server.modules"
                )
        return f"no enabled module owns this section{did_you_mean(name, self.sections)}"

    # -- the server file ------------------------------------------------------------

    def check_server_levels(self) -> None:
        """Module sections, locations and locks of the server file."""
        for key, raw in self.config.sections.items():
            errors = self._check_table(key, raw, key, self._server_error)
            if errors:
                self._bad_tables.add((None, key))
            else:
                errors = self._check_where(
                    key, raw, Where.SERVER, "at the server level", self._server_error
                )
            self.errors.extend(errors)
        names = [site.name for site in self.config.sites]
        for i, loc in enumerate(self.config.locations):
            path = str(loc["path"])
            site = path.partition("/")[0]
            if site and site not in names:
                self._fail(
                    self._server_error(
                        f"no site named {site!r}{did_you_mean(site, names)}: a location's "
                        "path is /URL (every site) or SITE/URL",
                        f"locations[{i}].path",
                    )
                )
            for key, raw in loc.items():
                if key == "path":
                    continue
                if key == "handlers":
                    self._location_handlers[i] = self._decode_location_handlers(i, raw)
                    continue
                errors = self._check_table(key, raw, f"locations[{i}].{key}", self._server_error)
                if errors:
                    self._bad_tables.add((i, key))
                self.errors.extend(errors)
        for key in self.config.lock:
            name, _, rest = key.partition(".")
            section = self.sections.get(name)
            if section is None:
                self._fail(self._server_error(self._unknown_section(name), f"lock.{key}"))
                continue
            # A misspelt key would lock nothing, in silence: a security setting
            # that does nothing. Only keys the section has may be locked.
            why = check_dotted_key(section, rest) if rest else None
            if why is not None:
                self._fail(self._server_error(f"{name}: {why}", f"lock.{key}"))

    def _decode_location_handlers(self, index: int, raw: Any) -> list[HandlerMapping]:
        """``[[locations.handlers]]`` of ``locations[index]``; mistakes are recorded."""
        key = f"locations[{index}].handlers"
        if not isinstance(raw, list):
            self._fail(self._server_error("[[locations.handlers]] is an array of tables", key))
            return []
        found = []
        for k, item in enumerate(raw):
            try:
                found.append(convert(item, HandlerMapping, prefix=f"{key}[{k}]"))
            except ConfigError as exc:
                self._fail(exc)
        return found

    def _check_table(self, key: str, raw: Any, where: str, error: Any) -> list[ConfigError]:
        section = self.sections.get(key)
        if section is None:
            return [error(self._unknown_section(key), where)]
        if not isinstance(raw, dict):
            return [error("a module section must be a table", where)]
        try:
            convert(_without_ops(raw), section, prefix=where)
        except ConfigError as exc:
            return [error(e.message, e.key) for e in each_error(exc)]
        return []

    def _check_where(
        self, key: str, raw: Any, level: Where, place: str, error: Any, prefix: str = ""
    ) -> list[ConfigError]:
        """A key of section ``key`` set at a ``level`` its section does not allow."""
        section = self.sections[key]
        found = []
        for dotted in _outermost(
            _dotted_keys(key, raw), lambda k: level not in section.where_allowed(k[len(key) + 1 :])
        ):
            allowed = section.where_allowed(dotted[len(key) + 1 :])
            found.append(
                error(f"may be set {allowed.describe()} only, not {place}", prefix + dotted)
            )
        return found

    def _check_locations(self, site: str, app_paths: set[str]) -> None:
        """Where the ``[[locations]]`` for ``site`` set what they set."""
        for i, path, raw in self._locations(site):
            at_root = path in app_paths
            if self._location_handlers.get(i) and not at_root:
                self._fail(
                    self._server_error(
                        "handlers can change only at an application's root, not below one "
                        f"(site {site}, {path})",
                        f"locations[{i}].handlers",
                    )
                )
            level = Where.APPLICATION if at_root else Where.DIRECTORY
            how = "for" if at_root else "below"
            place = f"in a [[locations]] entry {how} an application's root (site {site}, {path})"
            for key, table in raw.items():
                self.errors.extend(
                    self._check_where(
                        key, table, level, place, self._server_error, f"locations[{i}]."
                    )
                )

    def check_sites(self) -> None:
        """What would leave part of a site empty or unreachable, without a word.

        Content folders that do not exist; two sites on one port that answer the
        same host names (the router takes the first, the second is never
        reached); a virtual directory at an application's own path (the
        application's root folder, or its Python app, and the folder cannot both
        serve it) or twice at one path.
        """
        on_port: dict[int, dict[int, SiteConfig]] = {}
        for i, site in enumerate(self.config.sites):
            if site.root != STAND_IN_ROOT:
                self._check_folder(site.root, f"sites[{i}].root")
            for j, app in enumerate(site.applications):
                if app.root is not None:
                    self._check_folder(app.root, f"sites[{i}].applications[{j}].root")
            self._check_vdirs(i, site)
            for text in site.bindings:
                try:
                    port = parse_binding(text).port
                except ConfigError:
                    continue  # reported where the site's bindings are built
                on_port.setdefault(port, {})[i] = site
        for port, sites in on_port.items():
            self._check_shared_port(port, sorted(sites.items()))

    def _check_folder(self, folder: str, key: str) -> None:
        try:
            info = os.stat(folder)
        except (FileNotFoundError, NotADirectoryError):
            self._fail(self._server_error(f"no such folder: {folder}", key))
            return
        except OSError:
            # Not this process's to look at (another pool's folder, seen from a
            # worker): whether each pool's user reaches its own is the preflight's.
            return
        if not stat.S_ISDIR(info.st_mode):
            self._fail(self._server_error(f"not a folder: {folder}", key))

    def _check_vdirs(self, index: int, site: SiteConfig) -> None:
        apps = {"/": f"sites[{index}]"}
        for j, app in enumerate(site.applications):
            apps.setdefault(app.path.rstrip("/") or "/", f"sites[{index}].applications[{j}]")
        seen: dict[str, str] = {}
        for j, vdir in enumerate(site.virtual_directories):
            key = f"sites[{index}].virtual_directories[{j}]"
            self._check_folder(vdir.root, f"{key}.root")
            path = vdir.path.rstrip("/") or "/"
            if path in seen:
                message = (
                    f"a second virtual directory at {path} (the first: {seen[path]}) never serves"
                )
            elif path == "/":
                message = (
                    "a virtual directory at / would replace the site's root: "
                    "set the site's root instead"
                )
            elif path in apps:
                message = (
                    f"{path} is also the path of the application {apps[path]}: its root folder "
                    "(or its Python app) and this folder cannot both serve it; mount the "
                    f"folder inside the application (such as {path}/static), or make it the "
                    "application's root"
                )
            else:
                seen[path] = key
                continue
            seen.setdefault(path, key)
            self._fail(self._server_error(message, f"{key}.path"))

    def _check_shared_port(self, port: int, sites: list[tuple[int, SiteConfig]]) -> None:
        for n, (i, first) in enumerate(sites):
            names = {h.lower() for h in first.host_names}
            for j, second in sites[n + 1 :]:
                if not first.host_names and not second.host_names:
                    self._fail(
                        self._server_error(
                            f"site {second.name!r} is never reached on port {port}: site "
                            f"{first.name!r} (sites[{i}]) answers every host name there too; "
                            "give one of them host_names",
                            f"sites[{j}].host_names",
                        )
                    )
                    continue
                for k, host in enumerate(second.host_names):
                    if host.lower() in names:
                        self._fail(
                            self._server_error(
                                f"{host!r} on port {port} is a host name of site "
                                f"{first.name!r} (sites[{i}]) too: its requests never reach "
                                f"site {second.name!r}",
                                f"sites[{j}].host_names[{k}]",
                            )
                        )

    # -- web.toml -------------------------------------------------------------------

    def _locked(self, dotted: str) -> str | None:
        """The lock entry that denies overriding ``dotted`` (section or key), if any."""
        return lock_for(self.config.lock, self.sections.get(dotted.split(".")[0]), dotted)

    def check_dir(self, d: DirConfig, app_paths: set[str]) -> list[ConfigError]:
        """One web.toml's mistakes: unknown sections, bad values, settings out of their
        place, locked settings, module changes below an application's root."""
        at_root = d.path in app_paths
        level = Where.APPLICATION if at_root else Where.DIRECTORY
        place = "in the web.toml at an application's root" if at_root else "in a folder's web.toml"
        error = functools.partial(self._dir_error, d)
        found: list[ConfigError] = []
        for key, raw in d.sections.items():
            errors = self._check_table(key, raw, key, error)
            if not errors:
                errors = self._check_where(key, raw, level, place, error)
            found.extend(errors)
            if errors:
                continue
            for dotted in _outermost(_dotted_keys(key, raw), lambda k: self._locked(k) is not None):
                lock = self._locked(dotted)
                where = self.config.lines.line_for(f"lock.{lock}") if self.config.lines else None
                at = f"{self.source}:{where}" if where else self.source
                found.append(
                    error(f"locked by the server configuration ({at}: lock.{lock})", dotted)
                )
        if (d.modules or d.handlers) and d.path not in app_paths:
            key = "modules" if d.modules else "handlers"
            found.append(
                error("modules and handlers can change only at an application's root", key)
            )
        return found

    def _root_dir_errors(self, d: DirConfig, spec: _AppSpec) -> list[ConfigError]:
        """The module list and handler mappings of an application's root web.toml."""
        error = functools.partial(self._dir_error, d)
        try:
            ids = self._module_ids(d)
        except ConfigError as exc:
            return [error(exc.message, exc.key or "modules")]
        found: list[ConfigError] = []
        for i, raw in enumerate(d.handlers):
            key = f"handlers[{i}]"
            try:
                mapping = convert(raw, HandlerMapping, prefix=key)
            except ConfigError as exc:
                found.extend(error(e.message, e.key) for e in each_error(exc))
                continue
            if spec.python is not None and (
                mapping.path == "*" or mapping.handler in PYTHON_HANDLERS
            ):
                continue  # a Python app's catch-all: never applies (see _runtime)
            module = self._module_class(mapping.handler)() if mapping.handler in ids else None
            if not isinstance(module, Handler):
                found.append(error(_not_a_handler(mapping.handler, module), f"{key}.handler"))
        return found

    # -- sites ----------------------------------------------------------------------

    def build_site(self, index: int) -> Site:
        """Everything of ``sites[index]``; its errors are recorded, not raised."""
        site = self.config.sites[index]
        bindings = []
        for j, text in enumerate(site.bindings):
            try:
                bindings.append(
                    parse_binding(text, file=self.source, key=f"sites[{index}].bindings[{j}]")
                )
            except ConfigError as exc:
                self._fail(exc)
        apps = self._applications(site, index)
        roots = [
            ("/", site.root),
            *((a.path, a.root) for a in apps.values() if a.path != "/"),
            *((v.path, v.root) for v in site.virtual_directories),
        ]
        dirs, unreadable = discover(site.name, roots)
        self._lines.update((d.file, d.lines) for d in dirs)
        for broken in unreadable:
            self._break(broken)
        failed: set[str] = set()
        for d in dirs:
            if d.app_modules or d.asgi_middleware:
                # Code the application ships: a failure refuses the generation (on
                # a reload the previous one keeps serving), and the rest is built
                # without that web.toml only to find the other mistakes.
                spec = apps.get(d.path)
                root = spec.root if spec is not None else None
                allowed = spec is not None and spec.allow_modules
                try:
                    for module_id in self.app_modules.declare(d, root, allowed):
                        self._learn_sections(module_id)
                except ConfigError as exc:
                    self._fail(exc)
                    failed.add(d.file)
        dirs = [d for d in dirs if d.file not in failed]
        problems: dict[int, list[ConfigError]] = {}
        for n, d in enumerate(dirs):
            for k, module_id in enumerate(_added_modules(d)):
                if module_id in self.app_modules.local:
                    continue
                if module_id not in self.registry:
                    hint = did_you_mean(module_id, self.registry.ids())
                    problems.setdefault(n, []).append(
                        self._dir_error(
                            d,
                            f"no module named {module_id!r} is installed{hint}",
                            f"modules.add[{k}]",
                        )
                    )
                    continue
                self._learn_sections(module_id)
        healthy = []
        for n, d in enumerate(dirs):
            found = problems.get(n, []) + self.check_dir(d, set(apps))
            spec = apps.get(d.path)
            if not found and spec is not None:
                found = self._root_dir_errors(d, spec)
            if found:
                self._break(BrokenDir(site.name, d.path, d.file, combined(found)))
            else:
                healthy.append(d)
        self._check_locations(site.name, set(apps))
        runtimes = []
        for app, root_dir in self._settle(site.name, apps, healthy):
            try:
                runtimes.append(self._runtime(app, root_dir))
            except ConfigError as exc:
                self._fail(exc)
        return Site(site.name, bindings, site.host_names, runtimes)

    def _settle(
        self, site: str, apps: dict[str, _AppSpec], dirs: list[DirConfig]
    ) -> list[tuple[Application, DirConfig | None]]:
        """The site's applications over their levels, with the effective settings of
        every level's path decoded once, so that a bad combination fails now.

        A ``web.toml`` whose settings are wrong only merged with its parents (a
        collection operation on a single setting, say) is broken too: the levels
        are made again without it. Errors of the server file refuse the generation
        and leave their application out.
        """
        while True:
            levels = self._levels(site, dirs)
            defaults = self.defaults()
            made = []
            fatal: list[ConfigError] = []
            confined: dict[str, list[ConfigError]] = {}
            for path, spec in apps.items():
                root_dir = next((d for d in dirs if d.path == path), None)
                try:
                    app = Application(
                        site=site,
                        path=path,
                        root=spec.root,
                        levels=levels,
                        defaults=defaults,
                        virtual_directories=spec.vdirs,
                        pool=spec.pool,
                        python=spec.python,
                        https_port=self._https_port(site),
                        redis=self.config.redis,
                        farms=self.config.farms,
                    )
                    errors = self._effective_errors(app, self._section_types(root_dir, spec))
                except ConfigError as exc:
                    errors = self._located(exc)
                for error in errors:
                    if error.file in self._lines and error.file != self.source:
                        confined.setdefault(error.file or "", []).append(error)
                    else:
                        fatal.append(error)
                if not errors:
                    made.append((app, root_dir))
            culprits = [d for d in dirs if d.file in confined]
            if not culprits:
                # Settled; errors of a file no level of this site holds (none are
                # expected) refuse the generation rather than loop.
                self.errors.extend(fatal + [e for found in confined.values() for e in found])
                return made
            for d in culprits:
                self._break(BrokenDir(site, d.path, d.file, combined(confined[d.file])))
            dirs[:] = [d for d in dirs if d.file not in confined]

    def _applications(self, site: SiteConfig, index: int) -> dict[str, _AppSpec]:
        vdirs = tuple(
            VirtualDirectory(v.path.rstrip("/") or "/", v.root) for v in site.virtual_directories
        )
        apps = {"/": _AppSpec("/", site.root, site.pool, None, vdirs, site.allow_modules)}
        for j, a in enumerate(site.applications):
            path = a.path.rstrip("/") or "/"
            if path in apps and path != "/":
                self._fail(
                    self._server_error(
                        f"two applications at {path!r}", f"sites[{index}].applications[{j}].path"
                    )
                )
                continue
            python = PythonApp(a.app, a.interface, a.factory, a.app_dir) if a.app else None
            default_root = site.root if path == "/" else os.path.join(site.root, path.strip("/"))
            apps[path] = _AppSpec(
                path, a.root or default_root, a.pool or site.pool, python, vdirs, a.allow_modules
            )
        return apps

    def _locations(self, site: str) -> list[tuple[int, str, Raw]]:
        """``(index, URL path, section tables)`` of the ``[[locations]]`` for ``site``
        (tables that are wrong on their own left out)."""
        out = []
        for i, loc in enumerate(self.config.locations):
            path = str(loc["path"])
            if not path.startswith("/"):
                name, _, rest = path.partition("/")
                if name != site:
                    continue
                path = "/" + rest
            path = path.rstrip("/") or "/"
            tables = {
                k: v
                for k, v in loc.items()
                if k not in ("path", "handlers") and (i, k) not in self._bad_tables
            }
            out.append((i, path, tables))
        return out

    def _levels(self, site: str, dirs: Iterable[DirConfig]) -> tuple[Level, ...]:
        server = {
            k: v for k, v in self.config.sections.items() if (None, k) not in self._bad_tables
        }
        ordered: list[tuple[int, int, int, Level]] = [(0, 0, 0, Level("/", server, self.source))]
        for i, path, raw in self._locations(site):
            source = f"{self.source}: locations[{i}]"
            ordered.append((_depth(path), 1, i, Level(path, raw, source)))
        for i, d in enumerate(dirs):
            ordered.append((_depth(d.path), 2, i, Level(d.path, d.sections, d.file)))
        for i, b in enumerate(self.broken):
            if b.site == site:
                ordered.append((_depth(b.path), 3, i, Level(b.path, {}, b.file, b.error)))
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
        self, by_id: dict[str, Module], mappings: Sequence[tuple[HandlerMapping, Any, Origin]]
    ) -> list[Rule]:
        rules = []
        for mapping, error, origin in mappings:
            handler = by_id.get(mapping.handler)
            if not isinstance(handler, Handler):
                raise error(_not_a_handler(mapping.handler, handler))
            rules.append(
                compile_rule(
                    mapping.path,
                    mapping.verbs,
                    handler,
                    mapping.resource_type,
                    name=mapping.name,
                    origin=origin,
                )
            )
        return rules

    def _mappings(
        self, app: Application, root_dir: DirConfig | None
    ) -> list[tuple[HandlerMapping, Any, Origin]]:
        """The application's mappings in order, each with how to report its handler
        being wrong and where it came from: as the levels at its path come, deepest
        first (its root ``web.toml``, then the ``[[locations]]`` entries for its path,
        a later one before an earlier), then the server file's."""
        out: list[tuple[HandlerMapping, Any, Origin]] = []
        if root_dir is not None:
            for i, raw in enumerate(root_dir.handlers):
                key = f"handlers[{i}]"
                # Checked with the web.toml (_root_dir_errors): a broken one is no root_dir.
                mapping = convert(raw, HandlerMapping, prefix=key, file=root_dir.file)
                out.append(
                    (
                        mapping,
                        lambda m, d=root_dir, k=key: self._dir_error(d, m, k + ".handler"),
                        Origin("handlers", root_dir.file, key, root_dir.path),
                    )
                )
        for i, path, _ in reversed(self._locations(app.site)):
            if path != app.path:
                continue
            for k, mapping in enumerate(self._location_handlers.get(i, ())):
                key = f"locations[{i}].handlers[{k}]"
                origin = Origin("handlers", self.source, key, path)
                out.append(
                    (mapping, lambda m, k=key: self._server_error(m, k + ".handler"), origin)
                )
        for i, mapping in enumerate(self.config.handlers):
            # The schema's default list holds the very objects of DEFAULT_HANDLERS.
            default = any(mapping is d for d in DEFAULT_HANDLERS)
            key = f"handlers[{i}]"
            origin = Origin("default") if default else Origin("handlers", self.source, key)
            out.append((mapping, lambda m, k=key: self._server_error(m, k + ".handler"), origin))
        return out

    def _https_port(self, site: str) -> int | None:
        """The port of ``site``'s first https binding (bad bindings are reported elsewhere)."""
        for config in self.config.sites:
            if config.name == site:
                for text in config.bindings:
                    with contextlib.suppress(ConfigError):
                        binding = parse_binding(text)
                        if binding.scheme == "https":
                            return binding.port
        return None

    def _runtime(self, app: Application, root_dir: DirConfig | None) -> AppRuntime:
        ids = self._module_ids(root_dir)
        mappings = self._mappings(app, root_dir)
        fingerprint = msgspec.json.encode(
            [
                ids,
                [(msgspec.to_builtins(m), origin) for m, _, origin in mappings],
                app.python,
                app.root,
                app.https_port,
                app.redis,
                app.farms,
                app.virtual_directories,
                [vdir.path for _, vdir in self._vdirs_inside(app)],
                [(lvl.path, lvl.raw, lvl.source, str(lvl.broken or "")) for lvl in app.levels],
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
            mappings = [row for row in mappings if row[0].path != "*"]
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
            rules.append(
                compile_rule("*", ["*"], app_handler, origin=Origin("application", level=app.path))
            )
        self.app_modules.attach(app.site, app.path, modules)
        handlers = {m.id: m for m in modules if isinstance(m, Handler)}
        runtime = make_runtime(app, HandlerMap(rules, handlers), tuple(modules), fingerprint)
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
            origin = Origin("virtual_directory", level=vdir.path)
            rules.append(compile_rule(literal, ["*"], static, origin=origin))
            rules.append(compile_rule(literal + "/*", ["*"], static, origin=origin))
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
        key = site_entry_key(self.config, app.site, "applications", app.path)
        return "app" if key is None else f"{key}.app"

    def _section_types(self, root_dir: DirConfig | None, spec: _AppSpec) -> list[type[Section]]:
        """The sections an application's modules read (its Python handler's included)."""
        ids = self._module_ids(root_dir)
        if spec.python is not None:
            ids += [m for m in PYTHON_HANDLERS if m in self.registry and m not in ids]
        types = (self._section_of(module_id) for module_id in ids)
        return [t for t in types if t is not None]

    def _effective_errors(
        self, app: Application, types: Sequence[type[Section]]
    ) -> list[ConfigError]:
        # Decode every section the app's modules read, at every level's path, so
        # a combination that is wrong fails at load, naming the file that set it.
        found: list[ConfigError] = []
        without_redis: set[tuple[str, str]] = set()  # (file, key) choosing Redis, once each
        for path in app.level_paths():
            settings = app.sections_for(path)
            for section in types:
                try:
                    effective = settings.get(section)
                except ConfigError as exc:
                    for error in each_error(exc):
                        origin = _origin(settings.origins, error.key) or self.source
                        found.extend(self._located(_in_source(error.message, origin, error.key)))
                    continue
                if app.redis is None and (key := effective.redis_key()) is not None:
                    dotted = f"{section.key}.{key}"
                    origin = _origin(settings.origins, dotted) or self.source
                    if (origin, dotted) not in without_redis:
                        without_redis.add((origin, dotted))
                        found.extend(self._located(_in_source(_NEEDS_REDIS, origin, dotted)))
        if not found:
            found = self._level_errors(app, types)
        return found

    def _level_errors(self, app: Application, types: Sequence[type[Section]]) -> list[ConfigError]:
        # What only a level's settings beside the merged ones at its path can
        # tell (a name one level defines and another uses): Section.check_level.
        found: list[ConfigError] = []
        checking = [t for t in types if t.check_level is not Section.check_level]
        for level in app.levels if checking else ():
            for section in checking:
                table = level.raw.get(section.key)
                if level.broken is not None or not isinstance(table, dict):
                    continue
                own = convert(_without_ops(table), section)  # it was checked alone
                try:
                    own.check_level(app.sections_for(level.path).get(section))
                except SettingError as exc:
                    key = f"{section.key}.{exc.key}"
                    found.extend(self._located(_in_source(exc.message, level.source, key)))
        return found


#: A setting choosing Redis (``Section.redis_key``) without a ``[redis]`` table.
_NEEDS_REDIS = '"redis" needs a [redis] table in the server file (where Redis is)'


def site_entry_key(
    config: ServerConfig, site: str, kind: Literal["applications", "virtual_directories"], path: str
) -> str | None:
    """The dotted key of the application or virtual directory at URL ``path`` of
    ``site`` in the server file (``sites[0].applications[1]``), if it has one."""
    for i, spec in enumerate(config.sites):
        if spec.name != site:
            continue
        entries: Sequence[ApplicationConfig | VirtualDirectoryConfig] = getattr(spec, kind)
        for j, entry in enumerate(entries):
            if (entry.path.rstrip("/") or "/") == path:
                return f"sites[{i}].{kind}[{j}]"
    return None


def _in_source(message: str, source: str, key: str) -> ConfigError:
    """The error about ``key`` of a level whose source is ``source``: a file, or
    ``FILE: locations[i]`` (whose keys are below the entry's in the file)."""
    file, _, entry = source.rpartition(": ")
    if entry.startswith("locations["):
        return ConfigError(message, file=file, key=f"{entry}.{key}")
    return ConfigError(message, file=source, key=key)


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


def _origin(origins: dict[str, str], key: str) -> str | None:
    """The file that set ``key`` or the nearest setting enclosing it
    (``rewrite.rules[2].pattern`` → the file that set ``rewrite.rules``)."""
    while key:
        found = origins.get(key)
        if found is not None:
            return found
        key = key[: max(key.rfind("."), key.rfind("["), 0)]
    return None


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


def _outermost(keys: Iterable[str], wrong: Callable[[str], bool]) -> list[str]:
    """The ``wrong`` dotted keys, without those below one already found (the same
    mistake: a table set where it may not be is one error, not one per key)."""
    found: list[str] = []
    for key in keys:
        if any(key.startswith(f"{k}.") for k in found):
            continue
        if wrong(key):
            found.append(key)
    return found


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


def _depth(path: str) -> int:
    return path.count("/") if path != "/" else 0


def _not_a_handler(handler_id: str, found: Module | None) -> str:
    """Why a mapping's ``handler`` names no handler of the application."""
    return f"{handler_id!r} is {'not an enabled handler' if found is None else 'not a handler'}"
