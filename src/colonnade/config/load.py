"""Read a server config file into a :class:`ServerConfig`, strictly."""

from __future__ import annotations

import os
import tomllib
from typing import Any

import msgspec

from colonnade.config.schema import ServerConfig, SiteConfig
from colonnade.config.sections import _split_validation
from colonnade.errors import ConfigError

_OWN_KEYS = {"server", "pools", "sites", "handlers", "locations"}


def load_file(path: str) -> ServerConfig:
    """Parse and decode ``path``; relative roots are taken from its folder."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("no such file", file=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=path) from None
    return from_dict(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def from_dict(data: dict[str, Any], *, source: str, base_dir: str) -> ServerConfig:
    """Decode a parsed TOML document; module sections are kept raw for the engine."""
    own = {k: v for k, v in data.items() if k in _OWN_KEYS}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in _OWN_KEYS:
            continue
        if not isinstance(value, dict):
            raise ConfigError("a module section must be a table", file=source, key=key)
        sections[key] = value
    try:
        config = msgspec.convert(own, ServerConfig, strict=True)
    except msgspec.ValidationError as exc:
        message, key = _split_validation(str(exc), "")
        raise ConfigError(message, file=source, key=key.lstrip(".")) from None
    for i, loc in enumerate(config.locations):
        if not isinstance(loc.get("path"), str):
            raise ConfigError("a location needs a path", file=source, key=f"locations[{i}].path")
    config.sections = sections
    config.source = source
    config.sites = [_absolute(site, base_dir) for site in config.sites]
    _check_references(config)
    return config


def _absolute(site: SiteConfig, base_dir: str) -> SiteConfig:
    site.root = os.path.normpath(os.path.join(base_dir, site.root))
    for app in site.applications:
        if app.root is not None:
            app.root = os.path.normpath(os.path.join(base_dir, app.root))
    for vdir in site.virtual_directories:
        vdir.root = os.path.normpath(os.path.join(base_dir, vdir.root))
    return site


def _check_references(config: ServerConfig) -> None:
    names: set[str] = set()
    for i, site in enumerate(config.sites):
        if site.name in names:
            raise ConfigError(
                f"two sites named {site.name!r}", file=config.source, key=f"sites[{i}].name"
            )
        names.add(site.name)
        if site.pool not in config.pools:
            raise ConfigError(
                f"no pool named {site.pool!r}", file=config.source, key=f"sites[{i}].pool"
            )
        for j, app in enumerate(site.applications):
            if app.pool is not None and app.pool not in config.pools:
                raise ConfigError(
                    f"no pool named {app.pool!r}",
                    file=config.source,
                    key=f"sites[{i}].applications[{j}].pool",
                )


def embedded_default(root: str, bindings: list[str]) -> ServerConfig:
    """The configuration used when no file is given: one site serving ``root``."""
    config = ServerConfig()
    config.sites = [SiteConfig(name="default", bindings=bindings, root=os.path.abspath(root))]
    return config
