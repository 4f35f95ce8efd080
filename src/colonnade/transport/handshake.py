"""Connections of a TLS port: accepting them, the handshake, and the hand-over.

How this works: a TLS port's listening socket is watched by a
:class:`TlsListener` (a plain port's by ``server.PlainListener``; both pause on
EMFILE rather than drop connections, see ``listener.py``). Each accepted
socket — or one the master accepted and passed over — goes to
:func:`start_handshake`, which counts it against ``limits.max_connections`` from
its first byte on and awaits ``loop.connect_accepted_socket`` with the port's
front context (``tls.TlsPort``) and its ``handshake_timeout``. That call returns
only once the handshake is done, or raises why it was not, so every way a
handshake fails ends in one place: a plain HTTP client on the TLS port, an
unknown SNI name refused, TLS 1.1, a timeout. The socket is closed, one INFO
line says who and why (no traceback), and the slot is free again.

On a port whose sites several pools serve, the worker first peeks the SNI name
(``clienthello.peek_server_name``, nothing consumed) and asks the router
(``ServerState.router.hand_over_tls``) whether the socket belongs to another
pool; if so it leaves, unread, and that pool's worker shakes hands. On a port
where a site asks for client certificates, the name is peeked too: it chooses
the context the handshake starts with (``TlsPort.front``), which decides whether
a certificate is asked for.

The protocol the TLS transport starts with, :class:`Negotiated`, learns in its
``connection_made`` (the handshake's end, before any application byte is
delivered) which ALPN protocol was chosen, and gives the transport to the
protocol that serves it (``protocols.protocol_for``).

Why not ``create_server(ssl=...)``: the loop would then run the handshake out of
sight — a failed one is neither counted nor reported, and a stalled one holds
memory nobody limits. Why not ``start_tls`` on a plain connection: uvloop starts
reading a new connection right after ``connection_made``, so the ClientHello
could reach the plain protocol before the TLS layer is in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import TYPE_CHECKING, cast

from colonnade.core.request import TlsInfo
from colonnade.transport.clienthello import NotTlsError, peek_server_name
from colonnade.transport.listener import Listener
from colonnade.transport.protocols import protocol_for
from colonnade.transport.tls import (
    HANDSHAKE_FD,
    client_certificates,
    server_certificate,
    sni_name,
)

if TYPE_CHECKING:
    from colonnade.transport.server import ServerState

log = logging.getLogger("colonnade.tls")


class TlsListener(Listener):
    """Accepts on a TLS port's listening socket; each connection shakes hands."""

    def __init__(self, state: ServerState, sock: socket.socket, port: int) -> None:
        self.state = state
        super().__init__(sock, port)

    def accepted(self, conn: socket.socket) -> None:
        """Shake hands on ``conn``."""
        start_handshake(self.state, self.port, conn)


def start_handshake(
    state: ServerState, port: int, sock: socket.socket, *, routed: bool = False
) -> None:
    """Shake hands on ``sock``, accepted on TLS ``port``, then serve it.

    Where several pools serve the port (``state.router.routes_tls``) and the
    connection was not ``routed`` yet (by the master), its SNI name is peeked
    first, and the socket goes, unread, to another pool's worker if the name
    belongs there.
    """
    tls = state.tls.port(port)
    if (
        tls is None
        or len(state.connections) + len(state.handshakes) >= state.limits.max_connections
        or (state.limits.max_connections_per_client and _over_client_cap(state, sock))
    ):
        # Nothing can be said in plain text to a TLS client: just close.
        sock.close()
        return
    router = state.router
    route = not routed and router is not None and router.routes_tls(port)
    task = asyncio.get_running_loop().create_task(_handshake(state, port, sock, route))
    state.handshakes.add(task)
    task.add_done_callback(state.handshakes.discard)


def _over_client_cap(state: ServerState, sock: socket.socket) -> bool:
    # A client at its cap already is refused before the handshake's cost (one that
    # reaches it during its handshakes is refused with a 503 once they are done).
    try:
        peer = sock.getpeername()
    except OSError:
        return False
    return isinstance(peer, tuple) and state.over_client_cap(peer[0])


