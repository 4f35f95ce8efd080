"""The control-socket commands: ``colonnade pools|recycle|stop|start|reload|cache purge``,
``colonnade farms`` and ``colonnade farm drain|enable|disable``.

``control.py`` reads a command from an authorised client and writes back what
:func:`execute` returns; ``management/operations.py`` is the client side.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from colonnade.config.schema import ServerConfig
from colonnade.pools import ipc
from colonnade.pools.control import Command
from colonnade.pools.pool import PoolState
from colonnade.pools.supervision import read_memory

if TYPE_CHECKING:
    from colonnade.pools.master import Master


async def execute(master: Master, command: Command) -> dict[str, Any]:
    """Carry out one command; the reply (``ok``, and a message, an error or the state)."""
    if command.op == "pools":
        for pool in master.pools.values():
            for w in pool.workers:
                read_memory(w)
        return {
            "ok": True,
            "master": {
                "pid": os.getpid(),
                "uptime": round(time.time() - master.started, 3),
                "generation": master.generation,
                "config": master.source.file,
            },
            "pools": [pool.describe() for pool in master.pools.values()],
        }
    if command.op == "purge":
        return await _purge(master, command)
    if command.op == "farms":
        return {"ok": True, "farms": farm_report(master)}
    if command.op == "farm":
        return await _farm(master, command)
    if command.op == "reload":
        if await master.reload("command"):
            return {"ok": True, "message": "configuration reloaded"}
        return {"ok": False, "error": "reload refused: see the server log"}
    found = master.pools.get(command.pool or "")
    if found is None:
        return {"ok": False, "error": f"no pool named {command.pool!r}"}
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
