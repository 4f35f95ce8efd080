"""WriteBatch over real sockets: a bug found on review (session 25, review12),
failing before its fix."""

from __future__ import annotations

import socket

from tests.support.wait import PATIENCE

from .conftest import LiveServer


def _read_to_close(sock: socket.socket) -> bytes:
    sock.settimeout(PATIENCE)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            return data
        data += chunk
    return data


def test_a_request_then_a_half_close_is_answered_while_another_connection_is_open(
    live: LiveServer,
) -> None:
    # `printf 'GET ...' | nc -N host port`: the request, then shutdown(SHUT_WR).
    # Another connection open (the worker is not serving just this one), so the
    # keep-alive answer is batched. Measured on HEAD (cfac947): 1996 of 2000 such
    # requests got no answer at all, the connection just closed.
    with socket.create_connection(("127.0.0.1", live.port)):  # the other connection
        empty = 0
        for i in range(20):
            with socket.create_connection(("127.0.0.1", live.port)) as s:
                s.sendall(b"GET /hello.txt?id=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
                s.shutdown(socket.SHUT_WR)
                answer = _read_to_close(s)
            if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(b"Hello, world!"):
                empty += 1
        assert empty == 0, f"{empty} of 20 requests got no answer"
