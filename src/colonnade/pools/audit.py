"""The audit log: one JSON line for every change asked of the master, and who asked.

Configuration writes (done or refused, their old and new tables with secrets
masked), pool actions, reloads and cache purges, from the CLI (the control
socket's ``uid N``) or the admin API (``token NAME (address)``, ``certificate
CN``). Always logged to the server log (``colonnade.audit``); appended to
``[admin] audit_log`` too when it is set (created with mode 0600).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonnade.pools.master import Master

log = logging.getLogger("colonnade.audit")


def record(master: Master, who: str, op: str, what: dict[str, Any], reply: dict[str, Any]) -> None:
    """One audit record: ``who`` asked for ``op`` on ``what``; ``reply`` says how it went."""
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "who": who,
        "op": op,
        **what,
        "outcome": (
            f"refused {reply.get('status', 400)}"
            if not reply.get("ok")
            # a write the master applied that some worker had not confirmed in time
            else "applied, unconfirmed"
            if reply.get("applied") is False
            else "applied"
        ),
        "error": reply.get("error"),
    }
    import json  # here: an idle master has changed nothing (its memory)

    line = json.dumps(entry, default=str)
    log.info("%s", line)
    path = master.config.admin.audit_log
    if path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as exc:
        log.error("cannot write the audit log %s: %s", path, exc)
