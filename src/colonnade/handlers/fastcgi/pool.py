"""The instances of one FastCGI application in one worker: processes we start, or
connections to a server that runs on its own.

How this works. An :class:`Instance` serves one request at a time: for a managed
application (``program``) it is a child process accepting on a Unix socket that
was passed to it as file descriptor 0 (how php-cgi and every libfcgi program
find their listening socket), plus our connection to it; for an external one
(``address``) it is a connection. A :class:`Pool` lends instances to requests:

- an idle instance if there is one (the most recently used: its caches are warm);
- else a new one while fewer than ``max_instances`` live;
- else the request waits its turn, at most ``queue_length`` requests at once:
  beyond, 503.4 (IIS's "FastCGI queue full");
- a new one is not started while more than ``rapid_fails_per_minute`` processes
  exited unexpectedly (or connections failed) in the last minute: 503.0.

An instance goes back to the pool after a request that ended cleanly; it is
replaced after ``instance_max_requests`` requests, when ``monitor_changes_to``
changed, after ``idle_timeout`` unused, and at once after any failure (killed:
what it was doing is unknown). Processes are children of the worker: they run
as its user in its sandbox, get SIGKILL from the kernel if the worker dies
(``PR_SET_PDEATHSIG``), lead a process group of their own (killed as a group),
and are ended when the pool closes (the worker's graceful stop, a recycle, a
configuration that drops the application).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgspec

from colonnade.errors import HttpError
from colonnade.handlers.fastcgi.config import FastCgiApplication, parse_address
from colonnade.handlers.fastcgi.records import ResponseReader

log = logging.getLogger("colonnade.fastcgi")

#: The environment variables of the worker a managed program inherits; the rest
#: of its environment is what the configuration says (the worker's may hold
#: secrets, and IIS passes a FastCGI process its own block only).
INHERITED: Final = ("PATH", "LANG", "LC_ALL", "TZ")

#: How long a process asked to stop (SIGTERM) has before SIGKILL.
STOP_GRACE: Final = 2.0
#: Bytes of a process's own stderr logged; the rest is counted.
MAX_LOGGED: Final = 64 * 1024

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


#: Called per request: as C statics (compiled), not looked up in their modules.
_read: Final = os.read
_write: Final = os.write
_monotonic: Final = time.monotonic


def _child_setup() -> None:
    # Runs in the child between fork and exec: die with the worker.
    if _libc is not None:
        _libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def _remove_reader(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    # Called through a plain callable: uvloop's remove_reader returns None where
    # asyncio's returns a bool (as typeshed says), and compiled code (mypyc)
    # checks a declared bool.
    remove: Callable[[int], object] = loop.remove_reader
    remove(fd)


class Process:
    """A managed FastCGI process, the socket it accepts on, and its own stderr
    (what a program writes outside a request, such as PHP's start-up errors:
    logged line by line, at most :data:`MAX_LOGGED` bytes of it)."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        path: str,
        stderr: int,
        label: str,
        on_exit: Callable[[], None],
        live: set[Process],
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.path = path
        self.label = label
        self.returncode: int | None = None
        #: We asked it to end (or already counted its death): its exit notice
        #: is no failure to record.
        self.stopping = False
        self.exited = asyncio.Event()
        self._on_exit = on_exit
        loop = asyncio.get_running_loop()
        self._pidfd: int | None = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._reap)
        self._stderr: int | None = stderr
        self._partial = b""
        self._logged = 0
        self._dropped = 0
        loop.add_reader(stderr, self._read_stderr)
        #: The pool's processes not yet reaped or whose stderr is still open
        #: (closed with the pool); this one leaves it when both are done.
        self._live = live
        live.add(self)

    def _settle(self) -> None:
        if self.returncode is not None and self._stderr is None:
            self._live.discard(self)

    def _reap(self) -> None:
        pidfd = self._pidfd
        if pidfd is not None:
            _remove_reader(asyncio.get_running_loop(), pidfd)
            os.close(pidfd)
            self._pidfd = None
        self.returncode = self.popen.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.exited.set()
        self._settle()
        self._on_exit()

    def close_stderr(self) -> None:
        """Stop reading the process's stderr (at its end, or when the pool closes)."""
        fd = self._stderr
        if fd is not None:
            self._stderr = None
            _remove_reader(asyncio.get_running_loop(), fd)
            os.close(fd)
            self._log_line(self._partial, end=True)
            self._settle()

    def _read_stderr(self) -> None:
        fd = self._stderr
        if fd is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_stderr()
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-MAX_LOGGED:]
        for line in lines:
            self._log_line(line)

    def _log_line(self, line: bytes, *, end: bool = False) -> None:
        line = line.rstrip(b"\r")
        if line:
            if self._logged < MAX_LOGGED:
                self._logged += len(line)
                text = line[:4096].decode("utf-8", "replace").encode("unicode_escape")
                log.warning("%s: process %d wrote: %s", self.label, self.pid, text.decode())
            else:
                self._dropped += len(line)
        if end and self._dropped:
            log.warning("%s: process %d wrote %d bytes more", self.label, self.pid, self._dropped)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process's group (it may have children of its own)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL if it has not ended within ``grace`` seconds."""
        self.stopping = True
        self.signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            try:
                await asyncio.wait_for(self.exited.wait(), grace)
            except TimeoutError:
                self.signal(signal.SIGKILL)
        await self.exited.wait()


