"""The compiled build hands the application the HttpCycle itself as both ``receive``
and ``send`` (``HttpCycle.__call__``); the pure install its bound methods. Both ways
serve the same: here the pure install runs the compiled build's way too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from colonnade.handlers.asgi import handler
from tests.builds import take_path
from tests.hosting.apps import asgi_apps
from tests.hosting.support import client

APPS = "tests.hosting.apps.asgi_apps"


@pytest.fixture(params=["cycle", "bound methods"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test once with the cycle as receive and send, once with its bound methods
    (the compiled build always passes the cycle: the second is skipped there)."""
    take_path(handler, request.param == "cycle", monkeypatch)
    asgi_apps.EVENTS.clear()
    yield request.param
    asgi_apps.EVENTS.clear()


async def same_or_not(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b"same" if receive is send else b"apart"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_what_the_application_gets(way: str) -> None:
    with client(f"{__name__}:same_or_not") as c:
        assert c.get("/").text == ("same" if way == "cycle" else "apart")


def test_the_body_is_received(way: str) -> None:
    with client(f"{APPS}:echo") as c:
        response = c.post("/", body=b"x" * 1000)
    assert response.body == b"x" * 1000
    assert asgi_apps.EVENTS == [[[1000, False]]]


def test_an_empty_body_and_the_disconnect(way: str) -> None:
    with client(f"{APPS}:count_body") as c:
        assert c.get("/").text == "0 1"
        assert c.post("/", body=b"abc").text == "3 1"
    asgi_apps.EVENTS.clear()
    with client(f"{APPS}:disconnect_after") as c:
        assert c.get("/").text == "done"
    assert asgi_apps.EVENTS == ["http.disconnect"]


def test_a_streamed_response(way: str) -> None:
    with client(f"{APPS}:stream") as c:
        response = c.get("/")
    assert response.body == b"".join(b"chunk %d\n" % i for i in range(5))
    assert response.complete


def test_a_failure_after_the_response_is_only_logged(way: str) -> None:
    with client(f"{APPS}:raise_after_complete") as c:
        assert c.get("/").status == 200
