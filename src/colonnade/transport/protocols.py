"""Which protocol serves a connection: the one seam between TLS (ALPN) and HTTP versions.

A TLS connection offers the client :func:`alpn_protocols` during its handshake;
once the handshake is done, :func:`protocol_for` makes the ``asyncio.Protocol``
that serves what was negotiated, and the TLS transport is given to it. A plain
connection gets HTTP/1.1 directly (see ``server.HttpServer``).

HTTP/2 is offered first where ``[server.http2] enabled`` (the default), and
:func:`protocol_for` serves a connection that chose it with
:class:`~colonnade.transport.h2connection.H2Connection`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from colonnade.core.request import TlsInfo
from colonnade.transport.connection import HttpConnection

if TYPE_CHECKING:
    from colonnade.transport.server import ServerState

#: The ALPN names of HTTP/1.1 (RFC 7301) and HTTP/2 over TLS (RFC 9113 3.2).
HTTP11 = "http/1.1"
H2 = "h2"


def alpn_protocols(state: ServerState) -> list[str]:
    """The ALPN protocols a TLS port offers, most preferred first."""
    return [H2, HTTP11] if state.http2.enabled else [HTTP11]


def protocol_for(
    state: ServerState, alpn: str | None, tls: TlsInfo, initial: bytes
) -> asyncio.Protocol:
    """The protocol for a connection whose handshake chose ``alpn`` (None: the client
    offered none, which means HTTP/1.1). ``initial``: application bytes that arrived
    with the end of the handshake, to be read first."""
    if alpn == H2:
        return h2_connection(state, initial, tls)
    return HttpConnection(state, initial, tls)


def h2_connection(state: ServerState, initial: bytes, tls: TlsInfo | None) -> asyncio.Protocol:
    """An HTTP/2 connection. Imported here, where HTTP/2 is spoken: not from the
    compiled connection module, whose library would then load HTTP/2's compiled
    library with it (mypyc links a library to each one it imports from, at load)
    into every worker."""
    from colonnade.transport.h2connection import H2Connection

    return H2Connection(state, initial, tls=tls)
