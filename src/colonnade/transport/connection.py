"""One client connection: bytes from the socket → the protocol layer → the engine.

How this works: ``HttpConnection`` is an ``asyncio.Protocol``. Every chunk the
socket delivers is fed to the sans-IO ``HTTP1Connection``; the events it returns
are sorted into a queue of requests (a pipelined client may send several ahead).
The connection's one task answers the request at the head of the queue, so
responses leave in request order; when it ends, the next queued request starts
(see ``HttpConnection._serve``: the task waits between requests). Request
bodies stream through a small buffer whose size pauses and resumes reading
(back-pressure on fast uploaders); responses wait in ``write`` while the client
reads slowly (back-pressure on slow readers). Three timers guard the connection:
the header timer (first byte → end of head), the body timer (each wait for body
bytes) and the keep-alive timer (idle between requests).

The minimum data rate (``limits.min_bytes_per_second``, IIS's ``minBytesPerSecond``)
shares the connection's one timer and costs a request without a body nothing but
the count of bytes written. It is measured over windows of ``limits.min_rate_window``
seconds, never per read: a request body from its head on (or from the
``100 Continue``), while reading is not paused on the server's side; a response
from the moment the server has more queued for the client than the transport takes
(``pause_writing``, or a sendfile that must wait), for as long as bytes stay queued.
A window that brought fewer bytes than the rate times its length ends it: a body with a
408 (or a close once the response began), a response with a close that drops what
was queued and cancels the handler.

Pools (``pools/routing.py``) may set ``ServerState.router``: then a request that
starts on an idle connection is held until the router has seen its head, and the
router may take the whole connection away (``detach``) to hand it to another
worker. Without a router (single process, one pool) none of this runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import os
import socket
import sys
import weakref
from asyncio import Task
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from colonnade.core.context import NEW, Context, TransportWriter
from colonnade.core.request import EMPTY_BODY, Headers, Request, TlsInfo, read_chunks
from colonnade.core.response import FieldBlock
from colonnade.core.taskwait import (
    C_WAIT,
    CANCELLED,
    DONE,
    PENDING,
    TaskWait,
    finished_future,
    running_task_getter,
)
from colonnade.core.urlpath import decode_path
from colonnade.errors import ClientDisconnectedError, HttpError
from colonnade.http import Body as BodyEvent
from colonnade.http import (
    EndOfMessage,
    HTTP1Connection,
    Preface,
    ProtocolError,
    RequestHead,
    UpgradePending,
)
from colonnade.transport.respcache import (
    FRAMED_MAX,
    Entry,
    Key,
    Record,
    ResponseCache,
    request_encoding,
    request_key,
)

if TYPE_CHECKING:
    from colonnade.config.schema import Limits, Timeouts
    from colonnade.engine import Engine
    from colonnade.engine.engine import Route
    from colonnade.transport.server import ConnectionRouter, Held, ServerState

log = logging.getLogger("colonnade.transport")

# Sent, without parsing anything, to a connection over the server's limit.
_OVERLOADED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
    b"connection: close\r\nretry-after: 1\r\n\r\n"
)

#: Method names decoded once (the str every request needs).
_METHODS: Final = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")
}

#: The empty body, as a static of the compiled module: an imported name that is not
#: Final is a look-up in the module's globals per request (~130 instructions).
_NO_BODY: Final = EMPTY_BODY

# Files up to this size are read and written in one go (cheaper than sendfile).
#: ``pending_error`` after an upgrade request (its UpgradePending event): not an
#: error to send but HTTP to read again once the connection goes idle (_http_again).
_HTTP_AGAIN: Final = ProtocolError(0, "after an upgrade request")
_SMALL_FILE: Final = 64 * 1024
_COPY_CHUNK: Final = 256 * 1024
# sendfile bodies from this size go out corked (see HttpConnection.sendfile).
_CORK_FROM: Final = 1024 * 1024
# A body from memory larger than this leaves with its head in one writev, not
# copied behind it first (a copy of a 100 KiB file per response costs more than
# the second iovec; for a small one the copy is the cheaper). The response cache
# keeps such a joined answer per entry (respcache.FRAMED_MAX, the same bound).
_GATHER_FROM: Final = FRAMED_MAX

# The transport's write high-water mark: 0, so a response's write waits (drain)
# whenever the kernel did not take all of it, until the transport has handed
# everything on. A client slower than the response holds the one piece being
# written, not a high-water mark's worth beside it (asyncio's default is 64 KiB):
# what a proxy or an application streaming to many slow clients pays per client.
# The kernel's socket buffer still absorbs the bursts that keep throughput up.
_WRITE_HIGH_WATER: Final = 0

# Buffered request-body bytes above which reading pauses until the app catches up.
_BODY_HIGH_WATER: Final = 256 * 1024


#: The cork's option, as statics of the compiled module (not two look-ups in the
#: socket module's dict per call).
_IPPROTO_TCP: Final = socket.IPPROTO_TCP
_TCP_CORK: Final = socket.TCP_CORK
#: The C socket type: a socket object over a descriptor the transport owns, made per
#: corked send and detached (never closed) when it ends (HttpConnection.sendfile).
_SOCKET: Final = socket.SocketType
_AF_INET: Final = socket.AF_INET
_SOCK_STREAM: Final = socket.SOCK_STREAM
#: When a file's socket is full, this much of what comes next goes to the transport,
#: whose own watch of the socket then says when there is room (HttpConnection.sendfile).
_NUDGE: Final = 4096


def _cork(sock: Any, on: int) -> None:
    # Not TCP (a Unix socket), or already closed: an OSError; uvloop's stand-in for
    # the socket of a transport closed meanwhile (the client reset the connection
    # while a file was going out) raises ValueError for its descriptor, now -1.
    # try/except, not contextlib.suppress: that is an interpreted context manager,
    # ~4k instructions a call in the compiled build (two calls per large file).
    try:  # noqa: SIM105
        sock.setsockopt(_IPPROTO_TCP, _TCP_CORK, on)
    except (OSError, ValueError):
        pass


#: Bytes a lingering close reads and drops at most (HttpConnection.linger): the
#: CPU a client still sending may take; its timeouts (lingering, lingering_total)
#: bound it in time, and nothing read is kept. Above an upload an early answer
#: refused (the e2e tests send 8 MiB), as nginx drops such bodies whole.
_LINGER_MAX: Final = 64 * 1024 * 1024

#: Open connections from which a new one accepted by the event loop (one per turn of
#: it) has the listening socket's backlog taken at once (see Accepted).
DRAIN_FROM: Final = 64

# Final names: compiled, C statics, not look-ups in a module's dict per call.
_copy_context: Final = contextvars.copy_context
_refcount: Final = sys.getrefcount
_weakrefcount: Final = weakref.getweakrefcount
_sleep: Final = asyncio.sleep
_Future: Final = asyncio.Future


def _no_name() -> str:
    """The name of no task (see HttpConnection._serve)."""
    return ""


def _no_cancelling() -> int:
    """The cancellation count of no task (see HttpConnection._serve)."""
    return 0


# Timeouts from this long on are armed lazily (see LazyTimers); shorter ones at once.
_LAZY_FROM: Final = 1.0
# How long a lazily armed connection may wait for its timer: well under _LAZY_FROM.
_SWEEP_EVERY: Final = 0.25


class LazyTimers:
    """Arms the connections' timers lazily, for all connections of a loop at once.

    Most connections never need their timer: a request arrives, is answered, and
    the connection closes (``Connection: close``) or is re-armed for keep-alive
    long before any timeout. An event-loop timer per connection costs far more than
    the rest of setting a connection up; so a connection whose deadline is at least
    ``_LAZY_FROM`` away only joins this set, and a sweep every ``_SWEEP_EVERY``
    seconds (scheduled only while the set is not empty) gives each connection still
    waiting its timer at its own deadline: timeouts fire exactly when they did, and
    a connection that ends before the sweep (``HttpConnection._drop_timer`` takes it
    out) never makes a timer."""

    __slots__ = ("_pending", "_sweep", "batch", "loop", "time")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: The answers the loop's connections hold for its next turn (WriteBatch):
        #: here, as this object is, one for every connection of the loop (those
        #: of every listening socket, and those handed over, which have no
        #: Accepted of their own to share).
        self.batch = WriteBatch(loop)
        # The loop's clock, bound once for every connection of the loop: read per
        # request (a connection's re-arm), where a method looked up on the loop by
        # name costs ~60 instructions more, compiled. (Its call_soon bound the same
        # way saved ~30 per wake-up, passed with keywords: not kept.)
        self.time: Callable[[], float] = loop.time
        self._pending: set[HttpConnection] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def add(self, conn: HttpConnection) -> None:
        """``conn`` has a deadline and no timer: arm it by the next sweep."""
        self._pending.add(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_later(_SWEEP_EVERY, self._run)

    def discard(self, conn: HttpConnection) -> None:
        """``conn`` ended (or armed its timer itself)."""
        self._pending.discard(conn)

    def __len__(self) -> int:
        return len(self._pending)

    def _run(self) -> None:
        self._sweep = None
        pending, self._pending = self._pending, set()
        for conn in pending:
            conn._arm_now()


class Counts:
    """The worker's request and byte counts (read as ``ServerState.requests``,
    ``received`` and ``request_limit``): kept in an object of their own, which
    each connection holds, so that the per-request additions from compiled code
    are field stores, not look-ups on the (interpreted) server state."""

    __slots__ = ("received", "request_limit", "requests")

    def __init__(self) -> None:
        self.requests = 0
        #: Bytes read from clients' connections (after TLS), for ``GET /metrics``.
        self.received = 0
        #: When ``requests`` reaches this count, ``ServerState.on_request_limit`` is
        #: called once (a pool worker's ``recycling.requests``); -1: never.
        self.request_limit = -1


class Live:
    """What a connection reads of the server's state for every request, and as it
    begins and ends: kept in a compiled object of its own, which each connection
    holds (as it holds Counts), so that each read is a field load, not a look-up on
    the interpreted ``ServerState`` (~190 instructions each, six per keep-alive
    request, sixteen more per connection). ``ServerState`` keeps it current: it
    sets these wherever it sets its own (``switch``, its ``router`` and
    ``counting``)."""

    __slots__ = (
        "batch_from",
        "connections",
        "counting",
        "engine",
        "header_timeout",
        "keep_alive",
        "max_connections",
        "max_header_size",
        "max_headers",
        "max_target",
        "per_client",
        "respcache",
        "router",
        "server_header",
    )

    def __init__(
        self,
        engine: Engine,
        respcache: ResponseCache | None,
        connections: set[Any],
        limits: Limits,
        timeouts: Timeouts,
        server_header: bytes | None,
    ) -> None:
        self.engine = engine
        self.respcache = respcache
        self.router: ConnectionRouter | None = None
        #: ``ServerState.connections`` (the same set) and ``counting``
        self.connections = connections
        self.counting = False
        self.keep_alive = 0.0
        self.header_timeout = 0.0
        self.max_connections = 0
        self.per_client = 0
        self.max_target = 0
        self.max_header_size = 0
        self.max_headers = 0
        self.server_header: bytes | None = None
        #: Open connections from which a keep-alive answer is held for the loop's
        #: next turn (WriteBatch; below, one connection writes at once).
        self.batch_from: int = BATCH_FROM
        self.settings(limits, timeouts, server_header)

    def settings(self, limits: Limits, timeouts: Timeouts, server_header: bytes | None) -> None:
        """Take the values a connection reads of the server's settings."""
        #: ``timeouts.keep_alive`` and ``timeouts.header``
        self.keep_alive = timeouts.keep_alive
        self.header_timeout = timeouts.header
        #: ``limits.max_connections`` and ``max_connections_per_client``
        self.max_connections = limits.max_connections
        self.per_client = limits.max_connections_per_client
        #: what each connection's HTTP1Connection is made with
        self.max_target = limits.max_request_target
        self.max_header_size = limits.max_header_size
        self.max_headers = limits.max_headers
        self.server_header = server_header