async def _handshake(state: ServerState, port: int, sock: socket.socket, route: bool) -> None:
    tls = state.tls.port(port)
    try:
        peer = sock.getpeername()
    except OSError:
        peer = None
    if tls is None:
        sock.close()
        return
    who = peer[0] if isinstance(peer, tuple) else "?"
    loop = asyncio.get_running_loop()
    started = loop.time()
    front = tls.context
    router = state.router if route else None
    if router is not None or tls.peek:
        try:
            name = await peek_server_name(sock, tls.handshake_timeout)
        except NotTlsError:
            name = None  # the handshake below fails and says why, as everywhere
        except (OSError, TimeoutError) as exc:
            sock.close()
            log.info("TLS handshake with %s on port %d failed: %s", who, port, describe(exc))
            return
        if router is not None and router.hand_over_tls(port, name, sock):
            return
        # Whether a client certificate is asked for is settled by the context the
        # handshake starts with: the site the name chooses says.
        front = tls.front(name)
    HANDSHAKE_FD.set(sock.fileno())  # this task's own context: for the SNI callback
    try:
        await loop.connect_accepted_socket(
            lambda: Negotiated(state),
            sock,
            ssl=front,
            # One budget for the peek and the handshake.
            ssl_handshake_timeout=max(tls.handshake_timeout - (loop.time() - started), 0.01),
            ssl_shutdown_timeout=tls.shutdown_timeout,
        )
    except asyncio.CancelledError:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    except Exception as exc:  # every way a handshake fails is the client's doing
        with contextlib.suppress(OSError):
            sock.close()
        log.info("TLS handshake with %s on port %d failed: %s", who, port, describe(exc))


class Negotiated(asyncio.Protocol):
    """A TLS connection's first protocol: at the handshake's end it hands the
    transport to the protocol the negotiated ALPN names."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.chosen: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        secure = cast(asyncio.Transport, transport)
        ssl_object: ssl.SSLObject | None = secure.get_extra_info("ssl_object")
        if ssl_object is None:  # pragma: no cover - a TLS transport always has one
            secure.abort()
            return
        cipher = ssl_object.cipher()
        alpn = ssl_object.selected_alpn_protocol()
        client = client_certificates(ssl_object)
        info = TlsInfo(
            ssl_object.version() or "",
            cipher[0] if cipher else "",
            sni_name(ssl_object),
            alpn,
            client,
            # A certificate that reached here chained to the site's client CA.
            ssl_object.getpeercert(True) if client != "ignore" else None,
            server_certificate(ssl_object),
        )
        protocol = self.chosen = protocol_for(self.state, alpn, info, b"")
        secure.set_protocol(protocol)
        protocol.connection_made(secure)

    # Where a loop keeps calling the first protocol, what it says goes on.

    def data_received(self, data: bytes) -> None:
        if self.chosen is not None:
            self.chosen.data_received(data)

    def eof_received(self) -> bool | None:
        return self.chosen.eof_received() if self.chosen is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.chosen is not None:
            self.chosen.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.chosen is not None:
            self.chosen.pause_writing()

    def resume_writing(self) -> None:
        if self.chosen is not None:
            self.chosen.resume_writing()


def describe(exc: BaseException) -> str:
    """A handshake failure in a few words, for the log."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason == "HTTP_REQUEST":
            return "the client sent a plain HTTP request to the TLS port"
        if reason in ("UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER", "VERSION_TOO_LOW"):
            return f"the client offered no TLS version accepted here ({reason})"
        if reason == "NO_SHARED_CIPHER":
            return "the client offered no cipher accepted here"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"the client certificate is not trusted here ({exc.verify_message})"
        return reason or str(exc)
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return f"the handshake did not finish in time ({exc})"
    if isinstance(exc, ConnectionError):
        return f"the client closed the connection ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
