"""The master process: Colonnade's activation service (IIS: WAS with HTTP.sys's queues).

How this works
--------------
The master reads and checks the whole configuration (as ``colonnade check``
does, but without importing any application: that happens only in the pool's
own workers), binds every listening socket once, and never serves a request
itself. Per pool it keeps a :class:`Pool`: its worker processes, a queue of
connections waiting for one of them, and the failure history.

- Accepting. The workers of a port's owner pool (``RouteTable.owner``) accept
  from the inherited listening socket directly. When that pool has no ready
  worker (on-demand and not started yet, idle, restarting, stopped), the
  master accepts instead, reads the request head, routes it, and queues the
  connection for the right pool while it starts a worker; a stopped pool or a
  full queue is answered 503. Nothing is refused: between the moment a worker
  stops accepting and the moment the master starts, connections wait in the
  listening socket's backlog.
- Passing connections. A worker that reads a request for another pool, or
  that drains, sends the socket and the bytes it read to the master over its
  control channel (``pools/ipc.py``); the master sends both to a ready worker
  of the right pool (round robin), or queues them. The master never relays a
  byte of a connection.
- Supervision, on a 100 ms tick: start and shutdown time limits, pings
  (``ping_interval``/``ping_response_time``; a hung worker is killed), recycling
  by uptime, request count, memory and schedule, idle timeout, and rapid-fail
  protection (``max_crashes`` failures in ``interval`` stop the pool, which the
  master then answers 503 for). A recycle is overlapped: the replacement starts,
  and only when it reports ready is the old worker told to drain.
- Signals: SIGTERM/SIGINT stop gracefully (a second one kills the workers),
  SIGHUP reloads the server file (a broken one is logged and ignored; pools whose
  inputs changed are recycled, the others re-read their ``web.toml`` files).
  Worker exits are noticed through a pidfd per worker, not SIGCHLD.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from colonnade.config.load import locate
from colonnade.config.schema import PoolConfig, ServerConfig
from colonnade.config.tree import WEB_TOML
from colonnade.core.registry import Registry
from colonnade.core.request import is_local_client
from colonnade.engine import Engine
from colonnade.engine.sites import Binding
from colonnade.errors import ConfigError, ModuleError
from colonnade.http import HTTP1Connection, ProtocolError, RequestHead
from colonnade.http.h1 import reason_phrase
from colonnade.pools import ipc
from colonnade.pools.config import (
    ConfigSource,
    content_folders,
    fingerprint,
    used_pools,
    without_python_apps,
    worker_count,
)
from colonnade.pools.control import Command, ControlServer, socket_path
from colonnade.pools.preflight import EXECUTE, Preflight, check_access
from colonnade.pools.routing import RouteTable, pool_of_head
from colonnade.pools.sandbox import Identity, landlock_abi, resolve_identity
from colonnade.transport.server import bind_socket

log = logging.getLogger("colonnade.pools")

TICK = 0.1
#: How long a stopping worker may overrun ``shutdown_time_limit`` before SIGKILL.
KILL_GRACE = 2.0

STARTING, READY, DRAINING = "starting", "ready", "draining"
IDLE, RUNNING, STOPPED = "idle", "running", "stopped"


class WorkerProcess:
    """The master's view of one worker process."""

    def __init__(self, pool: Pool, proc: subprocess.Popen[bytes], generation: int) -> None:
        now = time.monotonic()
        self.pool = pool
        self.proc = proc
        self.pid = proc.pid
        self.generation = generation
        self.state = STARTING
        self.started = now
        self.started_wall = time.time()
        self.ready_at = now
        self.last_activity = now
        self.requests = 0
        self.active = 0
        self.connections = 0
        self.rss = 0
        self.private = 0
        self.memory_read = 0.0
        self.ping_id = 0
        self.ping_sent: float | None = None
        self.last_ping = now
        self.replaces: WorkerProcess | None = None  # the worker this one takes over from
        self.retiring = False  # a replacement is on its way
        self.expected = False  # an exit now is not a failure
        self.kill_at = 0.0
        self.error: str | None = None
        self.pidfd = -1
        self.channel: ipc.Channel | None = None

    def describe(self) -> dict[str, Any]:
        """For ``colonnade pools``."""
        return {
            "pid": self.pid,
            "state": "retiring" if self.retiring and self.state == READY else self.state,
            "uptime": round(time.time() - self.started_wall, 3),
            "requests": self.requests,
            "active": self.active,
            "connections": self.connections,
            "rss": self.rss,
            "private": self.private,
            "generation": self.generation,
        }


