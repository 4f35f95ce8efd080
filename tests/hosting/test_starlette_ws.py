"""A real Starlette WebSocket endpoint, driven by a real WebSocket client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("starlette")
pytest.importorskip("websockets")
from websockets.sync.client import connect

from tests.e2e.conftest import LiveServer
from tests.hosting.apps import starlette_ws
from tests.hosting.browser import Browser
from tests.hosting.support import live, site_config
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = site_config("tests.hosting.apps.starlette_ws:app", path="/live")
    with live(config, tmp_path_factory.mktemp("starlette")) as running:
        yield running


def test_echo_with_per_message_deflate(server: LiveServer) -> None:
    starlette_ws.CLOSES.clear()
    url = f"ws://127.0.0.1:{server.port}/live/ws"
    with connect(url, proxy=None, open_timeout=5, close_timeout=5) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert negotiated.startswith("permessage-deflate")
        for i in range(20):
            ws.send(f"message {i}")
            assert ws.recv(timeout=5) == f"echo: message {i}"
        payload = bytes(range(256)) * 1000
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
        text = "a compressible line\n" * 20_000
        ws.send(text)
        assert ws.recv(timeout=5) == "echo: " + text
    wait_for(lambda: starlette_ws.CLOSES, PATIENCE, "the endpoint seeing the close")
    assert starlette_ws.CLOSES == [1000]


def test_plain_http_beside_the_websocket(server: LiveServer) -> None:
    page = Browser(server.port).get("/live/")
    assert (page.status, page.text) == (200, "starlette home")
