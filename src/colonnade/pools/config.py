"""What the master and its workers derive from the server configuration.

- :class:`ConfigSource`: how to load the configuration; the master reads the
  server file once and sends its text to every worker, so a worker serves exactly
  what the master validated (and never needs to read the file itself).
- :func:`pool_view`: the configuration one pool's worker builds its engine from.
  Sites the pool serves nothing of become stand-ins (their bindings and host
  names, for routing, but no content), and in the sites it does serve, other
  pools' Python applications are dropped: a worker imports only its own pool's
  code, under its own pool's identity and sandbox.
- :func:`fingerprint`: what a pool's workers depend on; a reload recycles a pool
  only when it changed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from colonnade.config.load import embedded_default, from_dict
from colonnade.config.schema import (
    STAND_IN_ROOT,
    ApplicationConfig,
    PoolConfig,
    ServerConfig,
    SiteConfig,
    VirtualDirectoryConfig,
)
from colonnade.config.tree import parse_toml
from colonnade.errors import ConfigError, ModuleError, each_error

#: The content root of a stand-in site: a path that never exists.
NOWHERE = STAND_IN_ROOT


class ConfigSource(msgspec.Struct, kw_only=True, frozen=True):
    """How to get the server configuration, the same way in the master and its workers.

    ``file`` with ``text``: that file's content as the master read it. Without a
    file: the embedded default serving ``root`` on ``bindings``.
    """

    file: str | None = None
    text: str | None = None
    root: str | None = None
    bindings: list[str] = msgspec.field(default_factory=list)
    no_access_log: bool = False
    default_workers: int | None = None  # --workers N: the count of the pool "default"
    default_start: str | None = None  # --start-workers: the pool "default" starts "always"
    control_socket: str | None = None  # --control SOCKET: the master's control socket
    # `colonnade serve pkg.module:app`: a Python application mounted at "/".
    app: str | None = None
    interface: str = "auto"
    factory: bool = False
    app_dir: str | None = None
    # `--static URL=DIR`: virtual directories of the embedded default's site.
    static: list[tuple[str, str]] = msgspec.field(default_factory=list)
    # `colonnade serve --timeout-keep-alive 5` and the like: dotted config keys set on
    # top of the file (management/serve_options.py: the command line and environment
    # win over the file).
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)

    def read(self) -> ConfigSource:
        """A copy holding the server file's current text (what workers will be sent)."""
        if self.file is None:
            return self
        path = os.path.abspath(self.file)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ConfigError("no such file", file=path) from None
        except OSError as exc:
            raise ConfigError(f"cannot be read: {exc.strerror}", file=path) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", file=path) from None
        return msgspec.structs.replace(self, file=path, text=text)

    def load(self) -> ServerConfig:
        """Decode the configuration strictly (reading the file if no text is held)."""
        source = self if self.file is None or self.text is not None else self.read()
        if source.file is not None and source.text is not None:
            data, lines = parse_toml(source.text.encode("utf-8"), source.file)
            config = from_dict(
                data, source=source.file, base_dir=os.path.dirname(source.file), lines=lines
            )
        else:
            root = self.root or os.getcwd()
            config = embedded_default(root, self.bindings or ["http://127.0.0.1:8080"])
            if self.app is not None:
                config.sites[0].applications.append(
                    msgspec.convert(
                        {
                            "path": "/",
                            "app": self.app,
                            "interface": self.interface,
                            "factory": self.factory,
                            "app_dir": self.app_dir,
                        },
                        ApplicationConfig,
                    )
                )
            config.sites[0].virtual_directories.extend(
                VirtualDirectoryConfig(path=path, root=root) for path, root in self.static
            )
        if self.no_access_log:
            config.server.modules = [m for m in config.server.modules if m != "log.http"]
        if self.control_socket is not None:
            config.server.control_socket = self.control_socket
        if self.default_workers is not None:
            pool = config.pools.get("default")
            config.pools["default"] = msgspec.structs.replace(
                pool or PoolConfig(), workers=self.default_workers
            )
        if self.default_start is not None:
            pool = config.pools.get("default")
            config.pools["default"] = msgspec.structs.replace(
                pool or PoolConfig(), start=self.default_start
            )
        return apply_keys(config, self.overrides) if self.overrides else config


def apply_keys(config: ServerConfig, keys: Mapping[str, Any]) -> ServerConfig:
    """``config`` with each dotted key (``server.timeouts.keep_alive``,
    ``pools.NAME.recycling.requests``, ``sections.NAME.KEY``; ``server.modules+``
    lists modules to enable) set, checked as the file's values are: a value
    out of range is a ConfigError naming the key."""
    for dotted, value in keys.items():
        parts = dotted.split(".")
        if dotted == "server.modules+":  # modules to enable (kept in order, once)
            added = [m for m in value if m not in config.server.modules]
            modules = [*config.server.modules, *added]
            config.server = msgspec.structs.replace(config.server, modules=modules)
        elif parts[0] == "sections":  # a module's section: checked by the engine
            config.sections.setdefault(parts[1], {})[parts[2]] = value
        elif parts[0] == "pools":
            pool = config.pools.get(parts[1]) or PoolConfig()
            config.pools[parts[1]] = _set_key(pool, parts[2:], value, dotted)
        else:
            config = _set_key(config, parts, value, dotted)
    return config


