"""The request monitor over real processes: ``colonnade requests`` asks the master,
the master asks every worker (IIS: ``appcmd list requests``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from colonnade.management import operations
from tests.e2e.wire import Conn
from tests.support.wait import PATIENCE

from .conftest import Master, get, wait_for

pytestmark = pytest.mark.e2e

StartMaster = Callable[..., Master]


def colonnade(*args: str) -> str:
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "colonnade"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def test_a_sleeping_request_shows_its_stage_module_and_growing_elapsed_time(
    start_master: StartMaster, tmp_path: Path
) -> None:
    master = start_master({"default": {"start": "always"}}, workers=2)
    wait_for(lambda: len(master.pids("default")) == 2, PATIENCE, "two workers")
    gate = tmp_path / "go"
    url = f"/slow/report?until={quote(str(gate))}"
    with Conn(master.port) as conn:
        conn.send(get(url))

        def executing(elapsed: int = 0) -> list[dict[str, Any]]:
            found = operations.requests(master.control, elapsed=elapsed)
            # Both workers answer: the one running the request and the idle one.
            assert (found["workers"], found["unanswered"]) == (2, 0)
            rows: list[dict[str, Any]] = found["requests"]
            return rows

        rows = wait_for(executing, PATIENCE, "the request listed as executing")
        assert len(rows) == 1
        row = rows[0]
        assert row["stage"] == "EXECUTE_REQUEST_HANDLER"
        assert row["module"] == "acme.slow"
        assert (row["verb"], row["url"], row["site"], row["app"], row["pool"]) == (
            "GET",
            url,
            "main",
            "/",
            "default",
        )
        assert row["pid"] in master.pids("default")
        assert row["client"].startswith("127.0.0.1:")
        assert len(row["id"]) == 12
        # The elapsed time grows while it sleeps (the same request, later).
        first = row["elapsed"]
        later = wait_for(
            lambda: [r for r in executing() if r["elapsed"] >= first + 200],
            PATIENCE,
            "the elapsed time growing",
        )
        assert later[0]["id"] == row["id"]
        # The command line: the table, JSON, and --elapsed leaving it out.
        table = colonnade("requests", "--control", master.control)
        assert row["id"] in table and "acme.slow" in table and "EXECUTE_REQUEST_HANDLER" in table
        assert url in table and "1 request(s) executing in 2 worker(s)" in table
        listed = json.loads(colonnade("requests", "--control", master.control, "--json"))
        assert [r["id"] for r in listed] == [row["id"]]
        assert executing(elapsed=10**7) == []
        none = colonnade("requests", "--control", master.control, "--elapsed", "10000000")
        assert none.strip() == "0 request(s) executing in 2 worker(s)"
        assert (
            json.loads(colonnade("requests", "--control", master.control, "--pool", "x", "--json"))
            == []
        )
        gate.touch()
        assert conn.response().status == 200
    wait_for(lambda: executing() == [], PATIENCE, "the finished request gone from the list")
