"""A stop's settle after its deadline (``ServerState.settle``): what it says when it
gives up waiting names what it waited for: requests cut short still ending, or
connections aborted that had not ended (with no request among them, it does not
claim that any was cut short)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from colonnade.testing import build_engine
from colonnade.transport.server import ServerState


class Unending:
    """A connection whose abort does not end it (its connection_lost never comes)."""

    def abort(self) -> None:
        pass


def settled(caplog: pytest.LogCaptureFixture, task: bool) -> tuple[bool, list[str]]:
    engine = build_engine()

    async def run() -> bool:
        state = ServerState(engine)
        if task:
            # A request the abort cut short, still running its always-run stages.
            work = asyncio.get_running_loop().create_future()
            ending = asyncio.ensure_future(work)
            state.ending.add(ending)
        else:
            state.connections.add(Unending())  # type: ignore[arg-type]
        state.abort_all()
        try:
            return await state.settle(0.05)
        finally:
            if task:
                ending.cancel()

    with caplog.at_level(logging.WARNING, logger="colonnade"):
        ok = asyncio.run(run())
    return ok, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_connection_that_did_not_end_is_not_called_a_request_cut_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ok, said = settled(caplog, task=False)
    assert not ok
    assert said == [
        "1 connection(s) aborted by the deadline still open 0.1s later:"
        " their requests, if any, left unlogged"
    ]


def test_a_request_still_ending_is_named(caplog: pytest.LogCaptureFixture) -> None:
    ok, said = settled(caplog, task=True)
    assert not ok
    assert said == ["1 request(s) cut short by the deadline still ending 0.1s later: left unlogged"]
