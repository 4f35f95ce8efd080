"""Which pool serves a request: the route table of one configuration.

Apart from the worker's side of routing (``routing.py``: holding a head, handing
a connection over) so that the master, which needs only this, imports neither
the HTTP parser nor the engine until a port several pools share must route a
request by its head (:attr:`RouteTable.router`). See ``routing.py`` for how
routing works.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from colonnade.config.bindings import Binding, parse_binding
from colonnade.errors import ConfigError
from colonnade.pools.config import site_pools

if TYPE_CHECKING:
    from colonnade.config.schema import ServerConfig
    from colonnade.engine.sites import Router


class RouteTable:
    """Pools by port, Host and path, for one configuration."""

    def __init__(self, config: ServerConfig) -> None:
        #: Per site: its name, bindings, host names and {application path: pool}.
        self._sites: list[tuple[str, list[Binding], list[str], dict[str, str]]] = []
        self._router: Router | None = None
        self.listen: dict[tuple[str, int], Binding] = {}
        self._pools_on: dict[int, set[str]] = {}
        self._owner: dict[int, str] = {}
        #: Ports of https bindings: their connections are never read by the master
        #: nor moved between workers (the TLS session lives in the accepting one).
        self.tls_ports: set[int] = set()
        default_site: dict[int, _DefaultSite] = {}
        for i, site in enumerate(config.sites):
            bindings = [
                parse_binding(b, file=config.source, key=f"sites[{i}].bindings[{j}]")
                for j, b in enumerate(site.bindings)
            ]
            apps = site_pools(site)
            self._sites.append((site.name, bindings, list(site.host_names), apps))
            for b in bindings:
                self.listen.setdefault((b.host, b.port), b)
                if b.scheme == "https":
                    self.tls_ports.add(b.port)
                self._pools_on.setdefault(b.port, set()).update(apps.values())
                ref = _DefaultSite(apps["/"], bool(site.host_names))
                chosen = default_site.get(b.port)
                if chosen is None or (chosen.named and not ref.named):
                    default_site[b.port] = ref
        self._owner = {port: ref.root_pool for port, ref in default_site.items()}

    @property
    def router(self) -> Router:
        """The engine's ``Router`` over stand-in applications (no module, no file),
        made on the first ask: the master asks only for a port several pools share
        (:meth:`only_pool`), and building it imports the engine's runtime."""
        if self._router is None:
            from colonnade.core.app import Application
            from colonnade.engine.mapping import HandlerMap
            from colonnade.engine.runtime import make_runtime
            from colonnade.engine.sites import Router, Site

            self._router = Router(
                [
                    Site(
                        name,
                        bindings,
                        host_names,
                        [
                            make_runtime(
                                Application(site=name, path=path, root=os.sep, pool=pool),
                                HandlerMap(()),
                                (),
                            )
                            for path, pool in apps.items()
                        ],
                    )
                    for name, bindings, host_names, apps in self._sites
                ]
            )
        return self._router

    def only_pool(self, port: int) -> str | None:
        """The one pool every request on ``port`` belongs to (None: several, or the
        port is not served): routing a request there needs no look at its head."""
        pools = self._pools_on.get(port)
        return next(iter(pools)) if pools is not None and len(pools) == 1 else None

    def pool_for(self, port: int, host: str, path: str) -> str | None:
        """The pool serving ``path`` for ``Host: host`` on ``port``; None: no site (404)."""
        site = self.router.site_for(port, host)
        if site is None:
            return None
        runtime = site.app_for(path)
        return runtime.app.pool if runtime is not None else None

    def owner(self, port: int) -> str:
        """The pool whose workers accept connections on ``port``."""
        return self._owner[port]

    def serves_port(self, port: int) -> bool:
        """Whether some site listens on ``port``."""
        return port in self._owner

    def pools_on(self, port: int) -> set[str]:
        """Every pool a request arriving on ``port`` may belong to."""
        return self._pools_on.get(port, set())

    def check_tls_ports(self, config: ServerConfig) -> list[ConfigError]:
        """A site on an https port is served by one pool: its TLS connections are
        routed by SNI name, before the handshake, to the pool of the site that name
        belongs to, and cannot move after it (the session is in that worker)."""
        errors = []
        for i, site in enumerate(config.sites):
            pools = set(site_pools(site).values())
            if len(pools) < 2:
                continue
            for j, text in enumerate(site.bindings):
                if parse_binding(text).port not in self.tls_ports:
                    continue
                key = f"sites[{i}].bindings[{j}]"
                errors.append(
                    ConfigError(
                        f"site {site.name!r} has applications in the pools "
                        f"{', '.join(sorted(pools))}: a TLS connection is routed to a pool "
                        "by its SNI name, which names a site, and stays in that pool's "
                        "worker, so every application of a site on an https port must be in "
                        "one pool",
                        file=config.source,
                        line=config.lines.line_for(key) if config.lines else None,
                        key=key,
                    )
                )
                break
        return errors

    def tls_pool(self, port: int, name: str | None) -> str:
        """The pool for a TLS connection on ``port`` whose SNI name is ``name``: that
        of the site the name belongs to (as the ``Host`` would choose it), else the
        port's owner (no such site: its handshake is judged there)."""
        return self.pool_for(port, name or "", "/") or self.owner(port)

    def tls_mixed(self, port: int) -> bool:
        """Whether the sites of TLS ``port`` are served by more than one pool."""
        return port in self.tls_ports and len(self.pools_on(port)) > 1

    def needs_router(self, pool: str) -> bool:
        """Whether a worker of ``pool`` may receive requests for another pool."""
        return any(pool in pools and len(pools) > 1 for pools in self._pools_on.values())


class _DefaultSite(NamedTuple):
    """A site's root pool, and whether it is reached only by its host names."""

    root_pool: str
    named: bool