#: Whether this module runs compiled (mypyc): a compiled module's file is its
#: extension, not its source (as in handlers/asgi/handler.py).
_COMPILED: Final = not __file__.endswith(".py")


class Waker(TaskWait):
    """What a connection's task awaits between requests in the compiled build (see
    ``HttpConnection._serve``): a reusable wait (core/taskwait.py), one object per
    connection, armed again for each wait; :meth:`set_result` ends the wait with a
    value, and the task's wake-up is scheduled as a future's would be (for the
    loop's next turn, also after a cancellation).

    Compiled, it costs less than an ``asyncio.Future`` (core/taskwait.py says
    why), once per keep-alive request. Interpreted, its methods cost more than a
    future's C ones: the pure build waits on a future of the loop's
    ``create_future`` (which passes the loop) instead, with the same calls
    (``done``, ``set_result``, ``await``)."""

    __slots__ = ("finished", "value")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.value = False
        #: What the task's wake-up is handed when the wait ends with a value: a
        #: finished future, whose result the task reads in C (the await then gives
        #: the value); a cancelled wait hands itself (its result() raises).
        self.finished = finished_future(loop)

    def __await__(self) -> Generator[Any, None, bool]:
        if self.state == PENDING:
            self._asyncio_future_blocking = True
            yield self  # to the task, which adds its wake-up (asyncio's protocol)
        if self.state == CANCELLED:  # result() raised into the task instead
            raise asyncio.CancelledError(self.message)
        return self.value

    def set_result(self, value: bool) -> None:
        """End the wait with ``value`` (nothing if it ended already: unlike a
        future's, which raises)."""
        if self.state != PENDING:
            return
        self.state = DONE
        self.value = value
        self.schedule_wake(self.finished)

    def result(self) -> bool:
        """The value the wait ended with; raises CancelledError where it was cancelled."""
        self.check()
        return self.value


class Waiting(Protocol):
    """What a connection's task awaits between requests: a :class:`Waker`, or
    core/_taskwait.c's ``Wait`` in its place (:func:`new_waker`), or in the pure
    build a future of the loop (see ``HttpConnection._serve``): ended with a
    value, which the await gives."""

    def done(self) -> bool:
        """The wait ended."""

    def set_result(self, value: bool, /) -> None:
        """End the wait with ``value``."""

    def __await__(self) -> Generator[Any, None, bool]:
        """The task's wait: ``value`` once it ended."""


class Rewaiting(Waiting, Protocol):
    """A :class:`Waiting` armed again for each wait (the compiled build's)."""

    def arm(self) -> None:
        """Begin a wait (the last one ended)."""


#: core/_taskwait.c's Wait (see core.taskwait.C_WAIT), or None: a static
#: reference (compiled, an imported name is a look-up in its module at each use).
_C_WAIT: Final = C_WAIT
#: The running task of a loop (see core.taskwait.running_task_getter): what the
#: C wait's wake(now) asks (never called here: a Waker's wake-up is scheduled).
_CURRENT_TASK: Final = running_task_getter()
#: The C wait's arm and set_result, unbound (None without it): called as
#: ``_WAIT_SET(wait, value)``, a method call with no look-up by name (compiled, a
#: method of an object typed by a Protocol is looked up on the object at each
#: call, and the C type, whose attribute look-up is its own, then makes a bound
#: method and frees it: ~300 instructions a call).
_WAIT_ARM: Final[Callable[[Rewaiting], None] | None] = (
    None if _C_WAIT is None else _C_WAIT.arm  # type: ignore[assignment]
)
_WAIT_SET: Final[Callable[[Waiting, bool], None] | None] = (
    None if _C_WAIT is None else _C_WAIT.set_result  # type: ignore[assignment]
)
#: ... and its release: a closed connection's C wait let go of its own bound
#: methods, so that it is freed with the connection, not left a cycle.
_WAIT_RELEASE: Final[Callable[[Rewaiting], None] | None] = (
    None if _C_WAIT is None else _C_WAIT.release  # type: ignore[assignment]
)


def new_waker(loop: asyncio.AbstractEventLoop) -> Rewaiting:
    """A connection's :class:`Waker`: core/_taskwait.c's ``Wait`` where built (the
    same calls and behaviour: its ``set_result`` schedules the wake-up, its await
    gives the value; tests/transport/test_waker.py runs both), which asyncio's
    task answers at less cost at each wait (core.taskwait.C_WAIT says why), else
    a :class:`Waker`."""
    made = _C_WAIT
    if made is not None:
        wait: Rewaiting = made(loop, finished_future(loop), _CURRENT_TASK)
        return wait
    return Waker(loop)


#: Live.batch_from, as each server's Live is made: 2 (a worker's only connection
#: has no other answer to go with). Not Final, not a setting: the test suite sets 1
#: (tests/conftest.py, COLONNADE_TEST_FORCE_BATCH=1) to have every keep-alive answer
#: held, so that every path through the suite meets a held answer.
BATCH_FROM = 2


class WriteBatch:
    """Whole answers of one event loop held until its next turn, then written
    together (see ``HttpConnection.cork``).

    A client waiting in ``epoll_wait`` is woken by each write that reaches it,
    and waking a process on another CPU is costly for the writer (an
    inter-processor interrupt: in a VM, an exit). Answers written one by one as
    each is made, a few microseconds of work apart, reach a client that has
    gone back to sleep each time (a load generator or a proxy in front with
    many connections: wrk was woken ~0.3 times per proxied answer); written in
    one burst at the loop's next turn, the first wakes it and it finds the rest
    (0.03-0.05: bench/proxy_split.py). The answers wait at most for the rest of the loop's turn: the
    callbacks already due run first (an idle loop's turn is at once). The
    batch costs a callback and a turn of the loop (~4k instructions) for the
    turn's answers together: a worker's only connection writes at once."""

    __slots__ = ("conns", "flush", "loop", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.conns: list[HttpConnection] = []
        self.scheduled = False  # flush is due at the loop's next turn
        #: Bound once: scheduled once per turn that holds answers.
        self.flush: Callable[[], None] = self._flush

    def add(self, conn: HttpConnection) -> None:
        """``conn`` holds an answer (its ``_corked``): written at the next turn."""
        self.conns.append(conn)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def _flush(self) -> None:
        self.scheduled = False
        conns, self.conns = self.conns, []
        for conn in conns:
            try:
                # uncork, inline (a Python frame less per answer, interpreted).
                if conn._corked is not None:
                    conn._wire()
            except Exception:
                # A transport that refused the write: that connection ends, the
                # others' answers still go (one left held would be held forever:
                # a connection joins the batch only when it holds nothing).
                log.exception("a held answer could not be written: connection aborted")
                conn.abort()


class Accepted:
    """What every plain connection of a listening socket shares, made once: the
    server's state, the event loop, the lazy timers, and the local address where
    the socket's is the same for all its connections (bound to one address, not a
    wildcard). Called, it makes the protocol of a new connection (the factory
    given to ``loop.create_server``)."""

    __slots__ = (
        "batch",
        "counts",
        "drain",
        "draining",
        "live",
        "local",
        "loop",
        "state",
        "timers",
    )

    def __init__(self, state: ServerState, local: tuple[str, int] | None = None) -> None:
        self.state = state
        # The state's own (never replaced), read by each connection as it begins.
        self.counts = state.counts
        self.live = state.live
        self.local = local
        self.loop = loop = asyncio.get_running_loop()
        timers = state.lazy_timers
        if timers is None or timers.loop is not loop:
            timers = state.lazy_timers = LazyTimers(loop)
        self.timers = timers
        self.batch = timers.batch
        #: Accepts what waits in the backlog at once (``server.BurstAccept``), for a
        #: socket whose connections the event loop accepts one per turn; None: not one.
        self.drain: Callable[[], None] | None = None
        self.draining = False  # a drain is scheduled for this turn of the loop

    def __call__(self) -> HttpConnection:
        drain = self.drain
        if drain is not None and not self.draining and len(self.live.connections) >= DRAIN_FROM:
            # The event loop accepts one connection per turn, and a turn serving
            # this many connections is long: the rest of a burst would wait for
            # as many turns (seconds, at a thousand). Take them all this turn.
            self.draining = True
            self.loop.call_soon(drain)
        return HttpConnection(self.state, b"", None, self)


def fixed_address(sock: socket.socket) -> tuple[str, int] | None:
    """The local address every connection accepted on the listening ``sock`` has:
    its own, unless it is bound to a wildcard address (then each connection's is
    the address the client reached) or is not IP."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    name = sock.getsockname()
    host = name[0]
    if host in ("0.0.0.0", "::") or "%" in host:
        return None
    return (host, int(name[1]))


class RateWindow:
    """One measure of the minimum data rate (``limits.min_bytes_per_second``): when
    its current window began (-1: not measuring) and the byte count then."""

    __slots__ = ("mark", "since")

    def __init__(self) -> None:
        self.since = -1.0
        self.mark = 0

    def begin(self, now: float, count: int) -> None:
        """A window begins at ``now``, the count being ``count``."""
        self.since = now
        self.mark = count

    def judge(self, now: float, length: float, rate: int, waiting: bool, count: int) -> bool:
        """Look at the window once it is ``length`` seconds old (before, nothing
        happens). Nothing ``waiting`` on the client: the measure stops (the server is
        behind, not the client). Else False if ``count`` grew by less than ``rate``
        per second of the window: the client is too slow, and the window is kept for
        the caller to report. Otherwise the next window begins."""
        since = self.since
        if since < 0 or now < since + length:
            return True
        if not waiting:
            self.since = -1.0
        elif count - self.mark < rate * (now - since):
            return False
        else:
            self.begin(now, count)
        return True

    def due(self, length: float, earliest: float) -> float:
        """The earlier of ``earliest`` (-1: none) and the end of this window."""
        if self.since < 0:
            return earliest
        end = self.since + length
        return end if earliest < 0 or end < earliest else earliest


def addresses(
    transport: asyncio.BaseTransport,
) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """The client's and the server's address of a connection (None: not IP)."""
    return (
        _address(transport.get_extra_info("peername")),
        _address(transport.get_extra_info("sockname")),
    )


def _address(name: object) -> tuple[str, int] | None:
    # (host, port) of a socket address; IPv6's flow and scope fields dropped
    if isinstance(name, tuple):
        return (name[0], name[1])
    return None


class BodySource(Protocol):
    """Where a :class:`StreamBody` comes from: an HTTP/1.1 connection, or one stream
    of an HTTP/2 connection (``transport/h2connection.py``)."""

    @property
    def state(self) -> ServerState:
        """The server's shared state (timeouts)."""

    def pause_reading_for_body(self) -> None:
        """The body's buffer is full: stop reading until it is read."""

    def resume_reading_for_body(self) -> None:
        """The application waits for more of the body."""

    def send_continue(self) -> None:
        """Tell an ``Expect: 100-continue`` client to send its body."""


class StreamBody:
    """A request body arriving from the socket; implements ``core.request.Body``."""

    __slots__ = ("_buffer", "_conn", "_size", "_waiter", "complete", "error", "expect_continue")

    def __init__(self, conn: BodySource, expect_continue: bool) -> None:
        self._conn = conn
        self._buffer: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.error: Exception | None = None
        self.expect_continue = expect_continue

    # -- fed by the connection ----------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        if self._size > _BODY_HIGH_WATER:
            self._conn.pause_reading_for_body()
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, exc: Exception) -> None:
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the application ----------------------------------------------------

    async def _wait(self) -> None:
        if self.expect_continue:
            self.expect_continue = False
            self._conn.send_continue()
        self._conn.resume_reading_for_body()
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = loop.call_later(self._conn.state.timeouts.body, self._timeout)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _timeout(self) -> None:
        self.fail(HttpError(408, 0, "the request body did not arrive in time"))

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (everything if -1); ``b""`` at the end of the body."""
        while True:
            if self.error is not None:
                raise self.error
            if self._buffer and (size >= 0 or self.complete):
                break
            if self.complete:
                return b""
            await self._wait()
        if size < 0:
            data = b"".join(self._buffer)
            self._buffer.clear()
        else:
            data = self._buffer.popleft()
            if len(data) > size:
                self._buffer.appendleft(data[size:])
                data = data[:size]
        self._size -= len(data)
        return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return read_chunks(self)


#: Bytes an upgraded connection's new protocol may leave unread before the
#: connection stops reading from the client (and from which it reads again).
RAW_HIGH: Final = 256 * 1024
RAW_LOW: Final = 64 * 1024


class RawChannel:
    """The connection's bytes after an upgrade; implements ``core.context.RawStream``.

    Bounded: with more than ``RAW_HIGH`` bytes unread (a client sending faster than
    the new protocol's owner takes them: a WebSocket application that does not
    receive), the connection stops reading until they are down to ``RAW_LOW``, so
    the client meets TCP's back-pressure instead of the server's memory growing.
    """

    __slots__ = (
        "_chunks",
        "_conn",
        "_eof",
        "_on_shutdown",
        "_paused",
        "_size",
        "_stopping",
        "_waiter",
    )

    def __init__(self, conn: HttpConnection, initial: bytes, paused: bool = False) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque([initial] if initial else [])
        self._size = len(initial)
        # ``paused``: the connection stopped reading before (bytes held after the
        # upgrade request while it was answered); the channel resumes it.
        self._paused = paused
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_shutdown: Callable[[], None] | None = None
        self._stopping = False

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        size = self._size = self._size + len(data)
        if size > RAW_HIGH and not self._paused:
            self._paused = True
            self._conn._pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> bytes:
        """The next bytes from the client; ``b""`` once it closed."""
        while not self._chunks:
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        size = self._size = self._size - len(data)
        if self._paused and size <= RAW_LOW:
            self._paused = False
            self._conn._resume_reading()
        return data

    async def send(self, data: bytes) -> None:
        """Send raw bytes with back-pressure."""
        conn = self._conn
        if conn.gone():
            raise ClientDisconnectedError("the client went away")
        conn.write(data)
        await conn.drain()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the server begins a graceful stop."""
        if self._stopping:
            callback()
        else:
            self._on_shutdown = callback

    def shutdown(self) -> None:
        """The server begins a graceful stop: tell the stream's owner (once)."""
        if self._stopping:
            return
        self._stopping = True
        callback, self._on_shutdown = self._on_shutdown, None
        if callback is not None:
            callback()


