"""Whole keep-alive answers are written at the loop's next turn, the answers of one
turn together (transport/connection.py: WriteBatch, HttpConnection.cork), and
nothing else written or done to a connection overtakes an answer it holds."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from colonnade.transport.connection import HttpConnection
from tests.fuzz.served import LOOP, STATE, Wire

_QUERY = itertools.count()


def _get(extra: bytes = b"") -> bytes:
    # A query of its own each time: never a response cache's hit, which is
    # answered (and written) as its request arrives, without the pipeline.
    return b"GET /docs/a.txt?%d HTTP/1.1\r\nHost: s\r\n%s\r\n" % (next(_QUERY), extra)


class _Logged(Wire):
    """A transport that notes, per write, which connection and which task wrote."""

    def __init__(self, name: str, log: list[tuple[str, object]]) -> None:
        super().__init__()
        self.name = name
        self.log = log

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.log.append((self.name, asyncio.current_task()))
        super().write(data)


def _connect(wire: Wire) -> HttpConnection:
    conn = HttpConnection(STATE)
    wire.protocol = conn
    conn.connection_made(wire)
    return conn


async def _turns(n: int = 30) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_answers_of_one_turn_are_written_together_after_it() -> None:
    log: list[tuple[str, object]] = []

    async def go() -> tuple[bytes, bytes]:
        a, b = _Logged("a", log), _Logged("b", log)
        conn_a, conn_b = _connect(a), _connect(b)
        conn_a.data_received(_get())
        conn_b.data_received(_get())
        await _turns()
        # (Connections made without a listening socket's shared state, as handed
        # over ones are: one batch all the same, the loop's.)
        assert conn_a._batch is conn_b._batch
        sent = bytes(a.sent), bytes(b.sent)
        conn_a.connection_lost(None)
        conn_b.connection_lost(None)
        await _turns(5)
        return sent

    sent_a, sent_b = LOOP.run_until_complete(go())
    assert sent_a.startswith(b"HTTP/1.1 200 ") and sent_a.endswith(b"\r\n\r\na")
    assert sent_b.startswith(b"HTTP/1.1 200 ") and sent_b.endswith(b"\r\n\r\na")
    # Not by the connections' tasks as each answer was made: by the batch, after
    # both, one right after the other.
    assert [name for name, _ in log] == ["a", "b"]
    assert all(task is None for _, task in log)


def test_what_is_written_next_goes_after_the_held_answer() -> None:
    async def go() -> Wire:
        wire = Wire()
        conn = _connect(wire)
        conn.cork(b"one ")
        conn.write(b"two ")
        conn.write_two(b"three ", b"four")
        await _turns(3)  # the batch's turn comes: nothing left to write
        conn.connection_lost(None)
        return wire

    assert bytes(LOOP.run_until_complete(go()).sent) == b"one two three four"


def test_a_close_writes_the_held_answer_first() -> None:
    async def go() -> tuple[bytes, bool, bool]:
        wire = Wire()
        conn = _connect(wire)
        conn.cork(b"answer")
        idle = conn.idle
        conn.close()
        await _turns(3)
        conn.connection_lost(None)
        return bytes(wire.sent), wire.closed, idle

    sent, closed, idle = LOOP.run_until_complete(go())
    assert sent == b"answer" and closed
    assert not idle  # not handed over while an answer is held (pools/routing)


def _answered_alone(request: bytes, others: int) -> tuple[Wire, list[tuple[str, object]]]:
    # ``request`` answered on a connection while ``others`` more are open.
    log: list[tuple[str, object]] = []

    async def go() -> Wire:
        idle = [_connect(Wire()) for _ in range(others)]
        wire = _Logged("a", log)
        conn = _connect(wire)
        conn.data_received(request)
        await _turns()
        for one in [conn, *idle]:
            one.connection_lost(None)
        await _turns(5)
        return wire

    return LOOP.run_until_complete(go()), log


def test_an_answer_before_a_close_is_written_at_once() -> None:
    wire, log = _answered_alone(_get(b"Connection: close\r\n"), others=1)
    assert bytes(wire.sent).endswith(b"\r\n\r\na") and wire.closed
    assert log and all(task is not None for _, task in log)  # by the task, not held


def test_the_only_connection_writes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # As a server has it (COLONNADE_TEST_FORCE_BATCH=1 sets 1: see tests/conftest.py).
    monkeypatch.setattr(STATE.live, "batch_from", 2)
    # Nothing to batch it with: no callback and turn of the loop for it.
    wire, log = _answered_alone(_get(), others=0)
    assert bytes(wire.sent).endswith(b"\r\n\r\na")
    assert log and all(task is not None for _, task in log)
    # With another connection open, the same answer waits for the batch.
    wire, log = _answered_alone(_get(), others=1)
    assert bytes(wire.sent).endswith(b"\r\n\r\na")
    assert log and all(task is None for _, task in log)


class _Refusing(Wire):
    """A transport whose write fails (a transport in a state uvloop refuses)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        raise RuntimeError("refused")


def test_a_write_that_fails_ends_its_connection_not_the_others_answers() -> None:
    async def go() -> tuple[Wire, Wire, HttpConnection, HttpConnection]:
        bad, good = _Refusing(), Wire()
        conn_bad, conn_good = _connect(bad), _connect(good)
        conn_bad.cork(b"lost")
        conn_good.cork(b"kept")
        await _turns(3)
        # Still in the batch's hands afterwards: a later answer is written again.
        conn_good.cork(b" and again")
        await _turns(3)
        return bad, good, conn_bad, conn_good

    bad, good, conn_bad, conn_good = LOOP.run_until_complete(go())
    assert bytes(good.sent) == b"kept and again"
    assert conn_bad.closing and bad.is_closing()
    assert conn_bad._corked is None
    conn_good.connection_lost(None)
    conn_bad.connection_lost(None)
