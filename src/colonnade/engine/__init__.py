"""The engine: sites, applications and their compiled plans; ``Engine.handle``."""

from colonnade.engine.engine import Engine
from colonnade.engine.runtime import AppRuntime

__all__ = ["AppRuntime", "Engine"]
