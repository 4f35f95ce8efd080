"""A real FastAPI application (ASGI) behind colonnade, mounted at /api."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.hosting.apps import fastapi_app
from tests.hosting.browser import Browser
from tests.hosting.support import live, site_config
from tests.support.wait import PATIENCE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = site_config("tests.hosting.apps.fastapi_app:app", path="/api")
    with live(config, tmp_path_factory.mktemp("fastapi")) as running:
        yield running


def test_json_endpoints(server: LiveServer) -> None:
    b = Browser(server.port)
    page = b.get("/api/items/7?q=x")
    assert (page.status, page.json()) == (200, {"item_id": 7, "q": "x"})
    assert page.headers["Content-Type"] == "application/json"
    page = b.get("/api/items/404")
    assert (page.status, page.json()) == (404, {"detail": "no such item"})
    page = b.post_json("/api/items", {"name": "pen", "price": 10})
    assert page.json() == {"name": "pen", "price_with_tax": 12.0}
    assert b.post_json("/api/items", {"name": "pen"}).status == 422


def test_lifespan_state_and_root_path(server: LiveServer) -> None:
    data = Browser(server.port).get("/api/whoami").json()
    assert data == {
        "started_by": "lifespan",
        "root_path": "/api",
        "url": f"http://127.0.0.1:{server.port}/api/whoami",
        "user": None,
    }


def test_docs_and_openapi_under_the_mount(server: LiveServer) -> None:
    b = Browser(server.port)
    docs = b.get("/api/docs")
    assert docs.status == 200
    assert "swagger-ui" in docs.text
    assert "'/api/openapi.json'" in docs.text or '"/api/openapi.json"' in docs.text
    schema = b.get("/api/openapi.json").json()
    assert "/items/{item_id}" in schema["paths"]


def test_streaming_response(server: LiveServer) -> None:
    with Conn(server.port) as conn:
        conn.send(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        got = conn.response()
    assert got.status == 200 and got.chunked
    assert got.body == b"".join(b"part %d\n" % i for i in range(5))


def test_background_tasks_run_after_the_response_left(server: LiveServer) -> None:
    fastapi_app.BACKGROUND_GO_ON.clear()
    with Conn(server.port) as conn:
        conn.send(b"GET /api/slow-background HTTP/1.1\r\nHost: x\r\n\r\n")
        got = conn.response()  # the task waits for the go-ahead: it cannot be done yet
        assert got.status == 200
        assert not fastapi_app.BACKGROUND_DONE.is_set()
        # The next request on the connection does not wait for the background task
        # (as under uvicorn): answered while the task still waits for its go-ahead.
        conn.send(b"GET /api/items/7 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().body == b'{"item_id":7,"q":null}'
        assert not fastapi_app.BACKGROUND_DONE.is_set()
    fastapi_app.BACKGROUND_GO_ON.set()
    assert fastapi_app.BACKGROUND_DONE.wait(PATIENCE)
