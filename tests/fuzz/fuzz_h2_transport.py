"""HTTP/2 as the server runs it: the transport's protocol (transport/h2connection.py,
with its fast path for plain requests, ``_receive_fast``) over an in-memory
transport, serving a static site through the real engine (``served.py``).

The input follows the connection preface and is fed in two pieces cut at
``data[0]``. Properties: nothing raises out of the protocol's callbacks, no
request ends in an exception (nothing logged at ERROR, nothing reaches the
loop's exception handler), and after the connection is lost it holds no stream
and the server no connection.
"""

from __future__ import annotations

from colonnade.http.h2 import PREFACE
from colonnade.transport.h2connection import H2Connection
from tests.fuzz.served import STATE, serve


def one_input(data: bytes) -> None:
    """See the module docstring."""
    if not data:
        return
    cut = 1 + data[0]
    serve(lambda: H2Connection(STATE, PREFACE), [data[1:cut], data[cut:]])
