"""Connections to upstreams: one HTTP/1.1 connection (:class:`Connection`), and a
keep-alive pool of them per upstream address (:class:`Pool`).

How this works. A :class:`Connection` is an asyncio protocol: what arrives is
queued until the handler asks for it (``recv``); once ``high_water`` bytes wait,
the socket is not read until the handler took them all and asks again, so a
slow client slows the upstream down (back-pressure) instead of filling memory.
``send`` writes and then waits while the transport's write buffer is over its
limit. Every wait is bounded by the timeout the caller gives
(``UpstreamTimeoutError``).

A :class:`Pool` lends connections to requests: the most recently returned idle
one, else a new one while fewer than ``max_connections`` exist, else the
request waits its turn (bounded by the connect timeout). A connection goes back
only when its exchange ended cleanly (the caller says so) and nothing arrived
since; any other is closed at once. Idle connections are closed after
``idle_timeout`` and when the pool closes. More than ``max_idle`` may be idle
for a moment: those a burst of requests leaves over it are closed once they
stayed idle ``surplus_grace`` seconds (the oldest first), not as they come
back, so that a load whose concurrency swings above ``max_idle`` (64 clients
served in batches) reuses its connections instead of making new ones for
nearly every second request, which costs both sides a connect, an accept and
a close.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import socket
import time
from collections.abc import Callable, Generator
from typing import Any, Final, Protocol, cast

from colonnade.config.schema import parse_upstream as parse_address
from colonnade.core.taskwait import (
    C_WAIT,
    CANCELLED,
    DONE,
    PENDING,
    TaskWait,
    finished_future,
    running_task_getter,
)
from colonnade.core.timers import timer_by
from colonnade.handlers.proxy.errors import UpstreamConnectError, UpstreamTimeoutError
from colonnade.handlers.proxy.wire import ResponseParser

# Unbound: a call without looking the method up on the object's type first (a
# look-up that misses the type cache costs hundreds of instructions).
_RUN: Final = contextvars.Context.run
#: Bytes queued from an upstream before its socket is no longer read (default).
HIGH_WATER: Final = 64 * 1024
#: Seconds idle connections over ``max_idle`` are kept before they close (default).
SURPLUS_GRACE: Final = 1.0
_NEVER: Final = float("inf")
#: A static reference (an imported name is a look-up in the module at each use).
_MONOTONIC: Final = time.monotonic


#: The task a loop is running now (None: none): see taskwait.running_task_getter.
_CURRENT_TASK: Final = running_task_getter()


def _c_take() -> Callable[[bytearray, int], bytes] | None:
    # _fields.c's take where built (see Connection.buffer_updated), else None.
    try:
        from colonnade.handlers.proxy._fields import take
    except ImportError:
        return None
    return take


#: ``bytes(buffer[:size])`` of a bytearray in C (the compiled build), else None.
_C_TAKE: Final = _c_take()


class Upstream:
    """Where a pool connects: ``tcp`` host and port, or a ``unix`` socket path."""

    __slots__ = ("host", "name", "port", "unix_path")

    def __init__(self, host: str = "", port: int = 0, unix_path: str | None = None) -> None:
        self.host = host
        self.port = port
        self.unix_path = unix_path
        if unix_path is not None:
            self.name = f"unix:{unix_path}"
        else:
            self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def key(self) -> tuple[str, int, str | None]:
        """Identity of the address (pools are per address)."""
        return (self.host, self.port, self.unix_path)

    def __repr__(self) -> str:
        return f"<Upstream {self.name}>"


def parse_upstream(address: str) -> Upstream:
    """``http://host[:port]`` (port 80 if left out; IPv6 in brackets) or
    ``unix:/absolute/path``, read as a farm member's address is; ``ValueError``
    otherwise."""
    host, port, unix_path = parse_address(address)
    return Upstream(host, port, unix_path)


def _unconnected(data: bytes) -> None:
    # A connection's write before it has a transport (write refuses before).
    raise ConnectionResetError("the upstream connection is closed")


class Wait(Protocol):
    """What a request's task awaits for bytes from its upstream connection: a
    reusable wait (core/taskwait.py), one object per connection, armed again for
    each wait (:meth:`Connection.waiter_at`); made by :func:`new_wait`. The
    compiled build's is core/_taskwait.c's ``Wait`` (which the client
    connection's task waits on too), the pure build's :class:`PyWait`: the same
    behaviour (tests/handlers/proxy/test_client.py runs both)."""

    def arm(self) -> None:
        """Begin a wait (the last one ended)."""

    def wake(self, now: bool, /) -> None:
        """End the wait (see :meth:`PyWait.wake`)."""

    def done(self) -> bool:
        """The wait ended."""

    def cancelled(self) -> bool:
        """The wait was cancelled."""

    def result(self) -> object:
        """None; raises CancelledError where the wait was cancelled."""

    def cancel(self, msg: object = None) -> bool:
        """Cancel the wait (the task's cancel())."""

    def __await__(self) -> Generator[Any, None, None]:
        """The task's wait: it gives the wait while it is pending."""


class PyWait(TaskWait):
    """:class:`Wait` in Python (a :class:`~colonnade.core.taskwait.TaskWait`): the
    pure build's, and the compiled build's where core/_taskwait.c's is absent.

    Not an ``asyncio.Future`` made per wait (core/taskwait.py says what that
    costs); and stepping a future's task at once (the read callback that brought
    the bytes runs the rest of the response) took the task's wake-up off it
    through ``_callbacks`` (a list and a tuple made per call),
    ``remove_done_callback`` and ``set_result``. :meth:`wake` with ``now`` calls
    the task's wake-up itself, before it returns. Woken otherwise (a timeout,
    the connection's end), the wake-up is scheduled as a future's would be;
    either way it is handed the shared finished future
    (``taskwait.finished_future``: the task reads its None result in C).
    Cancelled, the wake-up is handed the wait itself (whose ``result()`` raises)."""

    __slots__ = ("_once", "done_future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        #: What a wake-up of a wait that ended well is handed.
        self.done_future: asyncio.Future[None] = finished_future(loop)
        # The wait alone in a tuple, made once: each wait iterates it (a cycle
        # with the wait, which lives as long as its connection; the collector
        # frees the two once the connection is gone). Typed of any length:
        # compiled, a tuple[object] is kept unboxed and boxed anew at each read.
        self._once: tuple[object, ...] = (self,)

    def __await__(self) -> Generator[Any, None, None]:
        # An iterator of the wait itself, once, for the task (which then adds its
        # wake-up: asyncio's protocol), where a generator method would make a
        # generator and its frame per wait (and over a tuple made once, not one
        # per wait: ~130 instructions). Woken, the task goes on (the
        # iterator is done: the await gives None); cancelled, its wake-up's
        # result() raises CancelledError into it at the await.
        state = self.state
        if state == PENDING:
            self._asyncio_future_blocking = True
            return cast(Generator[Any, None, None], iter(self._once))
        if state == CANCELLED:
            raise asyncio.CancelledError(self.message)
        return cast(Generator[Any, None, None], iter(()))

    def wake(self, now: bool, /) -> None:
        """End the wait (a wait already ended, cancelled or timed out, stays as it
        is). ``now``: the caller is a loop callback (the protocol's read), and the
        task runs before this returns; else at the loop's next turn. Called from
        inside a task after all (a transport that hands the protocol what it read
        from within a call the task made: a TLS transport's close reads what is
        left), the wake-up is scheduled as for ``now`` False: a task cannot run
        inside another (asyncio refuses to enter it, and the wake-up would be lost)."""
        if self.state != PENDING:
            return
        self.state = DONE
        if now:
            callback = self.callback
            context = self.context
            if callback is not None and context is not None and _CURRENT_TASK(self._loop) is None:
                self.callback = self.context = None
                _RUN(context, callback, self.done_future)
                return
        self.schedule_wake(self.done_future)


#: core/_taskwait.c's Wait where built (the compiled build), else None: see
#: core.taskwait.C_WAIT (a static reference here: compiled, an imported name is a
#: look-up in the module at each use).
_C_WAIT: Final = C_WAIT


def new_wait(loop: asyncio.AbstractEventLoop) -> Wait:
    """A connection's :class:`Wait`: in C where built, else :class:`PyWait`."""
    if _C_WAIT is not None:
        return _C_WAIT(loop, finished_future(loop), _CURRENT_TASK)
    return PyWait(loop)


class Connection(asyncio.BufferedProtocol):
    """One connection to an upstream (see the module docstring).

    A buffered protocol: reads from the socket fill the queue to ``high_water``
    bytes at most (a plain protocol gets what the loop reads at once, 256 KiB
    under uvloop), and reading pauses once that much waits, until the handler
    has passed on all of it and asks for more: per slow client, one piece in the
    client's write buffer and at most one waiting here."""

    def __init__(self, pool: Pool, max_head: int, high_water: int = HIGH_WATER) -> None:
        self.pool = pool
        self.high_water = high_water
        # The pool's one read buffer: what a read puts there is copied out at once
        # (buffer_updated), so the connections of one loop can share it.
        self._buffer = pool.read_buffer
        self._bytes = pool.read_bytes  # the same buffer, for _C_TAKE
        # What a read into an empty queue may fill (see get_buffer), sliced once.
        self._whole = self._buffer[: max(high_water, 1024)]
        self.transport: asyncio.Transport | None = None
        # The transport's write, bound once (see write).
        self._write: Callable[[bytes], object] = _unconnected
        self.parser = ResponseParser(max_head)
        # What arrived and was not taken yet: the first piece, the usual read's
        # only one (a slot: no list made and freed per response), and any after it.
        self._first: bytes | None = None
        self._more: list[bytes] | None = None
        self._queued = 0
        # What copies out a read of _cut_size bytes (see buffer_updated).
        self._cut: Callable[[], bytes] = bytes
        self._cut_size = -1
        self._paused = False
        self._eof = False
        self._closed = False
        self._error: BaseException | None = None
        #: A wait for bytes is under way (on the connection's one Wait).
        self._reading = False
        self._writable = True
        self._drainer: asyncio.Future[None] | None = None
        # The deadline of the wait under way (_NEVER: none), and the timer that
        # enforces it (see _arm).
        self._deadline = _NEVER
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = _NEVER  # when _timer fires
        #: The event loop it lives on (made there by the pool): kept, because each
        #: asyncio.get_running_loop() costs a getpid system call.
        self.loop = asyncio.get_running_loop()
        self._wait = new_wait(self.loop)
        # Its two per-request calls, bound once (compiled, a call of a method of an
        # object of another module's type looks the method up by name each time).
        self._arm_wait: Callable[[], None] = self._wait.arm
        self._wake_wait: Callable[[bool], None] = self._wait.wake
        #: The loop's clock, bound once (a method call looks ``time`` up each time).
        self.clock: Callable[[], float] = self.loop.time
        #: Requests sent on it so far (the first one is never stale).
        self.requests = 0
        self.idle_since = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are ones.
        self.transport = cast(asyncio.Transport, transport)
        self._write = self.transport.write
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        # No more than fills the queue to high_water (reading then pauses). With
        # nothing queued (the usual read), the pool's view as it is: no slice.
        if not self._queued:
            return self._whole
        return self._buffer[: max(self.high_water - self._queued, 1024)]

    def buffer_updated(self, nbytes: int) -> None:
        # The read copied out: in the compiled build by _fields.c's take (~250
        # instructions fewer than tobytes(), which parses its keyword argument
        # and goes through the buffer protocol); else by the bound tobytes of a
        # view of its length, kept while reads come in one size (an upstream
        # answering alike): the usual read makes neither a view nor a method
        # look-up (~600 instructions). (tobytes(): bytes() of a view parses its
        # arguments first, ~1,000 more.)
        take = _C_TAKE
        if take is not None:
            data = take(self._bytes, nbytes)
        else:
            if nbytes != self._cut_size:
                self._cut = self._buffer[:nbytes].tobytes
                self._cut_size = nbytes
            data = self._cut()
        if self._first is None:
            self._first = data
        elif self._more is None:
            self._more = [data]
        else:
            self._more.append(data)
        self._queued += nbytes
        if self._queued >= self.high_water and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        if self._reading:
            # The waiting request goes on at once, and last: this protocol's
            # own state is settled before.
            self._reading = False
            self._wake_wait(True)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._eof = True
        self._error = exc
        self._disarm()
        self._wake_reader()
        self._writable = True
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)
        self.pool._lost(self)

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    def _wake_reader(self) -> None:
        if self._reading:
            # Woken once: what arrives before the waiter runs needs no second call
            # (one cancelled or ended by the timer stays as it is).
            self._reading = False
            self._wake_wait(False)

    # -- for the handler --------------------------------------------------------------

    @property
    def clean(self) -> bool:
        """Open, nothing unread, nothing received since the last response."""
        return not self._eof and self._first is None and self.parser.idle

    async def recv(self, within: float | None) -> bytes:
        """What arrived since the last call (``b""``: the upstream closed its side);
        ``UpstreamTimeoutError`` after ``within`` seconds without a byte (None:
        no limit);
        ``ConnectionResetError`` if the connection failed."""
        data = self.take()
        if data is None:
            await self.waiter(within)
            data = self.taken(within)
        return data

    def take(self) -> bytes | None:
        """``recv`` without a coroutine: what arrived since the last call
        (``b""``: the upstream closed its side), or None when nothing did: then
        await :meth:`waiter` and call :meth:`taken`."""
        data = self._first
        if data is None:
            if self._eof:
                if self._error is not None:
                    raise ConnectionResetError(str(self._error))
                return b""
            return None
        more = self._more
        if more is not None:
            more.insert(0, data)
            data = b"".join(more)
            self._more = None
        self._first = None
        self._queued = 0
        return data

    def waiter(self, within: float | None) -> Wait:
        """A future done once bytes arrive or the connection ends, or after
        ``within`` seconds (None: no limit)."""
        return self.waiter_at(_NEVER if within is None else self.clock() + within)

    def waiter_at(self, deadline: float) -> Wait:
        """:meth:`waiter` until ``deadline`` (loop time; infinity: no limit)."""
        # All that was read is passed on: read again (not earlier, so that no
        # more than one piece waits here while the last is sent on).
        if self._paused:
            self.watch()
        waiter = self._wait
        self._arm_wait()
        self._reading = True
        if deadline != _NEVER:
            self._arm(deadline)
        return waiter

    def taken(self, within: float | None) -> bytes:
        """After the wait of :meth:`waiter`: what arrived (``b""``: the upstream
        closed its side); ``UpstreamTimeoutError`` if nothing did."""
        # A wait that was cancelled instead leaves these set: harmless, the
        # connection is then closed (never pooled) or waits again, which resets them.
        self._reading = False
        self._deadline = _NEVER
        data = self.take()
        if data is None:
            raise UpstreamTimeoutError(f"no byte from the upstream in {within or 0:g} s")
        return data

    async def send(self, data: bytes, within: float) -> None:
        """Write ``data``, then wait while the upstream is slow to take it
        (``UpstreamTimeoutError`` after ``within`` seconds of it;
        ``ConnectionResetError`` if the connection is gone)."""
        if self.write(data):
            await self.drain(within)

    def write(self, data: bytes) -> bool:
        """Write ``data``: True when the upstream is slow to take it (then
        :meth:`drain` waits); ``ConnectionResetError`` if the connection is gone.
        ``send`` without a coroutine, for the usual case that need not wait."""
        # _eof: the upstream closed its side, and so the transport is closing
        # (eof_received says so), or close() was called.
        if self.transport is None or self._closed or self._eof:
            raise ConnectionResetError("the upstream connection is closed")
        self._write(data)  # bound: no look-up of the method at each request
        return not self._writable

    async def drain(self, within: float) -> None:
        """Wait until the upstream took what was written (see :meth:`send`)."""
        if self._writable:
            return
        loop = self.loop
        self._drainer = waiter = loop.create_future()
        self._arm(loop.time() + within)
        try:
            await waiter
        finally:
            self._drainer = None
            self._deadline = _NEVER
        if self._closed:
            raise ConnectionResetError("the upstream closed the connection")
        if not self._writable:
            raise UpstreamTimeoutError(f"the upstream took no byte of the request in {within:g} s")

    def _arm(self, deadline: float) -> None:
        # One timer per connection, not one per wait (core.timers): it stays
        # armed across the waits of many requests and, when it fires, expires the
        # wait under way only if that wait's deadline passed, else re-arms for it.
        self._deadline = deadline
        if self._timer is not None and self._timer_when <= deadline:
            return  # it fires by then (the usual case: no call at all)
        # A new timer, for this deadline (not asked when(): for a moment already
        # past, uvloop's call_at answers a plain Handle, which has none).
        self._timer = timer_by(self.loop, self._timer, deadline, self._on_timer)
        self._timer_when = deadline

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline == _NEVER:
            return  # nothing waits: the next wait arms it again
        loop = self.loop
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline
            return
        if self._reading:
            self._wake_wait(False)
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    def _disarm(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def watch(self) -> None:
        """Read again if paused: an idle connection's close must be seen."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def write_eof(self) -> None:
        """Half-close: no more bytes from us (a tunnel whose client closed)."""
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()

    def close(self) -> None:
        """Close it now (unsent bytes are dropped)."""
        self._disarm()
        transport = self.transport
        if transport is not None:
            transport.abort()
        self._closed = True
        self._eof = True


class PoolSettings:
    """What a pool needs of the handler's settings."""

    __slots__ = (
        "connect_timeout",
        "high_water",
        "idle_timeout",
        "max_connections",
        "max_head",
        "max_idle",
        "surplus_grace",
    )

    def __init__(
        self,
        connect_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        max_connections: int = 0,
        max_idle: int = 32,
        max_head: int = 65536,
        high_water: int = HIGH_WATER,
        surplus_grace: float = SURPLUS_GRACE,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections  # 0: no limit
        self.max_idle = max_idle  # 0: none kept
        self.max_head = max_head
        self.high_water = high_water
        #: Seconds idle connections over max_idle stay before they close.
        self.surplus_grace = surplus_grace


class Pool:
    """The keep-alive connections of one worker to one upstream address."""

    def __init__(self, upstream: Upstream, settings: PoolSettings) -> None:
        self.upstream = upstream
        self.settings = settings
        # The idle connections: the one returned last, then the others, oldest
        # first (lent from the end, reaped from the start). The slot spares the
        # usual case (one connection, lent and returned in turn) the list's
        # shrinking to nothing and growing again at every request.
        self._recent: Connection | None = None
        self._idle: list[Connection] = []
        self._live: set[Connection] = set()
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._reaper: asyncio.TimerHandle | None = None
        self._trimmer: asyncio.TimerHandle | None = None  # closes the surplus (see _trim)
        self.closed = False
        #: Where the connections' reads land before they are copied out.
        #: The same bytes as a bytearray (what _fields.c's take copies out of).
        self.read_bytes = bytearray(max(settings.high_water, 1024))
        self.read_buffer = memoryview(self.read_bytes)

    @property
    def open_connections(self) -> int:
        """Connections open now, lent or idle."""
        return len(self._live)

    @property
    def idle_connections(self) -> int:
        """Connections waiting for a request."""
        return len(self._idle) + (self._recent is not None)

    async def acquire(self) -> Connection:
        """A clean connection: an idle one, else a new one (waiting for room
        while ``max_connections`` are open). ``UpstreamConnectError`` or
        ``UpstreamTimeoutError`` when it cannot be had."""
        if self.closed:
            raise UpstreamConnectError("the upstream pool is closed")
        conn = self.reuse()
        if conn is not None:
            return conn
        limit = self.settings.max_connections
        if limit and len(self._live) + self._connecting >= limit:
            await self._wait_for_room()
            conn = self.reuse()
            if conn is not None:
                return conn
        return await self._connect()

    def reuse(self) -> Connection | None:
        """The most recently returned clean idle connection (None: there is none,
        then :meth:`acquire`); those found unclean on the way are closed."""
        conn = self._recent
        if conn is not None:
            self._recent = None
            if conn.clean:
                return conn
            self._discard(conn)
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.clean:
                return conn
            self._discard(conn)
        return None

    async def _wait_for_room(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout
        limit = self.settings.max_connections
        while (
            len(self._live) + self._connecting >= limit and self._recent is None and not self._idle
        ):
            if self.closed:
                raise UpstreamConnectError("the upstream pool is closed")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise UpstreamTimeoutError(
                    f"all {limit} connections to {self.upstream.name} stayed busy "
                    f"for {self.settings.connect_timeout:g} s"
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        upstream = self.upstream
        max_head = self.settings.max_head
        high_water = self.settings.high_water
        self._connecting += 1
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                if upstream.unix_path is not None:
                    _, conn = await loop.create_unix_connection(
                        lambda: Connection(self, max_head, high_water), upstream.unix_path
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: Connection(self, max_head, high_water), upstream.host, upstream.port
                    )
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"connecting took longer than {self.settings.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise UpstreamConnectError(exc.strerror or str(exc)) from None
        finally:
            self._connecting -= 1
            self._wake()
        self._live.add(conn)
        if self.closed:
            self._discard(conn)
            raise UpstreamConnectError("the upstream pool is closed")
        return conn

    def release(self, conn: Connection, *, reusable: bool) -> None:
        """Give ``conn`` back: kept for the next request when ``reusable`` and clean,
        else closed."""
        max_idle = self.settings.max_idle
        # (A clean connection of this pool is one of its live ones: every way out
        # of _live closes it. Its pool is compared, not the set searched.)
        if reusable and max_idle and not self.closed and conn.pool is self and conn.clean:
            idle = self._idle
            recent = self._recent
            if len(idle) + (recent is not None) >= max_idle and self._trimmer is None:
                # Over max_idle: the surplus closes once it stayed idle a while.
                self._trimmer = conn.loop.call_later(self.settings.surplus_grace, self._trim)
            conn.idle_since = _MONOTONIC()
            conn.watch()
            if recent is not None:
                idle.append(recent)
            self._recent = conn
            if self._reaper is None:
                self._schedule_reaper()
        else:
            self._discard(conn)
        if self._waiters:
            self._wake()

    def _discard(self, conn: Connection) -> None:
        conn.close()
        self._live.discard(conn)
        self._wake()

    def _lost(self, conn: Connection) -> None:
        # The transport is gone: an idle one leaves at once, a lent one when released.
        if conn is self._recent:
            self._recent = None
        elif conn in self._idle:
            self._idle.remove(conn)
        self._live.discard(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _schedule_reaper(self) -> None:
        if self._reaper is None and (self._recent is not None or self._idle):
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(self.settings.idle_timeout, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        cutoff = _MONOTONIC() - self.settings.idle_timeout
        recent = self._recent
        if recent is not None and recent.idle_since <= cutoff:
            self._recent = None  # the newest: every other one is older
            self._discard(recent)
        self._close_oldest(cutoff, len(self._idle))
        self._schedule_reaper()

    def _close_oldest(self, cutoff: float, most: int) -> int:
        # Close up to ``most`` of the idle connections returned at ``cutoff`` or
        # before (the oldest first: _idle is in the order they came back); how many.
        idle = self._idle
        count = 0
        while count < most and count < len(idle) and idle[count].idle_since <= cutoff:
            count += 1
        if count:
            gone = idle[:count]
            del idle[:count]
            for conn in gone:
                self._discard(conn)
        return count

    def _trim(self) -> None:
        # Idle connections over max_idle that stayed idle surplus_grace seconds
        # close, the oldest first (the others are the last a burst used: the next
        # burst takes them first); while a surplus remains, again when its oldest
        # one is due.
        self._trimmer = None
        idle = self._idle
        surplus = len(idle) + (self._recent is not None) - self.settings.max_idle
        if surplus <= 0:
            return
        grace = self.settings.surplus_grace
        if self._close_oldest(_MONOTONIC() - grace, surplus) < surplus and idle:
            delay = max(idle[0].idle_since + grace - _MONOTONIC(), 0.0)
            self._trimmer = idle[0].loop.call_later(delay, self._trim)

    def close(self) -> None:
        """Close every idle connection now, and each lent one when it comes back."""
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._trimmer is not None:
            self._trimmer.cancel()
            self._trimmer = None
        recent = self._recent
        if recent is not None:
            self._recent = None
            self._discard(recent)
        while self._idle:
            self._discard(self._idle.pop())
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
