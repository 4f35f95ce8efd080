"""Application modules and ASGI middleware: what an application's ``web.toml`` adds.

The ``[application_modules]`` table at an application's root declares module
classes shipped in its folder and ASGI middleware (shipped, or a framework's),
where the server configuration allows it (``allow_modules``). This file checks
and imports those declarations for one configuration generation, adds them to
the application's module list, and hands the middleware, innermost first, to the
module registered as ``asgi.middleware``, which it knows only by that id and the
:class:`MiddlewareHost` methods.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from colonnade.config.tree import DirConfig, MiddlewareDecl
from colonnade.core.module import Module
from colonnade.errors import ConfigError, ModuleError
from colonnade.integration.loader import load_local_class, load_local_object, source_digest

#: The module that runs declared ASGI middleware around an application's handlers.
ASGI_MIDDLEWARE = "asgi.middleware"

#: Makes the error for a key of a web.toml: (file's config, message, dotted key).
DirError = Callable[[DirConfig, str, str], ConfigError]


@runtime_checkable
class MiddlewareHost(Protocol):
    """What the ``asgi.middleware`` module offers the builder."""

    def wrap(self, name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
        """Put ``factory(app, **options)`` around the chain built so far."""

    def bind(self, modules: Sequence[Module]) -> None:
        """Learn the application's modules (the hosted app's handler among them)."""


class _Layer(NamedTuple):
    decl: MiddlewareDecl
    factory: Callable[..., Any]
    dir: DirConfig


class AppModules:
    """The application modules and middleware of one configuration generation.

    ``installed`` holds the installed module ids (an application may not reuse
    one); ``error`` makes the error for a web.toml key; ``server_file`` is named
    where the server configuration must allow application modules.
    """

    def __init__(self, installed: Container[str], error: DirError, server_file: str) -> None:
        self.installed = installed
        self.error = error
        self.server_file = server_file
        #: Application module classes, by id.
        self.local: dict[str, type[Module]] = {}
        #: Declared ASGI middleware per (site, application path), outermost first.
        self.middleware: dict[tuple[str, str], list[_Layer]] = {}
        #: Files imported per (site, application path): a change rebuilds the app.
        self.sources: dict[tuple[str, str], list[str]] = {}

    def _taken(self, module_id: str) -> bool:
        return module_id in self.installed or module_id in self.local

    def declare(self, d: DirConfig, root: str | None, allowed: bool) -> list[str]:
        """Import what web.toml ``d`` declares for the application rooted at ``root``
        (None: ``d`` is at no application's root). Returns the new module ids."""
        first = next(iter(d.app_modules), None) or d.asgi_middleware[0].id
        if root is None:
            raise self.error(
                d,
                "application modules are declared at an application's root",
                f"application_modules.{first}",
            )
        if not allowed:
            raise self.error(
                d,
                f"application modules are not allowed here: the server configuration "
                f"({self.server_file}) must set allow_modules = true for this application",
                "application_modules",
            )
        sources = self.sources.setdefault((d.site, d.path), [])
        added = []
        for module_id, target in d.app_modules.items():
            key = f"application_modules.{module_id}"
            if self._taken(module_id):
                raise self.error(d, f"the id {module_id!r} is taken", key)
            try:
                self.local[module_id] = load_local_class(root, target, module_id, sources)
            except ModuleError as exc:
                raise self.error(d, exc.message, key) from None
            added.append(module_id)
        layers = []
        for decl in d.asgi_middleware:
            if self._taken(decl.id):
                raise self.error(d, f"the id {decl.id!r} is taken", decl.key)
            if ASGI_MIDDLEWARE not in self.installed:
                raise self.error(
                    d,
                    f"ASGI middleware needs the module {ASGI_MIDDLEWARE!r}, not installed",
                    decl.key,
                )
            try:
                factory = load_local_object(root, decl.target, decl.id, sources)
            except ModuleError as exc:
                raise self.error(d, exc.message, decl.key + ".asgi_middleware") from None
            if not callable(factory):
                raise self.error(
                    d,
                    f"{decl.target!r} is not callable (a middleware class or factory is)",
                    decl.key + ".asgi_middleware",
                )
            layers.append(_Layer(decl, factory, d))
        if layers:
            self.middleware[(d.site, d.path)] = layers
        return added

    @staticmethod
    def module_ids(ids: list[str], root_dir: DirConfig | None) -> list[str]:
        """The application's module list: the server's (``ids``), then what its root
        web.toml declares; ``asgi.middleware`` joins when middleware is declared."""
        if root_dir is None:
            return ids
        ids = ids + [m for m in root_dir.app_modules if m not in ids]
        if root_dir.asgi_middleware and ASGI_MIDDLEWARE not in ids:
            ids.append(ASGI_MIDDLEWARE)
        return ids

    def fingerprint(self, site: str, path: str) -> list[tuple[str, str]]:
        """The imported files of an application with their digests."""
        return [(f, source_digest(f)) for f in self.sources.get((site, path), ())]

    def attach(self, site: str, path: str, modules: Sequence[Module]) -> None:
        """Build the application's middleware chain, innermost first."""
        layers = self.middleware.get((site, path))
        if not layers:
            return
        host = next((m for m in modules if m.id == ASGI_MIDDLEWARE), None)
        if not isinstance(host, MiddlewareHost):
            raise self.error(
                layers[0].dir,
                f"the module {ASGI_MIDDLEWARE!r} cannot run ASGI middleware",
                layers[0].decl.key,
            )
        for decl, factory, d in reversed(layers):
            try:
                host.wrap(decl.id, factory, dict(decl.options))
            except Exception as exc:
                key = decl.key + ".options" if decl.options else decl.key
                raise self.error(
                    d, f"{decl.target} refused its options: {type(exc).__name__}: {exc}", key
                ) from None
        host.bind(modules)
