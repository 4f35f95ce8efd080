"""The applications the chaos suite and the soak serve (ASGI at /asgi, WSGI at /wsgi).

Every dynamic answer carries ``x-worker-pid``: the load client learns which worker
holds each of its connections, so a failure can be put down to the worker a fault
hit (or not). Paths (after the mount point):

- ``/`` hello; ``/upload`` reads the body, answers its length; ``/error`` raises
  (a 500 by design); ``/slow?ms=N`` answers after N ms;
- ``/session`` (ASGI) writes the session (``state.session``, Redis in the chaos suite);
- ``/grow?mb=N`` (ASGI) keeps N more megabytes for the life of the worker (the
  memory-limit scenario); ``/ws`` (ASGI) a WebSocket echo.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

PID = str(os.getpid()).encode()
_kept: list[bytearray] = []


def _param(query: bytes, name: bytes, default: int) -> int:
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name and value.isdigit():
            return int(value)
    return default


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI side."""
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    tail = (
        path[len(scope.get("root_path", "")) :]
        if path.startswith(scope.get("root_path", ""))
        else path
    )
    if kind == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message.get("text") or ""})
    body = b"hello"
    if tail.endswith("/upload"):
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(size).encode()
    elif tail.endswith("/error"):
        raise RuntimeError("an error by design (chaos/soak traffic)")
    elif tail.endswith("/slow"):
        await asyncio.sleep(_param(scope["query_string"], b"ms", 100) / 1000)
    elif tail.endswith("/session"):
        # state.session with Redis: a write, so every such request needs Redis.
        session = scope.get("session")
        if session is not None:
            session["n"] = session.get("n", 0) + 1
            body = str(session["n"]).encode()
    elif tail.endswith("/grow"):
        mb = _param(scope["query_string"], b"mb", 1)
        chunk = bytearray(mb * 1024 * 1024)
        for i in range(0, len(chunk), 4096):  # touch every page: private memory
            chunk[i] = 1
        _kept.append(chunk)
        body = str(sum(len(c) for c in _kept)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
                (b"x-worker-pid", PID),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The WSGI side."""
    path = environ.get("PATH_INFO", "")
    body = b"hello"
    if path.endswith("/upload"):
        stream = environ["wsgi.input"]
        size = 0
        while chunk := stream.read(65536):
            size += len(chunk)
        body = str(size).encode()
    elif path.endswith("/error"):
        raise RuntimeError("an error by design (chaos/soak traffic)")
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Worker-Pid", PID.decode()),
        ],
    )
    return [body]
