"""The control-socket commands: ``colonnade pools|recycle|stop|start|reload|cache purge|requests``.

``control.py`` reads a command from an authorised client and writes back what
:func:`execute` returns; ``management/operations.py`` is the client side.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import msgspec

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
    if command.op == "requests":
        return await _requests(master, command)
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
    }
