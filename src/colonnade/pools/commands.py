"""The control-socket commands: ``colonnade pools|recycle|stop|start|reload|cache purge``,
``colonnade requests``, ``colonnade farms``, ``colonnade farm drain|enable|disable``,
``colonnade trace list|show``, and what the admin API serves (server, sites,
applications, workers, modules, effective configuration, configuration writes, the
tail of a site's access log).

``control.py`` reads a command from an authorised client and writes back what
:func:`execute` returns; ``management/operations.py`` is the client side, and
``api.py`` the HTTP front (one route per command). A reply may carry
``"status"``: the HTTP status the API answers with (the line protocol ignores it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from colonnade.config.schema import ServerConfig
from colonnade.errors import ConfigError
from colonnade.pools import audit, ipc, metrics
from colonnade.pools.control import Command
from colonnade.pools.pool import PoolState
from colonnade.pools.spawn import working_folder
from colonnade.pools.supervision import process_memory, read_memory
from colonnade.pools.workers import SETTLE_WAIT

if TYPE_CHECKING:
    from colonnade.pools.master import Master


#: The commands that change something: each goes to the audit log.
AUDITED = frozenset({"recycle", "stop", "start", "reload", "purge", "farm"})


async def execute(master: Master, command: Command) -> dict[str, Any]:
    """Carry out one command; the reply (``ok``, and a message, an error or the state)."""
    if command.op in AUDITED:
        reply = await _act(master, command)
        what: dict[str, Any] = {"pool": command.pool} if command.pool is not None else {}
        if command.op == "purge":
            what = {"path": command.path, "prefix": command.prefix}
        elif command.op == "farm":
            what = {"farm": command.farm, "member": command.member, "action": command.action}
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
    if command.op == "farms":
        return {"ok": True, "farms": farm_report(master)}
    if command.op in ("traces", "trace"):
        return await _traces(master, command)
    if command.op == "requests":
        return await _requests(master, command)
    if command.op == "metrics":
        return metrics.reply(await metrics.collect(master))
    if command.op == "access_log":
        return await _access_log(master, command)
    inspect = _INSPECT.get(command.op)
    if inspect is not None:
        try:
            return {"ok": True, **inspect(master, command)}
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), "status": 404}
    if command.op in ("config_file", "config_set", "config_tree", "config_schema"):
        from colonnade.pools import configwrite

        if command.op == "config_file":
            return configwrite.describe(master, command)
        if command.op == "config_set":
            return await configwrite.write(master, command)
        try:
            read = configwrite.tree if command.op == "config_tree" else configwrite.schema
            return {"ok": True, **read(master, command)}
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), "status": 404}
    return {"ok": False, "error": f"{command.op}: not a command of this master", "status": 404}


async def _reload(master: Master) -> dict[str, Any]:
    """``colonnade reload``: answered once every worker serves the new generation
    (as a configuration write is), so that what the command says is what serves;
    a worker that has not confirmed it within :data:`~colonnade.pools.workers.SETTLE_WAIT` is
    named (the master has switched; that worker serves the old one until it does)."""
    if not await master.reload("command"):
        return {"ok": False, "error": "reload refused: see the server log"}
    generation = master.generation
    settled, why = await master.workers.settle(generation, SETTLE_WAIT)
    if settled is False:
        return {
            "ok": False,
            "error": f"the master switched to configuration generation {generation}; "
            + "; ".join(why),
        }
    message = f"configuration reloaded: generation {generation}"
    if settled is None:
        wait = SETTLE_WAIT
        return {
            "ok": True,
            "message": f"{message}; not yet confirmed after {wait:g} s by: " + ", ".join(why),
            "pending": why,
        }
    return {"ok": True, "message": f"{message}, served by every worker"}


async def _act(master: Master, command: Command) -> dict[str, Any]:
    if command.op == "purge":
        return await _purge(master, command)
    if command.op == "farm":
        return await _farm(master, command)
    if command.op == "reload":
        return await _reload(master)
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


# -- farms ---------------------------------------------------------------------------------

#: What ``colonnade farm ACTION`` makes of a member (enabled members are not kept).
FARM_ACTIONS = {"drain": "draining", "disable": "disabled", "enable": "enabled"}


async def _farm(master: Master, command: Command) -> dict[str, Any]:
    """``colonnade farm drain|enable|disable FARM MEMBER``: the master keeps the
    state (so it survives a reload and reaches workers started later) and hands
    the whole map to every worker."""
    farms = master.config.farms
    settings = farms.get(command.farm or "")
    if settings is None:
        known = ", ".join(sorted(farms)) or "none"
        return {"ok": False, "error": f"no farm named {command.farm!r} (farms: {known})"}
    wanted = command.member or ""
    found = next(
        (m.key for m in settings.members if wanted in (m.key, m.address)),
        None,
    )
    if found is None:
        known = ", ".join(m.key for m in settings.members)
        return {
            "ok": False,
            "error": f"farm {command.farm} has no member {wanted!r} (members: {known})",
        }
    state = FARM_ACTIONS.get(command.action or "")
    if state is None:
        return {"ok": False, "error": f"unknown action {command.action!r}"}
    members = master.farm_admin.setdefault(command.farm or "", {})
    if state == "enabled":
        members.pop(found, None)
    else:
        members[found] = state
    if not members:
        master.farm_admin.pop(command.farm or "", None)
    asked, answered = await send_farm_admin(master)
    message = f"farm {command.farm}: member {found} is now {state}"
    if answered < asked:
        message += f" ({asked - answered} worker(s) did not answer in time)"
    return {"ok": True, "message": message, "workers": answered}


async def send_farm_admin(master: Master) -> tuple[int, int]:
    """Hand the farm member states to every worker and wait until the serving
    ones have them (so that no request after ``colonnade farm drain`` returns
    goes to the member): (workers asked, workers that answered)."""
    states = master.farm_admin
    asked, answers = await master.workers.ask(
        lambda message_id: ipc.FarmAdmin(id=message_id, states=states)
    )
    return asked, len(answers)


def known_farm_states(
    config: ServerConfig, states: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """``states`` without the farms and members ``config`` no longer has (a
    reloaded configuration keeps the state of every member that remains)."""
    kept: dict[str, dict[str, str]] = {}
    for farm, members in states.items():
        settings = config.farms.get(farm)
        if settings is None:
            continue
        names = {m.key for m in settings.members}
        remaining = {name: state for name, state in members.items() if name in names}
        if remaining:
            kept[farm] = remaining
    return kept


def farm_report(master: Master) -> list[dict[str, Any]]:
    """``colonnade farms``: every farm of the configuration and its members, with
    the operator's state and the workers' counters added up (in flight,
    requests, failures; the response time averaged by requests; health as the
    number of workers that find the member down)."""
    workers = [w for pool in master.pools.values() for w in pool.workers if w.serving]
    report = []
    for name, settings in master.config.farms.items():
        admin = master.farm_admin.get(name, {})
        members = []
        for config in settings.members:
            key = config.key
            seen = [w.farms[name][key] for w in workers if key in w.farms.get(name, {})]
            requests = sum(int(s["requests"]) for s in seen)
            weighted = sum(float(s["response_ms"]) * int(s["requests"]) for s in seen)
            down = [s for s in seen if not s["healthy"]]
            state = admin.get(key, "enabled")
            if state == "disabled" or (seen and len(down) == len(seen)):
                shown = "unavailable"
            else:
                shown = "draining" if state == "draining" else "available"
            members.append(
                {
                    "member": key,
                    "address": config.address,
                    "weight": config.weight,
                    "state": shown,
                    "admin": state,
                    "workers": len(seen),
                    "down_in": len(down),
                    "reason": str(down[0]["reason"]) if down else "",
                    "in_flight": sum(int(s["in_flight"]) for s in seen),
                    "requests": requests,
                    "failures": sum(int(s["failures"]) for s in seen),
                    "response_ms": round(weighted / requests, 3) if requests else None,
                }
            )
        report.append({"farm": name, "algorithm": settings.algorithm, "members": members})
    return report


def _no_pool(name: str | None) -> dict[str, Any]:
    return {"ok": False, "error": f"no pool named {name!r}", "status": 404}


def _master(master: Master) -> dict[str, Any]:
    rss, private, cpu = process_memory(os.getpid()) or (0, 0, 0.0)
    return {
        "pid": os.getpid(),
        "uptime": round(time.time() - master.started, 3),
        "generation": master.generation,
        "config": master.source.file,
        "rss": rss,
        "private": private,
        "cpu": round(cpu, 2),
        # What the master holds: it imports the engine only when an admin query or
        # a configuration write asks for it (docs/process-model.md, "Memory").
        "modules_imported": len(sys.modules),
    }


def _imports(master: Master, command: Command) -> dict[str, Any]:
    """``imports`` (control socket only): every module the master has imported, to
    see what its memory holds."""
    return {"pid": os.getpid(), "modules": sorted(sys.modules)}


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
            for rt in master.engine().runtimes
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
    from colonnade.engine.effective import describe_application, find_application

    engine = master.engine()
    return {
        "application": describe_application(
            engine, find_application(engine, command.site, command.app)
        )
    }


def _config(master: Master, command: Command) -> dict[str, Any]:
    """``config``: the effective settings of a URL path, and where each came from."""
    from colonnade.engine.effective import effective_config

    return {"config": effective_config(master.engine(), command.site, command.path or "/")}


_INSPECT: dict[str, Callable[[Master, Command], dict[str, Any]]] = {
    "server": _server,
    "sites": _sites,
    "applications": _applications,
    "workers": _workers,
    "modules": _modules,
    "config": _config,
    "imports": _imports,
}


async def _traces(master: Master, command: Command) -> dict[str, Any]:
    """``colonnade trace list|show``: the kept failed-request traces, read from
    their folder (on a thread: a folder of many files is read there)."""
    from colonnade.core.tracestore import list_traces, read_trace, trace_directory

    directory = trace_directory(master.config.sections)
    if command.op == "traces":
        found = await asyncio.to_thread(list_traces, directory, command.site)
        return {"ok": True, "directory": directory, "traces": found}
    trace = await asyncio.to_thread(read_trace, directory, command.trace_id or "")
    if trace is None:
        return {"ok": False, "error": f"no trace {command.trace_id!r} in {directory}"}
    return {"ok": True, "trace": trace}


async def _requests(master: Master, command: Command) -> dict[str, Any]:
    """``colonnade requests``: the requests executing in every worker (IIS: ``appcmd
    list requests``), longest-running first; each worker lists its own."""
    asked, answers = await master.workers.executing(command.elapsed)
    rows = [
        msgspec.to_builtins(row)
        for answer in answers
        for row in answer
        if command.pool in (None, row.pool) and command.site in (None, row.site)
    ]
    rows.sort(key=lambda row: -row["elapsed"])
    return {
        "ok": True,
        "requests": rows,
        "workers": len(answers),
        "unanswered": asked - len(answers),
        # Off ([server] request_monitor = false): no worker keeps a table to list.
        "monitor": master.config.server.request_monitor,
    }


#: The most bytes ``access_log`` reads, from the end of the file: a tail costs the
#: same however large the log has grown.
TAIL_BYTES = 64 * 1024


def tail_lines(path: str, count: int, contains: str | None = None) -> dict[str, Any]:
    """The last ``count`` lines of the file ``path`` among its last :data:`TAIL_BYTES`
    bytes (a line cut by that limit is left out), only those containing ``contains``
    (case-insensitive) when given; ``truncated`` says that older lines were not read,
    ``fields`` is the last W3C ``#Fields:`` directive read (None in a JSON log or when
    it is further back). OSError when the file cannot be read."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        start = max(0, size - TAIL_BYTES)
        file.seek(start)
        data = file.read(TAIL_BYTES)
    if start:
        # The read began inside a line: what precedes the first newline is a part.
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    lines = data.decode("utf-8", errors="replace").splitlines()
    fields = next((line for line in reversed(lines) if line.startswith("#Fields:")), None)
    if contains:
        wanted = contains.casefold()
        lines = [line for line in lines if wanted in line.casefold()]
    return {
        "file": path,
        "size": size,
        "truncated": start > 0,
        "fields": fields,
        "lines": lines[-count:],
    }


