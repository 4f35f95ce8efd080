"""``Exchange.send_all`` holds the usual keep-alive answer for the loop's next turn
(``HttpConnection.cork`` and ``WriteBatch.add``); the pure install does both inline.
The connection, its batch and the wire must come out as the calls leave them: the
answer held, the connection in the batch once, one flush scheduled, and the answer
(a pipelined second one behind it too) written at the next turn, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from colonnade.transport import connection
from colonnade.transport.connection import HttpConnection
from tests.builds import take_path
from tests.fuzz.served import LOOP, STATE, Wire

_HEAD = b"GET / HTTP/1.1\r\nHost: s\r\n\r\n"


def _answer(compiled: bool, monkeypatch: pytest.MonkeyPatch, answers: int) -> dict[str, Any]:
    take_path(connection, compiled, monkeypatch)
    monkeypatch.setattr(STATE.live, "batch_from", 0)  # hold every keep-alive answer

    async def go() -> dict[str, Any]:
        wire = Wire()
        conn = HttpConnection(STATE)
        wire.protocol = conn
        conn.connection_made(wire)
        conn.answering = True  # no task: the answers are this test's to make
        conn.data_received(_HEAD * answers)
        exchanges = list(conn.queue)
        conn.queue[:] = exchanges[-1:]  # each answered as the only one queued
        batch = conn._batch
        flushes = len(LOOP._ready)  # type: ignore[attr-defined]
        for i, exchange in enumerate(exchanges):
            exchange.send_all(200, None, [(b"content-type", b"text/plain")], b"hi%d" % i)
        seen = {
            "held": conn._corked,
            "in batch": batch.conns.count(conn),
            "scheduled": batch.scheduled,
            "new callbacks": len(LOOP._ready) - flushes,  # type: ignore[attr-defined]
            "sent before": bytes(wire.sent),
            "complete": [e.complete for e in exchanges],
        }
        await asyncio.sleep(0)
        seen["sent after"] = bytes(wire.sent)
        seen["all held sent"] = seen["sent after"] == seen["held"]
        seen["held after"] = conn._corked
        conn.connection_lost(None)
        for _ in range(5):
            await asyncio.sleep(0)
        return seen

    return LOOP.run_until_complete(go())


@pytest.mark.parametrize("answers", [1, 2])
def test_the_pure_send_all_holds_an_answer_as_cork_does(
    monkeypatch: pytest.MonkeyPatch, answers: int
) -> None:
    pure = _answer(False, monkeypatch, answers)
    monkeypatch.undo()
    general = _answer(True, monkeypatch, answers)
    assert pure["held"] is not None and pure["held"].count(b"HTTP/1.1 200") == answers
    assert pure["in batch"] == 1 and pure["scheduled"] and pure["new callbacks"] == 1
    assert pure["sent before"] == b"" and pure["held after"] is None
    assert pure["all held sent"] and pure["sent after"].endswith(b"hi%d" % (answers - 1))
    for seen in (pure, general):  # the Date line may differ between the two
        seen["held"] = seen["held"].count(b"\r\n")
        seen["sent after"] = len(seen["sent after"])
    assert pure == general
