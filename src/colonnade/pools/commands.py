"""The control-socket commands: ``colonnade pools|recycle|stop|start|reload|cache purge``,
and what the admin API serves (server, sites, applications, workers, modules,
effective configuration, configuration writes).

``control.py`` reads a command from an authorised client and writes back what
:func:`execute` returns; ``management/operations.py`` is the client side, and
``api.py`` the HTTP front (one route per command). A reply may carry
``"status"``: the HTTP status the API answers with (the line protocol ignores it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from colonnade.engine import Engine
from colonnade.engine.effective import describe_application, effective_config, find_application
from colonnade.errors import ConfigError
from colonnade.pools import audit
from colonnade.pools.control import Command
from colonnade.pools.pool import PoolState
from colonnade.pools.supervision import read_memory

if TYPE_CHECKING:
    from colonnade.pools.master import Master


#: The commands that change something: each goes to the audit log.
AUDITED = frozenset({"recycle", "stop", "start", "reload", "purge"})


async def execute(master: Master, command: Command) -> dict[str, Any]:
    """Carry out one command; the reply (``ok``, and a message, an error or the state)."""
    if command.op in AUDITED:
        reply = await _act(master, command)
        what: dict[str, Any] = {"pool": command.pool} if command.pool is not None else {}
        if command.op == "purge":
            what = {"path": command.path, "prefix": command.prefix}
        audit.record(master, command.who, command.op, what, reply)
        return reply
    if command.op == "pools":
        if command.pool is not None and command.pool not in master.pools:
            return _no_pool(command.pool)
        for pool in master.pools.values():
            for w in pool.workers:
                read_memory(w)
        return {
            "ok": True,
            "master": _master(master),
            "pools": [
                pool.describe()
                for pool in master.pools.values()
                if command.pool in (None, pool.name)
            ],
        }
    inspect = _INSPECT.get(command.op)
    if inspect is not None:
        try:
            return {"ok": True, **inspect(master, command)}
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), "status": 404}
    if command.op in ("config_file", "config_set"):
        from colonnade.pools import configwrite

        if command.op == "config_file":
            return configwrite.describe(master, command)
        return await configwrite.write(master, command)
    return {"ok": False, "error": f"{command.op}: not a command of this master", "status": 404}


async def _act(master: Master, command: Command) -> dict[str, Any]:
    if command.op == "purge":
        return await _purge(master, command)
    if command.op == "reload":
        if await master.reload("command"):
            return {"ok": True, "message": "configuration reloaded"}
        return {"ok": False, "error": "reload refused: see the server log"}
    found = master.pools.get(command.pool or "")
    if found is None:
        return _no_pool(command.pool)
    if command.op == "recycle":
        if found.state is PoolState.STOPPED:
            return {"ok": False, "error": f"pool {found.name} is stopped"}
        count = master.workers.recycle(found, "command")
        return {"ok": True, "message": f"recycling {count} worker(s) of pool {found.name}"}
    if command.op == "stop":
        master.stop_pool(found, "stopped by command")
        return {"ok": True, "message": f"pool {found.name} stopped"}
    if not master.start_pool(found):
        return {"ok": False, "error": f"pool {found.name} stays stopped: {found.reason}"}
    return {"ok": True, "message": f"pool {found.name} started"}


#: The longest URL path a purge names (a request line is bounded as well).
MAX_PURGE_PATH = 8192


async def _purge(master: Master, command: Command) -> dict[str, Any]:
    """``colonnade cache purge``: every worker drops the output cache entries of a
    URL path (every query string and variant), or of every path under a prefix."""
    path = command.path
    if not path or not path.startswith("/") or len(path) > MAX_PURGE_PATH:
        return {"ok": False, "error": "purge needs a URL path starting with /"}
    asked, answered, purged = await master.workers.purge(
        "output_cache", path, prefix=command.prefix
    )
    what = f"paths under {path}" if command.prefix else path
    message = f"purged {purged} cached response(s) of {what} in {answered} worker(s)"
    if answered < asked:
        message += f" ({asked - answered} did not answer in time)"
    return {
        "ok": True,
        "message": message,
        "purged": purged,
        "workers": answered,
        "unanswered": asked - answered,
    }


def _no_pool(name: str | None) -> dict[str, Any]:
    return {"ok": False, "error": f"no pool named {name!r}", "status": 404}


def _master(master: Master) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "uptime": round(time.time() - master.started, 3),
        "generation": master.generation,
        "config": master.source.file,
    }


def _engine(master: Master) -> Engine:
    engine = master.loaded.engine if master.loaded is not None else None
    if engine is None:  # pragma: no cover - set by every load
        raise ConfigError("the configuration is not loaded")
    return engine


def _server(master: Master, command: Command) -> dict[str, Any]:
    """``server``: the master, what it serves, where it is controlled."""
    config = master.config
    control = master.control
    return {
        "server": {
            **_master(master),
            "control_socket": control.path if control is not None else None,
            "admin_binding": config.admin.bind,
            "listening": [str(b) for b in master.routes.listen.values()],
            "modules": list(config.server.modules),
            "sites": len(config.sites),
            "pools": len(master.pools),
            "broken": [
                {"site": b.site, "path": b.path, "file": b.file, "error": str(b.error)}
                for b in master.loaded.broken  # type: ignore[union-attr]
            ],
        }
    }


def _sites(master: Master, command: Command) -> dict[str, Any]:
    """``sites``: bindings, host names, roots, pools, applications and folders."""
    return {
        "sites": [
            {
                "name": site.name,
                "bindings": list(site.bindings),
                "host_names": list(site.host_names),
                "root": site.root,
                "pool": site.pool,
                "applications": [a.path for a in site.applications],
                "virtual_directories": [
                    {"path": v.path, "root": v.root} for v in site.virtual_directories
                ],
            }
            for site in master.config.sites
            if command.site in (None, site.name)
        ]
    }


def _applications(master: Master, command: Command) -> dict[str, Any]:
    """``applications``: every application (``site``: of one site), its pool and modules."""
    return {
        "applications": [
            {**rt.app.describe(), "modules": [m.id for m in rt.modules]}
            for rt in _engine(master).runtimes
            if command.site in (None, rt.app.site)
        ]
    }


def _workers(master: Master, command: Command) -> dict[str, Any]:
    """``workers``: every worker process (``pool``: of one pool)."""
    if command.pool is not None and command.pool not in master.pools:
        raise ConfigError(f"no pool named {command.pool!r}")
    found = []
    for pool in master.pools.values():
        if command.pool not in (None, pool.name):
            continue
        for w in pool.workers:
            read_memory(w)
            found.append({"pool": pool.name, **w.describe()})
    return {"workers": found}


def _modules(master: Master, command: Command) -> dict[str, Any]:
    """``modules``: an application's modules, handler mappings and compiled plan."""
    engine = _engine(master)
    return {
        "application": describe_application(
            engine, find_application(engine, command.site, command.app)
        )
    }


def _config(master: Master, command: Command) -> dict[str, Any]:
    """``config``: the effective settings of a URL path, and where each came from."""
    return {"config": effective_config(_engine(master), command.site, command.path or "/")}


_INSPECT: dict[str, Callable[[Master, Command], dict[str, Any]]] = {
    "server": _server,
    "sites": _sites,
    "applications": _applications,
    "workers": _workers,
    "modules": _modules,
    "config": _config,
}
