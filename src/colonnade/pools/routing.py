"""Which pool serves a request, and handing a connection to the pool that does.

How this works: :class:`RouteTable` (``routes.py``) answers "which pool serves port P, Host H,
path /x" with the engine's own ``Router`` and ``Site`` classes over stand-in
applications (no module is imported, no file read), so the master and every
worker choose exactly as the engine does. Each listening port has an *owner*
pool, whose workers accept from it: the pool of the port's default site's root
application. A port is *mixed* when some request arriving on it may belong to
another pool.

In a worker that may receive such requests, :class:`PoolRouter` is installed as
``ServerState.router``. When a request starts on an idle connection, the
connection holds the bytes (:class:`HeldHead`) while a scratch
``HTTP1Connection`` — the same parser, so there is no second opinion on where
the head ends or what its Host is — reads the head. A request for this pool is
then parsed as usual; one for another pool makes the worker give up the
connection (``HttpConnection.detach``) and send the socket and every byte read
since the request began to the master, which passes both to a worker of the
right pool. Nothing is re-serialised and the client sees one connection
throughout.

A request pipelined behind another one (bytes that arrive while a response is
still due) is parsed by the connection directly; if it belongs elsewhere the
connection answers the requests before it and closes (``admits``), and the
client retries the rest on a new connection (RFC 9112 9.3.2). Splitting a
pipelined byte stream outside the parser would need a second framing parser,
and a second opinion on framing is how request smuggling starts.

While a worker drains (recycle, idle shutdown) its router hands every
connection back to the master as soon as it is idle, so a recycle closes no
connection (a TLS one excepted: its session cannot leave the process, so it is
closed once idle).

TLS connections are routed before their handshake, by site: the SNI name is
peeked from the ClientHello (``transport/clienthello.py``) by the master or by
the owner pool's worker that accepted it, and a connection for another pool's
site is passed on unread (:meth:`PoolRouter.hand_over_tls`). A request on a TLS
connection whose Host names another pool's site is answered 421.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from colonnade.core.urlpath import decode_path
from colonnade.errors import HttpError
from colonnade.http import HTTP1Connection, Preface, ProtocolError, RequestHead
from colonnade.pools.routes import RouteTable

if TYPE_CHECKING:  # the worker's side
    from colonnade.core.request import Request
    from colonnade.transport.connection import HttpConnection
    from colonnade.transport.server import Connection

log = logging.getLogger("colonnade.pools")

# RouteTable lives in routes.py (the master imports only that); a worker finds it here too.
__all__ = [
    "HeldHead",
    "PoolRouter",
    "RouteTable",
    "SendConnection",
    "pool_of_head",
    "scratch_parser",
]


def pool_of_head(routes: RouteTable, port: int, head: RequestHead) -> str | None:
    """The pool for a parsed head; None when it is not routable (the parser will say why)."""
    try:
        path = decode_path(head.path)
    except HttpError:
        return None
    return routes.pool_for(port, head.host.decode("latin-1"), path)


def scratch_parser(conn: HttpConnection) -> HTTP1Connection:
    """A parser with the connection's limits, to read a head without consuming it."""
    limits = conn.state.limits
    return HTTP1Connection(
        max_target=limits.max_request_target,
        max_header_size=limits.max_header_size,
        max_headers=limits.max_headers,
        server=None,
    )


#: ``send(pool, port, head_complete, data, fd)``: give a detached connection away.
SendConnection = Callable[[str, int, bool, bytes, int], None]