class Pool:
    """One application pool: its settings, workers, queue and failures."""

    def __init__(self, name: str, settings: PoolConfig) -> None:
        self.name = name
        self.settings = settings
        self.state = IDLE
        self.reason = ""
        self.workers: list[WorkerProcess] = []
        self.queue: deque[tuple[int, bytes, int]] = deque()  # (fd, bytes read, port)
        self.failures: deque[float] = deque()
        self.demand = False  # should have its workers running
        self.rr = 0
        self.fingerprint = b""
        self.identity: Identity | None = None
        self.temp_dir: str | None = None
        self.schedule_mark = time.time()
        self.next_spawn = 0.0

    def live(self) -> list[WorkerProcess]:
        """Workers that count toward ``workers``: starting or ready, not being replaced."""
        return [w for w in self.workers if w.state in (STARTING, READY) and not w.retiring]

    def next_worker(self) -> WorkerProcess | None:
        """A ready worker, round robin (one being replaced only if there is no other)."""
        ready = [w for w in self.workers if w.state == READY and not w.retiring]
        ready = ready or [w for w in self.workers if w.state == READY]
        if not ready:
            return None
        self.rr = (self.rr + 1) % len(ready)
        return ready[self.rr]

    def describe(self) -> dict[str, Any]:
        """For ``colonnade pools``."""
        return {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "start": self.settings.start,
            "workers": [w.describe() for w in self.workers],
            "queue": len(self.queue),
            "failures": len(self.failures),
        }


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


def check(config: ServerConfig, registry: Registry) -> Engine:
    """Build ``config`` as a worker would, to check every level; starts nothing (the
    Python apps themselves are imported by the workers only)."""
    return Engine(without_python_apps(config), registry)


