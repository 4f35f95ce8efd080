"""The master's front door: listening sockets, and the connections no worker has.

How this works
--------------
The master binds every listening socket once (:meth:`FrontDoor.listen`) and
each worker of a port's owner pool inherits it and accepts from it. The master
accepts on a port only while that pool has no serving worker
(:meth:`FrontDoor.update_accepting`, called whenever a worker becomes ready,
drains or exits): the kernel's backlog holds connections in between, so none is
refused.

A connection the master accepted, or one a worker handed back idle, is a
:class:`_Peek`: the master reads its request head without blocking, within the
server's header (or keep-alive) timeout. On a port several pools share, the
head says which pool serves the request, read with the same ``HTTP1Connection``
parser and limits the workers use (``pool_of_head``). On a port one pool serves
(the common case) the master waits only for the head's end, a blank line, and
parses nothing: the pool's worker parses those bytes as they came, and answers
a malformed head exactly as the master would have (the same parser, limits and
error response); so the master needs neither the parser nor a compiled module
while idle (see docs/process-model.md, "Memory"). A head that grows past the
limits without ending, or does not end in time, is read by the parser after
all, and answered by the master as before. :meth:`FrontDoor.deliver` then sends the socket and
every byte read of it to a ready worker of that pool (``ipc.Adopt``, round
robin), or queues it and asks for the pool's workers to start; the queue is
flushed when one reports ready. A stopped pool, a full queue or too many held
connections is answered 503 by the HTTP layer's error response, written before
the socket is closed (:func:`send_and_close`). The master never relays a byte of
a connection; it only moves descriptors.

A TLS port's connections are never read here: they go to the port's pool as
they are, or, where several pools serve the port, to the pool of the site their
SNI name belongs to, peeked from the ClientHello without consuming it
(:meth:`FrontDoor.route_tls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from colonnade.config.bindings import UNIX_PORT, Binding
from colonnade.pools import ipc
from colonnade.pools.pool import Pool, PoolState
from colonnade.pools.systemd import listening_socket
from colonnade.transport.clienthello import NotTlsError, peek_server_name
from colonnade.transport.sockets import limit_unsent, remove_unix_socket, unix_path

if TYPE_CHECKING:
    from colonnade.http import HTTP1Connection, ProtocolError, RequestHead
    from colonnade.pools.master import Master

log = logging.getLogger("colonnade.pools")

#: How long a client is asked to wait before retrying after a 503 from the master.
RETRY_AFTER = b"5"
#: The most one read of a connection's head takes.
READ_SIZE = 65536


class FrontDoor:
    """Accepts, reads request heads, routes, and delivers or queues connections."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self.listeners: dict[tuple[str, int], socket.socket] = {}
        self._accepting: set[tuple[str, int]] = set()
        self._peeks: set[_Peek] = set()
        self._tls_peeks: set[asyncio.Task[None]] = set()  # routing by SNI name

    # -- listening ---------------------------------------------------------------------------

    def listen(self, keys: list[tuple[str, int]], backlog: int = 2048, unsent: int = 0) -> None:
        """Listen on exactly ``keys``: bind the new ones with ``backlog`` (all or none:
        OSError; a socket systemd passed serves its address), close the rest. Every
        TCP one, kept or new, bounds its connections' unsent bytes to ``unsent``
        (``[server] tcp_notsent_lowat``; 0 the kernel's default): the connections the
        master accepts before a worker serves have it, and a reload that changes it
        changes it for the workers' next accepts too (they share the sockets)."""
        new: dict[tuple[str, int], socket.socket] = {}
        try:
            for key in keys:
                if key not in self.listeners:
                    new[key] = listening_socket(Binding("http", key[0], key[1]), backlog)
        except OSError:
            for sock in new.values():
                sock.close()
            raise
        for key in [k for k in self.listeners if k not in keys]:
            self._stop_accepting(key)
            sock = self.listeners.pop(key)
            remove_unix_socket(unix_path(sock))
            sock.close()
        self.listeners.update(new)
        for sock in self.listeners.values():
            limit_unsent(sock, unsent)

    def owned_by(self, pool: str) -> list[ipc.Listener]:
        """The listening sockets a worker of ``pool`` inherits: those of the ports it owns."""
        routes = self.master.routes
        return [
            ipc.Listener(sock.fileno(), key[0], key[1])
            for key, sock in self.listeners.items()
            if routes.owner(key[1]) == pool
        ]

    def close(self) -> None:
        """Stop accepting and close every listening socket."""
        for key in list(self._accepting):
            self._stop_accepting(key)
        for sock in self.listeners.values():
            remove_unix_socket(unix_path(sock))
            sock.close()
        self.listeners.clear()

    def update_accepting(self) -> None:
        """The master accepts on a port exactly when its owner pool has no serving worker."""
        master = self.master
        for key, sock in self.listeners.items():
            pool = master.pools.get(master.routes.owner(key[1]))
            served = pool is not None and any(w.serving for w in pool.workers)
            if master.stopping or served:
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
            routes = self.master.routes
            if routes.tls_mixed(key[1]):
                self.route_tls(conn, key[1])
            elif key[1] in routes.tls_ports:
                # Not a byte of a TLS port is read here: its pool's worker does the
                # handshake.
                self.deliver(routes.owner(key[1]), conn.detach(), b"", key[1])
            else:
                self.peek(conn.detach(), b"", key[1])

    def route_tls(self, conn: socket.socket, port: int) -> None:
        """Deliver a connection of a TLS port several pools serve to the pool of the
        site its SNI name belongs to: the ClientHello is peeked, never consumed."""
        limits = self.master.config.server.limits
        if len(self._peeks) + len(self._tls_peeks) >= limits.max_connections:
            conn.close()
            return
        task = asyncio.get_running_loop().create_task(self._route_tls(conn, port))
        self._tls_peeks.add(task)
        task.add_done_callback(self._tls_peeks.discard)

    async def _route_tls(self, conn: socket.socket, port: int) -> None:
        within = self.master.config.server.tls.handshake_timeout
        try:
            name = await peek_server_name(conn, within)
        except NotTlsError:
            name = None  # the worker's handshake fails and logs why
        except (OSError, TimeoutError):
            conn.close()  # gone, or silent for the whole handshake timeout
            return
        except asyncio.CancelledError:
            conn.close()
            raise
        self.deliver(self.master.routes.tls_pool(port, name), conn.detach(), b"", port)

    def stop(self) -> None:
        """Stopping the server: accept no more, drop the connections held."""
        self.update_accepting()
        for task in list(self._tls_peeks):
            task.cancel()
        for peek in list(self._peeks):
            peek.close()
        for pool in self.master.pools.values():
            while pool.queue:
                fd, _, _ = pool.queue.popleft()
                close_fd(fd)

    # -- connections the master holds ------------------------------------------------------

    def peek(self, fd: int, data: bytes, port: int) -> None:
        """Read the request head of a connection no worker has, then deliver it."""
        limits = self.master.config.server.limits
        if len(self._peeks) >= limits.max_connections:
            self.answer(fd, 503, "too many connections")
            return
        self._peeks.add(_Peek(self, fd, data, port))

    def on_head(self, peek: _Peek, head: RequestHead | None, error: ProtocolError | None) -> None:
        """A connection's head arrived (or was malformed): route it."""
        self._peeks.discard(peek)
        fd = peek.detach()
        if error is not None:
            assert peek.parser is not None  # errors come from it
            log.info("rejected request on port %d: %d %s", peek.port, error.status, error.reason)
            self._send_and_close(fd, peek.parser.error_response(error.status, error.reason))
            return
        assert head is not None
        routes = self.master.routes
        pool = routes.only_pool(peek.port)
        if pool is None:
            from colonnade.pools.routing import pool_of_head  # a port several pools share

            pool = pool_of_head(routes, peek.port, head)
        if pool is None:
            if not routes.serves_port(peek.port):
                close_fd(fd)  # a port no longer served
                return
            pool = routes.owner(peek.port)  # no such site: its engine answers 404
        self.deliver(pool, fd, bytes(peek.buf), peek.port)

    def on_head_end(self, peek: _Peek) -> bool:
        """The head of a connection on a port one pool serves has ended (a blank line
        arrived; not parsed): deliver it to that pool. False: the port is shared by
        several pools now (a reload), so the head must be parsed to be routed."""
        routes = self.master.routes
        pool = routes.only_pool(peek.port)
        if pool is None and routes.serves_port(peek.port):
            return False
        self._peeks.discard(peek)
        fd = peek.detach()
        if pool is None:
            close_fd(fd)  # a port no longer served
        else:
            self.deliver(pool, fd, bytes(peek.buf), peek.port)
        return True

    def on_preface(self, peek: _Peek) -> None:
        """A connection opened with HTTP/2's preface (prior knowledge): it has no head
        to route by, and its streams may ask for any site of the port. It goes to
        the port's owner pool, whose workers accept the port's connections."""
        self._peeks.discard(peek)
        fd = peek.detach()
        routes = self.master.routes
        if not routes.serves_port(peek.port):
            close_fd(fd)
            return
        self.deliver(routes.owner(peek.port), fd, bytes(peek.buf), peek.port)

    def peek_done(self, peek: _Peek) -> None:
        """A held connection closed or timed out before a request."""
        self._peeks.discard(peek)

    def deliver(self, name: str, fd: int, data: bytes, port: int) -> None:
        """Give a connection (and the bytes read of it) to a worker of pool ``name``."""
        master = self.master
        pool = master.pools.get(name)
        if pool is None or master.stopping or name not in master.used:
            self.answer(fd, 503, "the application pool is not available", port=port)
            return
        if pool.state is PoolState.STOPPED:
            self.answer(fd, 503, stopped_text(pool, fd, data), port=port)
            return
        worker = pool.next_worker()
        if worker is not None and worker.channel is not None:
            worker.last_activity = time.monotonic()
            worker.channel.send(ipc.Adopt(port), data, [fd])
            return
        if len(pool.queue) >= pool.settings.queue_length:
            log.warning("pool %s: queue full (%d); answering 503", name, len(pool.queue))
            self.answer(fd, 503, "the application pool's queue is full", port=port)
            return
        pool.queue.append((fd, data, port))
        pool.demand = True
        master.workers.ensure(pool)

    def flush_queue(self, pool: Pool) -> None:
        """Hand the connections queued for ``pool`` to its ready workers."""
        while pool.queue:
            worker = pool.next_worker()
            if worker is None or worker.channel is None:
                return
            fd, data, port = pool.queue.popleft()
            worker.channel.send(ipc.Adopt(port), data, [fd])

    def fail_queue(self, pool: Pool) -> None:
        """Answer every connection queued for ``pool`` 503 (it stopped)."""
        while pool.queue:
            fd, data, port = pool.queue.popleft()
            self.answer(fd, 503, stopped_text(pool, fd, data), port=port)

    def answer(self, fd: int, status: int, text: str, *, port: int = 0) -> None:
        """Answer ``status`` on a connection and close it (the master's own responses).

        A connection of a TLS port is closed without a word: the master holds no
        TLS session to answer in, and plain text would only confuse the client."""
        if port in self.master.routes.tls_ports:
            close_fd(fd)
            return
        from colonnade.http import error_response  # a refusal only

        headers = [(b"Retry-After", RETRY_AFTER)] if status == 503 else []
        self._send_and_close(fd, error_response(status, text, server=self.server, headers=headers))

    @property
    def server(self) -> bytes | None:
        """The Server header value (None: send none)."""
        master = self.master
        name = master.config.server.server_header if master.loaded else "colonnade"
        return name.encode() or None

    def _send_and_close(self, fd: int, data: bytes) -> None:
        self.master.start_task(send_and_close(fd, data))


