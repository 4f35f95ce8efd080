"""Purge and counters through a real master: ``colonnade cache purge|stats``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from colonnade.management import operations
from tests.pools.conftest import MODULES, Master, server_toml
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

CACHE = """
[output_cache]
policy = "for_time_period"
duration = 600
"""


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    port = free_port()
    config = server_toml(
        port, {"default": {"start": "always"}}, modules=["cache.output", *MODULES], extra=CACHE
    )
    running = Master(tmp_path, config, workers=1, port=port)
    try:
        yield running
    finally:
        running.stop()


def colonnade(*args: str) -> str:
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "colonnade"), *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=True,
    ).stdout


def cached(master: Master, path: str) -> bool:
    return "age" in master.get(path).headers


def test_purge_by_url_and_prefix_reaches_the_workers(master: Master) -> None:
    for path in ("/news/a", "/news/b", "/other"):
        assert not cached(master, path)
        assert cached(master, path)
    out = colonnade("cache", "purge", "--control", master.control, "/news/a")
    assert out.strip() == "purged 1 cached response(s) of /news/a in 1 worker(s)"
    assert not cached(master, "/news/a")
    assert cached(master, "/news/b") and cached(master, "/other")
    message = operations.purge_cache(master.control, "/news/", prefix=True)
    assert message.startswith("purged 2 cached response(s) of paths under /news/")
    assert not cached(master, "/news/b") and cached(master, "/other")


def test_counters_reach_the_master(master: Master) -> None:
    for _ in range(3):
        master.get("/counted")

    def reported() -> bool:
        totals = operations.cache_stats(master.status())
        counters = totals.get("output_cache", {})
        return counters.get("hits") == 2 and counters.get("misses") == 1

    wait_for(reported, PATIENCE, "the worker's cache counters in `colonnade pools`")
    out = colonnade("cache", "stats", "--control", master.control)
    assert out.startswith("output_cache: hit ratio 66.7%; hits 2, misses 1")
    assert "entries 1" in out


def test_a_purge_needs_a_path(master: Master) -> None:
    with pytest.raises(operations.ControlError, match="URL path starting with /"):
        operations.purge_cache(master.control, "news")
