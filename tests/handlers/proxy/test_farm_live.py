"""handler.proxy with ``farm = "NAME"``: requests spread over Colonnade nodes,
a member that cannot be reached skipped with one retry, 502.4 when no member
is left, and the affinity cookie sticking a client to its member."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from colonnade.errors import ConfigError, ModuleError
from colonnade.testing import Client, build_engine
from tests.e2e.conftest import LiveServer
from tests.handlers.proxy.kit import front_config
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e


def farm_front(root: Path, ports: list[int], **farm: Any) -> LiveServer:
    config = front_config("", farm="app")
    del config["proxy"]["upstream"]
    config["farms"] = {
        "app": {"members": [{"address": f"http://127.0.0.1:{p}"} for p in ports], **farm}
    }
    return LiveServer(config, root).start()


def host_seen(client: httpx.Client, port: int) -> str:
    got = client.get(f"http://127.0.0.1:{port}/headers")
    assert got.status_code == 200, got.text
    return str(dict(got.json()["headers"])["host"])


def test_round_robin_over_the_members(nodes: list[LiveServer], tmp_path: Path) -> None:
    ports = [n.port for n in nodes]
    with farm_front(tmp_path, ports) as server, httpx.Client() as client:
        seen = [host_seen(client, server.port) for _ in range(6)]
    expected = {f"127.0.0.1:{p}" for p in ports}
    assert set(seen) == expected
    assert seen[0] != seen[1] and seen[:2] * 3 == seen


def test_a_member_that_refuses_is_skipped(nodes: list[LiveServer], tmp_path: Path) -> None:
    dead = free_port()
    with farm_front(tmp_path, [dead, nodes[0].port]) as server, httpx.Client() as client:
        seen = {host_seen(client, server.port) for _ in range(6)}
    assert seen == {f"127.0.0.1:{nodes[0].port}"}


def test_no_member_left_is_502_4(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    health = {"failures": 1, "window": 60, "retry_after": 60}
    with farm_front(tmp_path, ports, health=health) as server, httpx.Client() as client:
        first = client.get(f"http://127.0.0.1:{server.port}/x")
        assert first.status_code == 502
        assert "502.3" in first.text  # connecting failed, on both members
        then = client.get(f"http://127.0.0.1:{server.port}/x")
        assert then.status_code == 502
        assert "502.4" in then.text  # both marked down by the passive check


def test_affinity_cookie_sticks(nodes: list[LiveServer], tmp_path: Path) -> None:
    ports = [n.port for n in nodes]
    with farm_front(tmp_path, ports, affinity=True) as server, httpx.Client() as client:
        first = client.get(f"http://127.0.0.1:{server.port}/headers")
        assert "ARRAffinity" in first.headers["set-cookie"]
        host = dict(first.json()["headers"])["host"]
        assert {host_seen(client, server.port) for _ in range(6)} == {host}


def test_an_undefined_farm_fails_the_configuration(tmp_path: Path) -> None:
    config = front_config("", farm="nowhere")
    del config["proxy"]["upstream"]
    engine = build_engine(config, base_dir=str(tmp_path))
    with pytest.raises((ConfigError, ModuleError), match=r"farms\.nowhere"), Client(engine):
        pass


def test_colonnade_check_warns_of_an_undefined_farm(tmp_path: Path) -> None:
    config = front_config("", farm="nowhere")
    del config["proxy"]["upstream"]
    engine = build_engine(config, base_dir=str(tmp_path))
    (runtime,) = engine.runtimes
    (handler,) = [m for m in runtime.modules if m.id == "handler.proxy"]
    (warning,) = handler.config_warnings(runtime.app, 1)
    assert "farms.nowhere" in warning
