"""Short passes of the chaos suite and the soak (#23 items 4 and 5): seconds, not
minutes; the full runs are ``make chaos`` and ``make soak``."""

from __future__ import annotations

import argparse
import asyncio

import chaos
import pytest
import soak

pytestmark = pytest.mark.e2e


def test_sigkill_of_a_worker_fails_only_requests_in_flight_and_leaks_nothing() -> None:
    result = chaos.Result("sigkill", "SIGKILL of a worker")
    asyncio.run(chaos.sigkill(result))
    summary = result.summary
    assert summary["sent"] > 300
    assert summary["beyond_in_flight"] == 0, result.failures
    assert summary["unfinished"] == 0
    assert summary["answered"] + summary["failed"] == summary["sent"]
    assert result.before is not None and result.before == result.after, (
        result.before,
        result.after,
    )
    assert "replacement ready" in result.notes[0]
    assert result.passed


def test_client_aborts_leave_nothing_behind() -> None:
    result = chaos.Result("client-aborts", "clients aborting")
    asyncio.run(chaos.client_aborts(result))
    assert result.summary["failed"] == 0, result.failures
    assert result.before == result.after, (result.before, result.after)
    assert result.passed


def test_a_twenty_second_soak_grows_neither_rss_nor_fds() -> None:
    args = argparse.Namespace(minutes=20 / 60, warmup=8 / 60, sample=4.0, rate=120.0, connections=6)
    passed, text = asyncio.run(soak.soak(args))
    assert passed, text
    assert "0 failed" in text