class _DyingError(Exception):
    """An idle process refused a new connection: it is dying (counted, replaced)."""


class Instance:
    """One process or one connection slot; serves one request at a time."""

    __slots__ = (
        "_loop",
        "_waiter",
        "_watching",
        "closed",
        "fd",
        "generation",
        "last_used",
        "one_shot",
        "process",
        "reader",
        "renewed",
        "requests",
        "reused",
        "sock",
        "watched",
    )

    def __init__(self, process: Process | None, generation: int) -> None:
        self.process = process
        #: Our connection: a plain non-blocking socket (:meth:`send`,
        #: :meth:`recv`), not a transport, because a transport that fails to
        #: write (the application closed its end after answering early) drops
        #: what it had not read yet; a socket keeps the answer readable.
        self.sock: socket.socket | None = None
        #: Its file descriptor (-1 without one), set by :meth:`attach`: read and
        #: written with ``os.read``/``os.write``, which cost less than the socket's
        #: ``recv``/``send`` (argument parsing, the socket's timeout logic).
        self.fd = -1
        #: The loop where the socket's reader is registered (see :meth:`recv`).
        self._watching: asyncio.AbstractEventLoop | None = None
        #: The loop it serves on, found at the first wait: on Python 3.11 each
        #: asyncio.get_running_loop() is a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        #: The handler's reader of this instance's answers, kept between its
        #: requests (reset for each).
        self.reader: ResponseReader | None = None
        self.requests = 0
        self.generation = generation
        self.last_used = time.monotonic()
        self.closed = False
        #: Taken from the idle ones: it may have died (or the server closed the
        #: connection) while it waited, unnoticed yet.
        self.reused = False
        #: The request it serves while its pool checks its timeouts
        #: (:meth:`Pool.watch`).
        self.watched: Watched | None = None
        #: Connected to anew by :meth:`Pool.renew` for the request in hand.
        self.renewed = False
        #: The process closes the connections it is asked to keep (it ignores
        #: FCGI_KEEP_CONN): each request gets a new connection.
        self.one_shot = False

    @property
    def connected(self) -> bool:
        """True while we hold a connection (the other end may have closed it:
        the next read tells)."""
        return self.sock is not None

    @property
    def quiet(self) -> bool:
        """True while the loop watches the connection and nothing arrived since
        the last read (at the loop's last poll): then it is open, no peek needed.
        Closed since: the request's first write or read finds out (_StaleError)."""
        return self._watching is not None

    def attach(self, sock: socket.socket) -> None:
        """Use ``sock`` (connected, non-blocking) as our connection from now on."""
        self.sock = sock
        self.fd = sock.fileno()

    def disconnect(self) -> None:
        """Close our connection (the process, if any, lives on). A request
        waiting to read from it (the pool closed under it: a reload past its
        deadline, the application removed) wakes and reads a failure."""
        sock, self.sock = self.sock, None
        self.fd = -1
        if sock is not None:
            self._unwatch(sock)
            sock.close()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send_some(self, data: bytes) -> int:
        """Send what the socket takes of ``data`` now (nearly always all of a
        request's head or a piece of its body): how many bytes; OSError if the
        connection fails."""
        assert self.sock is not None
        try:
            return _write(self.fd, data)
        except BlockingIOError:
            return 0

    async def send(self, data: bytes | memoryview) -> None:
        """Send all of ``data``; OSError if the connection fails. Sent at once
        where the socket takes it, the rest once the socket drains."""
        sock = self.sock
        assert sock is not None
        sent = self.send_some(data) if isinstance(data, bytes) else 0
        if sent < len(data):
            await asyncio.get_running_loop().sock_sendall(sock, memoryview(data)[sent:])

    async def recv(self, size: int, wait_first: bool = False) -> bytes:
        """At most ``size`` bytes of the connection, ``b""`` once the other end
        closed it; OSError if it failed.

        Read at once when bytes are there; else wait for them with a reader
        registered once per connection and kept between waits: the loop's
        ``sock_recv`` registers and removes one per call, which under uvloop
        costs more than the rest of a small request's exchange. ``wait_first``:
        wait before the first try, where nothing can be there yet (the answer
        to what was just sent): a read that finds nothing raises
        ``BlockingIOError``, dearer than the wait. (The handler does the same
        with :meth:`readable`, :meth:`read_now` and :meth:`waited` itself: one
        coroutine less per wait.)"""
        while True:
            if wait_first:
                wait_first = False
            else:
                data = self.read_now(size)
                if data is not None:
                    return data
            waiter = self.readable()
            try:
                await waiter
            finally:
                self.waited()

    def read_now(self, size: int) -> bytes | None:
        """At most ``size`` bytes, ``b""`` once the other end closed the
        connection, None if nothing is there now; OSError if it failed (also
        once it was closed: ``fd`` -1 is EBADF)."""
        try:
            return _read(self.fd, size)
        except BlockingIOError:
            return None

    def readable(self) -> asyncio.Future[None]:
        """A future done once the connection is readable (the reader registered
        once per connection); :meth:`waited` must follow the wait."""
        sock = self.sock
        assert sock is not None
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._watching is None:
            loop.add_reader(sock.fileno(), self._readable)
            self._watching = loop
        self._waiter = waiter = loop.create_future()
        return waiter

    def waited(self) -> None:
        """The wait for :meth:`readable` ended (however): nobody waits now."""
        self._waiter = None

    def _readable(self) -> None:
        waiter = self._waiter
        if waiter is None:
            # Nobody reads now (bytes or a close while idle, or between two
            # reads): stop watching, or level-triggered readiness fires on
            # every turn of the loop; the next recv reads it, hung_up sees it.
            if self.sock is not None:
                self._unwatch(self.sock)
        elif not waiter.done():
            waiter.set_result(None)

    def _unwatch(self, sock: socket.socket) -> None:
        loop, self._watching = self._watching, None
        if loop is not None and not loop.is_closed():
            _remove_reader(loop, sock.fileno())


