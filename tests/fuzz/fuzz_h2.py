"""HTTP/2 frames from a client: the transport's ``h2`` connection (configured as
it serves), with Colonnade's layer over it (http/h2.py): the frame watch ahead of
``h2``, the HPACK decoder, and the request and trailer field checks.

The input follows the connection preface. Properties: only ``FrameError`` and
``h2``'s ``ProtocolError`` (a ``DenialOfServiceError`` is one) come out, as
``transport/h2connection.py`` expects; a request that passes the field checks
has a method, a path (but CONNECT), and header names in lower case.
(``fuzz_h2_transport`` drives the transport itself, its fast path too.)
"""

from __future__ import annotations

import h2.connection
import h2.events
import h2.exceptions

from colonnade.http.h2 import (
    PREFACE,
    FrameError,
    FrameWatch,
    check_trailers,
    request_fields,
)
from colonnade.transport.h2connection import H2Connection
from tests.fuzz.served import LOOP, STATE


def _connection() -> tuple[h2.connection.H2Connection, FrameWatch]:
    # The transport's own h2 connection and frame watch, as it configures them
    # (made on a loop, as the transport is; never connected to a socket here).
    async def made() -> H2Connection:
        return H2Connection(STATE)

    protocol = LOOP.run_until_complete(made())
    protocol.h2.initiate_connection()
    protocol.h2.data_to_send()
    return protocol.h2, protocol.watch


def one_input(data: bytes) -> None:
    """``data`` after the preface, fed in two pieces cut at ``data[0]``."""
    if not data:
        return
    conn, watch = _connection()
    cut = data[0]
    try:
        conn.receive_data(PREFACE)
        for piece in (data[1 : 1 + cut], data[1 + cut :]):
            watch.feed(piece)
            for event in conn.receive_data(piece):
                if isinstance(event, h2.events.RequestReceived):
                    fields = request_fields(list(event.headers))
                    assert fields.method and (fields.path or fields.method == b"CONNECT")
                    assert all(name == name.lower() for name, _ in fields.headers)
                elif isinstance(event, h2.events.TrailersReceived):
                    check_trailers(list(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            conn.data_to_send()
    except (FrameError, h2.exceptions.ProtocolError):
        return
