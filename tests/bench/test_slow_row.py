"""The proxy-slow row's verdict (bench/run.py): colonnade's front end against
issue #19's 200 MiB with 1,000 slow downloads, estimated when fewer connected."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from run import SLOW_CONNS, MemRow, render_slow_aim  # noqa: E402

MIB = 2**20


def test_the_verdict_is_colonnades_at_a_thousand_clients() -> None:
    held = MemRow("colonnade-proxy-static", "colonnade", idle_rss=74 * MIB, ok=SLOW_CONNS)
    held.loaded_rss = 190 * MIB
    nginx = MemRow("nginx-proxy-static", "nginx", idle_rss=17 * MIB, loaded_rss=31 * MIB, ok=9)
    (line, _) = render_slow_aim([held, nginx])
    assert line.endswith("1,000 slow downloads: 190.0 MiB — met.")


def test_fewer_clients_connected_are_counted_up_to_a_thousand() -> None:
    # 500 connected at 150 KiB each: 1,000 would hold 74 + 146.5 MiB, over the aim.
    part = MemRow("colonnade-proxy-static", "colonnade", idle_rss=74 * MIB, ok=500)
    part.loaded_rss = 74 * MIB + 500 * 150 * 1024
    (line, _) = render_slow_aim([part])
    assert line.endswith("220.5 MiB (estimated: 500 connected) — missed.")


def test_a_row_without_measures_has_no_verdict() -> None:
    failed = MemRow("colonnade-proxy-static", "colonnade", error="n/a (server died)")
    assert render_slow_aim([failed]) == []