def _set_key(struct: Any, parts: Sequence[str], value: Any, dotted: str) -> Any:
    if len(parts) == 1:
        changed = msgspec.structs.replace(struct, **{parts[0]: value})
        try:
            # Decoding the changed table checks the field's type and range (Meta).
            return msgspec.convert(msgspec.to_builtins(changed), type(changed))
        except msgspec.ValidationError as exc:
            raise ConfigError(str(exc), key=dotted) from None
    inner = _set_key(getattr(struct, parts[0]), parts[1:], value, dotted)
    return msgspec.structs.replace(struct, **{parts[0]: inner})


def app_pool(site: SiteConfig, app: ApplicationConfig) -> str:
    """The pool serving ``app`` of ``site``."""
    return app.pool or site.pool


def site_pools(site: SiteConfig) -> dict[str, str]:
    """Application path → pool, for every application of ``site`` (``/`` included)."""
    found = {"/": site.pool}
    for app in site.applications:
        found[app.path.rstrip("/") or "/"] = app_pool(site, app)
    return found


def used_pools(config: ServerConfig) -> set[str]:
    """Pools some application is served by."""
    return {pool for site in config.sites for pool in site_pools(site).values()}


def _strip(app: ApplicationConfig) -> ApplicationConfig:
    if app.app is None:
        return app
    return msgspec.structs.replace(app, app=None, factory=False, app_dir=None, interface="auto")


def pool_view(config: ServerConfig, pool: str) -> ServerConfig:
    """The configuration a worker of ``pool`` builds its engine from.

    Positions are kept (a site that becomes a stand-in stays at its index), so
    error messages name the same keys as the server file.
    """
    sites: list[SiteConfig] = []
    for site in config.sites:
        if pool not in site_pools(site).values():
            sites.append(
                SiteConfig(
                    name=site.name,
                    bindings=site.bindings,
                    root=NOWHERE,
                    pool=site.pool,
                    host_names=site.host_names,
                )
            )
            continue
        apps = [a if app_pool(site, a) == pool else _strip(a) for a in site.applications]
        sites.append(msgspec.structs.replace(site, applications=apps))
    return msgspec.structs.replace(config, sites=sites)


def without_python_apps(config: ServerConfig) -> ServerConfig:
    """The whole configuration minus Python applications: what the master checks.

    The master never imports application code (it runs as root, they may not).
    """
    sites = [
        msgspec.structs.replace(site, applications=[_strip(a) for a in site.applications])
        for site in config.sites
    ]
    return msgspec.structs.replace(config, sites=sites)


def content_folders(view: ServerConfig) -> list[str]:
    """The folders a worker built from ``view`` reads: content roots and app folders."""
    found: list[str] = []
    for site in view.sites:
        if site.root == NOWHERE:
            continue
        found.append(site.root)
        for app in site.applications:
            if app.root is not None:
                found.append(app.root)
            if app.app_dir is not None:
                found.append(app.app_dir)
        found.extend(v.root for v in site.virtual_directories)
    return sorted(set(found))


def tls_folders(view: ServerConfig) -> list[str]:
    """The folders of the certificates, keys, passphrase files and certificate stores
    a worker built from ``view`` reads (its sandbox lets it)."""
    found: set[str] = set()
    levels = [view.server.tls, *(s.tls for s in view.sites if s.root != NOWHERE and s.tls)]
    for files in levels:
        if files is None:
            continue
        for path in (
            files.certificate,
            files.key,
            files.passphrase_file,
            files.client_ca,
            files.client_crl,
        ):
            if path is not None:
                found.add(os.path.dirname(path))
        if files.certificate_store is not None:
            found.add(files.certificate_store)
    return sorted(found)


def fingerprint(config: ServerConfig, pool: str) -> bytes:
    """Everything a worker of ``pool`` is built from (not the master-side settings).

    The pool's own supervision settings (workers, pings, recycling, rapid-fail,
    queue) are applied by the master without a recycle.
    """
    settings = config.pools[pool]
    parts: list[Any] = [
        config.server,
        config.sites,
        config.handlers,
        config.locations,
        config.lock,
        config.sections,
        # The tables that reach applications (Application.redis, .farms): a
        # worker holds the server file's text from its start, so a change there
        # reaches the pool through a recycle.
        config.redis,
        config.farms,
        settings.user,
        settings.group,
        settings.env,
        settings.limits,
        settings.sandbox,
    ]
    return msgspec.json.encode(msgspec.to_builtins(parts))


def worker_count(settings: PoolConfig) -> int:
    """Workers of a pool: ``workers``, or one per CPU for 0."""
    return settings.workers or os.cpu_count() or 1


def log_refused(logger: logging.Logger, reason: str, exc: ConfigError | ModuleError) -> None:
    """Log a refused reload: one line per mistake, each naming file, line and key."""
    for error in each_error(exc) if isinstance(exc, ConfigError) else [exc]:
        logger.error(
            "reload (%s) refused, still serving the previous configuration: %s", reason, error
        )
