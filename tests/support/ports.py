"""A TCP port on the loopback address for a server a test starts (a child process,
a server in a thread) to listen on, held for it until it binds.

A port found free and given back at once (bind to port 0, read it, close) could be
taken by any process before the server binds it: by another test run's pick, by
a server bound to port 0, by the ephemeral port of an outgoing connection (the
machine runs several test runs at once). :func:`free_port` gives its port back
in TIME_WAIT instead (the side that accepted a connection closes it first, as
``ephemeral-port-reserve`` does): for the next 60 seconds the kernel hands that
port to no bind to port 0 and to no outgoing connection (a port a bind made is
skipped by both), and refuses a bind to it without ``SO_REUSEADDR``; a server
that binds it with ``SO_REUSEADDR`` (colonnade, asyncio and uvicorn, nginx,
redis, krb5kdc all do) takes it. A test socket that binds the port itself sets
``SO_REUSEADDR`` too.
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A port of :data:`HOST` no other process is given for 60 s, for a server
    that binds it with ``SO_REUSEADDR`` (see the module docstring)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1)
        address = listener.getsockname()
        with socket.create_connection(address):
            accepted, _ = listener.accept()
            # Closed first: the connection's TIME_WAIT is on the port's side, and
            # keeps the port's bind record (made by a bind, so skipped by others).
            accepted.close()
        port: int = address[1]
        return port


def listening(port: int, backlog: int = 16) -> socket.socket:
    """A listening socket of the test's own at ``port`` (one of :func:`free_port`'s)."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
