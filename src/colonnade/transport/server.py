"""Listening sockets and the set of live connections of one worker."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from colonnade.config.schema import Http2, Limits, ServerConfig, Timeouts
from colonnade.core.request import Request
from colonnade.engine import Engine
from colonnade.engine.sites import parse_binding
from colonnade.errors import CLIENT_GONE, SERVER_ABORTED
from colonnade.transport.connection import (
    Accepted,
    Counts,
    HttpConnection,
    LazyTimers,
    Live,
    fixed_address,
)
from colonnade.transport.listener import Listener
from colonnade.transport.protocols import alpn_protocols
from colonnade.transport.respcache import ResponseCache, for_engine
from colonnade.transport.sockets import limit_unsent, listening_port

if TYPE_CHECKING:
    # Imported where a binding is https: a server without TLS never loads the
    # certificate and handshake code (~0.2 MiB of a worker).
    from colonnade.transport.handshake import TlsListener
    from colonnade.transport.tls import TlsPort, TlsSet


class NoTls:
    """The TLS ports of a configuration that has none (see :func:`tls_ports`)."""

    def port(self, port: int) -> TlsPort | None:
        """None: every port is plain HTTP."""
        return None


NO_TLS = NoTls()


def tls_ports(config: ServerConfig, alpn: list[str], previous: TlsSet | NoTls) -> TlsSet | NoTls:
    """The TLS ports of ``config`` (``TlsSet.build``), or :data:`NO_TLS` when no site
    binds https."""
    if not any(
        parse_binding(text).scheme == "https" for site in config.sites for text in site.bindings
    ):
        return NO_TLS
    from colonnade.transport.tls import TlsSet

    return TlsSet.build(config, alpn, previous if isinstance(previous, TlsSet) else None)


log = logging.getLogger("colonnade.transport")


class Connection(Protocol):
    """What a worker keeps of each live connection, whatever protocol it speaks
    (``HttpConnection``, ``H2Connection``)."""

    server: tuple[str, int] | None
    """The local address the connection arrived on."""

    @property
    def busy(self) -> bool:
        """A request is in flight."""

    def shutdown(self) -> None:
        """Graceful stop: finish what is in flight, take no new request, close."""

    def abort(self) -> None:
        """Drop the connection now."""


class Held(Protocol):
    """A request's first bytes on an idle connection, while a router looks at them."""

    def feed(self, data: bytes) -> bytes | None:
        """More bytes; all held bytes once they are to be parsed here, else None."""

    def release(self) -> bytes:
        """Everything held (the connection ended before a decision)."""


class ConnectionRouter(Protocol):
    """Chooses, per request, whether this worker serves it (``pools/routing.py``).

    Consulted only where one listening address serves several pools, and while
    a worker hands its connections over on its way out.
    """

    #: The worker hands its connections over on its way out (a recycle, an idle
    #: shutdown): what cannot move (an upgrade) is told to stop, as on a graceful stop.
    draining: bool

    def hold(self, conn: HttpConnection) -> Held:
        """A request starts on the idle ``conn``: hold its bytes until decided."""

    def admits(self, conn: Connection, request: Request) -> bool:
        """Whether a parsed request (pipelined, not held) may be served here."""

    def idle(self, conn: HttpConnection) -> None:
        """``conn`` finished its requests and waits for the next one."""

    def routes_tls(self, port: int) -> bool:
        """Whether a new connection of TLS ``port`` is routed by its SNI name first."""

    def hand_over_tls(self, port: int, name: str | None, sock: socket.socket) -> bool:
        """Give the unread TLS connection ``sock`` to the pool its SNI ``name`` belongs
        to, if that is another one (True: it is gone)."""


