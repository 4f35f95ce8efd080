"""Colonnade: a modular web server and Python application server.

This package exports the module-author API only; everything else lives in
documented subpackages (``colonnade.testing`` for tests of modules).

The names are imported on first use (PEP 562): every ``import colonnade.x`` runs
this file first, and the processes that never touch the module API (the master,
``colonnade --version``, the control commands) should not pay for loading it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonnade.config.sections import Section, Where
    from colonnade.core.app import Application
    from colonnade.core.context import Context
    from colonnade.core.handler import Handler
    from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
    from colonnade.core.principal import Principal
    from colonnade.core.request import Request
    from colonnade.core.response import FileBody, Response
    from colonnade.core.stages import Stage
    from colonnade.errors import ConfigError, HttpError, ModuleError
    from colonnade.management.embed import Server, run

__version__ = "0.1.0"

#: Where each exported name lives.
_EXPORTS = {
    "CONTINUE": "colonnade.core.module",
    "FINISH": "colonnade.core.module",
    "Application": "colonnade.core.app",
    "ConfigError": "colonnade.errors",
    "Context": "colonnade.core.context",
    "FileBody": "colonnade.core.response",
    "Handler": "colonnade.core.handler",
    "HttpError": "colonnade.errors",
    "Module": "colonnade.core.module",
    "ModuleError": "colonnade.errors",
    "Outcome": "colonnade.core.module",
    "Principal": "colonnade.core.principal",
    "Priority": "colonnade.core.module",
    "Request": "colonnade.core.request",
    "Response": "colonnade.core.response",
    "Section": "colonnade.config.sections",
    "Stage": "colonnade.core.stages",
    "Where": "colonnade.config.sections",
    "hook": "colonnade.core.module",
    # Not the module API: the uvicorn-like entry points (``colonnade.run(app)``).
    "run": "colonnade.management.embed",
    "Server": "colonnade.management.embed",
}

__all__ = [
    "CONTINUE",
    "FINISH",
    "Application",
    "ConfigError",
    "Context",
    "FileBody",
    "Handler",
    "HttpError",
    "Module",
    "ModuleError",
    "Outcome",
    "Principal",
    "Priority",
    "Request",
    "Response",
    "Section",
    "Server",
    "Stage",
    "Where",
    "hook",
    "run",
]


def __getattr__(name: str) -> Any:
    """Import an exported name where it lives, the first time it is asked for."""
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'colonnade' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