def load(source: ConfigSource, registry: Registry) -> Loaded:
    """Read and check the configuration; raises ConfigError/ModuleError naming the key."""
    source = source.read()
    config = source.load()
    routes = RouteTable(config)
    loaded = Loaded(source, config, routes)
    checked = check(config, registry)
    loaded.sources = checked.sources
    loaded.preflight = Preflight(config, checked)
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
        registry: Registry,
        log_level: str = "INFO",
        watch: bool = True,
    ) -> None:
        self.source = source
        self.registry = registry
        self.log_level = log_level
        self.watch = watch
        self.loaded: Loaded | None = None
        self.generation = 1
        self.pools: dict[str, Pool] = {}
        self.listeners: dict[tuple[str, int], socket.socket] = {}
        self._accepting: set[tuple[str, int]] = set()
        self._peeks: set[_Peek] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self._stop = asyncio.Event()
        self._all_gone = asyncio.Event()
        self._signals = 0
        self.control: ControlServer | None = None
        self.started = time.time()
        self._reload_lock = asyncio.Lock()

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
    def sources(self) -> frozenset[str]:
        """The files application modules are imported from (watched)."""
        assert self.loaded is not None
        return self.loaded.sources

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Load, bind, start what must run, serve until SIGTERM/SIGINT, then stop."""
        loop = asyncio.get_running_loop()
        _raise_open_files()
        self.loaded = load(self.source, self.registry)
        self.source = self.loaded.source
        for key in self.routes.listen:
            self.listeners[key] = self._bind(key)
        self.control = ControlServer(socket_path(self.config), self.command)
        try:
            await self.control.start()
        except BaseException:
            self._close_listeners()
            raise
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))
        self._apply_pools(first=True)
        self._update_accepting()
        self._spawn(self._tick())
        if self.watch:
            self._spawn(self._watch())
        log.info(
            "master %d: %d pool(s), listening on %s; control socket %s",
            os.getpid(),
            len(self.pools),
            ", ".join(str(b) for b in self.routes.listen.values()),
            self.control.path,
        )
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
            self._close_listeners()
            for pool in self.pools.values():
                _remove_temp(pool)
        log.info("master stopped")

    def _on_stop_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("stopping: workers finish their requests")
            self._stop.set()
        else:
            log.warning("stopping now: killing the workers")
            for pool in self.pools.values():
                for w in pool.workers:
                    self._kill(w, expected=True)

    def stop(self) -> None:
        """Stop gracefully (what SIGTERM does)."""
        self._stop.set()

    async def _shutdown(self) -> None:
        self.stopping = True
        self._update_accepting()
        for peek in list(self._peeks):
            peek.close()
        for pool in self.pools.values():
            pool.demand = False
            while pool.queue:
                fd, _, _ = pool.queue.popleft()
                _close(fd)
            for w in list(pool.workers):
                self._drain(w, migrate=False)
        if any(pool.workers for pool in self.pools.values()):
            await self._all_gone.wait()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- configuration ---------------------------------------------------------------------

    def _apply_pools(self, *, first: bool = False) -> None:
        config = self.config
        assert self.loaded is not None
        used = self.used
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
            if changed and pool.state == STOPPED:
                pool.state, pool.reason = IDLE, ""
                pool.failures.clear()
            if name not in used:
                if pool.workers:
                    log.info("pool %s serves no application any more: stopping it", name)
                    for w in list(pool.workers):
                        self._drain(w, migrate=True)
                pool.demand = False
                continue
            if (
                pool.state != STOPPED
                and (changed or not pool.workers)
                and not self._preflight(pool)
            ):
                continue
            if not first:
                if changed and settings.recycling.on_config_change:
                    self.recycle(pool, "configuration changed")
                else:
                    for w in pool.workers:
                        if w.state == READY and w.channel is not None:
                            w.channel.send(ipc.Reload())  # their web.toml files may have changed
                extra = len(pool.live()) - worker_count(settings)
                for w in [w for w in pool.live() if w.state == READY][: max(extra, 0)]:
                    self._drain(w, migrate=True)
            if settings.start == "always" and pool.state != STOPPED:
                pool.demand = True
            self._ensure(pool)
        for name in [n for n in self.pools if n not in config.pools]:
            pool = self.pools[name]
            log.info("pool %s was removed from the configuration: stopping it", name)
            pool.demand = False
            for w in list(pool.workers):
                self._drain(w, migrate=True)
            if not pool.workers:
                _remove_temp(self.pools.pop(name))

    async def reload(self, reason: str) -> bool:
        """Re-read the server file; switch only if it is valid in full."""
        async with self._reload_lock:
            if self.stopping:
                return False
            try:
                loaded = await asyncio.get_running_loop().run_in_executor(
                    None, load, self.source, self.registry
                )
            except (ConfigError, ModuleError) as exc:
                log.error(
                    "reload (%s) refused, still serving the previous configuration: %s",
                    reason,
                    exc,
                )
                return False
            new: dict[tuple[str, int], socket.socket] = {}
            try:
                for key in loaded.routes.listen:
                    if key not in self.listeners:
                        new[key] = self._bind(key)
            except OSError as exc:
                for sock in new.values():
                    sock.close()
                log.error("reload (%s) refused: cannot listen: %s", reason, exc)
                return False
            for key in [k for k in self.listeners if k not in loaded.routes.listen]:
                self._stop_accepting(key)
                self.listeners.pop(key).close()
            self.listeners.update(new)
            self.loaded = loaded
            self.source = loaded.source
            self.generation += 1
            self._apply_pools()
            self._update_accepting()
            log.info("configuration reloaded (%s): generation %d", reason, self.generation)
            return True

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
            async for changed in changes(folders, file, self._stop, sources):
                if real is not None and any(os.path.realpath(p) == real for p in changed):  # noqa: ASYNC240
                    await self.reload("changed: " + os.path.basename(real))
                else:
                    names = ", ".join(sorted(changed))
                    log.info("changed: %s; the workers re-read their configuration", names)
                    self._reload_workers()
                    if any(os.path.basename(p) == WEB_TOML for p in changed):
                        await self._recheck_sources()
                if content_folders(self.config) != folders or self.sources != sources:
                    break  # roots or module sources moved: watch the new ones
            else:
                return

    async def _recheck_sources(self) -> None:
        # A web.toml may have declared or dropped application modules: learn their
        # files as the workers will (a broken one is reported by the workers).
        loaded = self.loaded
        assert loaded is not None
        try:
            checked = await asyncio.get_running_loop().run_in_executor(
                None, check, loaded.config, self.registry
            )
        except (ConfigError, ModuleError):
            return
        loaded.sources = checked.sources

    def _reload_workers(self) -> None:
        for pool in self.pools.values():
            for worker in pool.workers:
                if worker.state == READY and worker.channel is not None:
                    worker.channel.send(ipc.Reload())

    # -- listening ---------------------------------------------------------------------------

    @staticmethod
    def _bind(key: tuple[str, int]) -> socket.socket:
        return bind_socket(Binding("http", key[0], key[1]))

    def _close_listeners(self) -> None:
        for key in list(self._accepting):
            self._stop_accepting(key)
        for sock in self.listeners.values():
            sock.close()
        self.listeners.clear()

    def _update_accepting(self) -> None:
        """The master accepts on a port exactly when its owner pool has no ready worker."""
        for key, sock in self.listeners.items():
            pool = self.pools.get(self.routes.owner(key[1]))
            served = pool is not None and any(w.state == READY for w in pool.workers)
            if self.stopping or served:
                self._stop_accepting(key)
            elif key not in self._accepting:
                self._accepting.add(key)
                asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, key)

    def _stop_accepting(self, key: tuple[str, int]) -> None:
        if key in self._accepting:
            self._accepting.discard(key)
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.listeners[key].fileno())

    def _accept(self, key: tuple[str, int]) -> None:
        sock = self.listeners.get(key)
        if sock is None:
            return
        for _ in range(64):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept on %s:%d failed: %s", key[0], key[1], exc)
                return
            conn.setblocking(False)
            self._peek(conn.detach(), b"", key[1])

    # -- connections the master holds ------------------------------------------------------

    def _peek(self, fd: int, data: bytes, port: int) -> None:
        """Read the request head of a connection no worker has, then deliver it."""
        limits = self.config.server.limits
        if len(self._peeks) >= limits.max_connections:
            self.answer(fd, 503, "too many connections")
            return
        self._peeks.add(_Peek(self, fd, data, port))

    def on_head(self, peek: _Peek, head: RequestHead | None, error: ProtocolError | None) -> None:
        """A connection's head arrived (or was malformed): route it."""
        self._peeks.discard(peek)
        fd = peek.detach()
        if error is not None:
            log.info("rejected request on port %d: %d %s", peek.port, error.status, error.reason)
            self._send_and_close(fd, peek.parser.error_response(error.status, error.reason))
            return
        assert head is not None
        routes = self.routes
        pool = pool_of_head(routes, peek.port, head)
        if pool is None:
            if not routes.serves_port(peek.port):
                _close(fd)  # a port no longer served
                return
            pool = routes.owner(peek.port)  # no such site: its engine answers 404
        self.deliver(pool, fd, bytes(peek.buf), peek.port)

    def peek_done(self, peek: _Peek) -> None:
        """A held connection closed or timed out before a request."""
        self._peeks.discard(peek)

    def deliver(self, name: str, fd: int, data: bytes, port: int) -> None:
        """Give a connection (and the bytes read of it) to a worker of pool ``name``."""
        pool = self.pools.get(name)
        if pool is None or self.stopping or name not in self.used:
            self.answer(fd, 503, "the application pool is not available")
            return
        if pool.state == STOPPED:
            # Why (paths, users) is for the machine's own users and the log only.
            why = f" ({pool.reason})" if _local_client(fd, data) else ""
            self.answer(fd, 503, f"the application pool is stopped{why}")
            return
        worker = pool.next_worker()
        if worker is not None and worker.channel is not None:
            worker.last_activity = time.monotonic()
            worker.channel.send(ipc.Adopt(port), data, [fd])
            return
        if len(pool.queue) >= pool.settings.queue_length:
            log.warning("pool %s: queue full (%d); answering 503", name, len(pool.queue))
            self.answer(fd, 503, "the application pool's queue is full")
            return
        pool.queue.append((fd, data, port))
        pool.demand = True
        self._ensure(pool)

    def answer(self, fd: int, status: int, text: str) -> None:
        """Answer ``status`` on a connection and close it (the master's own responses)."""
        body = f"{status} {reason_phrase(status).decode()}: {text}\n".encode()
        head = [
            b"HTTP/1.1 %d %s" % (status, reason_phrase(status)),
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        if status == 503:
            head.append(b"Retry-After: 5")
        server = self.config.server.server_header if self.loaded else "colonnade"
        if server:
            head.append(b"Server: " + server.encode())
        self._send_and_close(fd, b"\r\n".join(head) + b"\r\n\r\n" + body)

    def _send_and_close(self, fd: int, data: bytes) -> None:
        self._spawn(_send_and_close(fd, data))

    def _flush_queue(self, pool: Pool) -> None:
        while pool.queue:
            worker = pool.next_worker()
            if worker is None or worker.channel is None:
                return
            fd, data, port = pool.queue.popleft()
            worker.channel.send(ipc.Adopt(port), data, [fd])

    def _fail_queue(self, pool: Pool, text: str) -> None:
        while pool.queue:
            fd, _, _ = pool.queue.popleft()
            self.answer(fd, 503, text)

    # -- workers -----------------------------------------------------------------------------

    def _ensure(self, pool: Pool) -> None:
        """Start workers until the pool has its count (when it should run)."""
        if self.stopping or pool.state == STOPPED or not pool.demand:
            return
        if pool.name not in self.used:
            return
        missing = worker_count(pool.settings) - len(pool.live())
        if missing <= 0 or time.monotonic() < pool.next_spawn:
            return
        for _ in range(missing):
            if self._start_worker(pool) is None:
                return

    def _start_worker(
        self, pool: Pool, replaces: WorkerProcess | None = None
    ) -> WorkerProcess | None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listeners = [
            ipc.Listener(sock.fileno(), key[0], key[1])
            for key, sock in self.listeners.items()
            if self.routes.owner(key[1]) == pool.name
        ]
        settings = pool.settings
        env = dict(os.environ)
        env.update(settings.env)
        env["COLONNADE_POOL"] = pool.name
        kwargs: dict[str, Any] = {}
        cwd = os.getcwd()
        identity = pool.identity
        if identity is not None:
            kwargs.update(user=identity.uid, group=identity.gid, extra_groups=identity.groups)
            if identity.name is not None:
                env.update(USER=identity.name, LOGNAME=identity.name, HOME=identity.home or "/")
            cwd = "/"
        if pool.temp_dir is not None:
            env["TMPDIR"] = pool.temp_dir
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-P",  # no working folder on sys.path: only installed code is imported
                    "-m",
                    "colonnade.pools.worker",
                    "--control-fd",
                    str(child.fileno()),
                ],
                pass_fds=(child.fileno(), *(lst.fd for lst in listeners)),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            parent.close()
            why = str(exc)
            if identity is not None and (
                refused := check_access(identity, sys.executable, EXECUTE)
            ):
                why += f" ({refused})"
            log.error("pool %s: cannot start a worker: %s", pool.name, why)
            self._failure(pool, f"cannot start a worker: {why}")
            return None
        finally:
            child.close()
        worker = WorkerProcess(pool, proc, self.generation)
        worker.replaces = replaces
        pool.workers.append(worker)
        if pool.state == IDLE:
            pool.state = RUNNING
        loop = asyncio.get_running_loop()
        worker.pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(worker.pidfd, self._exited, worker)
        worker.channel = ipc.Channel(
            parent,
            lambda message, payload, fds: self._on_message(worker, message, payload, fds),
            lambda: None,
        )
        start = ipc.Start(
            pool=pool.name,
            generation=self.generation,
            source=self.source,
            listeners=listeners,
            log_level=self.log_level,
            temp_dir=pool.temp_dir,
        )
        worker.channel.send(start)
        log.info(
            "pool %s: started worker %d%s",
            pool.name,
            proc.pid,
            f" (replacing {replaces.pid})" if replaces is not None else "",
        )
        return worker

    def _on_message(
        self, worker: WorkerProcess, message: ipc.Message, payload: bytes, fds: list[int]
    ) -> None:
        if isinstance(message, ipc.Handoff):
            self._on_handoff(worker, message, payload, fds)
            return
        for fd in fds:
            _close(fd)
        now = time.monotonic()
        if isinstance(message, ipc.Ready):
            self._on_ready(worker, now)
        elif isinstance(message, ipc.Stats | ipc.Pong):
            stats = message.stats if isinstance(message, ipc.Pong) else message
            if isinstance(message, ipc.Pong) and message.id == worker.ping_id:
                worker.ping_sent = None
            if stats.requests != worker.requests or stats.active:
                worker.last_activity = now
            worker.requests, worker.active = stats.requests, stats.active
            worker.connections = stats.connections
        elif isinstance(message, ipc.Failed):
            worker.error = message.error
            log.error(
                "pool %s: worker %d failed to start: %s",
                worker.pool.name,
                worker.pid,
                message.error,
            )

    def _on_ready(self, worker: WorkerProcess, now: float) -> None:
        pool = worker.pool
        if worker.state != STARTING:
            return
        worker.state = READY
        worker.ready_at = worker.last_activity = worker.last_ping = now
        log.info(
            "pool %s: worker %d ready in %.0f ms",
            pool.name,
            worker.pid,
            (now - worker.started) * 1000,
        )
        old = worker.replaces
        worker.replaces = None
        if old is not None and old in pool.workers:
            self._drain(old, migrate=True)
        self._flush_queue(pool)
        self._update_accepting()

    def _on_handoff(
        self, worker: WorkerProcess, message: ipc.Handoff, data: bytes, fds: list[int]
    ) -> None:
        if not fds:
            return
        fd, rest = fds[0], fds[1:]
        for extra in rest:
            _close(extra)
        if not _is_tcp(fd):
            log.error("worker %d handed over something that is not a TCP socket", worker.pid)
            _close(fd)
            return
        pool = self.pools.get(message.pool)
        if message.head or (pool is not None and pool.next_worker() is not None):
            self.deliver(message.pool, fd, data, message.port)
        else:
            self._peek(fd, data, message.port)  # idle: wait for a request before starting one

    def _exited(self, worker: WorkerProcess) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            loop.remove_reader(worker.pidfd)
        _close(worker.pidfd)
        code = worker.proc.wait()
        if worker.channel is not None:
            worker.channel.close()
        pool = worker.pool
        if worker in pool.workers:
            pool.workers.remove(worker)
        how = f"signal {-code}" if code < 0 else f"code {code}"
        if worker.expected:
            log.info("pool %s: worker %d exited (%s)", pool.name, worker.pid, how)
        else:
            what = "failed to start" if worker.state == STARTING else "exited unexpectedly"
            log.warning("pool %s: worker %d %s (%s)", pool.name, worker.pid, what, how)
            self._failure(pool, worker.error or f"worker {what} ({how})")
        old = worker.replaces
        if old is not None and old in pool.workers and worker.state == STARTING:
            log.warning(
                "pool %s: the replacement of worker %d did not start; it keeps serving",
                pool.name,
                old.pid,
            )
            old.retiring = False
        if not pool.workers and pool.state == RUNNING:
            pool.state = IDLE
        self._update_accepting()
        self._ensure(pool)
        if pool.name not in self.config.pools and not pool.workers:
            _remove_temp(self.pools.pop(pool.name, pool))
        if self.stopping and not any(p.workers for p in self.pools.values()):
            self._all_gone.set()

    def _failure(self, pool: Pool, reason: str) -> None:
        now = time.monotonic()
        rapid = pool.settings.rapid_fail
        pool.failures.append(now)
        while pool.failures and now - pool.failures[0] > rapid.interval:
            pool.failures.popleft()
        # Restarting at once after a failure would spin: back off while they repeat.
        pool.next_spawn = now + min(0.1 * 2 ** (len(pool.failures) - 1), 5.0)
        if rapid.enabled and len(pool.failures) >= rapid.max_crashes and pool.state != STOPPED:
            log.error(
                "pool %s: %d failures in %.0fs (last: %s); rapid-fail protection stops the "
                "pool: it answers 503 until `colonnade start %s`",
                pool.name,
                len(pool.failures),
                rapid.interval,
                reason,
                pool.name,
            )
            self._stop_pool(pool, "rapid-fail protection")

    def _drain(self, worker: WorkerProcess, *, migrate: bool) -> None:
        if worker.state == DRAINING:
            return
        limit = worker.pool.settings.shutdown_time_limit
        worker.expected = True
        worker.kill_at = time.monotonic() + limit + KILL_GRACE
        if worker.state == STARTING:
            self._kill(worker, expected=True, sig=signal.SIGTERM)
        elif worker.channel is not None:
            worker.channel.send(ipc.Drain(deadline=limit, migrate=migrate))
        worker.state = DRAINING
        self._update_accepting()

    def _kill(self, worker: WorkerProcess, *, expected: bool, sig: int = signal.SIGKILL) -> None:
        worker.expected = worker.expected or expected
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    # -- commands ----------------------------------------------------------------------------

    def recycle(self, pool: Pool, reason: str) -> int:
        """Replace every worker of ``pool`` (overlapped); the number being replaced."""
        workers = [w for w in pool.workers if w.state == READY and not w.retiring]
        for worker in workers:
            self._recycle_worker(worker, reason)
        return len(workers)

    def _recycle_worker(self, worker: WorkerProcess, reason: str) -> None:
        pool = worker.pool
        log.info("pool %s: recycling worker %d (%s)", pool.name, worker.pid, reason)
        worker.retiring = True
        if pool.settings.recycling.overlapping and pool.state != STOPPED:
            if self._start_worker(pool, replaces=worker) is None:
                worker.retiring = False
        else:
            pool.demand = True
            self._drain(worker, migrate=True)

    def _stop_pool(self, pool: Pool, reason: str) -> None:
        pool.state, pool.reason = STOPPED, reason
        pool.demand = False
        self._fail_queue(pool, f"the application pool is stopped ({reason})")
        for w in list(pool.workers):
            self._drain(w, migrate=False)
        self._update_accepting()

    def _preflight(self, pool: Pool) -> bool:
        """Whether the pool's user can reach what its workers need; else the pool is
        stopped with the reason (its workers would only die into rapid-fail protection)."""
        assert self.loaded is not None and self.loaded.preflight is not None
        why = self.loaded.preflight.refusal(pool.name, pool.identity, temp_dir=pool.temp_dir)
        if why is not None:
            log.error("pool %s not started: %s", pool.name, why)
            self._stop_pool(pool, why)
        return why is None

    def _start_pool(self, pool: Pool) -> bool:
        if not self._preflight(pool):
            return False
        pool.state, pool.reason = (RUNNING if pool.workers else IDLE), ""
        pool.failures.clear()
        pool.next_spawn = 0.0
        if pool.settings.start == "always":
            pool.demand = True
            self._ensure(pool)
        self._update_accepting()
        return True

    async def command(self, command: Command) -> dict[str, Any]:
        """One control-socket command."""
        if command.op == "pools":
            for pool in self.pools.values():
                for w in pool.workers:
                    _read_memory(w)
            return {
                "ok": True,
                "master": {
                    "pid": os.getpid(),
                    "uptime": round(time.time() - self.started, 3),
                    "generation": self.generation,
                    "config": self.source.file,
                },
                "pools": [pool.describe() for pool in self.pools.values()],
            }
        if command.op == "reload":
            if await self.reload("command"):
                return {"ok": True, "message": "configuration reloaded"}
            return {"ok": False, "error": "reload refused: see the server log"}
        found = self.pools.get(command.pool or "")
        if found is None:
            return {"ok": False, "error": f"no pool named {command.pool!r}"}
        if command.op == "recycle":
            if found.state == STOPPED:
                return {"ok": False, "error": f"pool {found.name} is stopped"}
            count = self.recycle(found, "command")
            return {"ok": True, "message": f"recycling {count} worker(s) of pool {found.name}"}
        if command.op == "stop":
            self._stop_pool(found, "stopped by command")
            return {"ok": True, "message": f"pool {found.name} stopped"}
        if not self._start_pool(found):
            return {"ok": False, "error": f"pool {found.name} stays stopped: {found.reason}"}
        return {"ok": True, "message": f"pool {found.name} started"}

    # -- supervision -------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                now = time.monotonic()
                wall = time.time()
                for pool in list(self.pools.values()):
                    self._supervise(pool, now, wall)
            except Exception:
                log.exception("supervision tick failed")

    def _supervise(self, pool: Pool, now: float, wall: float) -> None:
        settings = pool.settings
        for worker in list(pool.workers):
            if worker.state == STARTING and now - worker.started > settings.startup_time_limit:
                log.error(
                    "pool %s: worker %d not ready after %.0fs; killing it",
                    pool.name,
                    worker.pid,
                    settings.startup_time_limit,
                )
                self._kill(worker, expected=False)
            elif worker.state == DRAINING and now > worker.kill_at:
                log.warning(
                    "pool %s: worker %d did not stop in time; killing it", pool.name, worker.pid
                )
                self._kill(worker, expected=True)
                worker.kill_at = now + 60
            elif worker.state == READY:
                self._check_health(worker, now)
        if self.stopping or pool.state == STOPPED:
            return
        self._check_idle(pool, now)
        self._check_schedule(pool, wall)
        self._ensure(pool)
        if pool.queue:
            self._flush_queue(pool)

    def _check_health(self, worker: WorkerProcess, now: float) -> None:
        settings = worker.pool.settings
        if settings.ping and worker.channel is not None:
            if worker.ping_sent is not None:
                if now - worker.ping_sent > settings.ping_response_time:
                    log.error(
                        "pool %s: worker %d did not answer a ping in %.0fs; killing it",
                        worker.pool.name,
                        worker.pid,
                        settings.ping_response_time,
                    )
                    worker.ping_sent = None
                    self._kill(worker, expected=False)
                    return
            elif now - worker.last_ping >= settings.ping_interval:
                worker.ping_id += 1
                worker.ping_sent = worker.last_ping = now
                worker.channel.send(ipc.Ping(worker.ping_id))
        if worker.retiring:
            return
        reason = _recycle_reason(worker, settings, now)
        if reason is not None:
            self._recycle_worker(worker, reason)

    def _check_idle(self, pool: Pool, now: float) -> None:
        timeout = pool.settings.idle_timeout
        ready = [w for w in pool.workers if w.state == READY and not w.retiring]
        if not timeout or not ready or pool.queue:
            return
        if any(now - w.last_activity < timeout or w.active for w in ready):
            return
        log.info(
            "pool %s: no request for %.0fs; stopping its %d worker(s)",
            pool.name,
            timeout,
            len(ready),
        )
        for worker in ready:
            if pool.settings.start == "always":
                self._recycle_worker(worker, "idle timeout")
            else:
                self._drain(worker, migrate=True)
        if pool.settings.start != "always":
            pool.demand = False

    def _check_schedule(self, pool: Pool, wall: float) -> None:
        schedule = pool.settings.recycling.schedule
        mark, pool.schedule_mark = pool.schedule_mark, wall
        if not schedule or not pool.workers:
            return
        for text in schedule:
            if _crossed(text, mark, wall):
                self.recycle(pool, f"schedule {text}")
                return


