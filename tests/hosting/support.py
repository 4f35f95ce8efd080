"""Helpers for tests that host Python applications: configs, engines, live servers."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from colonnade.core.module import Module
from colonnade.engine import Engine
from colonnade.handlers.asgi.handler import AsgiHandler
from colonnade.handlers.wsgi.handler import WsgiHandler
from colonnade.modules.standard import BUILTIN
from colonnade.testing import Client, build_engine
from tests.e2e import conftest as e2e
from tests.e2e.conftest import LiveServer

# The Python handlers are registered by the built-in list; until they are, the
# tests register them themselves.
_BUILTIN_IDS = {module_id for module_id, *_ in BUILTIN}
EXTRA: list[type[Module]] = [c for c in (AsgiHandler, WsgiHandler) if c.id not in _BUILTIN_IDS]


def site_config(
    app: str | None = None,
    *,
    path: str = "/",
    modules: list[str] | None = None,
    handlers: list[dict[str, Any]] | None = None,
    sections: dict[str, Any] | None = None,
    root: str | None = None,
    **application: Any,
) -> dict[str, Any]:
    """One site with the Python application ``app`` mounted at ``path``."""
    modules = list(modules or [])
    handlers = list(handlers or [])
    for key in ("asgi", "wsgi"):
        if key in (sections or {}):
            # A section is accepted only for an enabled module, so the handler is
            # listed; the explicit mapping makes the listed (provisioned) instance
            # the one that answers.
            modules.append(f"handler.{key}")
            handlers.append({"path": "/*", "handler": f"handler.{key}"})
    site: dict[str, Any] = {"name": "s", "bindings": ["http://127.0.0.1:8080"]}
    if root is not None:
        site["root"] = root
    if app is not None:
        site["applications"] = [{"path": path, "app": app, **application}]
    return {
        "server": {"modules": modules},
        "handlers": handlers,
        "sites": [site],
        **(sections or {}),
    }


def engine(config: dict[str, Any], base_dir: str | None = None) -> Engine:
    """An engine for ``config`` with the Python handlers registered."""
    return build_engine(config, modules=EXTRA, base_dir=base_dir)


def client(app: str, **kw: Any) -> Client:
    """An in-process client for ``app`` (use it as a context manager)."""
    return Client(engine(site_config(app, **kw)))


@contextlib.contextmanager
def live(config: dict[str, Any], root: Path) -> Iterator[LiveServer]:
    """A real server (uvloop, real sockets) on an ephemeral port, for ``config``."""
    with mock.patch.object(e2e, "build_engine", functools.partial(build_engine, modules=EXTRA)):
        server = LiveServer(config, root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
