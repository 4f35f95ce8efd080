"""A pool's worker process: ``python -m colonnade.pools.worker --control-fd N``.

How this works: the master starts the worker with its control socket (and the
listening sockets of the ports its pool owns) as inherited descriptors, already
running as the pool's user. The first message says what to serve. The worker
applies its resource limits and sandbox, builds the engine for its pool's view
of the configuration, and then runs the same ``HttpServer`` and engine as
single-process mode on its own event loop. Its control channel carries pings
(answered with counters), connections to adopt (handed over by the master), a
reload of the ``web.toml`` files, cache purges, the request monitor's question
(answered with the requests executing), and the order to drain. When the master goes
away (the channel closes), the worker stops gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from colonnade.pools.lean import deferring, lean_msgspec

# First: msgspec without typing_extensions (~0.45 MiB of a worker; pools/lean.py
# says why msgspec answers the same without it), its inspect and JSON schema modules
# deferred (~0.24 MiB), and httptools with its URL parser deferred (~0.1 MiB). An
# application may still import them.
with lean_msgspec():
    import msgspec  # noqa: F401 - imported here for the rest of the process
with deferring("httptools"):
    import httptools  # noqa: F401 - the HTTP parser's (http/h1.py)
# Then the compiled modules every worker imports, from one compiled module: one
# shim mapped for them instead of one each (pools/native.py).
import colonnade.pools.native  # noqa: F401 - imported for the process
from colonnade.config.schema import ServerConfig
from colonnade.core import arenafd, caches, counters, farms, lifecycle, logformat, metrics
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, ModuleError
from colonnade.pipeline.monitor import snapshot
from colonnade.pools import ipc
from colonnade.pools.config import content_folders, pool_view, tls_folders
from colonnade.pools.reload import Reloader
from colonnade.pools.routes import RouteTable
from colonnade.pools.sandbox import (
    SandboxError,
    apply_limits,
    confine,
    die_with_parent,
    freeze_heap,
    python_paths,
    trim_memory,
)
from colonnade.pools.single import new_event_loop
from colonnade.transport.connection import HttpConnection
from colonnade.transport.server import HttpServer, ServerState, settle_time

if TYPE_CHECKING:
    from colonnade.pools.routing import PoolRouter

log = logging.getLogger("colonnade.pools")

#: Counters are sent at most this often (and only when they changed).
STATS_INTERVAL = 1.0


class Worker:
    """The serving side of one worker process."""

    def __init__(
        self,
        start: ipc.Start,
        control: socket.socket,
        config: ServerConfig,
        engine: Engine,
        registry: Registry,
    ) -> None:
        self.start = start
        self.pool = start.pool
        self.control = control
        self.config = config
        self.engine = engine
        self.registry = registry
        self.state = ServerState(engine)
        self.server = HttpServer(self.state)
        self.channel: ipc.Channel | None = None
        self.stop = asyncio.Event()
        self.drain: ipc.Drain | None = None
        self.reloader = Reloader(
            self.state, self._load, registry, start.generation, report_broken=False
        )
        self._tasks: set[asyncio.Task[object]] = set()
        #: Connections the master handed over that are not registered yet (see _finish).
        self._adopting: set[asyncio.Task[object]] = set()
        routes = RouteTable(config)
        #: The router: made here where a port's sites span several pools, else at a
        #: drain that hands connections back (pools/routing.py is imported then).
        self.router: PoolRouter | None = None
        if routes.needs_router(self.pool):
            self.state.router = self.router = self._router(routes)
        pool = config.pools.get(self.pool)
        if pool is not None and pool.recycling.requests:
            self.state.request_limit = pool.recycling.requests
            self.state.on_request_limit = self._request_limit

    def _router(self, routes: RouteTable | None) -> PoolRouter:
        from colonnade.pools.routing import PoolRouter

        return PoolRouter(self.pool, routes, self._send_connection)

    def _load(self) -> ServerConfig:
        return pool_view(self.start.source.load(), self.pool)

    # -- the control channel ---------------------------------------------------------------

    def _send_connection(self, pool: str, port: int, head: bool, data: bytes, fd: int) -> None:
        if self.channel is None:
            os.close(fd)
            return
        self.channel.send(ipc.Handoff(pool=pool, port=port, head=head), data, [fd])

    def _on_message(self, message: ipc.Message, payload: bytes, fds: list[int]) -> None:
        if isinstance(message, ipc.Adopt):
            if not fds:
                return
            for extra in fds[1:]:
                os.close(extra)
            task = asyncio.get_running_loop().create_task(
                self._adopt(fds[0], payload, message.port)
            )
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)
            return
        for fd in fds:
            os.close(fd)
        if isinstance(message, ipc.Ping):
            if self.channel is not None:
                self.channel.send(ipc.Pong(id=message.id, stats=self._stats()))
        elif isinstance(message, ipc.Drain):
            self.drain = message
            self.stop.set()
        elif isinstance(message, ipc.Reload):
            self._spawn(self._reload(message))
        elif isinstance(message, ipc.Purge):
            self._spawn(self._purge(message))
        elif isinstance(message, ipc.Collect):
            if self.channel is not None:
                self.channel.send(ipc.Collected(id=message.id, stats=self._stats()))
        elif isinstance(message, ipc.FarmAdmin):
            farms.set_admin(message.states)
            if self.channel is not None:
                self.channel.send(ipc.Applied(id=message.id))
        elif isinstance(message, ipc.ListRequests) and self.channel is not None:
            rows = snapshot(
                self.state.engine.executing, pid=os.getpid(), min_elapsed=message.elapsed
            )
            self.channel.send(ipc.Executing(id=message.id, requests=rows))

    async def _reload(self, message: ipc.Reload) -> None:
        # The master waits for this answer before it tells a configuration write
        # it is applied.
        ok = await self.reloader.reload("master: reload", message.generation or None)
        if self.channel is not None:
            self.channel.send(ipc.Reloaded(generation=message.generation, ok=ok))

    async def _purge(self, message: ipc.Purge) -> None:
        count = await caches.purge(message.kind, message.path, prefix=message.prefix)
        if self.channel is not None:
            self.channel.send(ipc.Purged(id=message.id, count=count))

    def _on_close(self) -> None:
        if not self.stop.is_set():
            log.warning("the master went away; stopping")
            self.stop.set()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _adopt(self, fd: int, data: bytes, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        sock.setblocking(False)
        if self.state.tls.port(port) is not None:
            # Accepted by the master (or another pool's worker), routed by its SNI
            # name where that matters: nothing was read of it, the handshake
            # happens here.
            from colonnade.transport.handshake import start_handshake

            start_handshake(self.state, port, sock, routed=True)
            return
        try:
            await loop.connect_accepted_socket(
                # A connection accepted elsewhere: the bytes already read go first.
                lambda: HttpConnection(self.state, data),
                sock=sock,
            )
        except OSError as exc:
            log.debug("adopting a connection failed: %s", exc)
            sock.close()

    def _request_limit(self) -> None:
        # The worker knows its count exactly; the master learns it now, not at the
        # next once-a-second report, and starts the recycle at this count.
        if self.channel is not None:
            self.channel.send(ipc.RequestLimit(requests=self.state.requests))

    def _stats(self) -> ipc.Stats:
        state = self.state
        return ipc.Stats(
            requests=state.requests,
            active=sum(1 for c in state.connections if c.busy),
            connections=len(state.connections),
            http2_errors=dict(state.http2_errors),
            slow_clients=dict(state.slow_clients),
            caches=caches.totals(),
            farms=farms.stats(),
            sites=metrics.snapshot(Counter(ctx.app.site for ctx in state.engine.executing)),
            received=state.received,
            counters=counters.snapshot(),
            counter_families={name: (f.about, f.label) for name, f in counters.families().items()},
        )

    async def _report(self) -> None:
        last = None
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            stats = self._stats()
            if stats != last and self.channel is not None:
                self.channel.send(stats)
                last = stats

    # -- serving ---------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stop.set if sig == signal.SIGTERM else self._hup)
        engine = self.engine
        try:
            await engine.startup()
        except BaseException:
            engine.close()
            raise
        sockets = [socket.socket(fileno=listener.fd) for listener in self.start.listeners]
        try:
            await self.server.start(sockets)
            # Built and listening: what start-up left alive stays out of the cycle
            # collector's walks, and what it freed goes back.
            freeze_heap()
            trim_memory()
            self.channel = ipc.Channel(self.control, self._on_message, self._on_close)
            self.channel.send(ipc.Ready(pid=os.getpid()))
            self._spawn(self._report())
            await self.stop.wait()
            await self._finish()
            if self.channel is not None:
                # The last counters: the master keeps them when this worker is gone.
                self.channel.send(self._stats())
                await self._channel_flushed()
        finally:
            for task in [*self._tasks, *self._adopting]:
                task.cancel()
            await self.reloader.drain()
            current = self.state.engine
            await current.shutdown()
            current.close()
            if self.channel is not None:
                self.channel.close()

    def _hup(self) -> None:
        self._spawn(self.reloader.reload("SIGHUP"))

    async def _finish(self) -> None:
        lifecycle.begin_drain()  # readiness probes answer 503 from now on
        if self.drain is None or not self.drain.migrate:
            await lifecycle.delay_stop()  # a stop, not a recycle: others take no traffic over
        # An Adopt the master sent before its Drain (or before this stop) may still be
        # on its way into the transport: a connection with a request in it that the
        # snapshots below would miss, and the process would exit under it.
        if self._adopting:
            await asyncio.wait(set(self._adopting), timeout=5.0)
        drain = self.drain
        deadline = drain.deadline if drain is not None else self._stop_deadline()
        router = self.router
        if drain is not None and drain.migrate and router is None:
            # One pool only: the router is made just to drain (pools/routing.py is
            # imported now, mem3). Before anything is closed: should the import fail
            # (no descriptor left under load, the package replaced in place before a
            # recycle), the worker stops as on a stop, finishing what is in flight,
            # instead of raising with its listeners closed.
            try:
                router = self.router = self._router(None)
            except Exception:
                log.exception("drain: connections cannot be handed over; stopping instead")
                drain = None
        for server in self.server.servers:
            server.close()
        # A connection the loop accepted just before the close is not in
        # state.connections yet: asyncio registers it two loop turns later (a task
        # makes its transport, which schedules connection_made). Let those turns run,
        # or the snapshot below misses it and the process exits under it.
        for _ in range(_ACCEPT_TURNS):
            await asyncio.sleep(0)
        if self.channel is not None:
            # From now on only the other workers take new connections: a
            # configuration write waits for this before it says it is applied.
            self.channel.send(ipc.Draining())
        if drain is None or not drain.migrate:
            log.info("stopping: finishing requests in flight (up to %.0fs)", deadline)
            await self.server.stop(deadline)
            return
        # Draining for a recycle or an idle shutdown: give every connection back to
        # the master as soon as it is idle (none is closed).
        log.info("draining: handing connections over (up to %.0fs)", deadline)
        assert router is not None  # made above
        router.draining = True
        self.state.router = router
        router.hand_over_idle(list(self.state.connections))
        if not await self.state.wait_all_closed(deadline):
            log.warning(
                "drain: %d connection(s) still busy after %.1fs; closing",
                len(self.state.connections),
                deadline,
            )
            self.state.abort_all()
            await self.state.settle(settle_time(deadline))
        await router.wait()
        if self.channel is not None:
            await self._channel_flushed()

    def _stop_deadline(self) -> float:
        settings = self.config.pools.get(self.pool)
        return settings.shutdown_time_limit if settings is not None else 30.0

    async def _channel_flushed(self) -> None:
        """Wait (briefly) until every handed-over connection has left."""
        channel = self.channel
        for _ in range(200):
            if channel is None or channel.closed or not channel.pending:
                return
            await asyncio.sleep(0.005)


#: Event-loop turns an accepted connection needs to reach ``connection_made``
#: (plain TCP: the accept task's turn, then the transport's scheduled call).
_ACCEPT_TURNS = 3


def _setup_logging(level: str, pool: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [{pool}:{os.getpid()}] %(name)s: %(message)s",
    )
    logformat.use_json_if_asked(pool)  # serve --log-format json, inherited by the worker
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process (started by the master only)."""
    # One option, from the master's command line (pools/spawn.py): no argparse
    # (0.4 MiB of every worker's RSS) to read it.
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--control-fd" or not args[1].isdigit():
        print("usage: python -m colonnade.pools.worker --control-fd N", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master owns Ctrl-C
    die_with_parent()
    control = socket.socket(fileno=int(args[1]))
    received = ipc.recv_blocking(control)
    if received is None:
        return 1
    start, _payload, fds = received
    for fd in fds:
        os.close(fd)
    if not isinstance(start, ipc.Start):
        return 1
    _setup_logging(start.log_level, start.pool)
    try:
        config = start.source.load()
        settings = config.pools.get(start.pool)
        if settings is None:
            raise ConfigError(f"no pool named {start.pool!r}")
        view = pool_view(config, start.pool)
        # Before the engine too: the farms its handlers make start in the
        # operator's states (a member drained before this worker started).
        farms.set_admin(start.farm_admin)
        # Before the engine: modules find the server's zones in it at provision
        # (mapped at the first one a module asks for: core/arenafd.py).
        arenafd.inherited = start.shared_fd
        apply_limits(settings.limits)
        if settings.sandbox:
            _sandbox(start, view, required=settings.sandbox is True)
        from colonnade.modules.standard import BUILTIN

        registry = Registry.standard(BUILTIN, with_entry_points=False)
        for module_id, target, origin in start.entry_points:
            registry.add(module_id, target, origin=origin)
        engine = Engine(view, registry)
        engine.start()
    except (ConfigError, ModuleError, SandboxError) as exc:
        log.error("cannot start: %s", exc)
        ipc.send_blocking(control, ipc.Failed(error=str(exc)))
        return 3
    except Exception as exc:
        log.exception("cannot start")
        ipc.send_blocking(control, ipc.Failed(error=repr(exc)))
        return 3
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_serve(start, control, config, engine, registry))
    return 0


async def _serve(
    start: ipc.Start,
    control: socket.socket,
    config: ServerConfig,
    engine: Engine,
    registry: Registry,
) -> None:
    await Worker(start, control, config, engine, registry).run()


def _sandbox(start: ipc.Start, view: ServerConfig, *, required: bool) -> None:
    read = [*content_folders(view), *tls_folders(view), *python_paths()]
    pool = view.pools.get(start.pool)
    temp = [start.temp_dir] if start.temp_dir else []
    write = [*temp, *(pool.writable if pool is not None else ())]
    try:
        abi = confine(read, write)
    except SandboxError as exc:
        if required:
            raise
        log.warning('sandbox = "best-effort": running unconfined: %s', exc)
        return
    log.info("sandboxed with Landlock ABI %d: read %d folder(s), write %s", abi, len(read), write)


if __name__ == "__main__":
    sys.exit(main())
