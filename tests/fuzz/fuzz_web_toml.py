"""A folder's ``web.toml`` (distributed configuration, IIS's ``web.config``): bytes →
TOML → the sections of every standard module, merged over the server's levels
and checked, as the engine builds the site.

The input is the bytes of ``www/docs/web.toml`` (read from memory, as the admin
API's writes are checked). Property: the engine builds; a ``web.toml`` it cannot
use makes its folder broken (500.19) with ``ConfigError`` s that name that file,
never another exception.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from colonnade.config.load import from_dict
from colonnade.config.tree import overlaid
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, each_error
from colonnade.modules.standard import BUILTIN

MODULES = [
    "security.request_filtering",
    "security.trusted_proxies",
    "security.ip",
    "auth.anonymous",
    "authz.url",
    "auth.basic",
    "auth.forms",
    "auth.jwt",
    "static.default_document",
    "static.directory_listing",
    "http.compression",
    "http.redirection",
    "http.hsts",
    "http.custom_headers",
    "http.custom_errors",
    "rewrite",
    "cache.output",
    "state.session",
    "log.http",
    "handler.static",
]
_BASE = tempfile.mkdtemp(prefix="colonnade-fuzz-webtoml-")
atexit.register(shutil.rmtree, _BASE, True)
(Path(_BASE) / "www" / "docs").mkdir(parents=True)
FILE = str(Path(_BASE) / "www" / "docs" / "web.toml")
_CONFIG = from_dict(
    {
        "server": {"modules": MODULES},
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": "www"}],
        "handlers": [{"path": "*", "handler": "handler.static"}],
    },
    source=str(Path(_BASE) / "colonnade.toml"),
    base_dir=_BASE,
)
_REGISTRY = Registry.standard(BUILTIN)


def one_input(data: bytes) -> None:
    """``data`` as the bytes of ``www/docs/web.toml``."""
    try:
        with overlaid({FILE: data}):
            engine = Engine(_CONFIG, _REGISTRY)
    except ConfigError as exc:
        raise AssertionError(f"a web.toml broke the whole server: {exc}") from exc
    try:
        for broken in engine.broken:
            for error in each_error(broken.error):
                assert error.file == FILE, f"an error that names another file: {error!r}"
    finally:
        engine.close()