class PoolRouter:
    """The ``ConnectionRouter`` of a worker of ``pool`` (see the module docstring)."""

    def __init__(self, pool: str, routes: RouteTable | None, send: SendConnection) -> None:
        self.pool = pool
        self.routes = routes  # None: one pool only (installed just to drain)
        self.send = send
        self.draining = False
        self.handed = 0  # connections given away, for the stats
        self._waiting: set[asyncio.Task[None]] = set()

    def hold(self, conn: HttpConnection) -> HeldHead:
        return HeldHead(self, conn)

    def admits(self, conn: Connection, request: Request) -> bool:
        routes = self.routes
        if routes is None or self.draining:
            return True
        port = conn.server[1] if conn.server else 0
        pool = routes.pool_for(port, request.host, request.path)
        return pool is None or pool == self.pool

    def idle(self, conn: HttpConnection) -> None:
        if self.draining:
            self.hand_over(conn, self.pool, b"", head=False)

    def routes_tls(self, port: int) -> bool:
        return self.routes is not None and not self.draining and self.routes.tls_mixed(port)

    def hand_over_tls(self, port: int, name: str | None, sock: socket.socket) -> bool:
        routes = self.routes
        if routes is None:
            return False
        pool = routes.tls_pool(port, name)
        if pool == self.pool:
            return False
        self.handed += 1
        # Unread: the master gives it to a worker of that pool as it is (head=True:
        # it is routed), and the handshake happens there.
        self.send(pool, port, True, b"", sock.detach())
        return True

    def hand_over(self, conn: HttpConnection, pool: str, data: bytes, *, head: bool) -> None:
        """Detach ``conn`` and send it away, once what it still has to write is written."""
        if conn.gone():
            return
        if conn.tls is not None:
            # Its TLS session cannot leave this process: close it once idle (the
            # client opens a new connection, which another worker accepts).
            conn.shutdown()
            return
        conn.uncork()  # an answer held for the loop's next turn goes now (WriteBatch)
        if conn.buffered():
            conn.stop_reading()
            task = asyncio.get_running_loop().create_task(self._after_flush(conn, pool, data, head))
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)
            return
        try:
            fd = conn.detach()
        except (ConnectionError, OSError):
            return
        self.handed += 1
        port = conn.server[1] if conn.server else 0
        self.send(pool, port, head, data, fd)

    async def _after_flush(self, conn: HttpConnection, pool: str, data: bytes, head: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + conn.state.timeouts.body
        while not conn.gone():
            if not conn.buffered():
                self.hand_over(conn, pool, data, head=head)
                return
            if loop.time() > deadline:
                conn.abort()  # the client stopped reading
                return
            await asyncio.sleep(0.005)

    def hand_over_idle(self, conns: list[Connection]) -> None:
        """Draining: hand over every HTTP/1.1 connection that is idle now; tell every
        HTTP/2 and upgraded one to stop (their state cannot move to another process:
        HTTP/2 says GOAWAY, finishes its streams, and its client reconnects; a
        WebSocket closes with 1001)."""
        from colonnade.transport.connection import HttpConnection

        for conn in conns:
            if not isinstance(conn, HttpConnection):
                conn.shutdown()
                continue
            # An answer held for the loop's next turn (WriteBatch) goes now: a
            # connection is idle once it is written, and nothing hands it over later.
            conn.uncork()
            if conn.idle:
                self.hand_over(conn, self.pool, b"", head=False)
            elif conn.raw is not None:
                # Upgraded (a WebSocket, a proxied tunnel): never idle again, and its
                # state cannot move either; its owner closes it (a WebSocket says 1001).
                conn.shutdown()

    async def wait(self) -> None:
        """Until connections waiting to be handed over are gone."""
        for task in list(self._waiting):
            with contextlib.suppress(Exception):
                await task


class HeldHead:
    """The bytes of a request that started on an idle connection, until routed."""

    __slots__ = ("buf", "conn", "parser", "router")

    def __init__(self, router: PoolRouter, conn: HttpConnection) -> None:
        self.router = router
        self.conn = conn
        self.buf = bytearray()
        self.parser: HTTP1Connection | None = None

    def feed(self, data: bytes) -> bytes | None:
        self.buf += data
        router = self.router
        if router.draining:
            router.hand_over(self.conn, router.pool, bytes(self.buf), head=False)
            return None
        routes = router.routes
        if routes is None:
            return bytes(self.buf)
        parser = self.parser
        if parser is None:
            parser = self.parser = scratch_parser(self.conn)
        for event in parser.feed(data):
            if isinstance(event, RequestHead):
                server = self.conn.server
                pool = pool_of_head(routes, server[1] if server else 0, event)
                if pool is None or pool == router.pool:
                    return bytes(self.buf)
                router.hand_over(self.conn, pool, bytes(self.buf), head=True)
                return None
            if isinstance(event, ProtocolError | Preface):
                # The connection's own parser answers it, or hands it to HTTP/2 (a
                # connection that may carry requests for any pool: served here).
                return bytes(self.buf)
        return None

    def release(self) -> bytes:
        return bytes(self.buf)