class Exchange(TransportWriter):
    """One request on the connection and the writer for its response."""

    __slots__ = (
        "body",
        "complete",
        "conn",
        "head",
        "held",
        "keep_alive",
        "record",
        "released",
        "request",
        "route",
        "sized",
    )

    def __init__(
        self,
        conn: HttpConnection,
        head: RequestHead,
        request: Request | None,
        body: StreamBody | None,
    ) -> None:
        self.conn = conn
        self.head = head
        self.request = request
        self.body = body
        self.bytes_sent = 0
        self.keep_alive = head.keep_alive
        self.sized = False  # the response declared its length: raw bytes may follow
        # The head of a large sized response, kept back so that it leaves on the
        # same path as a sendfile body (see start); sent by whatever comes next.
        self.held: bytes | None = None
        # What the response cache may keep of the response (a candidate request only).
        self.record: Record | None = None
        # The request's route, found by the response cache's verdict (a candidate
        # request only), for Engine.handle (which checks its generation).
        self.route: Route | None = None
        # The whole response is handed to the transport (send_all, or end).
        self.complete = False
        # Let go (see HttpConnection._let_go): the connection went on to its next
        # request while this one's application is still at work after its answer.
        self.released = False

    # ResponseWriter -------------------------------------------------------------

    def send_all(
        self,
        status: int,
        reason: bytes | None,
        headers: Headers,
        body: bytes,
        block: FieldBlock | None = None,
        answer: bytes | None = None,
    ) -> None:
        """The whole response in one write (``block``: its head as bytes already,
        written as they are: see FieldBlock; ``answer``: the whole answer of that
        head and ``body``, see Response, written as it is where it is what the
        writer would write)."""
        conn = self.conn
        h1 = conn.h1
        record = self.record
        if record is not None and not record.whole(status, reason, headers, body):
            self.record = None
        # A 304 describes a body it does not carry: no Content-Length of its own
        # (RFC 9110 8.6), unless the handler declared the representation's.
        size = len(body)
        length = None if status == 304 else size
        # A small body is framed and joined behind the head in the same join; a
        # large one goes out beside it (writev).
        small = size <= _GATHER_FROM
        # _keep_alive, inline: a call less per request, interpreted.
        asked = self.body
        keep_alive = not conn.closing and self.keep_alive and (asked is None or asked.complete)
        checked = (
            None
            if block is None
            else h1.checked_head(status, block.lines, not block.date, not block.server)
        )
        # Positional: interpreted, a call with keywords matches each name against
        # the parameters (the pure install's every request passes here).
        data = h1.start_response(
            self.head,
            status,
            headers,
            reason,
            length,
            keep_alive,
            body if small else b"",
            checked,
            answer,
        )
        framed = b"" if small else h1.body(body)  # b"" for a HEAD request too
        if framed:
            self.bytes_sent += len(data) + len(framed)
            conn.write_two(data, framed)
        else:
            # conn.write, inline: a call less per request, interpreted (and the
            # length taken once for both counts).
            sent = len(data)
            self.bytes_sent += sent
            live = conn._live
            if (
                len(conn.queue) > 1
                or not h1.keep_alive
                or conn.closing
                or len(live.connections) < live.batch_from
            ):
                # (The worker's only connection: no other answer to go with.)
                transport = conn._transport
                if conn._corked is None and transport is not None and not transport.is_closing():
                    # Nothing held: written here, not through _wire (interpreted, a
                    # call is a frame, ~900 instructions); test_one_wire allows a
                    # write on the raw transport only under this test.
                    conn._written += sent
                    transport.write(data)
                else:
                    wire = conn._wire()  # what is held goes first
                    if wire is not None:
                        conn._written += sent
                        wire.write(data)
            elif _COMPILED or conn.tls is not None or conn._corked is not None:
                # The usual answer, its connection kept open: written with the
                # others of this turn (WriteBatch).
                conn.cork(data)
            else:
                # cork and WriteBatch.add, inline for the pure install's usual
                # answer (plain TCP, nothing held yet): two Python frames less
                # per request under load.
                conn._corked = data
                batch = conn._batch
                batch.conns.append(conn)
                if not batch.scheduled:
                    batch.scheduled = True
                    batch.loop.call_soon(batch.flush)
        # _completed, inline for the usual answer (the only one on its connection,
        # which stays open): a call less per request, interpreted.
        if len(conn.queue) > 1 or not h1.keep_alive:
            self._completed()
        else:
            self.complete = True

    def _completed(self) -> None:
        # The whole response is handed to the transport (send_all, or end).
        self.complete = True
        conn = self.conn
        if len(conn.queue) > 1:
            self._overtaken()
        elif not conn.h1.keep_alive:
            body = self.body
            if (body is None or body.complete) and not conn._read_paused_for_upgrade:
                # The connection's last answer (its head said close): the connection
                # closes now (what is queued leaves first), not when the application
                # returns, so that work it does after its answer holds up no client
                # that reads to the close (an HTTP/1.0 body framed by it). The close
                # _finish would make; a body not all read, or bytes held after an
                # upgrade request (reading stopped), linger there instead. Bytes
                # that came after the request (more may be on the way): a lingering
                # close, now too (its FIN ends a body framed by the close).
                if conn.h1.ignored:
                    conn.linger()
                else:
                    conn.close()

    def _overtaken(self) -> None:
        # Complete, with a pipelined request waiting behind: if the application is
        # still at work once this task step is over (a background task after its
        # response), the next request need not wait for it.
        conn = self.conn
        conn._loop.call_soon(conn._let_go, self, context=conn._origin)

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        """The head of a streamed response."""
        self.sized = content_length is not None
        record = self.record
        if record is not None and not record.begin(status, reason, headers, content_length):
            self.record = None
        data = self.conn.h1.start_response(
            self.head, status, headers, reason, content_length, self._keep_alive()
        )
        self.bytes_sent += len(data)
        if (
            content_length is not None
            and content_length > _SMALL_FILE
            and self.head.method != b"HEAD"
        ):
            # Likely a file going out by sendfile: written by the sendfile path
            # itself, it needs no wait for the transport to flush it first. Whatever
            # else follows, the head leaves at the latest at the next loop turn.
            self.held = data
            self.conn._loop.call_soon(self._release)
            return
        self.conn.write(data)

    def _release(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.conn.write(held)

    async def write(self, data: bytes) -> None:
        """Body bytes; waits while the client is slow to read."""
        conn = self.conn
        if self.held is not None:
            self._release()
        record = self.record
        if record is not None and not record.add(data):
            self.record = None
        framed = conn.h1.body(data)
        if framed:
            self.bytes_sent += len(framed)
            conn.write(framed)
            if conn.write_paused:
                await conn.drain()
            elif conn.gone():
                # A write that found the client gone closed the transport; its
                # connection_lost (which cancels the request) comes a turn of the
                # loop later. Said now: a stream that never waits for the client
                # would otherwise write into nothing forever, the loop never turning.
                raise ClientDisconnectedError("the client went away")
        else:
            # Nothing goes out (a HEAD's body, an empty chunk): no write pauses or
            # finds the client gone, so the loop gets its turn here, or a stream
            # that never waits would hold every other connection of the worker
            # and outlive its client (whose leaving cancels it at this await).
            await _sleep(0)

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        """A file range: small ones in one write, large ones with zero-copy sendfile."""
        conn = self.conn
        if self.head.method == b"HEAD":
            return  # its head said it all: no byte of the file goes out, none is read
        # Opening a local file is not worth a thread; reads use pread/sendfile. A raw
        # descriptor: no buffered file object (its fstat, ioctl and lseek calls).
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # Over TLS the bytes must pass through the TLS layer: no zero-copy.
            if count <= _SMALL_FILE or not self.sized or conn.tls is not None:
                await self._copy(fd, offset, count)
            else:
                self.record = None  # too large to keep: stays on sendfile
                conn.h1.body_sent(count)
                head, self.held = self.held, None
                await conn.sendfile(fd, offset, count, head or b"")
                self.bytes_sent += count
        finally:
            os.close(fd)

    async def _copy(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            data = os.pread(fd, min(count, _COPY_CHUNK), offset)
            if not data:
                raise ConnectionError("the file shrank while it was being sent")
            await self.write(data)
            offset += len(data)
            count -= len(data)

    async def end(self) -> None:
        """End of a streamed body (once: an application may end its stream before
        the walk's SEND_RESPONSE step would)."""
        if self.complete:
            return
        if self.held is not None:
            self._release()
        tail = self.conn.h1.end_response()
        if tail:
            self.bytes_sent += len(tail)
            self.conn.write(tail)
        self._completed()

    def abort(self) -> None:
        """Drop the connection (a streamed response failed half-way)."""
        if self.released:
            return  # answered in full, and the connection serves another request now
        self.held = None
        self.record = None
        self.keep_alive = False
        self.conn.abort()

    def upgrade(self) -> RawChannel | None:
        """Hand the connection's bytes to another protocol (an upgrade request only)."""
        conn = self.conn
        if self.request is None or self.request.header(b"upgrade") is None or conn.raw:
            return None
        self.keep_alive = False
        conn._disarm()
        # Reading stopped on too many bytes held meanwhile: the channel resumes it.
        paused, conn._read_paused_for_upgrade = conn._read_paused_for_upgrade, False
        raw = conn.raw = RawChannel(conn, conn.h1.trailing_data, paused)
        if conn.eof:
            raw.feed_eof()  # the client closed its side before the switch
        router = conn.state.router
        if conn.stopping or (router is not None and router.draining):
            # Upgraded after a stop or a drain began (the request was in flight):
            # its state cannot move to another worker; its owner closes it at once.
            raw.shutdown()
        return raw

    def _keep_alive(self) -> bool:
        conn = self.conn
        if conn.closing or not self.keep_alive:
            return False
        body = self.body
        # A body nobody read and that has not fully arrived cannot be skipped
        # cheaply: close instead of reading it.
        return body is None or body.complete


class _FileSender:
    """One ``sendfile`` body (and the head before it) going out on a socket.

    It writes until the socket is full; then the transport is handed the next few
    bytes (:meth:`nudge`), and its own watch of the socket writes them when there
    is room and resumes the connection's writing, which goes on sending from that
    callback (:meth:`resumed`), with no task woken until the last byte left or the
    client failed, as nginx's event handler does. The client must make room again
    within ``timeouts.body`` seconds of each wait's start, or the connection is
    dropped (``HttpConnection.drop``): the connection's own timer keeps that
    deadline (``_arm``; ``_on_timeout`` drops while ``sending_file``).
    """

    __slots__ = ("conn", "count", "fd", "head", "offset", "out", "timeout", "waiter")

    def __init__(
        self, conn: HttpConnection, out: int, fd: int, offset: int, count: int, head: bytes
    ) -> None:
        self.conn = conn
        self.out = out
        self.fd = fd
        self.offset = offset
        self.count = count
        self.head = head
        self.timeout = 0.0
        self.waiter: asyncio.Future[None] | None = None

    def go_on(self) -> bool:
        """After a :meth:`push` that found the socket full: nudge, and send on
        while the transport wrote the nudge at once, until the rest is handed over
        (True) or the transport holds a nudge and waits for room (False, the send's
        deadline armed). Not :meth:`push` again first: right after a full socket
        that meets EAGAIN, an exception (~4.5k instructions compiled)."""
        conn = self.conn
        while True:
            self.nudge()
            if conn.gone():
                raise ClientDisconnectedError("the client went away")
            if not self.count and not self.head:
                return True  # the transport has the last bytes: they go as it can
            if conn.write_paused:
                conn._arm(self.timeout)  # from now: the client must make room by then
                return False
            # The transport wrote the nudge at once: there is room again already.
            if self.push():
                return True

    def resumed(self) -> None:
        """The transport wrote what it held: send on (``resume_writing``)."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        conn = self.conn
        try:
            if conn.gone():
                raise ClientDisconnectedError("the client went away")
            if not self.push() and not self.go_on():
                return
        except Exception as exc:
            conn._deadline = None  # the send is over: no drop for a lapse now
            waiter.set_exception(exc)
            return
        conn._deadline = None  # _disarm: the send is over (its task wakes later)
        waiter.set_result(None)

    def push(self) -> bool:
        """Write what the socket takes: True once all of it went, False when full."""
        conn, out = self.conn, self.out
        try:
            while self.head:
                wrote = os.write(out, self.head)
                conn._written += wrote
                self.head = self.head[wrote:]
                if self.head:
                    return False
            while self.count > 0:
                sent = os.sendfile(out, self.fd, self.offset, self.count)
                if sent == 0:
                    raise ConnectionError("the file shrank while it was being sent")
                conn._written += sent
                self.offset += sent
                self.count -= sent
                if self.count:
                    # Less than offered: the socket is full. Trying again at once
                    # would only meet EAGAIN; wait for room.
                    return False
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                raise ClientDisconnectedError("the client went away") from exc
            raise
        return True

    def nudge(self) -> None:
        """The socket is full: hand the transport what comes next, a little (the
        rest of the head, or ``_NUDGE`` bytes of the file), so that the transport's
        own watch of the socket writes it when there is room and then resumes the
        connection's writing (``resume_writing``), which ends the wait."""
        conn = self.conn
        head = self.head
        if head:
            self.head = b""
            conn.write(head)
            return
        data = os.pread(self.fd, min(self.count, _NUDGE), self.offset)
        if not data:
            raise ConnectionError("the file shrank while it was being sent")
        self.offset += len(data)
        self.count -= len(data)
        conn.write(data)


def _one_slot() -> list[Any]:
    """An empty list with room for one item: a lone request's append and pop then
    keep its array (CPython's list keeps an allocation of one when it empties by a
    pop, where one of four shrinks: a free and a new array per request, ~400
    instructions). A connection that pipelines grows it as any list, and is back to
    that after its burst. The array costs an idle connection one 16-byte pymalloc
    block; emptied from four slots, the list kept a zero-size allocation instead."""
    queue: list[Any] = [None]
    queue.pop()
    return queue


def _disconnected(exchange: Exchange) -> None:
    # The connection was lost: a body still arriving never will.
    body = exchange.body
    if body is not None and not body.complete:
        body.fail(ClientDisconnectedError("the client closed the connection"))


class HttpConnection(asyncio.Protocol):
    """The asyncio protocol for one HTTP/1.1 connection."""

    def __init__(
        self,
        state: ServerState,
        initial: bytes = b"",
        tls: TlsInfo | None = None,
        shared: Accepted | None = None,
    ) -> None:
        """``initial``: bytes already read from the socket (a connection accepted by
        another process and handed over, or that arrived with the end of a TLS
        handshake), parsed first once the connection is made. ``tls``: what the TLS
        handshake negotiated (the transport is a TLS one), None on plain TCP.
        ``shared``: what the connections of its listening socket share (made here
        when not given)."""
        if shared is None:
            shared = Accepted(state)
        self.state = state
        self._counts = shared.counts
        self._live = live = shared.live
        self._initial = initial
        # A TLS session cannot move to another process: such a connection is
        # never held for the router nor handed over (see pools/routing.py).
        self.tls = tls
        self._scheme = "https" if tls is not None else "http"
        self.h1 = HTTP1Connection(
            max_target=live.max_target,
            max_header_size=live.max_header_size,
            max_headers=live.max_headers,
            server=live.server_header,
        )
        # The transport, under a private name: written to or ended only through
        # _wire (or abort), which writes an answer held by cork first; elsewhere
        # only asked about (tests/transport/test_one_wire.py checks the source).
        self._transport: asyncio.Transport | None = None
        # A list, not a deque: at most max_pipelined exchanges wait, and an empty
        # deque reserves a 64-slot block (~760 bytes per idle connection).
        self.queue: list[Exchange] = _one_slot()
        self.current: Exchange | None = None  # the request whose body is arriving
        # The connection's task (see _serve): made for its first request, it answers
        # the later ones too, waiting on _wake between them; None: there is none.
        self.task: asyncio.Task[None] | None = None
        self.answering = False  # a request is being answered (by the task)
        # The context the connection's task began with (see _serve): where a task
        # made for it by a callback (see _let_go) begins too.
        self._origin: contextvars.Context | None = None
        # What the task waits on between requests while it waits (None: it does
        # not), and the connection's one Waker (made for the task's first wait:
        # new_waker). The pure build waits on a future of the loop instead (see
        # Waker; the same calls: done, set_result, await).
        self._wake: Waiting | None = None
        self._waker: Rewaiting | None = None
        # In LazyTimers' set for its next sweep (_serve or _arm added it), and found waiting
        # for a request by a sweep (_arm_now): the next one ends the task.
        self._swept = False
        self._idle_swept = False
        self.pending_error: ProtocolError | None = None
        self.closing = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # A file's send waiting for room in the socket (see sendfile), or None.
        self._sender: _FileSender | None = None
        self._read_paused_for_body = False
        self._read_paused_for_queue = False
        # Too many bytes held after an upgrade request being answered (see h1.over_held).
        self._read_paused_for_upgrade = False
        self._timer: asyncio.TimerHandle | None = None
        # When _timer fires (what it was asked for): kept here, a field load, not
        # the timer's when() (a method call, once per request in _arm). uvloop
        # answers a moment already past with a plain Handle (no when()), due at once.
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._loop = shared.loop
        self._timers = shared.timers
        # An answer held for the loop's next turn (see cork; None: none), and
        # the batch that writes it then.
        self._corked: bytes | None = None
        self._batch = shared.batch
        self._idle = True
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = shared.local
        self.raw: RawChannel | None = None  # set once the connection was upgraded
        self.held: Held | None = None  # a request's first bytes, until the router decides
        self.stopping = False  # a graceful stop has begun
        self.eof = False  # the client closed its side
        self.lingering = False  # answered and half-closed: input is read and dropped
        self._linger_until = 0.0
        self._lingered = 0  # bytes read and dropped while lingering (_LINGER_MAX)
        # The minimum data rate (see the module docstring): bytes handed to the
        # socket so far, the request body's bytes received so far, the measure of
        # each, and when the shared timer must next look at them (None: never).
        self._written = 0
        self._body_got = 0
        self._body_rate = RateWindow()
        self._send_rate = RateWindow()
        self._rate_due: float | None = None
        self.sending_file = False  # a sendfile is under way: bytes are queued for the client
        self.too_slow = False  # cut for a body below the minimum rate: linger briefly
        # Dropped by the server's own decision (drop): its request in flight is
        # logged as the server's abort (Win32 1236), not the client's leaving (64).
        self.dropped = False
        # The response cache's entry of this connection's last hit (it holds its
        # key), and its cache.
        self._memo: Entry | None = None
        self._memo_cache: ResponseCache | None = None
        # The last request path and Host decoded (see _on_head). Bytes from the
        # start (a typed compare): no target is a NUL, and b"" is the empty Host.
        self._raw_path = b"\x00"
        self._path = ""
        self._raw_host = b""
        self._host = ""

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self._transport = transport = cast(asyncio.Transport, transport)
        state = self.state
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            # IPv4 as it comes; IPv6's flow and scope fields are dropped
            self.client = peer if len(peer) == 2 else (peer[0], peer[1])
        if self.server is None:  # the listening socket's address is not every connection's
            self.server = _address(transport.get_extra_info("sockname"))
        live = self._live
        connections = live.connections
        if not live.per_client and len(connections) < live.max_connections:
            connections.add(self)  # ServerState.admit's common case, without the call
        elif not state.admit(self, self.client):
            self.write(_OVERLOADED)
            self.close()
            return
        transport.set_write_buffer_limits(_WRITE_HIGH_WATER)
        self._arm(live.header_timeout)
        if self._initial:
            data, self._initial = self._initial, b""
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.raw is not None:
            self.raw.feed_eof()
        live = self._live
        if live.counting:
            self.state.forget(self)
        else:
            live.connections.discard(self)  # ServerState.forget's common case
        self._drop_timer()
        self.h1.release()  # nothing more is parsed: no cycle left for the collector
        waker = self._waker
        release = _WAIT_RELEASE
        if waker is not None and release is not None and type(waker) is _C_WAIT:
            # The C wait's bound methods hold it: no cycle left for the collector
            # either (a task still waiting on it finds its methods all the same).
            release(waker)
        current = self.current
        if current is not None:
            _disconnected(current)
        for exchange in self.queue:
            _disconnected(exchange)
        if self.answering and self.queue and self.queue[0].complete and not self.state.aborting:
            # Its answer went out whole: the application's work after it (a
            # background task) is no longer the client's to cancel. (Not when a
            # stop's deadline dropped the connection: then the work is cancelled.)
            self._let_go(self.queue[0])
        task = self.task
        if task is not None and not self._end_idle_task() and not task.done():
            # The request's own waits (the application's, a drain, a body's read, a
            # file's sendfile) are interrupted; the walk ends the request as a
            # client's leaving (CLIENT_GONE: its always-run stages run, it is logged
            # with Win32 status 64; SERVER_ABORTED when the server dropped it, see
            # drop, or after a stop's deadline: 1236), then the task ends.
            self.state.cancel_request(task, self.dropped)
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        self._counts.received += len(data)
        if self.raw is not None:
            self.raw.feed(data)
            return
        if self.lingering:
            lingered = self._lingered = self._lingered + len(data)
            if lingered > _LINGER_MAX:
                self.close()  # enough: a client still sending this much is not reading
            else:
                self._arm_linger()
            return
        arm = False
        if self._idle:
            self._idle = False
            router = self._live.router
            if router is not None and self.tls is None:
                self._arm(self.state.timeouts.header)
                self.held = router.hold(self)
            else:
                arm = True  # the header timer, unless this feed completes the head
        if self.held is not None:
            found = self.held.feed(data)
            if found is None:
                return  # the head is incomplete, or the router took the connection
            self.held = None
            data = found
        events = self.h1.feed(data)
        if not events:
            if self.pending_error is _HTTP_AGAIN and self.h1.over_held:
                # Held after an upgrade request until its answer: no more than that.
                self._read_paused_for_upgrade = True
                self._pause_reading()
            if arm:
                # The head is incomplete: the header timer runs from its first bytes.
                # (A feed with the whole head, the common case, would only have
                # armed a timer for _on_head to disarm.)
                self._arm(self.state.timeouts.header)
            return
        for event in events:
            # A request head is the common event: dispatched here, without the
            # call _on_event costs; so is the end of a request without a body
            # (no current exchange: nothing to do).
            kind = type(event)
            if kind is RequestHead:
                self._on_head(event, False)  # type: ignore[arg-type]
            elif kind is not EndOfMessage or self.current is not None:
                self._on_event(event)
        # Every request of the feed queued (a pipelining client's several), the task
        # answers the first: woken at the loop's next turn, not stepped here.
        # Stepped inside this callback (session 17 tried it), the task ran each
        # connection's request between two of uvloop's callbacks, where the GIL is
        # released: a WSGI pool thread then took it after every request instead of
        # once per batch (wsgi-hello pool 22-36k req/s against 45-53k, compiled),
        # and the ASGI hello was no faster either (run Z, bench/RESULTS.md).
        if self.queue and not self.answering:
            wake = self._wake
            # (Compiled, the wait is a Waker or the C wait, whose set_result leaves
            # a wait that ended as it is: no done() asked first. A cancelled
            # task's wait: its task, ending, makes a new one for the request.)
            if wake is not None and (_COMPILED or not wake.done()):
                # The task waits for this request: _start_next's common case,
                # inline (a call less per request, interpreted).
                self.answering = True
                self._idle_swept = False
                self._wake = None
                set_result = _WAIT_SET
                if set_result is not None:
                    set_result(wake, True)
                else:
                    wake.set_result(True)
            else:
                self._start_next()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self._corked is not None:
            # An answer held for the loop's next turn goes now: a falsy return
            # below closes the transport, which sends what it holds first but
            # takes nothing written after (a request, then the client's FIN);
            # a TLS transport shuts down after a close_notify whatever we return.
            self.uncork()
        if self.raw is not None:
            self.raw.feed_eof()
            return True
        if self.lingering:
            return None  # the client is done sending: asyncio closes the transport
        if self.held is not None:  # an incomplete head: let the parser judge it
            data, self.held = self.held.release(), None
            for event in self.h1.feed(data):
                self._on_event(event)
        for event in self.h1.feed_eof():
            self._on_event(event)
        if self.answering or self.queue:
            # Answer every request received, in order (a client may pipeline its
            # requests, then close its side); the protocol layer makes the last
            # answer the one that closes (h1.feed_eof), and _finish closes after it.
            return True
        # Nothing in flight: let asyncio close the transport.
        self.closing = True
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._start_send_rate()

    def resume_writing(self) -> None:
        self.write_paused = False
        sender = self._sender
        if sender is not None:
            sender.resumed()  # a file's send waiting for room: it goes on from here
        else:
            self._wake_drain()

    # -- events from the protocol layer ---------------------------------------------

    def _on_event(self, event: object) -> None:
        kind = type(event)  # exact types: one identity test per event, not isinstance
        if kind is RequestHead:
            self._on_head(event)  # type: ignore[arg-type]
        elif kind is EndOfMessage:
            current = self.current
            if current is not None and current.body is not None:
                self._body_rate.since = -1.0  # the whole body is in: nothing left to measure
                current.body.finish()
                # Reading may have paused for this body; nothing more of it is due,
                # and the next request must not wait for a read that never comes.
                self.resume_reading_for_body()
            self.current = None
        elif kind is BodyEvent:
            current = self.current
            if current is not None and current.body is not None:
                data = event.data  # type: ignore[attr-defined]
                self._body_got += len(data)
                current.body.feed(data)
        elif kind is ProtocolError:
            self._on_protocol_error(event)  # type: ignore[arg-type]
        elif kind is Preface:
            self._to_http2()
        elif kind is UpgradePending:
            # Seen where the connection goes idle (_finish's pending_error test, which
            # every answer makes anyway): an answer that kept it reads HTTP again.
            self.pending_error = _HTTP_AGAIN

    def _refused(self, router: ConnectionRouter, request: Request) -> bool:
        """Whether the request whose head just came is not answered here: it is
        another pool's (``router``), or pipelined behind one that was."""
        queue = self.queue
        if self.closing or (queue and not queue[-1].keep_alive):
            return True  # behind a request refused below: never answered either
        if router.admits(self, request):
            return False
        if self.tls is not None:
            # Its SNI name brought the connection here, its Host names a site of
            # another pool, and a TLS session cannot move: RFC 9110 15.5.20.
            self._on_protocol_error(
                ProtocolError(421, "this connection cannot serve that host name")
            )
            return True
        # A pipelined request for another pool: its bytes are parsed already and
        # cannot be handed over. The ones before it are answered, the last with
        # Connection: close (its exchange's keep_alive), then the connection
        # closes; clients retry unanswered pipelined requests (RFC 9112 9.3.2).
        self._pause_reading()
        if queue:
            queue[-1].keep_alive = False
        else:
            self.close()
        return True

    def _to_http2(self) -> None:
        # HTTP/2 by prior knowledge: the connection's bytes so far, the preface
        # included, go to an HTTP/2 protocol that takes over the transport.
        state = self.state
        if not state.http2.enabled:
            self._on_protocol_error(ProtocolError(400, "HTTP/2 is not enabled"))
            return
        transport = self._wire()
        if transport is None:
            return
        from colonnade.transport.protocols import h2_connection  # where HTTP/2 is spoken only

        self._drop_timer()
        self.closing = True
        self._transport = None
        state.forget(self)
        # Prior knowledge over TLS too (a client that skipped ALPN): the scheme and the
        # handshake's facts follow.
        protocol = h2_connection(state, self.h1.trailing_data, self.tls)
        transport.set_write_buffer_limits()  # HTTP/2's own flow, as on a TLS port
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    def _on_head(self, head: RequestHead, start: bool = True) -> None:
        """A request head arrived: answered from the response cache, or queued and,
        if ``start`` (else the caller sees to it), its answer begun."""
        self._deadline = None  # _disarm, inline: a call less per request, interpreted
        # A truth test of the length, not bool() of it: a call less, interpreted.
        body = (
            StreamBody(self, head.expect_continue) if head.chunked or head.content_length else None
        )
        # A connection's requests name the same path and host again and again: the
        # last ones decoded are kept, and equal bytes (a compare) give the same str
        # (no hash of new bytes and probe of decode_path's cache, no decode), and the
        # same raw path bytes too, whose hash is kept (a module testing it against a
        # set, request filtering's, hashes it once per connection, not per request).
        raw_path = head.path
        if raw_path == self._raw_path:
            path = self._path
            raw_path = self._raw_path
        else:
            try:
                path = decode_path(raw_path)
            except HttpError as exc:
                self._on_protocol_error(ProtocolError(exc.status, exc.message))
                return
            self._raw_path = raw_path
            self._path = path
        raw_host = head.host
        if raw_host == self._raw_host:
            host = self._host
        else:
            host = self._host = raw_host.decode("latin-1")
            self._raw_host = raw_host
        raw_method = head.method
        if raw_method == b"GET":  # most requests: a compare, not a hash and a probe
            method = "GET"
        else:
            found = _METHODS.get(raw_method)
            method = found if found is not None else raw_method.decode("ascii")
        version = "1.1" if head.version == b"1.1" else head.version.decode("ascii")
        if _COMPILED:
            # Positional: a keyword call costs twice as much, and this runs per request.
            request = Request(
                method,
                path,
                raw_path,
                head.query,
                head.target,
                version,
                head.headers,
                host,
                self._scheme,
                self.client,
                self.server,
                body if body is not None else _NO_BODY,
                head.keep_alive,
                self.tls,
                head.particular,  # may_upgrade: Upgrade is one of PARTICULAR_FIELDS
            )
        else:
            # Interpreted, Request.__init__'s stores made here (as for core.context's
            # Response): calling the class enters a Python frame through the type's
            # slots with fifteen arguments packed (~1,200 instructions a request).
            # The same values as Request(...) with the arguments above, whose
            # raw_path and target are never empty here (tests/core/test_new_objects.py).
            request = NEW(Request)
            request.method = method
            request.path = path
            request.original_path = path
            request.raw_path = raw_path
            request.query = head.query
            request.target = head.target
            request.version = version
            request.headers = head.headers
            request.host = host
            request.scheme = self._scheme
            request.client = request.peer = self.client
            request.server = self.server
            request.body = body if body is not None else _NO_BODY
            request.keep_alive = head.keep_alive
            request.tls = self.tls
            request.may_upgrade = head.particular
        live = self._live
        router = live.router
        if router is not None and self._refused(router, request):
            return
        record = None
        route = None
        cache = live.respcache
        if cache is not None and body is None and router is None:
            encoding = request_encoding(head)
            if encoding is not None:
                key: Key | None = None
                # Not while the client has yet to read an earlier answer: the request
                # then queues (see _answer), so a client that pipelines requests and
                # reads nothing holds one response in memory, not one per request.
                if not self.answering and not self.queue and not self._backlog():
                    # A client asks for the same few things again and again: the
                    # entry of its last hit, still stored and for the same request,
                    # costs compares of bytes, not a new key and its hash.
                    memo = self._memo
                    entry: Entry | None
                    if (
                        memo is not None
                        and memo.live
                        and self._memo_cache is cache
                        and memo.answers(head, encoding)
                    ):
                        key = memo.key
                        entry = memo
                    else:
                        key = request_key(head, self._scheme, self.server, encoding)
                        entry = cache.entries.get(key)
                    if entry is not None:
                        # The hit's context first: its start is the clock reading
                        # the entry's expiry is checked against (an expired entry,
                        # once per entry and lifetime, wastes the two objects).
                        exchange = Exchange(self, head, request, None)
                        ctx = Context(request, entry.app, exchange, None, entry.sections)
                        if cache.hit(key, entry, ctx.started):
                            self._memo = entry
                            self._memo_cache = cache
                            self._answer_cached(head, exchange, ctx, entry)
                            return
                # A miss: what the pipeline hands the writer is recorded, to offer the
                # answer to the cache, unless the engine's rule refuses every answer
                # for the path (rewrite or URL authorization enabled there, say: a
                # verdict kept per generation), so the record would be made and
                # offered for nothing. The route the verdict found goes to
                # Engine.handle, which then does not route the request again.
                server = self.server
                refused, route = cache.judge(server[1] if server else 0, host, path)
                if not refused:
                    if key is None:
                        key = request_key(head, self._scheme, server, encoding)
                    record = Record(cache, key)
        if _COMPILED:
            exchange = Exchange(self, head, request, body)
            exchange.record = record
            exchange.route = route
        else:
            # Exchange.__init__'s stores made here (see the request's above): its
            # call is one more Python frame per request. The same values
            # (tests/core/test_new_objects.py), and the record.
            exchange = NEW(Exchange)
            exchange.conn = self
            exchange.head = head
            exchange.request = request
            exchange.body = body
            exchange.bytes_sent = 0
            exchange.keep_alive = head.keep_alive
            exchange.sized = False
            exchange.held = None
            exchange.record = record
            exchange.route = route
            exchange.complete = False
            exchange.released = False
        if body is None:
            self.current = None
        else:
            self.current = exchange
            if not head.expect_continue:
                self._start_body_rate()
        queue = self.queue
        # max_pipelined is at least 1: a lone request (the queue empty before it
        # joins: a truth test, where len() is a call, interpreted) never looks the
        # limit up. With it, the queue would hold more than the limit.
        if (
            queue
            and len(queue) >= self.state.limits.max_pipelined
            and not self._read_paused_for_queue
        ):
            self._read_paused_for_queue = True
            self._pause_reading()
        queue.append(exchange)
        if not self.answering:
            if start:
                self._start_next()
        elif queue[0].complete:
            # The answer in flight is complete; its application is still at work
            # (a background task after its response): no reason to wait for it.
            self._let_go(queue[0])

    def _on_protocol_error(self, event: ProtocolError) -> None:
        self._disarm()
        if self.current is not None and self.current.body is not None:
            self.current.body.fail(HttpError(400, 0, event.reason))
        self.pending_error = event
        if not self.answering and not self.queue:
            self._send_error()

    def _send_error(self) -> None:
        event = self.pending_error
        if event is None:
            return
        self.pending_error = None
        if event is _HTTP_AGAIN:
            self._http_again()
            return
        self.state.log_protocol_error(self.client, event.status, event.reason)
        self.write(self.h1.error_response(event.status, event.reason))
        self.linger()

    def _http_again(self) -> None:
        # An upgrade request was answered and the connection kept (no 101: see
        # HTTP1Connection._upgrade_ignored): what came after it is HTTP, read now as
        # if it had just arrived on a connection gone idle, as _finish leaves one.
        self._idle = True
        if self._read_paused_for_upgrade:
            self._read_paused_for_upgrade = False
            self._resume_reading()
        data = self.h1.http_again()
        if data:
            self._counts.received -= len(data)  # counted once already, as it came
            self.data_received(data)
            if self.eof and not self.closing and self.eof_received() is None:
                # The client's FIN came while they were held (h1.feed_eof): the
                # requests among them are answered, then the connection closes.
                self.close()
            return
        live = self._live
        self._arm(live.keep_alive)
        if live.router is not None:
            live.router.idle(self)

    # -- answering requests, one at a time ----------------------------------------

    def _start_next(self) -> None:
        """Answer the request at the head of the queue: the connection's task does,
        woken (at the loop's next turn) if it waits for one, made if there is none
        (and if it is running, it called this itself, from _done, and goes on with
        the request)."""
        self.answering = True
        self._idle_swept = False
        wake = self._wake
        if wake is not None and not wake.done():
            self._wake = None
            wake.set_result(True)
        elif self.task is None:
            self._spawn()
        # else: the task is running (it called this from _done and goes on with the
        # request), or it was cancelled while it waited and makes a new one as it ends

    def _spawn(self, context: contextvars.Context | None = None) -> None:
        loop = self._loop
        if context is not None:
            # Made by the connection's ending task: in a copy of the context it began
            # with, not in the one its requests may have changed.
            self.task = loop.create_task(self._serve(), context=context.copy())
        elif loop.get_task_factory() is None:
            # What loop.create_task does without a task factory, minus its own
            # call: uvloop's passes the loop as a keyword, which makes a dict for
            # Task's arguments (~1,300 instructions of a request). The task's loop
            # is the running one: this runs in the connection's callbacks only.
            self.task = Task(self._serve())
        else:
            self.task = loop.create_task(self._serve())

    async def _serve(self) -> None:
        """The connection's task: answers the queued requests in order, then waits
        (on ``_wake``) for the next one, so that a keep-alive connection makes one
        task, not one per request (a task's making and ending cost ~7,000
        instructions, a sixth of an ASGI request; waking one that waits, a future).

        What a task per request gave an application stays: ``asyncio.current_task()``
        is a real task that can be cancelled, and no request sees a context variable
        an earlier one set: the task's context is compared with the one it began
        with after each request (an identity test while the two share their
        mapping, as they do until a variable is set), and a request that changed it
        ends the task (so does a cancellation a request left behind); the next
        request gets a new one, in a copy of the context this one began with.
        So does a request that kept its task: a reference to it (a dict keyed by
        ``current_task()``, as SQLAlchemy's ``async_scoped_session`` and other
        per-task registries keep), a weak one, or a done-callback. A library
        that scopes state by task then never hands one request's state to the
        next, as with a task per request (found by the task's reference counts,
        taken once where its loop begins and compared after each request: no scan).
        An idle connection does not keep its task: the second of LazyTimers'
        sweeps it waits through ends it (see _end_idle_task), so idle connections
        cost no more memory than before."""
        task = self.task
        if task is None:
            # Started eagerly (3.12's eager_task_factory runs a task's first step
            # inside create_task): _spawn has yet to keep it as the connection's.
            # Once it has, this task goes on; else its end could not tell that it
            # is the connection's and leave it there finished (the next request
            # then waits for it forever).
            await asyncio.sleep(0)
            task = self.task
        base = self._origin = _copy_context()  # what the task began with
        # Its name, which a request may change (set_name, for its log lines): the
        # task keeps the str it gives, so an identity test tells. (Bound once, and
        # before the counts: the bound method holds the task too.)
        get_name: Callable[[], str] = _no_name if task is None else task.get_name
        name = get_name()
        # Its cancellation count, read after each request: bound once too (a method
        # looked up by name on the task per request, compiled, costs more).
        cancelling: Callable[[], int] = _no_cancelling if task is None else task.cancelling
        # The task's references here, where the loop below checks them after each
        # request (the same frame, nothing held on the way): more means kept.
        # The task untyped, for its ``_callbacks`` (None where it has none, not the
        # list typeshed says): a cast() there is a call per request, interpreted.
        # Bound before the counts, which count it.
        untyped: Any = task
        refs = 0 if task is None else _refcount(task)
        weak = 0 if task is None else _weakrefcount(task)
        exchange: Exchange | None = None  # the request being answered
        ctx: Context | None = None
        try:
            while True:
                if self.answering:
                    # The request at the head of the queue, answered here: not by a
                    # coroutine of its own (one less to make, resume and free per
                    # request). Its exchange and context are let go before the
                    # checks below: the task's references must not count theirs.
                    exchange = self.queue[0]
                    ctx = None
                    try:
                        # A paused transport only may hold an earlier answer: the
                        # common case asks no method.
                        if not self.write_paused or not self._backlog() or await self._drained():
                            # A queued exchange has its request (no cast(): a call
                            # per request, interpreted).
                            ctx = await self._live.engine.handle(
                                exchange.request,  # type: ignore[arg-type]
                                exchange,
                                exchange.route,
                            )
                            if not ctx.response.headers_sent or exchange.record is not None:
                                self._answered(exchange, ctx)  # else nothing to do
                    except asyncio.CancelledError:
                        # The connection was lost, or the application cancelled its
                        # own task: then its request has no answer, and the
                        # connection cannot go on (it would wait for one): dropped,
                        # as after an error. (Let go, it serves another request
                        # now: left alone.)
                        transport = self._transport
                        if (
                            not exchange.released
                            and transport is not None
                            and not transport.is_closing()
                        ):
                            self.abort()
                        raise
                    except Exception:
                        log.exception("unhandled error answering %r", exchange.request)
                        if not exchange.released:
                            self.abort()
                        ctx = None
                    finally:
                        if not exchange.released:
                            self.answering = False
                    if exchange.released:
                        return  # let go (see _let_go): the connection went on without it
                    if ctx is not None:
                        ctx = None
                        # _done, inline: a call less per request, interpreted.
                        if exchange.held is not None:
                            exchange._release()
                        self.queue.pop(0)
                        self._finish(exchange)
                    exchange = None
                    try:
                        changed = _copy_context() != base
                    except Exception:  # a value whose == raises (a NumPy array)
                        changed = True
                    if changed:
                        return
                    if task is not None and (
                        # A cancellation the last request left behind (also one it
                        # swallowed: its count stays up, and no wait would end the
                        # task), or the task kept by the request (a per-task
                        # registry, a weak mapping, a done-callback; untyped: a task
                        # with no callback has None there), or renamed by it: the next
                        # request gets another task.
                        cancelling()
                        or untyped._callbacks
                        or _refcount(task) != refs
                        or _weakrefcount(task) != weak
                        or get_name() is not name
                    ):
                        return
                    continue
                # Idle with no router: _finish found the transport open, the
                # connection not closing, just now (nothing ran since), and made it
                # idle; else asked here (a method looked up by name on the transport).
                if not self._idle or self._live.router is not None:
                    transport = self._transport
                    if self.closing or transport is None or transport.is_closing():
                        return
                if _COMPILED:
                    waker = self._waker
                    if waker is None:
                        waker = self._waker = new_waker(self._loop)
                    arm = _WAIT_ARM
                    if arm is not None:
                        arm(waker)
                    else:
                        waker.arm()
                    wake: Waiting = waker
                else:
                    # Interpreted, a Waker's methods cost more than a C future's (a
                    # future is a Waiting too). Made by its class, which takes the
                    # running loop (this task's, self._loop): uvloop's create_future
                    # passes it by keyword, a dict made per call (~600 instructions a
                    # request).
                    wake = _Future()
                self._wake = wake
                if not self._swept:
                    # LazyTimers' sweeps end this task if it waits through two.
                    self._swept = True
                    self._timers.add(self)
                if not await wake:
                    return
        finally:
            if self.task is task:
                self.task = None
                self._wake = None
                transport = self._transport
                if self.answering and transport is not None and not transport.is_closing():
                    # Ended with a request to answer (pipelined behind one that set
                    # a context variable, or cancelled while it waited): a new task.
                    self._spawn(base)

    def _let_go(self, exchange: Exchange) -> None:
        """Go on to the next request while ``exchange``'s application is still at
        work after its complete answer (Starlette's background tasks run after the
        response, within the application's call), as uvicorn does: the request's
        task finishes alone (the application, then the walk's remaining stages and
        the log line) and the next request gets a new task. A graceful stop still
        waits for it (``ServerState.stragglers``), and the client leaving no longer
        cancels it: its answer was complete."""
        task = self.task
        if (
            task is None
            or task.done()
            or not self.answering
            or not self.queue
            or self.queue[0] is not exchange
            or not exchange.complete
            # A stop's deadline passed (abort_all) since _overtaken asked for this:
            # connection_lost, soon, cancels the work instead.
            or self.state.aborting
        ):
            return  # done already: the task went on by itself
        exchange.released = True
        stragglers = self.state.stragglers
        stragglers.add(task)
        task.add_done_callback(stragglers.discard)
        self.task = None
        self._wake = None
        self.answering = False
        self._done(exchange)

    def _end_idle_task(self) -> bool:
        """End the connection's task if it waits for a request; True if it did."""
        wake = self._wake
        if wake is None:
            return False
        self._wake = None
        if not wake.done():  # a future cancelled with its task, which has yet to run
            wake.set_result(False)
        return True

    async def _drained(self) -> bool:
        """Back-pressure: an answer written whole (send_all, a response cache hit) is
        still queued for the client; the next one is made once it left. False: the
        client went away meanwhile (the connection is dropped)."""
        try:
            await self.drain()
        except ClientDisconnectedError:
            self.abort()
            return False
        return True

    def _answered(self, exchange: Exchange, ctx: Context) -> None:
        """The pipeline ran ``exchange``'s request (``ctx``): a 500 if nothing reached
        the wire, and the answer offered to the response cache (also one let go)."""
        if not ctx.response.headers_sent:
            # Nothing reached the wire (an always-stage failed): say so.
            exchange.record = None
            exchange.send_all(500, None, [], b"")
        record = exchange.record
        if record is not None and record.cache is self._live.respcache:
            record.cache.offer(record, ctx)

    def _answer_cached(
        self, head: RequestHead, exchange: Exchange, ctx: Context, entry: Entry
    ) -> None:
        """Answer from the response cache (see ``transport/respcache.py``) the
        request of ``exchange`` (``ctx``: its context, made on the entry's
        application and sections): the stored answer through the same writer as
        the pipeline's, then the access log hooks and the site's counters; no task,
        no walk, no request monitor entry."""
        ctx.user = entry.user
        # As send_all or start/write/end would frame it, the head checked once.
        h1 = self.h1
        keep_alive = exchange._keep_alive()
        body = entry.body
        # write and write_two, inline: the transport asked once whether it is closing
        # (a method call, ~180 instructions compiled), here and not again by _finish.
        transport = self._wire()
        if len(body) > _GATHER_FROM and head.method == b"GET":
            data = h1.start_prepared(head, entry.prepared, keep_alive)
            body = h1.body(body)
            exchange.bytes_sent = len(data) + len(body)
            if transport is not None:
                self._written += len(data) + len(body)
                transport.writelines((data, body))
        else:
            # Head and body joined once per second and entry (Entry.framed; a HEAD
            # request's head alone, made each time).
            data = h1.start_again(head, entry.prepared, keep_alive, body, entry.framed, ctx.started)
            exchange.bytes_sent = len(data)
            if transport is not None:
                self._written += len(data)
                transport.write(data)
        tail = h1.end_response()  # b"" for a sized body, as every stored one is
        if tail:
            exchange.bytes_sent += len(tail)
            self.write(tail)
        response = ctx.response
        response.status = 200
        response.headers = entry.headers
        for log in entry.log:
            log(ctx)
        metrics = entry.metrics
        if metrics is not None:
            metrics.done(ctx)
        # Never queued: nothing to take off the queue. The request's end, as its
        # access log line or its site's counters read it (0.0: neither did), is the
        # keep-alive timer's start too: one clock read less.
        self._finish(exchange, transport is not None, ctx.ended_at)

    def _done(self, exchange: Exchange) -> None:
        if exchange.held is not None:
            exchange._release()  # a declared length and nothing after it: the head goes
        self.queue.pop(0)
        self._finish(exchange)

    def _finish(self, exchange: Exchange, sent: bool = False, now: float = 0.0) -> None:
        """``exchange`` was answered and is off the queue: count it, then close the
        connection or go on with the next request (or wait for one). ``sent``: the
        caller found the transport open and wrote the whole answer just now (a
        response cache hit), so it is not asked again. (A write that failed has the
        transport closing, and its connection_lost, already scheduled, undoes
        whatever is armed here.) ``now``: the monotonic clock read just now by the
        caller (a response cache hit's end), where the keep-alive timer starts; 0.0:
        it reads the loop's clock (see :meth:`_arm`)."""
        state = self.state
        # ServerState.count_request, inlined: a call less per request.
        counts = self._counts
        counts.requests += 1
        if counts.requests == counts.request_limit and state.on_request_limit is not None:
            state.on_request_limit()
            sent = False  # which may have closed the connection
        if not sent and (self._transport is None or self._transport.is_closing()):
            return
        # Exchange._keep_alive inline (a call less per request, interpreted): its
        # request or the connection says close, or a body not all read.
        body = exchange.body
        if (
            not exchange.keep_alive
            or self.closing
            or (body is not None and not body.complete)
            or not self.h1.keep_alive
        ):
            if (
                (body is not None and not body.complete)
                or self._read_paused_for_upgrade
                or self.h1.ignored
            ):
                # The client may still be sending (its body, more than could be
                # held after an upgrade request, or pipelined requests after one
                # that closes): a close with its bytes unread would reset the
                # connection, losing what the kernel still had to send of the
                # answer (RFC 9112 9.6).
                self.linger()
            else:
                self.close()
            return
        if self._read_paused_for_queue and len(self.queue) <= self.state.limits.max_pipelined:
            self._read_paused_for_queue = False
            self._resume_reading()
            if self._body_rate.since >= 0:
                self._start_body_rate()  # the paused time was the server's
        if self.queue:
            self._start_next()
        elif self.pending_error is not None:
            self._send_error()
        else:
            # Not closing: that returned above (resuming the reading and a body
            # timer, in between, set no flag).
            self._idle = True
            live = self._live
            # _arm, inline (a call less per request, interpreted): in its common
            # case the deadline moves later than the timer's (set by a sweep),
            # which then re-schedules itself when it fires.
            seconds = live.keep_alive
            deadline = (now or self._timers.time()) + seconds
            self._deadline = deadline
            if self._timer is None or self._timer_at > deadline:
                self._arm_at(deadline, seconds)
            if live.router is not None:
                live.router.idle(self)

    # -- writing, flow control, closing ----------------------------------------------

    def _wire(self) -> asyncio.Transport | None:
        """The transport, to write to or end the connection with; None once it is
        closed or closing (nothing reaches the client any more).

        The one way to the transport for anything that writes or ends (``abort``
        aside, which drops what is held): a write, a file's send (its socket), a
        close, a half-close (``linger``), a hand-over to another process
        (``detach``) or protocol (HTTP/2). An answer held for the loop's next turn
        (``cork``) is written here first, so nothing written or done to the
        connection overtakes or loses it. tests/transport/test_one_wire.py checks
        the source: the raw transport, anywhere else, is only asked about (is it
        closing, what it holds), never written to or ended, nor handed on."""
        transport = self._transport
        held = self._corked
        if transport is None or transport.is_closing():
            self._corked = None  # nobody to write it to any more
            return None
        if held is not None:
            self._corked = None
            self._written += len(held)
            transport.write(held)
            if transport.is_closing():
                return None  # the write found the client gone
        return transport

    def gone(self) -> bool:
        """Whether nothing written reaches the client any more (the transport is
        closed or closing)."""
        transport = self._transport
        return transport is None or transport.is_closing()

    def buffered(self) -> int:
        """Bytes the transport still holds for the client (not counting an answer
        held by ``cork``)."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def write(self, data: bytes) -> None:
        transport = self._wire()  # what was held goes first
        if transport is not None:
            self._written += len(data)
            transport.write(data)

    def cork(self, data: bytes) -> None:
        """Write ``data`` (a whole answer) at the loop's next turn, with the other
        connections' answers of this turn (see WriteBatch). Anything written or
        done to the connection before then (a write, a file, a close, a
        hand-over) writes it first (every one of them goes through ``_wire``).

        Not over TLS: the TLS transport (uvloop's, as asyncio's) closes the
        connection when the client's FIN comes without a close_notify, and tells
        the protocol nothing (no ``eof_received``), so an answer held then would
        be lost; written at once, the transport still sends it before it closes."""
        if self.tls is not None:
            self.write(data)
            return
        corked = self._corked
        if corked is None:
            self._corked = data
            self._batch.add(self)
        else:
            self._corked = corked + data  # (pipelined answers of one turn)

    def uncork(self) -> None:
        """Write the answer held by ``cork`` now (if the transport still takes it)."""
        if self._corked is not None:
            self._wire()

    def _backlog(self) -> bool:
        """Whether an earlier answer still waits in the transport for the client.

        ``write_paused`` alone does not say it: a TLS transport with a high-water
        mark of 0 reports itself paused while it holds nothing."""
        if not self.write_paused:
            return False
        transport = self._transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def write_two(self, head: bytes, body: bytes) -> None:
        """``head`` then ``body``, in one ``writev`` where the socket takes both."""
        transport = self._wire()
        if transport is not None:
            self._written += len(head) + len(body)
            transport.writelines((head, body))

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if not self.write_paused:
            return
        if self.gone():
            raise ClientDisconnectedError("the client went away")
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = asyncio.get_running_loop().create_future()
        await self._drain_waiter
        if self.gone():
            raise ClientDisconnectedError("the client went away")

    async def sendfile(self, fd: int, offset: int, count: int, head: bytes = b"") -> None:
        """``head``, then zero-copy ``count`` bytes of ``fd`` to the socket, waiting on a
        slow client.

        uvloop implements no ``loop.sendfile``, so this calls ``os.sendfile`` on the
        socket's descriptor (with nothing left in the transport's buffer, the bytes
        stay in order); when the socket is full, the transport is handed the next
        few bytes, and the callback that says it has written them sends on
        (:class:`_FileSender`); the task waits once, for the end.
        The head goes out the same way, so nothing has to wait for the transport to
        flush it; only bytes the transport still holds from earlier (a slow client,
        a pipelined response) are waited for.
        """
        # An answer held (cork) goes into the transport first: waited for below
        # like any other.
        transport = self._wire()
        if transport is None:
            raise ClientDisconnectedError("the client went away")
        if transport.get_write_buffer_size():
            if head:
                self.write(head)
                head = b""
            self._start_send_rate()
            while transport.get_write_buffer_size():
                # What the transport still holds must reach the wire first.
                await asyncio.sleep(0.001)
                if transport.is_closing():
                    raise ClientDisconnectedError("the client went away")
        # Like nginx's tcp_nopush, for bodies that leave in many pieces: corked, the
        # kernel sends only full segments, the head in the first with the file's
        # start (the client reads fewer, larger pieces: a third less of its CPU at
        # 10 MiB); the uncork pushes out the tail. Measured, not guessed: at 100 KiB
        # the same cost 20 % of the requests/s, so smaller bodies go uncorked.
        # The cork is set through a socket object of our own over the transport's
        # descriptor (uvloop's stand-in builds a new socket object for every
        # setsockopt call), made for this send and detached, not closed, when it
        # ends: the descriptor stays the transport's, and the connection holds one
        # between requests (server.native_accept_is_safe counts on that).
        out = self._socket_fd()
        cork = _SOCKET(_AF_INET, _SOCK_STREAM, 0, out) if count >= _CORK_FROM else None
        sender = _FileSender(self, out, fd, offset, count, head)
        self.sending_file = True
        try:
            if cork is not None:
                _cork(cork, 1)
            if not sender.push():
                # The socket is full. The transport watches it already (uvloop
                # refuses a second watch of one descriptor, and a watch of a
                # duplicate cost a dup, a poll handle and its removal per file):
                # it is handed the next few bytes, and the send goes on when it
                # has written them (_FileSender.resumed, from resume_writing).
                sender.timeout = self.state.timeouts.body
                if not sender.go_on():
                    waiter = sender.waiter = self._loop.create_future()
                    self._sender = sender
                    self._start_send_rate()
                    await waiter
        finally:
            self._sender = None
            self.sending_file = False
            self._deadline = None  # the send's own
            if cork is not None:
                if not self.gone():  # else the descriptor may be closed already
                    _cork(cork, 0)
                cork.detach()

    def _socket_fd(self) -> int:
        """The transport's socket descriptor, to write to (the transport is open;
        an answer held by ``cork`` went into it first, see ``_wire``)."""
        transport = self._wire()
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            raise ClientDisconnectedError("the client went away")
        return int(sock.fileno())

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send_continue(self) -> None:
        """Tell an ``Expect: 100-continue`` client to send its body."""
        self.write(self.h1.continue_response())
        self._start_body_rate()  # from now on the body is the client's to send

    def pause_reading_for_body(self) -> None:
        if not self._read_paused_for_body:
            self._read_paused_for_body = True
            self._pause_reading()

    def resume_reading_for_body(self) -> None:
        if self._read_paused_for_body:
            self._read_paused_for_body = False
            if not self._read_paused_for_queue:
                self._resume_reading()
                if self._body_rate.since >= 0:
                    self._start_body_rate()  # the paused time was the server's

    def stop_reading(self) -> None:
        """Read nothing more until the connection ends or is handed over."""
        self._pause_reading()

    def _pause_reading(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused_for_upgrade:
            return  # until the upgrade request's answer says whose the bytes are
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _arm(self, seconds: float, now: float = 0.0) -> None:
        # One timer per connection, moved lazily: re-arming on every request only
        # stores a deadline; the timer re-schedules itself when it fires early. And
        # made lazily: a deadline far enough away waits for LazyTimers' sweep.
        # ``now``: a reading of time.monotonic() the caller took just now, in place
        # of the loop's clock (~230 instructions, compiled): the same clock,
        # CLOCK_MONOTONIC, in asyncio's loop and in uvloop's (libuv's, in whole
        # milliseconds: behind time.monotonic() by under one, so such a deadline is
        # that much later at most).
        if not now:
            now = self._timers.time()
        deadline = now + seconds
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            self._arm_at(deadline, seconds)

    def _arm_at(self, deadline: float, seconds: float) -> None:
        # _arm, where a timer is to be made (or made sooner): ``deadline`` is
        # ``seconds`` from now, stored already.
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        if seconds >= _LAZY_FROM:
            if not self._swept:  # else in the set already (a set's add hashes and probes)
                self._swept = True
                self._timers.add(self)
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)
            self._timer_at = deadline

    def _arm_now(self) -> None:
        """LazyTimers' sweep: the timer for whatever is due, if nothing armed it yet;
        and the end of the connection's task if it waited for a request through this
        sweep and the one before (so a busy connection never loses it)."""
        self._swept = False
        if self._wake is not None:
            if self._idle_swept:
                self._end_idle_task()
            else:
                self._idle_swept = True
                self._swept = True
                self._timers.add(self)  # for the next sweep
        if self._timer is not None:
            return
        deadline = self._deadline
        due = self._rate_due
        if due is not None and (deadline is None or due < deadline):
            deadline = due
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._check_deadline)
            self._timer_at = deadline

    def _disarm(self) -> None:
        self._deadline = None

    def _drop_timer(self) -> None:
        self._deadline = None
        self._rate_due = None
        self._body_rate.since = self._send_rate.since = -1.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timers.discard(self)
        self._swept = False

    def _check_deadline(self) -> None:
        self._timer = None
        loop = self._loop
        now = loop.time()
        due = self._rate_due
        if due is not None and now >= due:
            self._rate_due = None
            self._check_rates(now)
        deadline = self._deadline
        if deadline is not None and now >= deadline:
            self._deadline = None
            self._on_timeout()
        self._arm_now()  # unless something re-armed it: wake for what is still due

    # -- the minimum data rate (limits.min_bytes_per_second) --------------------------

    def _rate_check_at(self, when: float) -> None:
        # The rate shares the connection's one timer: it fires by the earlier of the
        # two times, and _check_deadline looks at both.
        due = self._rate_due
        if due is not None and due <= when:
            return
        self._rate_due = when
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return  # it fires by then already (the callback re-arms)
            timer.cancel()
        self._timer = self._loop.call_at(when, self._check_deadline)
        self._timer_at = when

    def _start_body_rate(self) -> None:
        """Begin a window of the request body's measure (again, after a pause of ours)."""
        limits = self.state.limits
        if limits.min_bytes_per_second and not self.closing:
            now = self._loop.time()
            self._body_rate.begin(now, self._body_got)
            self._rate_check_at(now + limits.min_rate_window)

    def _start_send_rate(self) -> None:
        """Bytes wait for the client: measure how fast it takes them (if not already)."""
        limits = self.state.limits
        if self._send_rate.since < 0 and limits.min_bytes_per_second:
            now = self._loop.time()
            self._send_rate.begin(now, self._sent())
            self._rate_check_at(now + limits.min_rate_window)

    def _sent(self) -> int:
        """Bytes the socket took so far (handed to it, less what the transport holds)."""
        transport = self._transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        return self._written - held

    def _check_rates(self, now: float) -> None:
        limits = self.state.limits
        rate = limits.min_bytes_per_second
        length = limits.min_rate_window
        body_rate, send_rate = self._body_rate, self._send_rate
        if not rate:  # switched off by a reload
            body_rate.since = send_rate.since = -1.0
            return
        current = self.current
        body = current.body if current is not None else None
        if body_rate.since < 0:
            pass
        elif body is None or body.complete or self.lingering:
            body_rate.since = -1.0
        elif self._read_paused_for_body or self._read_paused_for_queue:
            body_rate.begin(now, self._body_got)  # the pause is ours, not the client's
        elif not body_rate.judge(now, length, rate, True, self._body_got):
            assert current is not None
            self._body_too_slow(current, body, now)
        transport = self._transport
        waiting = transport is not None and (
            transport.get_write_buffer_size() > 0 or self.sending_file
        )
        if not send_rate.judge(now, length, rate, waiting, self._sent()):
            self._send_too_slow(now)
            return
        due = send_rate.due(length, body_rate.due(length, -1.0))
        if due >= 0:
            self._rate_check_at(due)

    def _body_too_slow(self, exchange: Exchange, body: StreamBody, now: float) -> None:
        window = self._body_rate
        got, seconds = self._body_got - window.mark, now - window.since
        window.since = -1.0
        self.too_slow = True
        self.state.too_slow("request_body", "request body", self.client, got, seconds)
        if exchange.bytes_sent or exchange.held is not None:
            self.drop()  # the response has begun: no 408 can be said any more
        else:
            body.fail(HttpError(408, 0, "the request body arrived too slowly"))

    def _send_too_slow(self, now: float) -> None:
        window = self._send_rate
        got, seconds = self._sent() - window.mark, now - window.since
        window.since = -1.0
        self.state.too_slow("response", "reading of a response", self.client, got, seconds)
        # What is queued is dropped; connection_lost wakes a writer waiting in drain
        # and cancels the handler, so nothing stays behind for the slow client.
        self.drop()

    def _on_timeout(self) -> None:
        if self.lingering:
            self.close()  # the client was silent long enough, or lingered too long
            return
        if self.sending_file:
            # A file's send the client took nothing of for timeouts.body (the only
            # deadline armed while one goes out, see sendfile): the server gives
            # up on the client; connection_lost cancels the request, waiting there,
            # as the server's abort.
            self.drop()
            return
        if self.answering or self.queue:
            return
        if self._idle:
            self.close()  # an idle keep-alive connection: close quietly
        else:
            self.pending_error = ProtocolError(408, "the request head did not arrive in time")
            self._send_error()

    @property
    def busy(self) -> bool:
        """A request is in flight (being answered or queued)."""
        return self.answering or bool(self.queue)

    @property
    def idle(self) -> bool:
        """Between requests: nothing received, queued, running or left to write."""
        transport = self._transport
        return (
            self._idle
            and not self.answering
            and not self.queue
            and self.raw is None
            and not self.closing
            and transport is not None
            and not transport.is_closing()
            and self._corked is None
            and not transport.get_write_buffer_size()
        )

    def detach(self) -> int:
        """Give up the connection without closing it; return a new descriptor of its socket.

        For handing the connection to another process: the peer sees nothing, and
        bytes it sends meanwhile wait in the socket. Only at a request boundary,
        with nothing left to write (see ``idle``, or a held head).
        """
        if self._corked is not None:
            raise ClientDisconnectedError("an answer is still to be written")  # see idle
        transport = self._wire()
        sock = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or sock is None:
            raise ClientDisconnectedError("the connection is closed")
        transport.pause_reading()
        fd = os.dup(sock.fileno())
        self.held = None
        self.closing = True
        self._drop_timer()
        self.state.forget(self)
        transport.abort()  # closes only this process's descriptor: no FIN, no RST
        return fd

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the response in flight; an
        upgraded connection's owner is asked to close it (a WebSocket says 1001)."""
        self.closing = True
        self.stopping = True
        if self.raw is not None:
            self.raw.shutdown()
        if (not self.answering and not self.queue) or self.lingering:
            self.close()

    def linger(self) -> None:
        """Close after an answer the client may not have finished sending to.

        Closing a socket with unread input makes the kernel send a reset, which can
        destroy the answer before the client reads it. So, as nginx's lingering
        close: send what is queued and a FIN, then read and drop whatever still
        arrives until the client closes its side, is silent for
        ``timeouts.lingering``, or ``timeouts.lingering_total`` has passed, or
        ``_LINGER_MAX`` bytes were dropped. Used where the client may still be
        sending: a request body not all read, bytes held after an upgrade request,
        bytes after a request that closes (``h1.ignored``: pipelined requests),
        a protocol error's answer.
        """
        if self.lingering:
            return  # at the answer's end already (Exchange._completed), not again
        transport = self._wire()  # an answer held (cork) goes before the FIN
        timeouts = self.state.timeouts
        if (
            transport is None
            or self.eof
            or self.stopping
            or timeouts.lingering <= 0
            or not transport.can_write_eof()
        ):
            self.close()
            return
        self.closing = True
        self.lingering = True
        self.current = None
        self.held = None
        # A client cut for trickling its body would trickle on for all of
        # lingering_total: it gets lingering, once, to read the 408.
        self._linger_until = self._loop.time() + (
            timeouts.lingering if self.too_slow else timeouts.lingering_total
        )
        transport.write_eof()  # after what is queued, as asyncio's transports do
        self._read_paused_for_body = self._read_paused_for_queue = False
        transport.resume_reading()
        self._arm_linger()

    def _arm_linger(self) -> None:
        seconds = min(self.state.timeouts.lingering, self._linger_until - self._loop.time())
        self._arm(max(seconds, 0.0))

    def close(self) -> None:
        """Close after what is written: an answer held by ``cork`` too (``_wire``
        writes it into the transport, whose close sends what it holds first)."""
        transport = self._wire()
        self.closing = True
        self._disarm()
        if transport is not None:
            transport.close()

    def abort(self) -> None:
        """End the connection at once, dropping whatever it still has to write: what
        the transport holds, and an answer held for the loop's next turn (``cork``)
        too. An abort is the server giving up on the connection (a response failed
        half-way, a client too slow, a stop's deadline), never an ending that owes
        the client an answer: ``close`` is. (The one other way to the transport
        besides ``_wire``, which would write the held answer first.)"""
        self.closing = True
        self._disarm()
        self._corked = None
        transport = self._transport
        if transport is not None:
            transport.abort()

    def drop(self) -> None:
        """Abort the connection on the server's own decision (a timer: IIS's
        Timer_MinBytesPerSecond, a send timeout): the request in flight ends as the
        server's abort (``ServerAbortedError``, logged with Win32 status 1236), not
        as the client's leaving."""
        self.dropped = True
        self.abort()