class _Peek:
    """A connection the master reads a request head from (non-blocking, on the loop)."""

    def __init__(self, master: Master, fd: int, data: bytes, port: int) -> None:
        self.master = master
        self.fd = fd
        self.port = port
        self.buf = bytearray()
        limits = master.config.server.limits
        self.parser = HTTP1Connection(
            max_target=limits.max_request_target,
            max_header_size=limits.max_header_size,
            max_headers=limits.max_headers,
            server=master.config.server.server_header.encode() or None,
        )
        timeouts = master.config.server.timeouts
        self.loop = asyncio.get_running_loop()
        self.timer = self.loop.call_later(
            timeouts.header if data else timeouts.keep_alive, self._timeout
        )
        self.reading = True
        self.loop.add_reader(fd, self._readable)
        if data:
            self._feed(data)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        if not self.buf:
            self.timer.cancel()
            self.timer = self.loop.call_later(
                self.master.config.server.timeouts.header, self._timeout
            )
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self.buf += data
        for event in self.parser.feed(data):
            if isinstance(event, RequestHead):
                self.master.on_head(self, event, None)
                return
            if isinstance(event, ProtocolError):
                self.master.on_head(self, None, event)
                return

    def _timeout(self) -> None:
        if self.buf:
            self.master.on_head(
                self, None, ProtocolError(408, "the request head did not arrive in time")
            )
        else:
            self.close()

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.timer.cancel()
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.fd)

    def detach(self) -> int:
        """Stop watching; the descriptor is the caller's now."""
        self._stop_reading()
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        """Drop the connection (closed by the client, idle too long, or stopping)."""
        self._stop_reading()
        if self.fd >= 0:
            _close(self.fd)
            self.fd = -1
        self.master.peek_done(self)


