"""Single-process mode: one event loop serves every site (development, tests, --workers 0).

The same ``HttpServer`` and engine later run unchanged inside pool workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Sequence

from colonnade.engine import Engine
from colonnade.transport.server import HttpServer, ServerState, bind_socket

log = logging.getLogger("colonnade.server")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed, else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def serve(
    engine: Engine,
    sockets: Sequence[socket.socket],
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[HttpServer], None] | None = None,
) -> None:
    """Serve ``engine`` on ``sockets`` until ``stop`` is set, then stop gracefully.

    Without ``stop``, SIGTERM and SIGINT set it (the main thread's way to stop).
    """
    loop = asyncio.get_running_loop()
    signals: tuple[signal.Signals, ...] = ()
    if stop is None:
        stop = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
    engine.start()
    server = HttpServer(ServerState(engine))
    try:
        await server.start(sockets)
        for sock in sockets:
            host, port = sock.getsockname()[:2]
            log.info("listening on http://%s:%d", host if ":" not in host else f"[{host}]", port)
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
        log.info(
            "stopping: finishing requests in flight (up to %.0fs)",
            engine.settings.timeouts.graceful,
        )
        await server.stop(engine.settings.timeouts.graceful)
    finally:
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        engine.close()
    log.info("stopped")


def run(engine: Engine) -> None:
    """Bind the engine's addresses and serve in this process until stopped."""
    sockets = [bind_socket(b) for b in engine.bindings()]
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(engine, sockets))
