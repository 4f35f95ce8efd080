"""Compile a plan per application; run it for one request.

The names below are imported on first use (PEP 562): ``pipeline.monitor``'s
message type is imported by the master, which never runs a plan.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonnade.pipeline.plan import BoundHook, Plan, Step, compile_plan
    from colonnade.pipeline.runner import (
        Bookkeeping,
        Serve,
        Walk,
        compile_serve,
        compile_walk,
        compile_walker,
    )

__all__ = [
    "Bookkeeping",
    "BoundHook",
    "Plan",
    "Serve",
    "Step",
    "Walk",
    "compile_plan",
    "compile_serve",
    "compile_walk",
    "compile_walker",
]

_WHERE = {
    "BoundHook": "plan",
    "Plan": "plan",
    "Step": "plan",
    "compile_plan": "plan",
    "Bookkeeping": "runner",
    "Serve": "runner",
    "Walk": "runner",
    "compile_serve": "runner",
    "compile_walk": "runner",
    "compile_walker": "runner",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{where}"), name)