class Watched(Protocol):
    """A request whose timeouts its pool checks (:meth:`Pool.watch`): ``moves``
    counts its progress; :meth:`expire` ends it. The pool's ticker keeps its
    own notes in it: when it first saw the request (``started``: negative
    until then, as the request sets it before it is watched), when it last saw
    it move (``moved``) and ``moves`` then (``moves_then``)."""

    moves: int
    started: float
    moved: float
    moves_then: int

    def expire(self, which: str) -> None:
        """The ``"request"`` or ``"activity"`` timeout passed: end the request."""


#: How often, at most, the pool looks at its requests' timeouts (see Pool.watch).
MAX_TICK: Final = 1.0


class Pool:
    """The instances of one FastCGI application in this worker (see the module
    docstring)."""

    def __init__(self, name: str, settings: FastCgiApplication, pool: str) -> None:
        self.name = name
        self.settings = settings
        #: The worker's event loop, which the pool serves on (made by
        #: :class:`Registry` on it): on Python 3.11 each asyncio.get_running_loop()
        #: is a getpid() system call, and asyncio.current_task() makes one.
        self.loop = asyncio.get_running_loop()
        #: Who we are in log lines: the application, its program, the pool.
        self.label = (
            f"FastCGI application {name!r} ({settings.program or settings.address}) "
            f"in pool {pool!r}"
        )
        self.idle: list[Instance] = []
        self.busy: set[Instance] = set()
        self.starting = 0  # instances being created
        self.waiters: collections.deque[asyncio.Future[Instance | None]] = collections.deque()
        self.failures: collections.deque[float] = collections.deque()
        self.generation = 0
        self.closed = False
        self._socket_dir: str | None = None
        self._serial = 0
        self._reaper: asyncio.TimerHandle | None = None
        self._monitor_checked = 0.0
        self._monitor_sig = self._monitored()
        self._stopping: set[asyncio.Task[None]] = set()
        #: Processes not yet reaped, or whose stderr is still open.
        self._processes: set[Process] = set()
        self._ticker: asyncio.TimerHandle | None = None
        self._tick = min(MAX_TICK, settings.activity_timeout / 10, settings.request_timeout / 10)
        #: Settings read per request, as plain attributes (a settings field is
        #: a generic attribute lookup).
        self.max_requests = settings.instance_max_requests
        self._monitor = settings.monitor_changes_to

    @property
    def live(self) -> int:
        """Instances that exist or are being created."""
        return len(self.idle) + len(self.busy) + self.starting

    # -- lending ------------------------------------------------------------------

    def take(self) -> Instance | None:
        """The idle connection to an external server, when one is at hand and
        known open (the loop watches it and nothing came: ``Instance.quiet``),
        which :meth:`acquire` would give; else None: ask :meth:`acquire`. No
        coroutine made for the common case."""
        idle = self.idle
        if not idle or self.closed or self._monitor is not None:
            return None
        inst = idle[-1]
        if inst.process is not None or inst.closed or inst.sock is None or not inst.quiet:
            return None
        idle.pop()
        inst.reused = True
        self.busy.add(inst)
        return inst

    async def acquire(self) -> Instance:
        """An instance for one request, connected (see the module docstring)."""
        if self.closed:
            raise HttpError(503, 0, "the FastCGI application is shutting down")
        self._check_monitor()
        while self.idle:
            inst = self.idle.pop()
            process = inst.process
            if (
                process is not None
                and process.returncode is None
                and process.popen.poll() is not None
            ):
                # It died while idle and we have not heard yet: reap it now (and
                # count it once: its exit notice, when it comes, is accounted for).
                process.returncode = process.popen.returncode
                process.stopping = True
                self.record_failure(f"process {process.pid} exited while idle ({_how(process)})")
                self.discard(inst)
            if inst.closed:
                continue
            inst.reused = True
            self.busy.add(inst)
            if inst.sock is not None and not inst.quiet and hung_up(inst.sock):
                # Closed while idle: a process that still accepts closes the
                # connections we ask it to keep (it gets a new one per request
                # from now on); one that refuses was dying, and is replaced.
                inst.disconnect()
                if process is not None:
                    inst.one_shot = True
                    try:
                        return await self._connected(inst, dying_if_refused=True)
                    except _DyingError:
                        continue
            if inst.sock is not None:
                return inst  # the common case: no coroutine made to say so
            return await self._connected(inst)
        if self.live < self.settings.instances:
            return await self._connected(await self._create())
        if len(self.waiters) >= self.settings.queue_length:
            raise HttpError(
                503,
                4,
                "the server is too busy",
                detail=f"{self.label}: its queue is full "
                f"(fastcgi.applications.{self.name}.queue_length = {self.settings.queue_length})",
            )
        waiter: asyncio.Future[Instance | None] = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            found = await waiter
        except BaseException:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed something while it was being cancelled: pass it on.
                got = waiter.result()
                if got is not None:
                    self.busy.discard(got)
                    self._lend(got)
                else:
                    self.starting -= 1  # the slot _wake reserved
                    self._wake()
            raise
        if found is None:
            return await self._connected(await self._create(reserved=True))
        return await self._connected(found)

    async def _create(self, *, reserved: bool = False) -> Instance:
        # A new instance; ``reserved``: its slot was counted in ``starting`` by
        # _wake for this waiter, so that no newcomer takes it meanwhile.
        if not reserved:
            self.starting += 1
        try:
            if self._tripped():
                raise HttpError(
                    503,
                    0,
                    "the service is unavailable",
                    detail=f"{self.label}: more than {self.settings.rapid_fails_per_minute} "
                    "failures in the last minute (rapid_fails_per_minute); new instances are "
                    "started again once the minute has passed",
                )
            try:
                process = self._spawn() if self.settings.program is not None else None
            except OSError as exc:
                self.record_failure(f"cannot start: {exc}")
                raise HttpError(
                    502, 3, "the application cannot be started", detail=f"{self.label}: {exc}"
                ) from None
        except BaseException:
            self.starting -= 1
            self._wake()
            raise
        inst = Instance(process, self.generation)
        self.starting -= 1
        self.busy.add(inst)
        return inst

    async def _connected(self, inst: Instance, *, dying_if_refused: bool = False) -> Instance:
        # The instance, with an open connection: a new one where the last was
        # closed (an application that does not keep connections, or a new process).
        # ``dying_if_refused``: a refusal means the process is dying (counted
        # once, replaced): _DyingError, and the caller finds another instance.
        if inst.connected:
            return inst
        inst.disconnect()
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                if inst.process is not None:
                    inst.attach(await _connect(socket.AF_UNIX, inst.process.path))
                else:
                    kind, where = parse_address(self.settings.address or "")
                    if kind == "unix":
                        inst.attach(await _connect(socket.AF_UNIX, where))
                    else:
                        assert isinstance(where, tuple)
                        inst.attach(await _connect_tcp(*where))
        except (OSError, TimeoutError) as exc:
            reason = "connect timed out" if isinstance(exc, TimeoutError) else str(exc)
            if dying_if_refused:
                self.stale(inst)
                raise _DyingError from None
            self.discard(inst, kill=True)
            self.record_failure(f"cannot connect: {reason}")
            raise HttpError(
                502, 3, "the application cannot be reached", detail=f"{self.label}: {reason}"
            ) from None
        return inst

    async def renew(self, inst: Instance) -> Instance:
        """An instance for the request ``inst`` could not take (its idle
        connection was closed): once, a new connection to the same process if it
        still runs (a program that closed the connection although asked to keep
        it); else, or the second time (it was dying: a dying process may still
        accept for a moment), another instance (see :meth:`stale`)."""
        inst.disconnect()
        process = inst.process
        if (
            process is not None
            and not inst.renewed
            and process.returncode is None
            and process.popen.poll() is None
        ):
            inst.renewed = True
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    inst.attach(await _connect(socket.AF_UNIX, process.path))
            except (OSError, TimeoutError):
                pass
            else:
                inst.one_shot = True  # it closes the connections it should keep
                return inst
        self.stale(inst)
        return await self.acquire()

    def stale(self, inst: Instance) -> None:
        """Take back an instance whose connection was found closed before the
        request was taken: replaced; a process that died meanwhile counts as one
        failure (a server that closed an idle keep-alive connection, none)."""
        process = inst.process
        if process is not None and not process.stopping:
            if process.returncode is not None:  # its exit notice came (and was logged)
                self.count_failure()
            else:  # dying (a process closes its files before it is reaped) or hung up
                self.record_failure(f"process {process.pid} closed its connection while idle")
            process.stopping = True  # accounted for; killed now if it still runs
        self.release(inst, reusable=False)

    def release(self, inst: Instance, *, reusable: bool) -> None:
        """Take ``inst`` back after a request; ``reusable`` False: it failed and is
        replaced."""
        self.busy.discard(inst)
        if inst.closed:
            self._wake()
            return
        inst.requests += 1
        inst.last_used = _monotonic()
        inst.renewed = False
        if (
            not reusable
            or self.closed
            or inst.requests >= self.max_requests
            or inst.generation != self.generation
            or (inst.process is None and not inst.connected)
        ):
            self.discard(inst, kill=not reusable)
            return
        if inst.one_shot:
            inst.disconnect()  # it would close it: the next request connects anew
        self._lend(inst)

    def _lend(self, inst: Instance) -> None:
        # An instance free for the next request: the first waiter's, else idle.
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.busy.add(inst)
                waiter.set_result(inst)
                return
        self.idle.append(inst)
        self._schedule_reaper()

    def discard(self, inst: Instance, *, kill: bool = False) -> None:
        """End ``inst``: its connection, and its process (SIGKILL with ``kill``:
        it may hang; else SIGTERM first)."""
        if inst.closed:
            return
        inst.closed = True
        inst.disconnect()
        self.busy.discard(inst)
        if inst in self.idle:
            self.idle.remove(inst)
        process = inst.process
        if process is not None and process.returncode is None:
            process.stopping = True  # from now on its exit is ours, not a failure
            task = self.loop.create_task(process.stop(0 if kill else STOP_GRACE))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        self._wake()

    def _wake(self) -> None:
        # A slot freed: the first waiter creates an instance in it (reserved now).
        while self.waiters and self.live < self.settings.instances:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.starting += 1
                waiter.set_result(None)
                return

    # -- processes -------------------------------------------------------------------

    def _spawn(self) -> Process:
        settings = self.settings
        assert settings.program is not None
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="colonnade-fastcgi-")
        self._serial += 1
        path = os.path.join(self._socket_dir, f"{self.name}-{self._serial}.sock")
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(settings.environment)
        env.setdefault("PHP_FCGI_MAX_REQUESTS", str(settings.instance_max_requests))
        env["PHP_FCGI_CHILDREN"] = "0"
        env.pop("FCGI_WEB_SERVER_ADDRS", None)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        try:
            listener.bind(path)
            listener.listen(16)
            popen = subprocess.Popen(
                [settings.program, *settings.arguments],
                stdin=listener.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=err_write,
                env=env,
                close_fds=True,
                start_new_session=True,
                preexec_fn=_child_setup,
                cwd=os.path.dirname(settings.program) or "/",
            )
        except OSError:
            os.close(err_read)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            listener.close()  # the child holds it now
            os.close(err_write)
        os.set_blocking(err_read, False)
        process = Process(
            popen, path, err_read, self.label, lambda: self._exited(process), self._processes
        )
        log.info("%s: started process %d", self.label, process.pid)
        return process

    def _exited(self, process: Process) -> None:
        # A process ended. Unless we ended it, that is a failure.
        owner = next(
            (i for i in (*self.idle, *self.busy) if i.process is process),
            None,
        )
        if process.stopping:
            return
        what = f"process {process.pid} exited unexpectedly ({_how(process)})"
        if owner is not None and owner in self.busy:
            # Its request sees the connection close, answers 502 and counts it.
            log.error("%s: %s", self.label, what)
            return
        self.record_failure(what)
        if owner is not None:
            self.discard(owner)

    def record_failure(self, what: str) -> None:
        """Log a failure and count it for ``rapid_fails_per_minute``."""
        log.error("%s: %s", self.label, what)
        self.count_failure()

    def count_failure(self) -> None:
        """Count a failure (logged by whoever saw it) for ``rapid_fails_per_minute``."""
        self.failures.append(time.monotonic())

    def _tripped(self) -> bool:
        horizon = time.monotonic() - 60.0
        failures = self.failures
        while failures and failures[0] < horizon:
            failures.popleft()
        return len(failures) > self.settings.rapid_fails_per_minute

    # -- request timeouts -------------------------------------------------------------------

    def watch(self, inst: Instance, request: Watched) -> None:
        """Check the ``activity_timeout`` and ``request_timeout`` of ``request``,
        which ``inst`` serves, until :meth:`unwatch`.

        One timer per pool, not one per request: a ticker looks at the busy
        instances' requests every tenth of the shorter timeout (at most every
        :data:`MAX_TICK` seconds) and runs only while there are some. A request
        costs an attribute of its instance, its progress an increment of
        ``moves`` (a timer per request, rescheduled as it progresses, cost more
        than the rest of the exchange with a small response; a dictionary of
        the watched requests, a fifth of the exchange's own work). The price: a
        timeout is noticed up to two ticks late (20 % of the shorter timeout,
        2 s at most).
        """
        inst.watched = request
        if self._ticker is None:
            self._ticker = self.loop.call_later(self._tick, self._check_timeouts)

    def unwatch(self, inst: Instance) -> None:
        """Stop checking the timeouts of the request ``inst`` serves (it ended)."""
        inst.watched = None

    def _check_timeouts(self) -> None:
        self._ticker = None
        watched = [i for i in self.busy if i.watched is not None]
        if not watched:
            return  # idle: the next request starts the ticker again
        now = time.monotonic()
        settings = self.settings
        for inst in watched:
            request = inst.watched
            if request is None:
                continue
            moves = request.moves
            if request.started < 0:
                request.started = request.moved = now
                request.moves_then = moves
                continue
            if moves != request.moves_then:
                request.moved = now
                request.moves_then = moves
            if now - request.started >= settings.request_timeout:
                which = "request"
            elif now - request.moved >= settings.activity_timeout:
                which = "activity"
            else:
                continue
            inst.watched = None
            request.expire(which)
        self._ticker = self.loop.call_later(self._tick, self._check_timeouts)

    # -- idle timeout, monitored file ------------------------------------------------------

    def _schedule_reaper(self) -> None:
        if self._reaper is None and self.idle:
            self._reaper = self.loop.call_later(self.settings.idle_timeout, self._reap_idle)

    def _reap_idle(self) -> None:
        self._reaper = None
        horizon = time.monotonic() - self.settings.idle_timeout
        for inst in [i for i in self.idle if i.last_used <= horizon]:
            log.info("%s: instance idle for %gs, ended", self.label, self.settings.idle_timeout)
            self.discard(inst)
        if self.idle:
            oldest = min(i.last_used for i in self.idle)
            self._reaper = self.loop.call_later(
                max(oldest + self.settings.idle_timeout - time.monotonic(), 0.01),
                self._reap_idle,
            )

    def _monitored(self) -> tuple[int, int, int] | None:
        path = self.settings.monitor_changes_to
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _check_monitor(self) -> None:
        # At most once a second, one stat: a changed file replaces every instance.
        if self._monitor is None:
            return
        now = time.monotonic()
        if now - self._monitor_checked < 1.0:
            return
        self._monitor_checked = now
        sig = self._monitored()
        if sig != self._monitor_sig:
            self._monitor_sig = sig
            self.recycle(f"{self.settings.monitor_changes_to} changed")

    def recycle(self, why: str) -> None:
        """Replace every instance: idle ones now, busy ones after their request."""
        log.info("%s: recycling its instances: %s", self.label, why)
        self.generation += 1
        for inst in list(self.idle):
            self.discard(inst)

    async def close(self) -> None:
        """End every instance and wait for the processes to exit."""
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(HttpError(503, 0, "the FastCGI application is shutting down"))
        self.waiters.clear()
        for inst in [*self.idle, *self.busy]:
            self.discard(inst)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        for process in list(self._processes):  # a descendant may hold its stderr
            process.close_stderr()
        self._processes.clear()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None


