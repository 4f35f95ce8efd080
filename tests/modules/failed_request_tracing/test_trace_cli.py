"""``colonnade trace list|show``: through a real master's control socket (a worker
wrote the trace, the master reads the folder), and from the folder itself when no
master runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from colonnade.management import operations
from colonnade.management.cli import main
from tests.pools.conftest import MODULES, Master, server_toml
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for


def tracing_toml(folder: Path) -> str:
    return (
        "[failed_request_tracing]\n"
        f"directory = {json.dumps(str(folder))}\n"
        'rules = [{ path = "/traced/*", status_codes = "200" }]\n'
    )


def colonnade(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``colonnade ARGS`` (in this process): exit status, stdout, stderr."""
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    port = free_port()
    config = server_toml(
        port,
        {"default": {"start": "always"}},
        modules=[*MODULES, "tracing.failed_requests"],
        extra=tracing_toml(tmp_path / "traces"),
    )
    running = Master(tmp_path, config, workers=1, port=port)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.e2e
def test_the_master_lists_and_shows_what_a_worker_kept(
    master: Master, capsys: pytest.CaptureFixture[str]
) -> None:
    assert master.get("/traced/a").status == 200
    assert master.get("/untraced").status == 200
    listing = wait_for(
        lambda: (found := operations.traces(master.control))["traces"] and found,
        PATIENCE,
        "the worker's trace, listed by the master",
    )
    [summary] = listing["traces"]
    assert summary["site"] == "main" and summary["url"] == "/traced/a"
    assert summary["status"] == 200

    control = ("--control", master.control)
    status, table, _ = colonnade(capsys, "trace", "list", *control)
    assert status == 0 and summary["id"] in table and "/traced/a" in table
    _, listed, _ = colonnade(capsys, "trace", "list", "--json", *control)
    assert json.loads(listed)["traces"] == [summary]
    _, other, _ = colonnade(capsys, "trace", "list", "--site", "other", *control)
    assert summary["id"] not in other
    _, shown, _ = colonnade(capsys, "trace", "show", summary["id"], *control)
    assert "GET /traced/a -> 200.0" in shown
    assert "EXECUTE_REQUEST_HANDLER" in shown and "acme.pid" in shown
    _, raw, _ = colonnade(capsys, "trace", "show", summary["id"], "--json", *control)
    data = json.loads(raw)
    assert data["id"] == summary["id"] and data["pid"] != master.proc.pid  # a worker's
    status, _, err = colonnade(capsys, "trace", "show", "0123456789ab", *control)
    assert status == 1 and "no trace '0123456789ab'" in err

    # The admin API serves the same listing and trace.
    from tests.pools.test_admin_api import UnixConnection, call

    conn = UnixConnection(master.control)
    try:
        code, body, _ = call(conn, "GET", "/api/traces?site=main")
        assert code == 200 and body["traces"] == [summary]
        code, body, _ = call(conn, "GET", f"/api/traces/{summary['id']}")
        assert code == 200 and body["trace"]["id"] == summary["id"]
    finally:
        conn.close()


def test_without_a_master_the_folder_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "traces" / "main"
    folder.mkdir(parents=True)
    trace = {
        "id": "a1b2c3d4e5f6",
        "site": "main",
        "time": "2026-12-05T12:00:00.000001Z",
        "reason": "status 500.0 matches '500'",
        "request": {"method": "GET", "url": "/x", "status": 500, "time_taken_ms": 1.5},
        "hooks": [
            {
                "stage": "BEGIN_REQUEST",
                "module": "m",
                "entry_us": 1,
                "exit_us": 3,
                "outcome": "continue",
            },
        ],
        "events": [{"at_us": 2, "level": "info", "kind": "cache", "result": "miss"}],
    }
    (folder / "fr20261205T120000000001-a1b2c3d4e5f6.json").write_text(json.dumps(trace))
    (folder / "unrelated.json").write_text("{}")
    config = tmp_path / "colonnade.toml"
    config.write_text(
        '[server]\nmodules = ["tracing.failed_requests"]\n'
        + tracing_toml(tmp_path / "traces")
        + '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:1"]\n'
    )
    control = ["-c", str(config), "--control", str(tmp_path / "none.sock")]
    assert main(["trace", "list", *control]) == 0
    out = capsys.readouterr().out
    assert "a1b2c3d4e5f6" in out and "GET /x" in out and "500" in out
    assert main(["trace", "show", "a1b2c3d4e5f6", *control]) == 0
    out = capsys.readouterr().out
    assert "kept because: status 500.0 matches '500'" in out
    assert "BEGIN_REQUEST" in out and "* cache (info) result=miss" in out
    assert main(["trace", "show", "ffffffffffff", *control]) == 1
    # Without the server file, nothing says where the folder is: the master must answer.
    assert main(["trace", "list", "--control", str(tmp_path / "none.sock")]) == 1
