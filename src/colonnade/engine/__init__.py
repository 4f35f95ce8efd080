"""The engine: sites, applications and their compiled plans; ``Engine.handle``."""

from colonnade.engine.engine import AppRuntime, Engine

__all__ = ["AppRuntime", "Engine"]
