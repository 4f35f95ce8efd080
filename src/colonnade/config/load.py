"""Read a server config file into a :class:`ServerConfig`, strictly."""

from __future__ import annotations

import os
from typing import Any

from colonnade.config.keys import did_you_mean
from colonnade.config.schema import CertificateFiles, PoolConfig, ServerConfig, SiteConfig
from colonnade.config.toml_lines import KeyLines
from colonnade.config.tree import read_toml
from colonnade.config.validation import convert, locate
from colonnade.errors import ConfigError, combined, each_error

__all__ = ["embedded_default", "from_dict", "load_file", "locate"]

_OWN_KEYS = {"server", "pools", "sites", "handlers", "locations", "lock", "redis", "farms"}


def load_file(path: str) -> ServerConfig:
    """Parse and decode ``path``; relative roots are taken from its folder."""
    path = os.path.abspath(path)
    data, lines = read_toml(path)
    return from_dict(data, source=path, base_dir=os.path.dirname(path), lines=lines)


def from_dict(
    data: dict[str, Any], *, source: str, base_dir: str, lines: KeyLines | None = None
) -> ServerConfig:
    """Decode a parsed TOML document; module sections are kept raw for the engine.

    Every independent mistake is reported at once (a :class:`ConfigErrors`), each
    with the file, line and key.
    """
    try:
        config = _decode(data, source, base_dir)
    except ConfigError as exc:
        located = each_error(locate(exc, source, lines))
        raise combined(sorted(located, key=lambda e: e.line or 0)) from None
    config.lines = lines
    return config


def _decode(data: dict[str, Any], source: str, base_dir: str) -> ServerConfig:
    errors: list[ConfigError] = []
    own = {k: v for k, v in data.items() if k in _OWN_KEYS}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in _OWN_KEYS:
            continue
        if not isinstance(value, dict):
            errors.append(ConfigError("a module section must be a table", key=key))
            continue
        sections[key] = value
    try:
        config = convert(own, ServerConfig)
    except ConfigError as exc:
        errors.extend(each_error(exc))
    if errors:
        raise combined(errors)
    # The pool "default" serves every site and application that names none; it
    # stays there when the file declares other pools (IIS's DefaultAppPool).
    config.pools.setdefault("default", PoolConfig())
    for i, loc in enumerate(config.locations):
        if not isinstance(loc.get("path"), str):
            errors.append(ConfigError("a location needs a path", key=f"locations[{i}].path"))
    config.sections = sections
    config.source = source
    config.base_dir = base_dir
    config.sites = [_absolute(site, base_dir) for site in config.sites]
    _absolute_files(config.server.tls, base_dir)
    if config.redis is not None:
        for name in ("password_file", "tls_ca", "tls_certificate", "tls_key"):
            value = getattr(config.redis, name)
            if value is not None:
                setattr(config.redis, name, os.path.normpath(os.path.join(base_dir, value)))
    for name, pool in config.pools.items():
        pool.writable = [os.path.normpath(os.path.join(base_dir, p)) for p in pool.writable]
        for i, folder in enumerate(pool.writable):
            if not os.path.isdir(folder):
                errors.append(
                    ConfigError(f"no such folder: {folder}", key=f"pools.{name}.writable[{i}]")
                )
    errors.extend(_check_references(config))
    if errors:
        raise combined(errors)
    return config


def _absolute(site: SiteConfig, base_dir: str) -> SiteConfig:
    site.root = os.path.normpath(os.path.join(base_dir, site.root))
    for app in site.applications:
        if app.root is not None:
            app.root = os.path.normpath(os.path.join(base_dir, app.root))
        if app.app_dir is not None:
            app.app_dir = os.path.normpath(os.path.join(base_dir, app.app_dir))
    for vdir in site.virtual_directories:
        vdir.root = os.path.normpath(os.path.join(base_dir, vdir.root))
    if site.tls is not None:
        _absolute_files(site.tls, base_dir)
    return site


def _absolute_files(files: CertificateFiles, base_dir: str) -> None:
    """Certificate, key, passphrase and store paths, taken from the server file's folder."""
    for name in (
        "certificate",
        "key",
        "passphrase_file",
        "certificate_store",
        "client_ca",
        "client_crl",
    ):
        value = getattr(files, name)
        if value is not None:
            setattr(files, name, os.path.normpath(os.path.join(base_dir, value)))


def _check_references(config: ServerConfig) -> list[ConfigError]:
    errors = []
    names: set[str] = set()
    for i, site in enumerate(config.sites):
        if site.name in names:
            errors.append(ConfigError(f"two sites named {site.name!r}", key=f"sites[{i}].name"))
        names.add(site.name)
        if site.pool not in config.pools:
            errors.append(
                ConfigError(
                    f"no pool named {site.pool!r}{did_you_mean(site.pool, config.pools)}",
                    key=f"sites[{i}].pool",
                )
            )
        for j, app in enumerate(site.applications):
            if app.pool is not None and app.pool not in config.pools:
                errors.append(
                    ConfigError(
                        f"no pool named {app.pool!r}{did_you_mean(app.pool, config.pools)}",
                        key=f"sites[{i}].applications[{j}].pool",
                    )
                )
    return errors


def embedded_default(root: str, bindings: list[str]) -> ServerConfig:
    """The configuration used when no file is given: one site serving ``root``."""
    config = ServerConfig()
    config.sites = [SiteConfig(name="default", bindings=bindings, root=os.path.abspath(root))]
    config.base_dir = os.path.abspath(root)
    return config
