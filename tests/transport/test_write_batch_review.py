"""Review of WriteBatch (HttpConnection.cork): paths that end or hand over a
connection while it holds an answer for the loop's next turn. Each test here
demonstrates a bug found on review (session 25, review12), failing before its fix."""

from __future__ import annotations

import asyncio
import os
import socket

from colonnade.pools.routing import PoolRouter
from colonnade.transport.connection import HttpConnection
from tests.fuzz.served import LOOP, STATE, Wire
from tests.transport.test_write_batch import _connect, _get, _turns


class _AsyncioWire(Wire):
    """As asyncio's socket transports do: a falsy ``eof_received`` closes the
    transport (what it holds is still sent; anything written after is dropped)."""

    def eof(self) -> None:
        assert isinstance(self.protocol, HttpConnection)
        if not self.protocol.eof_received():
            self.close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:  # a closing transport takes nothing more
            super().write(data)


async def _until_corked(conn: HttpConnection) -> None:
    for _ in range(30):
        if conn._corked is not None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the answer was never held")


def test_a_half_close_after_a_held_answer_still_gets_the_answer() -> None:
    # A client sends a keep-alive request, then closes its side (shutdown(SHUT_WR),
    # `nc -N`) a moment later: its FIN is read after the answer is made (held for
    # the loop's next turn) and before that turn. The client must still get it.
    async def go() -> bytes:
        other = _connect(Wire())  # a second connection: answers are batched
        wire = _AsyncioWire()
        conn = _connect(wire)
        conn.data_received(_get())
        await _until_corked(conn)
        wire.eof()  # the FIN, read in the same turn as the answer was made
        await _turns(5)  # the batch's turn
        conn.connection_lost(None)
        other.connection_lost(None)
        await _turns(3)
        return bytes(wire.sent)

    sent = LOOP.run_until_complete(go())
    assert sent.startswith(b"HTTP/1.1 200 ") and sent.endswith(b"\r\n\r\na")


class _SocketWire(Wire):
    """A transport over one end of a real socket pair (detach dups its descriptor)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "socket":
            return self.sock
        return super().get_extra_info(name, default)


def test_a_drain_hands_over_a_connection_whose_answer_was_held() -> None:
    handed: list[int] = []

    def send(pool: str, port: int, head: bool, data: bytes, fd: int) -> None:
        handed.append(fd)
        os.close(fd)

    ours, theirs = socket.socketpair()

    async def go() -> tuple[bool, bool]:
        router = PoolRouter("p", None, send)
        other = _connect(Wire())  # a second connection: answers are batched
        wire = _SocketWire(ours)
        conn = _connect(wire)
        conn.data_received(_get())
        await _until_corked(conn)
        # The worker's drain begins (pools/worker.py), in the turn the answer
        # was made: as it does, the router drains and idle connections go.
        router.draining = True
        saved, STATE.router = STATE.router, router
        try:
            router.hand_over_idle([conn])
            await _turns(10)  # the batch writes the answer: the connection is idle
        finally:
            STATE.router = saved
        answered = bytes(wire.sent).endswith(b"\r\n\r\na")
        gone = wire.closed
        if not gone:
            conn.connection_lost(None)
        other.connection_lost(None)
        await _turns(3)
        return answered, gone

    try:
        answered, gone = LOOP.run_until_complete(go())
    finally:
        ours.close()
        theirs.close()
    assert answered
    assert gone and len(handed) == 1  # handed over once its answer was written
