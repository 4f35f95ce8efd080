"""The engine: sites, applications and their compiled plans; ``Engine.handle``.

``Engine`` and ``AppRuntime`` are imported on first use (PEP 562), so a process
that needs only a light part of the engine (``engine.sites``: bindings and
routing, which the master uses) does not import the whole engine with it.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonnade.engine.engine import Engine
    from colonnade.engine.runtime import AppRuntime

__all__ = ["AppRuntime", "Engine"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from colonnade.engine import engine

        return engine.Engine
    if name == "AppRuntime":
        from colonnade.engine import runtime

        return runtime.AppRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