async def _access_log(master: Master, command: Command) -> dict[str, Any]:
    """``access_log``: the tail of a site's access log file (``[http_logging] target``
    in force at the site's root), filtered on the master (read on a thread)."""
    from colonnade.engine.effective import effective_config, find_application

    engine = master.engine()
    try:
        config = effective_config(engine, command.site, "/")
        root = find_application(engine, config["site"], "/")
    except ConfigError as exc:
        return {"ok": False, "error": str(exc), "status": 404}
    site = config["site"]
    settings = config["sections"].get("http_logging")
    if settings is None:
        return {"ok": False, "error": f"site {site!r} keeps no access log", "status": 404}
    target = settings["target"]["value"]
    if target in ("stdout", "stderr"):
        return {
            "ok": False,
            "error": f"site {site!r} writes its access log to {target}, not to a file",
            "status": 404,
        }
    # A relative target is relative to the working folder of the workers that write
    # it (the setting's documented meaning): those of the root application's pool.
    pool = master.pools.get(root.app.pool)
    path = os.path.join(os.getcwd() if pool is None else working_folder(pool), target)
    try:
        found = await asyncio.to_thread(tail_lines, path, command.lines, command.contains)
    except OSError as exc:
        return {
            "ok": False,
            "error": f"cannot read the access log {path}: {exc.strerror}",
            "status": 404,
        }
    return {"ok": True, "site": site, **found}