class _Peek:
    """A connection the master reads a request head from (non-blocking, on the loop)."""

    def __init__(self, door: FrontDoor, fd: int, data: bytes, port: int) -> None:
        self.door = door
        self.fd = fd
        self.port = port
        self.buf = bytearray()
        master = door.master
        limits = master.config.server.limits
        #: The parser, made only where the head must be read (see the module docstring).
        self.parser: HTTP1Connection | None = None
        if master.routes.only_pool(port) is None:
            self.parser = self._make_parser()
        #: Past this many bytes without a blank line, the parser judges the head
        #: (its limits refuse it; the parser's own bound on what it buffers).
        self.scan_limit = limits.max_request_target + limits.max_header_size
        timeouts = master.config.server.timeouts
        self.loop = asyncio.get_running_loop()
        self.timer = self.loop.call_later(
            timeouts.header if data else timeouts.keep_alive, self._timeout
        )
        self.reading = True
        self.loop.add_reader(fd, self._readable)
        if data:
            self._feed(data)

    def _make_parser(self) -> HTTP1Connection:
        from colonnade.http import HTTP1Connection

        limits = self.door.master.config.server.limits
        return HTTP1Connection(
            max_target=limits.max_request_target,
            max_header_size=limits.max_header_size,
            max_headers=limits.max_headers,
            server=self.door.server,
        )

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
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
                self.door.master.config.server.timeouts.header, self._timeout
            )
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        start = max(len(self.buf) - 2, 0)
        self.buf += data
        if self.parser is not None:
            self._parse(data)
            return
        # A blank line ends the head ("\r\n\r\n"; a bare "\n" too, which a lenient
        # parser may take as a line end): from here on the worker's parser judges it.
        ended = self.buf.find(b"\n\r\n", start) >= 0 or self.buf.find(b"\n\n", start) >= 0
        if ended and self.door.on_head_end(self):
            return
        if ended or len(self.buf) > self.scan_limit:
            self._parse_buffered()

    def _parse_buffered(self) -> bool:
        # The parser takes over: it reads what came so far in the slices reads give
        # (its limit on a head that makes no progress counts from one feed to the next).
        self.parser = self._make_parser()
        data = bytes(self.buf)
        return any(self._parse(data[i : i + READ_SIZE]) for i in range(0, len(data), READ_SIZE))

    def _parse(self, data: bytes) -> bool:
        # Feed the parser; True once the head (or its error, or HTTP/2's preface) is in.
        assert self.parser is not None
        from colonnade.http import Preface, ProtocolError, RequestHead

        for event in self.parser.feed(data):
            if isinstance(event, RequestHead):
                self.door.on_head(self, event, None)
                return True
            if isinstance(event, ProtocolError):
                self.door.on_head(self, None, event)
                return True
            if isinstance(event, Preface):
                self.door.on_preface(self)
                return True
        return False

    def _timeout(self) -> None:
        if not self.buf:
            self.close()
            return
        if self.parser is None and self._parse_buffered():
            # The head never ended: the parser said it is malformed (its error, as a
            # worker would answer); else it is late (408).
            return
        from colonnade.http import ProtocolError

        self.door.on_head(self, None, ProtocolError(408, "the request head did not arrive in time"))

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
            close_fd(self.fd)
            self.fd = -1
        self.door.peek_done(self)