class ServerState:
    """What every connection of a worker shares: the engine, limits, counters.

    ``engine`` is replaced as a whole when the configuration is reloaded; a
    request in flight keeps the engine it started with.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        settings = engine.settings
        self.limits: Limits = settings.limits
        self.timeouts: Timeouts = settings.timeouts
        self.server_header: bytes | None = settings.server_header.encode() or None
        self.http2: Http2 = settings.http2
        #: The response cache of this engine generation (None: switched off).
        self.respcache: ResponseCache | None = for_engine(engine)
        self.connections: set[Connection] = set()
        #: Connections of TLS ports still shaking hands (they count as connections).
        self.handshakes: set[asyncio.Task[None]] = set()
        #: Tasks of requests answered in full whose application is still at work
        #: (a background task after the response): their connection went on
        #: without them; a graceful stop waits for them as for connections.
        self.stragglers: set[asyncio.Task[None]] = set()
        #: A stop's (or drain's) deadline passed (:meth:`abort_all`): a connection
        #: ending now cancels its request's work, a complete answer's too.
        self.aborting = False
        #: Tasks of requests :meth:`abort_all` cut short, while they run their
        #: always-run stages (their log lines): :meth:`settle` waits for them.
        self.ending: set[asyncio.Task[None]] = set()
        #: The TLS ports of the configuration, with their certificates.
        self.tls = tls_ports(engine.config, alpn_protocols(self), NO_TLS)
        #: What connections read per request and as they begin and end (engine,
        #: response cache, router, the settings they use, connections, counting),
        #: kept current by switch() and the setters of router and counting.
        self.live = Live(
            self.engine,
            self.respcache,
            self.connections,
            self.limits,
            self.timeouts,
            self.server_header,
        )
        #: ``requests``, ``received`` and ``request_limit`` (the properties below).
        self.counts = Counts()
        self.on_request_limit: Callable[[], None] | None = None
        self.started = time.time()
        #: HTTP/2 connections ended for a client's fault, by cause: a flood
        #: (``rapid_reset``, ``ping_flood``, ``settings_flood``, ``header_block``),
        #: ``header_list`` (over ``max_header_list_size``, an HPACK bomb too), or
        #: the GOAWAY error code's name (``protocol_error``, ``flow_control_error``…).
        self.http2_errors: Counter[str] = Counter()
        #: Connections ended or refused for a client's behaviour, by cause:
        #: ``request_body`` and ``response`` (below ``limits.min_bytes_per_second``),
        #: ``per_client`` (over ``limits.max_connections_per_client``).
        self.slow_clients: Counter[str] = Counter()
        #: Open connections per client address, while ``max_connections_per_client``
        #: is set, and the address each counted connection was counted under.
        self.per_client: dict[str, int] = {}
        self._counted: dict[Connection, str] = {}
        #: Addresses refused since they last had no connection (logged once).
        self._capped: set[str] = set()
        self._all_closed: asyncio.Event | None = None
        #: The connections' timers armed lazily, by one sweep (``connection.LazyTimers``).
        self.lazy_timers: LazyTimers | None = None

    @property
    def router(self) -> ConnectionRouter | None:
        """Multi-pool routing (see pools/); None: this worker serves every request."""
        return self.live.router

    @router.setter
    def router(self, value: ConnectionRouter | None) -> None:
        self.live.router = value

    @property
    def counting(self) -> bool:
        """:meth:`forget` has more to do than drop the connection from
        ``connections``: per-client counts, or someone waits for the last one.
        Never reset (a connection counted before a reload is forgotten right)."""
        return self.live.counting

    @counting.setter
    def counting(self, value: bool) -> None:
        self.live.counting = value

    @property
    def requests(self) -> int:
        """Requests answered."""
        return self.counts.requests

    @requests.setter
    def requests(self, value: int) -> None:
        self.counts.requests = value

    @property
    def received(self) -> int:
        """Bytes read from clients' connections (after TLS), for ``GET /metrics``."""
        return self.counts.received

    @received.setter
    def received(self, value: int) -> None:
        self.counts.received = value

    @property
    def request_limit(self) -> int:
        """When ``requests`` reaches this count, ``on_request_limit`` is called once
        (a pool worker's ``recycling.requests``); -1: never."""
        return self.counts.request_limit

    @request_limit.setter
    def request_limit(self, value: int) -> None:
        self.counts.request_limit = value

    def switch(self, engine: Engine) -> None:
        """Serve new requests with ``engine`` (requests in flight keep theirs)."""
        self.engine = engine
        settings = engine.settings
        self.limits = settings.limits
        self.timeouts = settings.timeouts
        self.server_header = settings.server_header.encode() or None
        self.http2 = settings.http2
        # A new generation starts empty: what it enables for a path applies at once.
        self.respcache = for_engine(engine)
        live = self.live
        live.engine = engine
        live.respcache = self.respcache
        live.settings(self.limits, self.timeouts, self.server_header)
        self.tls = tls_ports(engine.config, alpn_protocols(self), self.tls)

    def admit(self, conn: Connection, client: tuple[str, int] | None = None) -> bool:
        """A connection begins: count it, unless the worker has ``max_connections``, or
        ``client`` (the TCP peer; None: not IP) has ``max_connections_per_client``.
        (``HttpConnection.connection_made`` adds a connection itself where neither
        limit is near, and ``connection_lost`` calls :meth:`forget` only while
        ``counting``.)"""
        limits = self.limits
        if len(self.connections) >= limits.max_connections:
            return False
        if limits.max_connections_per_client and client is not None:
            host = client[0]
            if self.over_client_cap(host):
                return False
            self.per_client[host] = self.per_client.get(host, 0) + 1
            self._counted[conn] = host
            self.counting = True
        self.connections.add(conn)
        return True

    def over_client_cap(self, host: str) -> bool:
        """Whether ``host`` holds ``limits.max_connections_per_client`` connections
        already; if so, its new one is counted as refused (and the first refusal
        since the address last had no connection is logged)."""
        cap = self.limits.max_connections_per_client
        count = self.per_client.get(host, 0)
        if not cap or count < cap:
            return False
        self.slow_clients["per_client"] += 1
        if host not in self._capped:
            # Once per episode: a client hammering the cap must not flood the log.
            self._capped.add(host)
            log.warning(
                "client %s holds %d connections (max_connections_per_client): refusing more",
                host,
                count,
            )
        return True

    def too_slow(
        self, cause: str, what: str, client: tuple[str, int] | None, got: int, seconds: float
    ) -> None:
        """A client was cut for ``what`` (``cause``: ``request_body`` or ``response``)
        going below ``limits.min_bytes_per_second``: ``got`` bytes in ``seconds``.
        Counted, and logged at info: the client's doing, not the server's."""
        self.slow_clients[cause] += 1
        log.info(
            "%s from %s below the minimum rate: %d bytes in %.1f s (minimum %d B/s); cut",
            what,
            client[0] if client else "?",
            got,
            seconds,
            self.limits.min_bytes_per_second,
        )

    def count_request(self) -> None:
        """A request was answered (the pool's ``recycling.requests`` counts them)."""
        counts = self.counts
        counts.requests += 1
        if counts.requests == counts.request_limit and self.on_request_limit is not None:
            self.on_request_limit()

    def forget(self, conn: Connection) -> None:
        """A connection ended."""
        self.connections.discard(conn)
        if self._counted:
            host = self._counted.pop(conn, None)
            if host is not None:
                left = self.per_client[host] - 1
                if left > 0:
                    self.per_client[host] = left
                else:
                    del self.per_client[host]
                    self._capped.discard(host)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def wait_all_closed(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every connection to end, and for the
        applications still at work after their responses (``stragglers``)."""
        return await self._wait_ended(seconds, self.stragglers)

    async def _wait_ended(self, seconds: float, tasks: set[asyncio.Task[None]]) -> bool:
        # Up to ``seconds``: every connection gone, then every task of ``tasks`` (a
        # live set, which the tasks leave as they end).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if self.connections:
            self._all_closed = asyncio.Event()
            self.counting = True
            try:
                await asyncio.wait_for(self._all_closed.wait(), seconds)
            except TimeoutError:
                return False
        while tasks:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(set(tasks), timeout=left)
        return True

    def abort_all(self) -> None:
        """A stop's (or drain's) deadline passed: drop every connection, and cancel
        the work of every request still at it, after a complete answer too (the
        connections' ends, which come later, cancel theirs: see ``aborting``), with
        :data:`~colonnade.errors.SERVER_ABORTED`: each request ends as cut by the
        server (its always-run stages run; logged with Win32 status 1236), which
        :meth:`settle` gives a moment."""
        self.aborting = True
        for conn in list(self.connections):
            conn.abort()
        for task in list(self.stragglers):
            self.cancel_request(task)

    def cancel_request(self, task: asyncio.Task[None], dropped: bool = False) -> None:
        """The connection of the request ``task`` serves ended under it: the client
        left (:data:`~colonnade.errors.CLIENT_GONE`), or the server dropped it
        (:data:`~colonnade.errors.SERVER_ABORTED`): ``dropped``, the connection's
        own decision (a timer: a body or a reading too slow, a client's protocol
        error on HTTP/2; its ``drop``), or after :meth:`abort_all` (then
        :meth:`settle` waits for the task). The walk ends the request either way."""
        if not self.aborting:
            task.cancel(SERVER_ABORTED if dropped else CLIENT_GONE)
            return
        task.cancel(SERVER_ABORTED)
        ending = self.ending
        ending.add(task)
        task.add_done_callback(ending.discard)

    async def settle(self, seconds: float) -> bool:
        """After :meth:`abort_all`: give the requests it cut short up to ``seconds``
        to run their always-run stages (EndRequest, LogRequest: their access log
        lines), so that the process does not exit under them; False if some had
        not ended by then (the stop goes on: they get no log line)."""
        # The connections' ends (which cancel their requests) come a turn or two
        # of the loop after abort(): wait for them first.
        if await self._wait_ended(seconds, self.ending):
            return True
        # It gave up on the connections' ends, or on the requests' (named apart:
        # connections not ended have had no request cancelled, none in ``ending``).
        if self.connections:
            log.warning(
                "%d connection(s) aborted by the deadline still open %.1fs later:"
                " their requests, if any, left unlogged",
                len(self.connections),
                seconds,
            )
        if self.ending:
            log.warning(
                "%d request(s) cut short by the deadline still ending %.1fs later: left unlogged",
                len(self.ending),
                seconds,
            )
        return False

    def log_protocol_error(self, client: tuple[str, int] | None, status: int, reason: str) -> None:
        """A request refused before it reached the pipeline (no access log line)."""
        log.info("rejected request from %s: %d %s", client[0] if client else "?", status, reason)


class Adopter:
    """Gives sockets accepted here (not by the event loop) to the event loop, each
    served by a new ``HttpConnection`` (HTTP/1.1, or h2 with prior knowledge)."""

    def __init__(self, factory: Accepted) -> None:
        self.factory = factory
        self._tasks: set[asyncio.Task[object]] = set()

    def adopt(self, conn: socket.socket) -> None:
        """Serve ``conn`` (non-blocking already)."""
        task = self.factory.loop.create_task(self._connect(conn))
        self._tasks.add(task)  # held until it is done: a task only weakly held may vanish
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.factory.loop.connect_accepted_socket(self.factory, conn)
        except OSError as exc:  # gone before it could be served
            log.debug("a connection ended before it was served: %s", exc)
            conn.close()


class PlainListener(Listener):
    """Accepts on a plain HTTP port's listening socket (not ``loop.create_server``:
    see ``listener.py`` for why)."""

    def __init__(self, state: ServerState, sock: socket.socket, port: int) -> None:
        self.state = state
        self._adopter = Adopter(Accepted(state, fixed_address(sock)))
        super().__init__(sock, port)

    def accepted(self, conn: socket.socket) -> None:
        """Serve ``conn`` over HTTP (HTTP/1.1, or h2 with prior knowledge)."""
        self._adopter.adopt(conn)


#: The most connections one drain of a backlog takes (the rest: the next turn's).
BURST_MAX = 512


class BurstAccept:
    """Takes a plain port's whole backlog in one turn of the event loop.

    uvloop's server accepts one connection per turn of the loop (libuv does since
    1.45: one ``accept()`` per readiness of the listening socket, since a second
    one usually fails with EAGAIN). While the loop serves many connections a turn
    is long, and a burst of new ones waits a turn each: at 1,024 connections
    opened at once, the last waited seconds for their first answer (the wrk
    timeouts of the bench's c1024 row). So once a worker holds ``DRAIN_FROM``
    connections, a connection the loop accepts schedules this drain for the same
    turn (``Accepted``), which accepts what waits, up to :data:`BURST_MAX`, as
    asyncio's own servers do, and gives each to the loop. Below that, each turn is
    short and nothing is tried: no ``accept()`` failing with EAGAIN per connection.
    """

    def __init__(self, factory: Accepted, sock: socket.socket) -> None:
        self.factory = factory
        self.sock = sock
        self._adopter = Adopter(factory)

    def __call__(self) -> None:
        self.factory.draining = False
        sock = self.sock
        for _ in range(BURST_MAX):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # that client gave up already
                # Out of descriptors or memory: what waits stays in the backlog,
                # for the event loop's own accept (or another worker's).
                log.debug("accepting a burst on %s failed: %s", sock.getsockname(), exc)
                return
            conn.setblocking(False)
            self._adopter.adopt(conn)


#: Descriptors a worker keeps beyond ``limits.max_connections`` for all it opens
#: besides client connections: files, upstreams, logs, and connections refused
#: over the cap that are still closing.
FD_RESERVE = 1024


def native_accept_is_safe(max_connections: int) -> bool:
    """Whether client connections alone cannot exhaust this process's descriptors
    (``RLIMIT_NOFILE`` at or above ``max_connections`` + :data:`FD_RESERVE`).

    Then a plain port accepts in the event loop's own C code
    (``loop.create_server``), about a third cheaper per connection than
    :class:`PlainListener`'s accept in Python; otherwise it takes the pausing
    listener, since libuv resets the waiting clients when accept() fails with
    EMFILE (see ``listener.py``). Decided at start: workers get their limits
    (``[pools.NAME.limits] open_files``, systemd's ``LimitNOFILE``) before they serve.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft == resource.RLIM_INFINITY or soft >= max_connections + FD_RESERVE


#: The longest a stop (or a drain) waits, past its deadline, for the requests it
#: aborted to run their always-run stages (their access log lines): within the 2 s
#: a pool's master allows a stopping worker past its deadline before it kills it
#: (``pools/workers.py`` KILL_GRACE).
SETTLE_TIME = 1.0


def settle_time(deadline: float) -> float:
    """How long a stop of ``deadline`` seconds gives its aborted requests to end."""
    return min(SETTLE_TIME, deadline)


class HttpServer:
    """Serves an engine on already-bound sockets until stopped."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.servers: list[asyncio.Server | PlainListener | TlsListener] = []

    async def start(self, sockets: Iterable[socket.socket]) -> None:
        """Start accepting on ``sockets``."""
        state = self.state
        native = native_accept_is_safe(state.limits.max_connections)
        if not native:
            log.info(
                "open-files limit %d leaves under %d descriptors above max_connections (%d): "
                "plain ports accept through the pausing listener",
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                FD_RESERVE,
                state.limits.max_connections,
            )
        loop = asyncio.get_running_loop()
        backlog = state.engine.config.server.listen_backlog
        unsent = state.engine.config.server.tcp_notsent_lowat
        for sock in sockets:
            port = listening_port(sock)
            if not limit_unsent(sock, unsent) and unsent and sock.family != socket.AF_UNIX:
                log.warning(
                    "port %d: TCP_NOTSENT_LOWAT not available: [server] tcp_notsent_lowat "
                    "not applied",
                    port,
                )
            if state.tls.port(port) is not None:
                from colonnade.transport.handshake import TlsListener

                self.servers.append(TlsListener(state, sock, port))
            elif native:
                serve = (
                    loop.create_unix_server if sock.family == socket.AF_UNIX else loop.create_server
                )
                # (asyncio listens again on a socket it is given: the same backlog)
                factory = Accepted(state, fixed_address(sock))
                factory.drain = BurstAccept(factory, sock)
                self.servers.append(await serve(factory, sock=sock, backlog=backlog))
            else:
                self.servers.append(PlainListener(state, sock, port))

    async def stop(self, deadline: float) -> None:
        """Stop accepting; let requests in flight finish for ``deadline`` seconds."""
        for server in self.servers:
            server.close()
        for handshake in list(self.state.handshakes):
            handshake.cancel()
        for conn in list(self.state.connections):
            conn.shutdown()
        if not await self.state.wait_all_closed(deadline):
            log.warning(
                "graceful stop: %d connection(s) still busy after %.1fs; aborting"
                " (and %d application(s) still at work after their response)",
                len(self.state.connections),
                deadline,
                len(self.state.stragglers),
            )
            self.state.abort_all()
            await self.state.settle(settle_time(deadline))
        for server in self.servers:
            await server.wait_closed()
