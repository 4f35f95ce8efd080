"""The effective configuration of a URL, and where each setting came from.

What ``colonnade config show`` prints; the admin API will serve the same data.
It reads a built :class:`Engine` only: nothing here runs on a request.
"""

from __future__ import annotations

from typing import Any

import msgspec

from colonnade.engine import AppRuntime, Engine
from colonnade.errors import ConfigError, HttpError


def effective_config(engine: Engine, site: str | None, path: str) -> dict[str, Any]:
    """The settings a request for ``path`` on ``site`` sees, and where each came from.

    ``{"application": ..., "modules": [...], "sections": {name: {key: {"value": v,
    "from": file}}}}``; keys nobody set show their default, from ``"(default)"``.
    Where a ``web.toml`` at or above ``path`` cannot be used, ``"broken"`` holds its
    error (such requests are answered 500.19; the settings shown are the others').
    """
    chosen = next((s for s in engine.sites if site in (None, s.name)), None)
    if chosen is None:
        raise ConfigError(f"no site named {site!r}")
    runtime = chosen.app_for(path)
    if runtime is None:
        raise ConfigError(f"no application of site {chosen.name!r} serves {path!r}")
    found = runtime.app.sections_for(path)
    sections: dict[str, Any] = {}
    for module in runtime.modules:
        section = module.section
        if section is None or section.key in sections:
            continue
        settings = found.get(section)
        value = msgspec.to_builtins(settings)
        rows: dict[str, Any] = {}
        for key, item in value.items():
            dotted = f"{section.key}.{key}"
            origin = found.origins.get(dotted)
            if origin is None:  # a nested key set below this one
                deeper = [o for k, o in found.origins.items() if k.startswith(dotted + ".")]
                origin = deeper[-1] if deeper else "(default)"
            rows[key] = {"value": settings.shown(key, item), "from": origin}
        sections[section.key] = rows
    out = {
        "site": chosen.name,
        "path": path,
        "application": runtime.app.path,
        "modules": [m.id for m in runtime.modules],
        "handler": _handler_for(runtime, path),
        "sections": sections,
    }
    if found.broken is not None:
        out["broken"] = str(found.broken)
    return out


def _handler_for(runtime: AppRuntime, path: str) -> str | None:
    try:
        return runtime.handler_map.select(path, "GET", runtime.app.map_path(path)).id
    except HttpError:
        return None
