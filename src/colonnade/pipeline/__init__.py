"""Compile a plan per application; run it for one request.

The names below are imported on first use (PEP 562): ``pipeline.monitor``'s
message type is imported by the master, which never runs a plan.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonnade.pipeline.plan import BoundHook, Plan, Step, compile_plan
    from colonnade.pipeline.runner import Ended, Serve, Walk, compile_serve, compile_walk

__all__ = [
    "BoundHook",
    "Ended",
    "Plan",
    "Serve",
    "Step",
    "Walk",
    "compile_plan",
    "compile_serve",
    "compile_walk",
]

_WHERE = {
    "BoundHook": "plan",
    "Plan": "plan",
    "Step": "plan",
    "compile_plan": "plan",
    "Ended": "runner",
    "Serve": "runner",
    "Walk": "runner",
    "compile_serve": "runner",
    "compile_walk": "runner",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{where}"), name)
