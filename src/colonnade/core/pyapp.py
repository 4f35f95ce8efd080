"""Finding a Python application object (``pkg.module:attr``) and its interface."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import traceback
from typing import Any, Literal

from colonnade.errors import ConfigError

Interface = Literal["asgi", "wsgi"]

log = logging.getLogger("colonnade.app")
_warned: set[str] = set()  # factories already reported (the builder and the handler load)


def _trace(exc: BaseException) -> str:
    """The traceback of ``exc`` as Python prints it, without the import machinery's
    frames: what the developer needs to find the broken line of the app."""
    shown = traceback.TracebackException.from_exception(exc)
    machinery = (__file__, importlib.__file__ or "", "<frozen importlib")
    shown.stack = traceback.StackSummary.from_list(
        [f for f in shown.stack if not f.filename.startswith(machinery)]
    )
    return "".join(shown.format()).rstrip("\n")


def _is_factory(obj: Any) -> bool:
    """True for a callable that takes no argument but cannot take a WSGI call's two
    nor an ASGI call's three: ``create_app()`` rather than an application."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin or a C callable: not a factory of ours
        return False

    def takes(*args: None) -> bool:
        try:
            signature.bind(*args)
        except TypeError:
            return False
        return True

    return takes() and not takes(None, None) and not takes(None, None, None)


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
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}\n{_trace(exc)}",
            key="app",
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr!r}", key="app"
            ) from None
    if not factory and _is_factory(obj):
        # As uvicorn does: served as it is, every request would fail (a factory
        # called with the server's arguments); call it, and say so.
        if target not in _warned:
            _warned.add(target)
            log.warning(
                "%s takes no arguments: calling it as an application factory "
                "(say so with --factory, or factory = true in the configuration)",
                target,
            )
        factory = True
    if factory:
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError(
                f"the factory {target!r} failed: {type(exc).__name__}: {exc}\n{_trace(exc)}",
                key="app",
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
