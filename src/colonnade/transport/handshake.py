"""A connection on a TLS port until its handshake is done.

How this works: the listening socket of a TLS port makes a :class:`TlsAcceptor`
per connection (as a plain port makes an ``HttpConnection``). It counts against
``limits.max_connections`` from the first byte on, stops the socket's reading,
and runs ``loop.start_tls`` with the port's front context (``tls.TlsPort``),
bounded by ``handshake_timeout``. Once the handshake is done, the negotiated ALPN
protocol picks the protocol that serves the connection (``protocols.protocol_for``)
and the TLS transport is handed to it, with any application bytes that arrived
together with the handshake's end.

A handshake that fails — a plain HTTP client on the TLS port, an unknown SNI name
refused, TLS 1.1, a timeout — ends here: the transport is dropped, one log line at
INFO says who and why (no traceback), and the connection slot is free again.
Handshakes are done by the worker that accepted the connection: the master never
reads a TLS port (see docs/tls.md, "Where the handshake happens").
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, cast

from colonnade.core.request import TlsInfo
from colonnade.transport.protocols import protocol_for
from colonnade.transport.tls import TlsPort, sni_name

if TYPE_CHECKING:
    from colonnade.transport.server import ServerState

log = logging.getLogger("colonnade.tls")

# Application bytes read while the handshake's end is handed over: at most this
# much before reading pauses (the protocol taking over reads the rest).
_EARLY_LIMIT = 64 * 1024


class TlsAcceptor(asyncio.Protocol):
    """The protocol of a TLS port's connection while it shakes hands."""

    def __init__(self, state: ServerState, port: int) -> None:
        self.state = state
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.secure: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.early = bytearray()
        self.eof = False
        self.lost = False

    # The TCP transport's protocol, until start_tls replaces it -----------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)
        state = self.state
        tls = state.tls.port(self.port)
        limits = state.limits
        if tls is None or len(state.connections) + len(state.handshakes) >= limits.max_connections:
            # Nothing can be said in plain text to a TLS client: just close.
            tcp.abort()
            return
        state.handshakes.add(self)
        # Not a byte is read before the TLS layer is in place (start_tls resumes).
        tcp.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._handshake(tcp, tls))

    # The TLS transport's protocol, between the handshake's end and the hand-over ----

    def data_received(self, data: bytes) -> None:
        self.early += data
        if len(self.early) > _EARLY_LIMIT and self.secure is not None:
            self.secure.pause_reading()

    def eof_received(self) -> bool | None:
        self.eof = True
        return True  # the protocol taking over decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    # ----------------------------------------------------------------------------------

    async def _handshake(self, tcp: asyncio.Transport, tls: TlsPort) -> None:
        loop = asyncio.get_running_loop()
        state = self.state
        try:
            secure = await loop.start_tls(
                tcp,
                self,
                tls.context,
                server_side=True,
                ssl_handshake_timeout=tls.handshake_timeout,
            )
        except asyncio.CancelledError:
            tcp.abort()
            raise
        except Exception as exc:  # every way a handshake fails is the client's
            tcp.abort()
            self._failed(exc)
            return
        finally:
            state.handshakes.discard(self)
        if secure is None or self.lost or secure.is_closing():
            return
        self.secure = secure
        ssl_object: ssl.SSLObject | None = secure.get_extra_info("ssl_object")
        if ssl_object is None:  # pragma: no cover - a TLS transport always has one
            secure.abort()
            return
        cipher = ssl_object.cipher()
        alpn = ssl_object.selected_alpn_protocol()
        info = TlsInfo(
            ssl_object.version() or "",
            cipher[0] if cipher else "",
            sni_name(ssl_object),
            alpn,
        )
        protocol = protocol_for(state, alpn, info, bytes(self.early))
        self.early.clear()
        secure.set_protocol(protocol)
        protocol.connection_made(secure)
        if self.eof and not protocol.eof_received():
            secure.close()
        else:
            secure.resume_reading()

    def _failed(self, exc: BaseException) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        who = peer[0] if isinstance(peer, tuple) else "?"
        log.info("TLS handshake with %s on port %d failed: %s", who, self.port, describe(exc))

    def abort(self) -> None:
        """Drop the connection (the server stops)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()


def describe(exc: BaseException) -> str:
    """A handshake failure in a few words, for the log."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason == "HTTP_REQUEST":
            return "the client sent a plain HTTP request to the TLS port"
        if reason in ("UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER"):
            return f"the client offered no TLS version accepted here ({reason})"
        if reason == "NO_SHARED_CIPHER":
            return "the client offered no cipher accepted here"
        return reason or str(exc)
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return f"the handshake did not finish in time ({exc})"
    if isinstance(exc, ConnectionError):
        return f"the client closed the connection ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
