"""Probes against real Colonnade nodes: a node that stops is found down, its return
is picked up by the probe, and requests never go to it in between."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from colonnade.providers.farms import farm_for
from tests.e2e.conftest import LiveServer
from tests.providers.farms.conftest import settings
from tests.support.wait import PATIENCE, wait_for_async

pytestmark = pytest.mark.e2e


def node_config() -> dict[str, Any]:
    return {
        "server": {"modules": ["handler.static"]},
        "sites": [{"name": "node", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [{"path": "*", "handler": "handler.static"}],
    }


def test_a_stopped_node_is_found_down_and_its_return_picked_up(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "health.txt").write_text("status: ok\n")
    nodes = [LiveServer(node_config(), tmp_path).start() for _ in range(3)]
    try:
        farm = farm_for(
            settings(
                [{"address": f"http://127.0.0.1:{n.port}"} for n in nodes],
                health={"url": "/health.txt", "body_match": "ok", "interval": 0.05},
            ),
            name="nodes",
        )

        async def go() -> None:
            first, second, third = farm.members
            farm.choose(None)  # the first use starts the probes
            await wait_for_async(
                lambda: all(m.probes for m in farm.members), PATIENCE, "every node probed"
            )
            assert all(m.healthy for m in farm.members)
            port = nodes[1].port
            await asyncio.to_thread(nodes[1].stop)
            await wait_for_async(lambda: not second.healthy, PATIENCE, "the stopped node down")
            assert "health probe failed" in second.down_reason
            for _ in range(12):
                lease = farm.choose(None)
                assert lease is not None and lease.member is not second
                lease.finished("ok", 0.001)
            # The node comes back on its port: the probe brings it back into rotation.
            nodes[1] = await asyncio.to_thread(
                lambda: LiveServer(node_config(), tmp_path, port=port).start()
            )
            await wait_for_async(lambda: second.healthy, PATIENCE, "the node back")
            picked = set()
            for _ in range(6):
                lease = farm.choose(None)
                assert lease is not None
                picked.add(lease.member)
                lease.finished("ok", 0.001)
            assert picked == {first, second, third}
            await farm.close()

        asyncio.run(go())
    finally:
        for node in nodes:
            if node.thread.is_alive():
                node.stop()
