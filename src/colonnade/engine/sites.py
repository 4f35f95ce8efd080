"""Sites, bindings and routing a request to its application."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

# Defined there for the master (which imports no compiled module); the engine's
# names for them stay these.
from colonnade.config.bindings import UNIX_PATH_MAX, UNIX_PORT, Binding, is_unix, parse_binding
from colonnade.core.urlpath import covers

if TYPE_CHECKING:
    from colonnade.engine.runtime import AppRuntime

__all__ = [
    "UNIX_PATH_MAX",
    "UNIX_PORT",
    "Binding",
    "Router",
    "Site",
    "is_unix",
    "parse_binding",
]


class Site:
    """A site: its bindings, host names and applications (longest path first)."""

    def __init__(
        self,
        name: str,
        bindings: Sequence[Binding],
        host_names: Sequence[str],
        apps: Sequence[AppRuntime],
    ) -> None:
        self.name = name
        self.bindings = tuple(bindings)
        self.host_names = frozenset(h.lower() for h in host_names)
        self.apps = tuple(sorted(apps, key=lambda a: len(a.app.path), reverse=True))
        self.root_app = next((a for a in self.apps if a.app.path == "/"), None)

    def app_for(self, path: str) -> AppRuntime | None:
        """The application whose path is the longest prefix of ``path``."""
        for runtime in self.apps:
            if covers(runtime.app.path, path):
                return runtime
        return None


class Router:
    """Chooses the site by the port the request arrived on and its Host header."""

    def __init__(self, sites: Sequence[Site]) -> None:
        self.sites = tuple(sites)
        self._by_port: dict[int, tuple[dict[str, Site], Site | None]] = {}
        for site in self.sites:
            for binding in site.bindings:
                named, default = self._by_port.get(binding.port, ({}, None))
                for host in site.host_names:
                    named.setdefault(host, site)
                if not site.host_names and default is None:
                    default = site
                self._by_port[binding.port] = (named, default)
        self._single = (
            self.sites[0] if len(self.sites) == 1 and not self.sites[0].host_names else None
        )
        #: The one application every request goes to (one site for every host name,
        #: one application, at ``/``), else None: the engine then routes each request.
        self.only: AppRuntime | None = None
        if self._single is not None and len(self._single.apps) == 1:
            only = self._single.apps[0]
            if only.app.path == "/":
                self.only = only

    def site_for(self, port: int, host: str) -> Site | None:
        """The site for a request on ``port`` with ``Host: host``."""
        if self._single is not None:
            return self._single
        entry = self._by_port.get(port)
        if entry is None:
            return None
        named, default = entry
        if named:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            site = named.get(name.lower())
            if site is not None:
                return site
        return default
