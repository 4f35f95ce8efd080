"""The master process: Colonnade's activation service (IIS: WAS with HTTP.sys's queues).

How this works
--------------
The master reads and checks the whole configuration (as ``colonnade check``
does, but without importing any application: that happens only in the pool's
own workers; and in a short-lived child process, ``checker.py``, so that the
master itself never imports the engine to supervise), binds every listening
socket once, and never serves a request itself. Per pool it keeps a
:class:`~colonnade.pools.pool.Pool`: its worker processes, a queue of connections
waiting for one of them, and the failure history. :class:`Master` owns that state
and wires four parts, each with one job:

- ``frontdoor.py`` (:class:`FrontDoor`): the listening sockets. The workers of a
  port's owner pool accept from them directly; while that pool has no serving
  worker the master accepts instead, reads the request head, routes it, and
  delivers the connection to a worker of the right pool or queues it (a stopped
  pool or a full queue is answered 503). Connections a worker hands over (a
  request for another pool, or idle connections of a draining worker) go the
  same way. The master never relays a byte of a connection.
- ``workers.py`` (:class:`Workers`): worker processes through their life (spawned
  by ``spawn.py``), their control channel (``ipc.py``), and overlapped recycling.
- ``supervision.py`` (:class:`Supervisor`): the 100 ms tick (time limits, pings,
  recycling triggers, idle timeout, schedule) and rapid-fail protection.
- ``commands.py``: the control socket's commands (``colonnade pools`` …).

The master itself: loading and reloading the configuration (SIGHUP, a command,
or a watched file: a broken one is logged and ignored; pools whose inputs
changed are recycled, the others re-read their ``web.toml`` files), starting
and stopping pools (:meth:`Master.stop_pool`, :meth:`Master.start_pool`), and
signals: SIGTERM/SIGINT stop gracefully (a second one kills the workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from colonnade.config.load import locate
from colonnade.config.schema import ServerConfig
from colonnade.config.sections import WEB_TOML
from colonnade.config.tree import BrokenDir, log_broken
from colonnade.core import shared
from colonnade.errors import ConfigError, ModuleError
from colonnade.pools import checker, systemd
from colonnade.pools.config import (
    ConfigSource,
    content_folders,
    fingerprint,
    log_refused,
    used_pools,
    worker_count,
)
from colonnade.pools.control import Command, ControlServer, socket_path
from colonnade.pools.frontdoor import FrontDoor
from colonnade.pools.metrics import Departed
from colonnade.pools.pool import Pool, PoolState, WorkerState
from colonnade.pools.preflight import Preflight
from colonnade.pools.routes import RouteTable
from colonnade.pools.sandbox import Identity, landlock_abi, resolve_identity, trim_memory
from colonnade.pools.supervision import Supervisor
from colonnade.pools.workers import Workers

if TYPE_CHECKING:
    from colonnade.config.codewatch import CodeWatch
    from colonnade.core.registry import Registry
    from colonnade.engine import Engine
    from colonnade.pools.api import AdminServer

log = logging.getLogger("colonnade.pools")
#: Where the master logs the web.toml files the workers confine (once for all of them).
config_log = logging.getLogger("colonnade.config")


class Loaded:
    """A checked configuration and what the master derives from it."""

    def __init__(self, source: ConfigSource, config: ServerConfig, routes: RouteTable) -> None:
        self.source = source
        self.config = config
        self.routes = routes
        self.used = used_pools(config)  # pools some application is served by
        self.identities: dict[str, Identity | None] = {}
        self.sources: frozenset[str] = frozenset()  # application module sources
        self.preflight: Preflight | None = None  # what each pool's user must reach
        #: The web.toml files the check found broken (their folders answer 500.19).
        self.broken: tuple[BrokenDir, ...] = ()
        #: The third-party modules the check found (id, ``module:attr``, origin):
        #: handed to every worker, which then reads no entry points itself.
        self.entry_points: list[tuple[str, str, str]] = []
        #: The engine of this configuration (no Python app in it): what the admin
        #: API shows of applications, their plans and effective settings. The
        #: master checks in a child process and builds this only when asked
        #: (:meth:`Master.engine`).
        self.engine: Engine | None = None

    def learn(self, found: checker.Report) -> None:
        """Take what a check of this configuration found."""
        self.broken = found.broken_dirs()
        self.sources = frozenset(found.sources)
        self.entry_points = found.entry_points
        self.preflight = Preflight(self.config, found.needs)


def check(config: ServerConfig, registry: Registry) -> Engine:
    """Build ``config`` as a worker would, to check every level; starts nothing (the
    Python apps themselves are imported by the workers only)."""
    return checker.build(config, registry)


def load(source: ConfigSource, registry: Registry | None = None, *, read: bool = True) -> Loaded:
    """Read and check the configuration; raises ConfigError/ModuleError naming the key.

    ``registry``: check in this process with these modules (``colonnade check``; the
    engine built is kept in :attr:`Loaded.engine`); None: check in a child process
    (``pools/checker.py``), as the master does, which never imports the engine to
    supervise. ``read=False``: check the text ``source`` holds (a configuration
    write not made yet), not the file's.
    """
    if read or source.text is None:
        source = source.read()
    config = source.load()
    routes = RouteTable(config)
    loaded = Loaded(source, config, routes)
    if registry is None:
        found = checker.in_child(source)
    else:
        found, loaded.engine = checker.report(source, registry, config)
    found.raise_errors()
    loaded.learn(found)
    abi: int | None = None
    for name, settings in config.pools.items():
        try:
            loaded.identities[name] = resolve_identity(settings, name)
        except ConfigError as exc:
            raise locate(exc, config.source, config.lines) from None
        if settings.sandbox is True:
            abi = landlock_abi() if abi is None else abi
            if abi < 1:
                raise ConfigError(
                    'this kernel has no Landlock; set sandbox = "best-effort" to run unconfined',
                    file=config.source,
                    line=config.lines.line_for(f"pools.{name}.sandbox") if config.lines else None,
                    key=f"pools.{name}.sandbox",
                )
    return loaded


class Master:
    """The activation service; ``await run()`` serves until stopped by a signal."""

    def __init__(
        self,
        source: ConfigSource,
        *,
        registry: Registry | None = None,
        log_level: str = "INFO",
        watch: bool = True,
        code: CodeWatch | None = None,
    ) -> None:
        self.source = source
        self._registry = registry
        self.log_level = log_level
        self.watch = watch
        #: ``serve --reload``: the application code whose change recycles the pools.
        self.code = code
        #: When (monotonic) the code last changed: a worker spawned before then may
        #: have imported the old code, and is recycled once ready.
        self.code_changed_at = float("-inf")
        self.loaded: Loaded | None = None
        self.generation = 1
        self.pools: dict[str, Pool] = {}
        self.frontdoor = FrontDoor(self)
        self.workers = Workers(self)
        self.supervisor = Supervisor(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self._stop = asyncio.Event()
        self._all_gone = asyncio.Event()
        self._signals = 0
        self.control: ControlServer | None = None
        #: The admin binding (``[admin] bind``), when there is one; fixed at start.
        self.admin: AdminServer | None = None
        self.started = time.time()
        self._reload_lock = asyncio.Lock()
        #: Memory shared by every worker of every pool (rate counters): created
        #: before any worker (in ``run``), passed to each one, kept until the
        #: master stops.
        self.shared: shared.SharedMemory | None = None
        #: The operator's farm member states (``colonnade farm drain|disable``):
        #: farm -> member -> "draining" | "disabled". Kept here, across reloads,
        #: and handed to every worker (``ipc.Start``, ``ipc.FarmAdmin``).
        self.farm_admin: dict[str, dict[str, str]] = {}
        #: sd_notify (a no-op unless systemd gave a NOTIFY_SOCKET).
        self.notifier = systemd.Notifier()
        #: The counters of exited workers and the recycles (``GET /metrics``).
        self.departed = Departed()
        #: A :func:`release_memory` asked for by :meth:`release_memory_soon`, not run yet.
        self._release: asyncio.Handle | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def config(self) -> ServerConfig:
        assert self.loaded is not None
        return self.loaded.config

    @property
    def routes(self) -> RouteTable:
        assert self.loaded is not None
        return self.loaded.routes

    @property
    def used(self) -> set[str]:
        assert self.loaded is not None
        return self.loaded.used

    @property
    def registry(self) -> Registry:
        """The modules the admin API's engine is built with (:meth:`engine`): the
        built-in ones and the installed third-party ones, found on the first ask."""
        if self._registry is None:
            from colonnade.core.registry import Registry
            from colonnade.modules.standard import BUILTIN

            self._registry = Registry.standard(BUILTIN)
        return self._registry

    def engine(self) -> Engine:
        """The engine of the configuration served (no Python app in it), for the
        admin API and configuration writes: built on the first ask and kept until
        the configuration changes. Supervising needs none: the first such query
        imports the engine and the enabled modules into the master (see
        docs/process-model.md, "Memory")."""
        loaded = self.loaded
        if loaded is None:  # pragma: no cover - set before the control socket opens
            raise ConfigError("the configuration is not loaded")
        if loaded.engine is None:
            loaded.engine = check(loaded.config, self.registry)
        return loaded.engine

    @property
    def sources(self) -> frozenset[str]:
        """The files application modules are imported from (watched)."""
        assert self.loaded is not None
        return self.loaded.sources

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Load, bind, start what must run, serve until SIGTERM/SIGINT, then stop."""
        loop = asyncio.get_running_loop()
        _raise_open_files()
        self.loaded = load(self.source)
        self.source = self.loaded.source
        log_broken(self.loaded.broken, config_log)
        server = self.config.server
        self.frontdoor.listen(
            list(self.routes.listen), server.listen_backlog, server.tcp_notsent_lowat
        )
        systemd.unclaimed()
        self.shared = shared.create()
        self.control = ControlServer(socket_path(self.config), self._command)
        try:
            await self.control.start()
            if self.config.admin.bind is not None:
                # The API and the console (and TLS for them) only where they are served.
                from colonnade.pools.api import AdminServer

                self.admin = AdminServer(
                    self.config.admin, self.config.server.tls, self.control.handler
                )
                log.info("admin API on %s", await self.admin.start())
        except BaseException:
            await self.control.close()
            self.frontdoor.close()
            self.shared.close()
            raise
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.start_task(self.reload("SIGHUP")))
        self._apply_pools(first=True)
        self.frontdoor.update_accepting()
        self.start_task(self.supervisor.run())
        if self.watch:
            self.start_task(self._watch())
        log.info(
            "master %d: %d pool(s), listening on %s; control socket %s",
            os.getpid(),
            len(self.pools),
            ", ".join(str(b) for b in self.routes.listen.values()),
            self.control.path,
        )
        # Ready: connections are accepted from here on (queued while a pool's
        # workers start).
        self.notifier.ready(self._status())
        self.start_task(self.notifier.watchdog())
        release_memory()  # what loading and checking the configuration left
        try:
            await self._stop.wait()
            await self._shutdown()
        finally:
            for task in list(self._tasks):
                task.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            await self.control.close()
            if self.admin is not None:
                await self.admin.close()
            self.frontdoor.close()
            for pool in self.pools.values():
                _remove_temp(pool)
            self.shared.close()
        log.info("master stopped")

    def _status(self) -> str:
        # The STATUS= line systemctl status shows.
        return (
            f"generation {self.generation}: {len(self.pools)} pool(s), listening on "
            + ", ".join(str(b) for b in self.routes.listen.values())
        )

    def _on_stop_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("stopping: workers finish their requests")
            self.stop()
        else:
            log.warning("stopping now: killing the workers")
            for pool in self.pools.values():
                for w in pool.workers:
                    self.workers.kill(w, expected=True)

    def stop(self) -> None:
        """Stop gracefully (what SIGTERM does)."""
        if not self._stop.is_set():
            self.notifier.stopping("stopping: workers finish their requests")
        self._stop.set()

    async def _shutdown(self) -> None:
        self.stopping = True
        self.frontdoor.stop()
        for pool in self.pools.values():
            pool.demand = False
            for w in list(pool.workers):
                self.workers.drain(w, migrate=False)
        if any(pool.workers for pool in self.pools.values()):
            await self._all_gone.wait()

    def start_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; cancelled when the master stops."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- pools -----------------------------------------------------------------------------

    def stop_pool(self, pool: Pool, reason: str) -> None:
        """Stop ``pool`` (a command, rapid-fail protection): its workers drain, and its
        requests are answered 503 naming ``reason`` until it is started again."""
        pool.state, pool.reason = PoolState.STOPPED, reason
        pool.demand = False
        self.frontdoor.fail_queue(pool)
        for w in list(pool.workers):
            self.workers.drain(w, migrate=False)
        self.frontdoor.update_accepting()

    def preflight(self, pool: Pool) -> bool:
        """Whether the pool's user can reach what its workers need; else the pool is
        stopped with the reason (its workers would only die into rapid-fail protection)."""
        assert self.loaded is not None and self.loaded.preflight is not None
        why = self.loaded.preflight.refusal(pool.name, pool.identity, temp_dir=pool.temp_dir)
        if why is not None:
            log.error("pool %s not started: %s", pool.name, why)
            self.stop_pool(pool, why)
        return why is None

    def start_pool(self, pool: Pool) -> bool:
        """Start a stopped ``pool`` again (clears its failure history); False when its
        preflight still refuses it."""
        if not self.preflight(pool):
            return False
        pool.state, pool.reason = (PoolState.RUNNING if pool.workers else PoolState.IDLE), ""
        pool.failures.clear()
        pool.next_spawn = 0.0
        if pool.settings.start == "always":
            pool.demand = True
            self.workers.ensure(pool)
        self.frontdoor.update_accepting()
        return True

    def worker_gone(self, pool: Pool) -> None:
        """A worker of ``pool`` exited: forget a removed pool once it has no worker left,
        and finish stopping once no pool has one."""
        if pool.name not in self.config.pools and not pool.workers:
            _remove_temp(self.pools.pop(pool.name, pool))
        if self.stopping and not any(p.workers for p in self.pools.values()):
            self._all_gone.set()

    # -- configuration ---------------------------------------------------------------------

    def _apply_pools(self, *, first: bool = False) -> None:
        config = self.config
        assert self.loaded is not None
        used = self.used
        workers = self.workers
        for name, settings in config.pools.items():
            pool = self.pools.get(name)
            fresh = fingerprint(config, name)
            if pool is None:
                pool = self.pools[name] = Pool(name, settings)
            changed = bool(pool.fingerprint) and fresh != pool.fingerprint
            pool.settings = settings
            pool.identity = self.loaded.identities.get(name)
            pool.fingerprint = fresh
            if settings.sandbox and pool.temp_dir is None:
                pool.temp_dir = _make_temp(name, pool.identity)
            if changed and pool.state is PoolState.STOPPED:
                pool.state, pool.reason = PoolState.IDLE, ""
                pool.failures.clear()
            if name not in used:
                if pool.workers:
                    log.info("pool %s serves no application any more: stopping it", name)
                    for w in list(pool.workers):
                        workers.drain(w, migrate=True)
                pool.demand = False
                continue
            if (
                pool.state is not PoolState.STOPPED
                and (changed or not pool.workers)
                and not self.preflight(pool)
            ):
                continue
            if not first:
                if changed and settings.recycling.on_config_change:
                    workers.recycle(pool, "configuration changed")
                else:
                    workers.reload_config(pool)  # their web.toml files may have changed
                extra = len(pool.live()) - worker_count(settings)
                for w in [w for w in pool.live() if w.state is WorkerState.READY][: max(extra, 0)]:
                    workers.drain(w, migrate=True)
            if settings.start == "always" and pool.state is not PoolState.STOPPED:
                pool.demand = True
            workers.ensure(pool)
        for name in [n for n in self.pools if n not in config.pools]:
            pool = self.pools[name]
            log.info("pool %s was removed from the configuration: stopping it", name)
            pool.demand = False
            for w in list(pool.workers):
                workers.drain(w, migrate=True)
            if not pool.workers:
                _remove_temp(self.pools.pop(name))

    async def reload(self, reason: str) -> bool:
        """Re-read the server file; switch only if it is valid in full."""
        async with self._reload_lock:
            if self.stopping:
                return False
            self.notifier.reloading(f"reloading ({reason})")
            refused = await self._reload(reason)
            if refused:
                self.notifier.ready(f"reload ({reason}) refused: {refused}; {self._status()}")
                return False
            self.notifier.ready(self._status())
            return True

    async def _reload(self, reason: str) -> str | None:
        # The reload proper; None once switched, else why it was refused.
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(None, load, self.source)
        except (ConfigError, ModuleError) as exc:
            log_refused(log, reason, exc)
            return "the configuration has errors (see the log)"
        try:
            server = loaded.config.server
            self.frontdoor.listen(
                list(loaded.routes.listen), server.listen_backlog, server.tcp_notsent_lowat
            )
        except OSError as exc:
            log.error("reload (%s) refused: cannot listen: %s", reason, exc)
            return f"cannot listen: {exc}"
        self.loaded = loaded
        self.source = loaded.source
        log_broken(loaded.broken, config_log)
        self.generation += 1
        from colonnade.pools import commands

        kept = commands.known_farm_states(loaded.config, self.farm_admin)
        if kept != self.farm_admin:
            log.info("farm member states of members no longer configured are forgotten")
            self.farm_admin = kept
            await commands.send_farm_admin(self)
        self._apply_pools()
        self.frontdoor.update_accepting()
        log.info("configuration reloaded (%s): generation %d", reason, self.generation)
        release_memory()
        return None

    async def _command(self, command: Command) -> dict[str, Any]:
        # Imported at the first command (or reload): an idle master is asked nothing.
        from colonnade.pools import commands

        return await commands.execute(self, command)

    def release_memory_soon(self) -> None:
        """:func:`release_memory` at the loop's next turn (once for a burst of calls):
        a worker's start leaves freed heap behind in the master (~0.3 MiB: its
        spawn, its start message, the connections it was handed)."""
        if self._release is None:
            self._release = asyncio.get_running_loop().call_soon(self._release_memory)

    def _release_memory(self) -> None:
        self._release = None
        release_memory()

    async def _watch(self) -> None:
        """One watcher for the whole server: the server file, every ``web.toml`` and
        the source files of application modules.

        A changed server file is a reload; a changed ``web.toml`` or module source is
        re-read by every running worker at once (so a web garden never serves two
        versions); a worker rebuilds the applications whose inputs changed.
        """
        from colonnade.config.watch import changes

        while not self._stop.is_set():
            file = self.source.file
            real = os.path.realpath(file) if file else None  # noqa: ASYNC240 - no I/O to speak of
            folders = content_folders(self.config)
            sources = self.sources
            async for batch in changes(folders, file, self._stop, sources, self.code):
                changed = batch
                if self.code is not None:
                    edited = {p for p in changed if self.code.matches(p)}
                    if edited:
                        self.reload_code(edited)
                        changed = changed - edited
                if not changed:
                    pass
                elif real is not None and any(os.path.realpath(p) == real for p in changed):  # noqa: ASYNC240
                    await self.reload("changed: " + os.path.basename(real))
                else:
                    recheck = any(os.path.basename(p) == WEB_TOML for p in changed)
                    await self.reread(", ".join(sorted(changed)), recheck=recheck)
                if content_folders(self.config) != folders or self.sources != sources:
                    break  # roots or module sources moved: watch the new ones
            else:
                return

    def reload_code(self, changed: set[str]) -> None:
        """``serve --reload``: application code changed; every pool's workers are
        recycled, overlapped (new workers import the new code and take over; the
        old ones finish their requests), as ``colonnade recycle`` does."""
        names = ", ".join(sorted(os.path.basename(p) for p in changed))
        log.info("code changed (%s): recycling the workers of every pool", names)
        self.code_changed_at = time.monotonic()
        for pool in self.pools.values():
            self.workers.recycle(pool, "code changed")

    async def reread(self, what: str, *, recheck: bool = True) -> None:
        """``what`` changed (a ``web.toml``, a module source): every running worker
        re-reads its configuration at once (so a web garden never serves two
        versions); ``recheck``: the master learns the new application modules."""
        self.generation += 1
        log.info(
            "changed: %s; the workers re-read their configuration: generation %d",
            what,
            self.generation,
        )
        for pool in self.pools.values():
            self.workers.reload_config(pool)
        if recheck:
            await self._recheck_sources()

    async def _recheck_sources(self) -> None:
        # A web.toml may have declared or dropped application modules: learn their
        # files as the workers will (a broken one is reported by the workers).
        loaded = self.loaded
        assert loaded is not None
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(None, checker.in_child, loaded.source)
            found.raise_errors()
        except (ConfigError, ModuleError):
            return
        if self.loaded is not loaded:
            return  # a reload took over meanwhile, with a check of its own
        loaded.learn(found)
        loaded.engine = None  # the admin API's, built again from the new web.toml files
        log_broken(loaded.broken, config_log)


def release_memory() -> None:
    """Collect garbage, then give the C heap's free pages back to the system
    (``malloc_trim``): loading a configuration leaves ~0.5 MiB of freed heap the
    idle master would otherwise keep (glibc returns only the top of its heap)."""
    trim_memory()


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# tempfile and shutil (with random, zlib, bz2 and lzma: ~0.5 MiB) are imported only
# for a sandboxed pool's temp folder: most masters never need them.
def _make_temp(pool: str, identity: Identity | None) -> str:
    import tempfile

    folder = tempfile.mkdtemp(prefix=f"colonnade-{pool}-")
    if identity is not None:
        os.chown(folder, identity.uid, identity.gid)
    return folder


def _remove_temp(pool: Pool) -> None:
    if pool.temp_dir is not None:
        import shutil

        shutil.rmtree(pool.temp_dir, ignore_errors=True)
        pool.temp_dir = None


def run(
    source: ConfigSource,
    *,
    log_level: str,
    watch: bool,
    code: CodeWatch | None = None,
) -> None:
    """Run the master in this process until it is stopped."""
    from colonnade.pools.lean import loop_factory

    async def main() -> None:
        await Master(source, log_level=log_level, watch=watch, code=code).run()

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())
