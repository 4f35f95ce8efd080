"""Issue #24's verdicts in the benchmark report (bench/run.py): a ratio of two rows
of one workload (the pure-Python install against uvicorn), zero wrk timeouts in the
c1024 rows, and the memory aims (idle master, idle worker, per connection)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from run import WORKLOADS, MemRow, Row, render_aims, render_memory_aims  # noqa: E402

MIB = 2**20


def workload(name: str) -> object:
    return next(w for w in WORKLOADS if w.name == name)


def row(server: str, colonnade: bool, *rates: float, timeouts: int = 0) -> Row:
    runs = [{"rps": r, "socket_errors_timeout": float(timeouts)} for r in rates]
    return Row(server, server.split("-")[0], colonnade, runs=runs)


def test_asgi_hello_judges_granian_and_the_pure_install_against_uvicorn() -> None:
    rows = [
        row("colonnade-asgi", True, 70_000),
        row("colonnade-asgi-py", True, 38_000),
        row("uvicorn", False, 40_000),
        row("granian-asgi", False, 50_000),
    ]
    (line, _) = render_aims(workload("asgi-hello"), rows)  # type: ignore[arg-type]
    assert line == (
        "Aims (issue #24): ≥ 1.4x granian-asgi: 1.40 — met; "
        "≥ 1.0x colonnade-asgi-py/uvicorn: 0.95 — missed."
    )


def test_c1024_counts_the_timeouts_of_every_run() -> None:
    rows = [row("colonnade-static", True, 50_000, 52_000, timeouts=2), row("nginx", False, 40_000)]
    (line, _) = render_aims(workload("c1024"), rows)  # type: ignore[arg-type]
    assert "≥ 0.8x nginx: 1.27 — met" in line
    assert "no wrk timeout in colonnade-static's 2 runs: 4 — missed" in line
    rows[0] = row("colonnade-static", True, 50_000, 52_000)
    (line, _) = render_aims(workload("c1024"), rows)  # type: ignore[arg-type]
    assert "no wrk timeout in colonnade-static's 2 runs: 0 — met" in line


def test_memory_aims_split_the_tree_into_master_and_worker() -> None:
    served = MemRow(
        "colonnade-static", "colonnade", idle_rss=45 * MIB, nprocs=2, idle_largest=28 * MIB
    )
    served.loaded_rss, served.ok = 45 * MIB + 10_000 * 4 * 1024, 10_000
    nginx = MemRow("nginx", "nginx", idle_rss=5 * MIB, nprocs=2, idle_largest=3 * MIB)
    (line, _) = render_memory_aims([served, nginx])
    assert line == (
        "Aims (issue #24), colonnade-static: idle worker < 30 MiB: 28.0 MiB — met; "
        "idle master < 20 MiB: 17.0 MiB — met; < 5 KiB per idle connection: 4.0 KiB — met."
    )
    served.idle_largest = 31 * MIB
    (line, _) = render_memory_aims([served])
    assert "idle worker < 30 MiB: 31.0 MiB — missed" in line