def stopped_text(pool: Pool, fd: int, data: bytes) -> str:
    """The 503 text for a request to stopped ``pool``: why it is stopped (paths,
    users) only for a client on this machine; the log has it for everyone."""
    why = f" ({pool.reason})" if pool.reason and local_client(fd, data) else ""
    return f"the application pool is stopped{why}"


def local_client(fd: int, data: bytes) -> bool:
    """Whether the request whose bytes are ``data`` came directly from this machine."""
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
    from colonnade.core.request import is_local_client  # a 503 of a stopped pool only

    lines = data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return is_local_client(host, (line.partition(b":")[0].strip().lower() for line in lines))


def is_client_socket(fd: int, port: int) -> bool:
    """Whether ``fd`` is what a worker may hand over for a connection of ``port``: a
    TCP socket, or on a unix-socket binding's port (``UNIX_PORT``) a unix stream
    socket. (Not any descriptor: the master reads from it and gives it to a pool.)"""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    families = (socket.AF_UNIX,) if port == UNIX_PORT else (socket.AF_INET, socket.AF_INET6)
    try:
        return sock.type == socket.SOCK_STREAM and sock.family in families
    finally:
        sock.detach()


def close_fd(fd: int) -> None:
    """Close a descriptor that may already be gone."""
    with contextlib.suppress(OSError):
        os.close(fd)


async def send_and_close(fd: int, data: bytes) -> None:
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
