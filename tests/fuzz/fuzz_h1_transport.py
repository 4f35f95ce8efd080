"""HTTP/1.1 as the server runs it: the transport's protocol (transport/connection.py:
keep-alive, pipelining, request bodies, ``Expect``, errors, the hand-over to HTTP/2)
over an in-memory transport, serving a static site through the real engine
(``served.py``).

The input is a client's bytes, fed in two pieces cut at ``data[0]``. Properties:
nothing raises out of the protocol's callbacks, no request ends in an exception
(nothing logged at ERROR, nothing reaches the loop's exception handler), every
response starts with a status line, and after the connection is lost the server
no longer counts it.
"""

from __future__ import annotations

from colonnade.transport.connection import HttpConnection
from tests.fuzz.harness import expand
from tests.fuzz.served import STATE, serve


def one_input(data: bytes) -> None:
    """See the module docstring."""
    if not data:
        return
    cut = 1 + data[0]
    head, rest = expand(data[1:cut]), expand(data[cut:])
    wire = serve(lambda: HttpConnection(STATE), [head, rest])
    if wire.sent and not wire.sent.startswith(b"\x00\x00"):  # HTTP/2 frames after a preface
        assert wire.sent.startswith(b"HTTP/1.1 "), bytes(wire.sent[:80])
