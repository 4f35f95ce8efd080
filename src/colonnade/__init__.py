"""Colonnade: a modular web server and Python application server.

This package exports the module-author API only; everything else lives in
documented subpackages (``colonnade.testing`` for tests of modules).
"""

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

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``colonnade.run`` and ``colonnade.Server``, imported at first use: ``import
    colonnade`` (a module author's import) loads no engine, transport or pools."""
    if name in ("run", "Server"):
        from colonnade.management import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'colonnade' has no attribute {name!r}")


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
    "Stage",
    "Where",
    "hook",
]
