"""What the FastCGI tests share: a server configuration, a request over a raw
socket, and the processes alive now."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.wire import Conn, Wire


def site(app: dict[str, Any], *handlers: dict[str, Any]) -> dict[str, Any]:
    """One site on ``www`` whose ``handlers`` go first, then static files; the
    FastCGI application ``app`` is its only one."""
    return {
        "server": {"modules": ["handler.fastcgi", "handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [*handlers, {"path": "*", "handler": "handler.static"}],
        "fastcgi": {"applications": {"app": app}},
    }


def request(
    port: int, target: str, method: str = "GET", body: bytes = b"", headers: str = ""
) -> Wire:
    """One request on a connection of its own."""
    with Conn(port) as conn:
        length = f"content-length: {len(body)}\r\n" if body or method == "POST" else ""
        conn.send(
            f"{method} {target} HTTP/1.1\r\nhost: localhost\r\n{length}{headers}\r\n".encode()
            + body
        )
        return conn.response(head_only=method == "HEAD")


def processes(match: Callable[[int], bool]) -> set[int]:
    """The pids of the processes alive now (not zombies) that ``match`` accepts."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and match(int(entry)):
                found.add(int(entry))
        except (OSError, IndexError):
            continue
    return found
