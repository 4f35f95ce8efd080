"""Which protocol serves a connection: the one seam between TLS (ALPN) and HTTP versions.

A TLS connection offers the client :func:`alpn_protocols` during its handshake;
once the handshake is done, :func:`protocol_for` makes the ``asyncio.Protocol``
that serves what was negotiated, and the TLS transport is given to it. A plain
connection gets HTTP/1.1 directly (see ``server.HttpServer``).

HTTP/2 joins here: when an h2 protocol class exists and is enabled, ``"h2"`` goes
first in :func:`alpn_protocols` and :func:`protocol_for` returns it for ``"h2"``.
Until then only ``http/1.1`` is offered, so no client can negotiate what the
server cannot speak.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from colonnade.core.request import TlsInfo
from colonnade.transport.connection import HttpConnection

if TYPE_CHECKING:
    from colonnade.transport.server import ServerState

#: The ALPN name of HTTP/1.1 (RFC 7301).
HTTP11 = "http/1.1"


def alpn_protocols(state: ServerState) -> list[str]:
    """The ALPN protocols a TLS port offers, most preferred first."""
    return [HTTP11]


def protocol_for(
    state: ServerState, alpn: str | None, tls: TlsInfo, initial: bytes
) -> asyncio.Protocol:
    """The protocol for a connection whose handshake chose ``alpn`` (None: the client
    offered none, which means HTTP/1.1). ``initial``: application bytes that arrived
    with the end of the handshake, to be read first."""
    return HttpConnection(state, initial, tls)
