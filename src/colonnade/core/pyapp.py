"""Finding a Python application object (``pkg.module:attr``) and its interface."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any, Literal

from colonnade.errors import ConfigError

Interface = Literal["asgi", "wsgi"]


def load_app(target: str, *, app_dir: str | None = None, factory: bool = False) -> Any:
    """Import ``pkg.module:attr`` (``attr`` may be dotted); call it if ``factory``.

    Any failure is a ``ConfigError`` naming the target and the cause, so a server
    whose application cannot be imported refuses to start with a clear message.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{target!r} is not of the form 'pkg.module:attribute'", key="app")
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}", key="app"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr!r}", key="app"
            ) from None
    if factory:
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError(
                f"the factory {target!r} failed: {type(exc).__name__}: {exc}", key="app"
            ) from exc
    if not callable(obj):
        raise ConfigError(f"{target!r} is not callable", key="app")
    return obj


def detect_interface(app: Any) -> Interface:
    """ASGI 3 if the callable is a coroutine function (or has an async ``__call__``)."""
    if inspect.iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)  # noqa: B004 - the bound method is what we inspect
    if call is not None and inspect.iscoroutinefunction(call):
        return "asgi"
    return "wsgi"
