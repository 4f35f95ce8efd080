"""Read a server config file into a :class:`ServerConfig`, strictly."""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec

from colonnade.config.keys import did_you_mean
from colonnade.config.schema import PoolConfig, ServerConfig, SiteConfig
from colonnade.config.sections import _split_validation
from colonnade.config.toml_lines import KeyLines
from colonnade.config.tree import read_toml
from colonnade.errors import ConfigError

_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OWN_KEYS = {"server", "pools", "sites", "handlers", "locations", "lock"}


def load_file(path: str) -> ServerConfig:
    """Parse and decode ``path``; relative roots are taken from its folder."""
    path = os.path.abspath(path)
    data, lines = read_toml(path)
    return from_dict(data, source=path, base_dir=os.path.dirname(path), lines=lines)


def from_dict(
    data: dict[str, Any], *, source: str, base_dir: str, lines: KeyLines | None = None
) -> ServerConfig:
    """Decode a parsed TOML document; module sections are kept raw for the engine."""
    try:
        config = _decode(data, source, base_dir)
    except ConfigError as exc:
        raise locate(exc, source, lines) from None
    config.lines = lines
    return config


def locate(exc: ConfigError, source: str, lines: KeyLines | None) -> ConfigError:
    """Fill in the file and line of an error about a key of ``source``."""
    if exc.file is None:
        exc.file = source
    if exc.line is None and lines is not None and exc.file == source and exc.key:
        exc.line = lines.line_for(exc.key)
    return ConfigError(exc.message, file=exc.file, line=exc.line, key=exc.key)


def _decode(data: dict[str, Any], source: str, base_dir: str) -> ServerConfig:
    own = {k: v for k, v in data.items() if k in _OWN_KEYS}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in _OWN_KEYS:
            continue
        if not isinstance(value, dict):
            raise ConfigError("a module section must be a table", key=key)
        sections[key] = value
    pools = own.get("pools")
    if isinstance(pools, dict):
        for name, table in pools.items():
            _check_pool(name, table)
    try:
        config = msgspec.convert(own, ServerConfig, strict=True)
    except msgspec.ValidationError as exc:
        message, key = _split_validation(str(exc), "")
        raise ConfigError(message, key=key.lstrip(".")) from None
    # The pool "default" serves every site and application that names none; it
    # stays there when the file declares other pools (IIS's DefaultAppPool).
    config.pools.setdefault("default", PoolConfig())
    for i, loc in enumerate(config.locations):
        if not isinstance(loc.get("path"), str):
            raise ConfigError("a location needs a path", key=f"locations[{i}].path")
    config.sections = sections
    config.source = source
    config.base_dir = base_dir
    config.sites = [_absolute(site, base_dir) for site in config.sites]
    for name, pool in config.pools.items():
        pool.writable = [os.path.normpath(os.path.join(base_dir, p)) for p in pool.writable]
        for i, folder in enumerate(pool.writable):
            if not os.path.isdir(folder):
                raise ConfigError(f"no such folder: {folder}", key=f"pools.{name}.writable[{i}]")
    _check_references(config)
    return config


def _check_pool(name: str, table: Any) -> None:
    # Each pool on its own, so that an error names ``pools.NAME.key``: for the
    # entries of a table msgspec says only ``pools[...]``.
    if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
        raise ConfigError(
            "a pool name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
            key=f"pools.{name}",
        )
    env = table.get("env") if isinstance(table, dict) else None
    for var, value in env.items() if isinstance(env, dict) else ():
        if not _ENV_NAME.fullmatch(var):
            raise ConfigError(
                "not a valid environment variable name", key=f"pools.{name}.env.{var}"
            )
        if not isinstance(value, str):
            raise ConfigError(
                f"Expected `str`, got `{type(value).__name__}`", key=f"pools.{name}.env.{var}"
            )
    try:
        msgspec.convert(table, PoolConfig, strict=True)
    except msgspec.ValidationError as exc:
        message, key = _split_validation(str(exc), f"pools.{name}")
        raise ConfigError(message, key=key) from None


def _absolute(site: SiteConfig, base_dir: str) -> SiteConfig:
    site.root = os.path.normpath(os.path.join(base_dir, site.root))
    for app in site.applications:
        if app.root is not None:
            app.root = os.path.normpath(os.path.join(base_dir, app.root))
        if app.app_dir is not None:
            app.app_dir = os.path.normpath(os.path.join(base_dir, app.app_dir))
    for vdir in site.virtual_directories:
        vdir.root = os.path.normpath(os.path.join(base_dir, vdir.root))
    return site


def _check_references(config: ServerConfig) -> None:
    names: set[str] = set()
    for i, site in enumerate(config.sites):
        if site.name in names:
            raise ConfigError(f"two sites named {site.name!r}", key=f"sites[{i}].name")
        names.add(site.name)
        if site.pool not in config.pools:
            raise ConfigError(
                f"no pool named {site.pool!r}{did_you_mean(site.pool, config.pools)}",
                key=f"sites[{i}].pool",
            )
        for j, app in enumerate(site.applications):
            if app.pool is not None and app.pool not in config.pools:
                raise ConfigError(
                    f"no pool named {app.pool!r}{did_you_mean(app.pool, config.pools)}",
                    key=f"sites[{i}].applications[{j}].pool",
                )


def embedded_default(root: str, bindings: list[str]) -> ServerConfig:
    """The configuration used when no file is given: one site serving ``root``."""
    config = ServerConfig()
    config.sites = [SiteConfig(name="default", bindings=bindings, root=os.path.abspath(root))]
    config.base_dir = os.path.abspath(root)
    return config