#: The flags of hung_up's peek, as a plain int: or-ing the enum members costs
#: more than the peek itself.
_PEEK: Final = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)


def hung_up(sock: socket.socket) -> bool:
    """True if the other end closed ``sock`` (or sent what nobody asked for):
    one non-blocking peek, no wait."""
    try:
        sock.recv(1, _PEEK)
    except BlockingIOError:
        return False  # open, nothing pending: the common case
    except OSError:
        return True
    return True  # b"": closed; a byte: nothing we asked for


async def _connect(family: int, address: str | tuple[Any, ...]) -> socket.socket:
    # A connected non-blocking socket (closed again if connecting fails).
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect_tcp(host: str, port: int) -> socket.socket:
    # The first address of ``host`` that answers, as open_connection tries them.
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {host!r}")
    for family, _, _, _, address in infos:
        try:
            sock = await _connect(family, address)
        except OSError as exc:
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


def _how(process: Process) -> str:
    code = process.returncode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Registry:
    """The pools of this worker, shared by every application and configuration
    generation that define the same FastCGI application the same way: a reload
    that leaves it unchanged keeps its processes."""

    def __init__(self) -> None:
        self._pools: dict[tuple[int, str, str, bytes], tuple[Pool, int]] = {}

    def acquire(self, name: str, settings: FastCgiApplication, pool: str) -> Pool:
        """The pool for ``name`` as ``settings`` define it (one reference more)."""
        key = self._key(name, settings, pool)
        found = self._pools.get(key)
        if found is None or found[0].closed:
            found = (Pool(name, settings, pool), 0)
        self._pools[key] = (found[0], found[1] + 1)
        return found[0]

    async def release(self, target: Pool) -> None:
        """One reference less; the last one closes the pool."""
        for key, (found, refs) in list(self._pools.items()):
            if found is target:
                if refs > 1:
                    self._pools[key] = (found, refs - 1)
                    return
                del self._pools[key]
                await found.close()
                return

    def here(self) -> list[Pool]:
        """The pools of the running event loop (its worker's), for tools and tests."""
        loop = id(asyncio.get_running_loop())
        return [found for key, (found, _) in self._pools.items() if key[0] == loop]

    @staticmethod
    def _key(name: str, settings: FastCgiApplication, pool: str) -> tuple[int, str, str, bytes]:
        loop = id(asyncio.get_running_loop())
        return loop, pool, name, msgspec.json.encode(settings)


#: The worker's pools.
POOLS = Registry()
