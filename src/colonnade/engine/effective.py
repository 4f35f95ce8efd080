"""What a built engine says about itself: the effective configuration of a URL
(where each setting came from), an application's modules, handler mappings and
compiled plan.

What ``colonnade config show`` and ``colonnade modules`` print and the admin API
serves (the master answers it from the engine it checked the configuration
with). It reads a built :class:`Engine` only: nothing here runs on a request.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from colonnade.core.stages import NOTIFICATIONS, STAGES
from colonnade.engine import AppRuntime, Engine
from colonnade.engine.build import lock_for, site_entry_key
from colonnade.engine.mapping import RESOURCE_NAMES, Origin
from colonnade.errors import ConfigError, HttpError


def effective_config(engine: Engine, site: str | None, path: str) -> dict[str, Any]:
    """The settings a request for ``path`` on ``site`` sees, and where each came from.

    ``{"application": ..., "modules": [...], "handler_mappings": [...], "sections":
    {name: {key: {"value": v, "from": file}}}}``, with ``"locked"`` (the
    ``[lock]`` entry) on a key no ``web.toml`` may override; keys nobody set show their
    default, from ``"(default)"``; the mappings are :func:`handler_mappings`.
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
            locked = lock_for(engine.config.lock, section, dotted)
            if locked is not None:  # a web.toml may not override it: [lock] says so
                rows[key]["locked"] = locked
        sections[section.key] = rows
    out = {
        "site": chosen.name,
        "path": path,
        "application": runtime.app.path,
        "modules": [m.id for m in runtime.modules],
        "handler": _handler_for(runtime, path),
        "handler_mappings": handler_mappings(engine, runtime, path),
        "sections": sections,
    }
    if found.broken is not None:
        out["broken"] = str(found.broken)
    return out


def find_application(engine: Engine, site: str | None, app: str) -> AppRuntime:
    """The application at path ``app`` of ``site`` (None: the first site)."""
    chosen = next((s for s in engine.sites if site in (None, s.name)), None)
    if chosen is None:
        raise ConfigError(f"no site named {site!r}")
    runtime = next((rt for rt in chosen.apps if rt.app.path == (app.rstrip("/") or "/")), None)
    if runtime is None:
        raise ConfigError(f"site {chosen.name!r} has no application at {app!r}")
    return runtime


def describe_application(engine: Engine, runtime: AppRuntime) -> dict[str, Any]:
    """An application's modules in configuration order (with where each comes
    from), its handler mappings and its compiled plan, stage by stage (``hooks``
    empty: nobody joined the stage, which costs nothing)."""
    modules = []
    for module in runtime.modules:
        if module.id in engine.registry:
            origin = engine.registry.origin(module.id)
        else:  # shipped in the application's folder, declared in its web.toml
            origin = f"application module ({inspect.getfile(type(module))})"
        modules.append({"id": module.id, "origin": origin})
    joined = dict(runtime.plan.describe())
    return {
        "site": runtime.app.site,
        "application": runtime.app.path,
        "id": runtime.app.id,
        "root": runtime.app.root,
        "pool": runtime.app.pool,
        "modules": modules,
        "handler_mappings": handler_mappings(engine, runtime, runtime.app.path),
        "plan": [
            {"stage": info.stage.name, "hooks": list(joined.get(info.stage, ()))}
            for info in (*STAGES, *NOTIFICATIONS)
        ],
    }


def handler_mappings(engine: Engine, runtime: AppRuntime, here: str) -> list[dict[str, Any]]:
    """The handler mappings of ``runtime`` in the order they are tried, with where
    each came from (IIS's ``<handlers>`` list).

    ``entry`` is ``local`` when the mapping was set at the URL path ``here`` (the
    ``web.toml`` there, or the application or virtual directory at that path), else
    ``inherited`` (the server file, the built-in default, a level above ``here``).
    ``origin`` says where, as text; ``file``, ``line`` and ``key`` are its parts
    (None where there is no file: the default, the command line).
    """
    here = here.rstrip("/") or "/"
    rows = []
    for n, rule in enumerate(runtime.handler_map.rules, 1):
        origin = rule.origin
        file, key = _source(engine, runtime, origin)
        lines = engine.lines.get(file or "")
        line = lines.line_for(key) if lines is not None and key is not None else None
        if file is not None:
            where = file if line is None else f"{file}:{line}"
            text = f"{where}: {key}" if key else where
        elif origin is not None and origin.kind == "default":
            text = "(default)"
        else:
            text = f"(command line) {key}" if key else "-"
        rows.append(
            {
                "index": n,
                "name": rule.name,
                "path": rule.pattern,
                "verbs": ["*"] if rule.verbs is None else sorted(rule.verbs),
                "handler": rule.handler.id,
                "resource_type": RESOURCE_NAMES[rule.resource],
                "entry": "local" if origin is not None and origin.level == here else "inherited",
                "origin": text,
                "file": file,
                "line": line,
                "key": key,
            }
        )
    return rows


def _source(
    engine: Engine, runtime: AppRuntime, origin: Origin | None
) -> tuple[str | None, str | None]:
    """The file (None: no file) and the key that made a mapping."""
    if origin is None or origin.kind == "default":
        return None, None
    if origin.kind == "handlers":
        return origin.source, origin.key
    path = origin.level or "/"
    if engine.config.lines is None:  # the command line's configuration
        return None, "APP" if origin.kind == "application" else f"--static {path}"
    if origin.kind == "application":
        entry = site_entry_key(engine.config, runtime.app.site, "applications", path)
        return engine.config.source, None if entry is None else f"{entry}.app"
    entry = site_entry_key(engine.config, runtime.app.site, "virtual_directories", path)
    return engine.config.source, entry


def _handler_for(runtime: AppRuntime, path: str) -> str | None:
    try:
        return runtime.handler_map.select(path, "GET", runtime.app.map_path(path)).id
    except HttpError:
        return None
