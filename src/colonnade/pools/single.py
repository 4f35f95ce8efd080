"""Single-process mode: one event loop serves every site (development, tests, --workers 0).

The same ``HttpServer`` and engine later run unchanged inside pool workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING

from colonnade.config.schema import ServerConfig
from colonnade.core import lifecycle, loopwake
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.pools.reload import Reloader
from colonnade.pools.sandbox import freeze_heap
from colonnade.transport.server import HttpServer, ServerState
from colonnade.transport.sockets import remove_unix_socket, unix_path

if TYPE_CHECKING:
    # Imported where a process serves alone: a pool's worker uses this module for
    # new_event_loop only and never talks to systemd.
    from colonnade.pools import systemd

log = logging.getLogger("colonnade.server")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed, else asyncio's default loop; in the compiled build,
    threads wake it (and every loop after it) with colonnade/_libc.c's eventfd pair,
    which keeps the GIL (core/loopwake.py says why)."""
    try:
        import colonnade._libc as _libc
    except ImportError:  # the pure-Python build: os's pair
        pass
    else:
        loopwake.install(_libc.eventfd_write, _libc.eventfd_read)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class Reloading:
    """How a serving process re-reads its configuration (None: it does not)."""

    def __init__(
        self,
        load: Callable[[], ServerConfig],
        registry: Registry,
        config_file: str | None,
        watch: bool,
    ) -> None:
        self.load = load
        self.registry = registry
        self.config_file = config_file
        self.watch = watch


async def serve(
    engine: Engine,
    sockets: Sequence[socket.socket],
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[HttpServer], None] | None = None,
    reloading: Reloading | None = None,
    freeze: bool = False,
) -> None:
    """Serve ``engine`` on ``sockets`` until ``stop`` is set, then stop gracefully.

    Without ``stop``, SIGTERM and SIGINT set it (the main thread's way to stop)
    and SIGHUP reloads the configuration; systemd is then notified of readiness,
    reloads and the stop (``pools/systemd.py``). With ``reloading.watch``, changed
    configuration files are picked up while serving. ``freeze``: the process is
    the server's own (not a program embedding it): once listening, what start-up
    left alive is frozen out of the cycle collector's walks
    (:func:`colonnade.pools.sandbox.freeze_heap`).
    """
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    own_stop = stop is None
    stop = stop or asyncio.Event()
    engine.start()
    server = HttpServer(ServerState(engine))
    reloader = None
    # systemd is told of the process's own life only where it owns it (signals).
    notifier: systemd.Notifier | None = None
    if reloading is not None:
        reloader = Reloader(server.state, reloading.load, reloading.registry)
    if own_stop:
        from colonnade.pools import systemd

        notifier = told = systemd.Notifier()

        def on_stop() -> None:
            lifecycle.begin_drain()  # readiness probes answer 503 from now on
            if not stop.is_set():
                told.stopping("stopping: finishing requests in flight")
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop)
            signals.append(sig)
        if reloader is not None:
            hup = reloader

            async def reload() -> bool:
                told.reloading("reloading (SIGHUP)")
                done = await hup.reload("SIGHUP")
                told.ready("serving" if done else "reload (SIGHUP) refused: see the log")
                return done

            loop.add_signal_handler(signal.SIGHUP, lambda: _spawn(reload()))
            signals.append(signal.SIGHUP)
    try:
        await engine.startup()
    except BaseException:
        engine.close()
        raise
    watcher: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None
    try:
        await server.start(sockets)
        if freeze:
            freeze_heap()
        for sock in sockets:
            if sock.family == socket.AF_UNIX:
                log.info("listening on unix:%s", sock.getsockname())
                continue
            host, port = sock.getsockname()[:2]
            scheme = "https" if server.state.tls.port(port) is not None else "http"
            host = host if ":" not in host else f"[{host}]"
            log.info("listening on %s://%s:%d", scheme, host, port)
        if reloader is not None and reloading is not None and reloading.watch:
            watcher = loop.create_task(reloader.watch(reloading.config_file, stop))
        if on_ready is not None:
            on_ready(server)
        if notifier is not None:
            notifier.ready("serving")
            watchdog = loop.create_task(notifier.watchdog())
        await stop.wait()
        if own_stop:  # this process's own stop (a signal), not an embedding caller's
            await lifecycle.delay_stop()
        current = server.state.engine
        log.info(
            "stopping: finishing requests in flight (up to %.0fs)",
            current.settings.timeouts.graceful,
        )
        await server.stop(current.settings.timeouts.graceful)
    finally:
        for task in (watcher, watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if reloader is not None:
            await reloader.drain()
        current = server.state.engine
        await current.shutdown()
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        current.close()
    log.info("stopped")


_tasks: set[asyncio.Task[bool]] = set()


def _spawn(coro: Coroutine[None, None, bool]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def run(engine: Engine, reloading: Reloading | None = None) -> None:
    """Bind the engine's addresses and serve in this process until stopped."""
    from colonnade.pools import systemd

    backlog = engine.config.server.listen_backlog
    sockets = [systemd.listening_socket(b, backlog) for b in engine.bindings()]
    systemd.unclaimed()
    unix = [unix_path(sock) for sock in sockets]  # closed by the time the server stops
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve(engine, sockets, reloading=reloading, freeze=True))
    finally:
        for path in unix:
            remove_unix_socket(path)