# -- helpers ------------------------------------------------------------------------------------


def _recycle_reason(worker: WorkerProcess, settings: PoolConfig, now: float) -> str | None:
    recycling = settings.recycling
    if recycling.time and now - worker.ready_at >= recycling.time:
        return f"uptime {recycling.time:.0f}s"
    if recycling.requests and worker.requests >= recycling.requests:
        return f"{worker.requests} requests"
    if (recycling.memory or recycling.private_memory) and now - worker.memory_read >= 1.0:
        worker.memory_read = now
        _read_memory(worker)
        if recycling.memory and worker.rss >= recycling.memory:
            return f"memory {worker.rss} bytes"
        if recycling.private_memory and worker.private >= recycling.private_memory:
            return f"private memory {worker.private} bytes"
    return None


def _read_memory(worker: WorkerProcess) -> None:
    """RSS (VmRSS) and private memory (Private_Clean + Private_Dirty) from /proc."""
    try:
        with open(f"/proc/{worker.pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    worker.rss = int(line.split()[1]) * 1024
                    break
        private = 0
        with open(f"/proc/{worker.pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                    private += int(line.split()[1]) * 1024
        worker.private = private
    except (OSError, ValueError, IndexError):
        pass


def _crossed(text: str, since: float, now: float) -> bool:
    """Whether local time of day ``text`` (HH:MM[:SS]) fell in (since, now]."""
    parts = [int(p) for p in text.split(":")]
    hour, minute, second = [*parts, 0][:3]
    day = datetime.datetime.fromtimestamp(now).date()
    for offset in (0, -1):
        at = datetime.datetime.combine(
            day + datetime.timedelta(days=offset), datetime.time(hour, minute, second)
        ).timestamp()
        if since < at <= now:
            return True
    return False


def _is_tcp(fd: int) -> bool:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        return sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
    finally:
        sock.detach()


def _local_client(fd: int, data: bytes) -> bool:
    """Whether the request whose bytes are ``data`` was sent directly from this machine."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        host = str(sock.getpeername()[0])
    except (OSError, IndexError):
        return False
    finally:
        sock.detach()
    lines = data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return is_local_client(host, (line.partition(b":")[0].strip().lower() for line in lines))


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


async def _send_and_close(fd: int, data: bytes) -> None:
    """Write a final response, then close without losing it to a reset.

    Closing a socket with unread input sends RST, which may destroy the response
    in flight: shut down our side first and read what is left, briefly.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_sendall(sock, data), 5)
        sock.shutdown(socket.SHUT_WR)
        end = loop.time() + 2
        while loop.time() < end:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), end - loop.time())
            if not chunk:
                break
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _make_temp(pool: str, identity: Identity | None) -> str:
    folder = tempfile.mkdtemp(prefix=f"colonnade-{pool}-")
    if identity is not None:
        os.chown(folder, identity.uid, identity.gid)
    return folder


def _remove_temp(pool: Pool) -> None:
    if pool.temp_dir is not None:
        shutil.rmtree(pool.temp_dir, ignore_errors=True)
        pool.temp_dir = None


def run(source: ConfigSource, *, registry: Registry, log_level: str, watch: bool) -> None:
    """Run the master in this process until it is stopped."""
    from colonnade.pools.single import new_event_loop

    async def main() -> None:
        await Master(source, registry=registry, log_level=log_level, watch=watch).run()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
