"""Compile a plan per application; run it for one request."""

from colonnade.pipeline.plan import BoundHook, Plan, Step, compile_plan
from colonnade.pipeline.runner import Walk, compile_walk

__all__ = ["BoundHook", "Plan", "Step", "Walk", "compile_plan", "compile_walk"]
