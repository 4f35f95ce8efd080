"""A candidate request is routed once: the route the response cache's verdict found
before the pipeline (``ResponseCache.judge``) goes with the request to
``Engine.handle``, which runs the walk on it instead of routing the request again
(mend5). The answers are those of a routing engine, and a route found by one
engine generation is never taken by the next (a reload between a pipelined
request's arrival and its turn)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.config.schema import DEFAULT_MODULES
from colonnade.engine import Engine
from colonnade.engine import engine as engine_module
from colonnade.testing import build_engine
from colonnade.transport.server import ServerState
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.hosting.apps import asgi_apps
from tests.support.wait import PATIENCE, wait_for

APPS = "tests.hosting.apps.asgi_apps"


def _config(apps: bool = True) -> dict[str, Any]:
    """A static site; with ``apps``: "/gated" (answers once ``asgi_apps.GATE`` is
    set), "/hello" and "/django": ASGI apps whose static folders ("/*/static/")
    the static handler serves (a Django app's). Request filtering limits a header
    under "/hello", so the response cache refuses every answer there."""
    applications = [
        {"path": "/gated", "root": "www", "app": f"{APPS}:gated"},
        {"path": "/hello", "root": "www", "app": f"{APPS}:hello"},
        {"path": "/django", "root": "www", "app": f"{APPS}:hello"},
    ]
    return {
        "server": {"modules": DEFAULT_MODULES},
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": applications if apps else [],
            }
        ],
        "handlers": [
            {"path": "/django/static/*", "handler": "handler.static"},
            {"path": "/hello/static/*", "handler": "handler.static"},
            {"path": "*", "handler": "handler.static"},
        ],
        "static_content": {"cache_check_interval": 30},
        "locations": [{"path": "/hello", "request_filtering": {"header_limits": {"X-Big": 9}}}],
    }


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "www" / "django" / "static").mkdir(parents=True)
    (tmp_path / "www" / "page.txt").write_bytes(b"page\n")
    return tmp_path


@pytest.fixture
def live(base: Path) -> Iterator[LiveServer]:
    with LiveServer(_config(), base).start() as server:
        yield server


def _get(conn: Conn, target: str) -> tuple[int, bytes]:
    conn.send(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    wire = conn.response()
    return wire.status, wire.body


def _verdicts(live: LiveServer) -> dict[str, bool]:
    """The verdicts the response cache keeps, by the application path of their pair."""

    def read(state: ServerState) -> dict[str, bool]:
        cache = state.respcache
        assert cache is not None
        return {pair[0].app.path: refused for pair, refused in cache.refused.items()}

    return live.look(read)


def test_a_candidate_request_is_routed_once(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not engine_module.__file__.endswith(".py"):
        # A native class's method cannot be replaced to count its calls.
        pytest.skip("the compiled Engine's route cannot be counted from here")
    routed: list[str] = []
    route = Engine.route

    def counted(self: Engine, port: int, host: str, path: str) -> Any:
        routed.append(path)
        return route(self, port, host, path)

    monkeypatch.setattr(Engine, "route", counted)
    with Conn(live.port) as conn:
        for target, answer in (
            # A dynamic answer of an application with a static folder (a Django app):
            # not refused, so a record is made; of one with none: refused.
            ("/django/view", (200, b"Hello, world!")),
            ("/hello/view", (200, b"Hello, world!")),
            # Not found (never offered), and a folder (the engine routes it).
            ("/missing.txt", (404, None)),
            ("/django/", (200, b"Hello, world!")),
        ):
            routed.clear()
            status, body = _get(conn, target)
            assert (status, body if answer[1] is not None else None) == answer
            assert routed == [target], f"{target} routed {len(routed)} times"
    # The verdicts the routes were judged by: the static folder's application may
    # have answers kept, the other's are refused.
    assert _verdicts(live) == {"/django": False, "/hello": True, "/": False}


def test_answers_and_the_cache_are_as_a_routing_engine_makes_them(live: LiveServer) -> None:
    def stored(state: ServerState) -> tuple[int, int]:
        cache = state.respcache
        assert cache is not None
        return cache.stored, cache.hits

    with Conn(live.port) as conn:
        for _ in range(3):
            assert _get(conn, "/hello/x") == (200, b"Hello, world!")
            assert _get(conn, "/django/x") == (200, b"Hello, world!")
            assert _get(conn, "/django/static/none.css")[0] == 404
            assert _get(conn, "/missing.txt")[0] == 404
        # The static file is kept (once it has settled: the rule keeps no file just
        # changed) and hit; no other answer is.
        wait_for(
            lambda: _get(conn, "/page.txt") == (200, b"page\n") and live.look(stored)[0] == 1,
            PATIENCE,
            "/page.txt stored",
        )
        hits = live.look(stored)[1]
        assert _get(conn, "/page.txt") == (200, b"page\n")
        assert _get(conn, "/django/x") == (200, b"Hello, world!")
        assert live.look(stored) == (1, hits + 1)


@pytest.mark.usefixtures("gate")
def test_a_route_found_before_a_reload_is_not_taken_after_it(base: Path, live: LiveServer) -> None:
    # Two pipelined requests: the first waits at the gate in its application while the
    # second, judged (and routed) by this generation on arrival, waits behind it. A
    # reload that drops the "/hello" application then comes; the second request's turn
    # is the new generation's, which routes it to the site's static root: a 404, not
    # the dropped application's answer.
    engine: Engine = build_engine(_config(apps=False), base_dir=str(base), with_entry_points=True)
    engine.start()
    try:
        with Conn(live.port) as conn:
            conn.send(
                b"GET /gated/x HTTP/1.1\r\nHost: localhost\r\n\r\n"
                b"GET /hello/x HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )

            def queued(state: ServerState) -> list[int]:
                return [len(getattr(c, "queue", ())) for c in state.connections]

            wait_for(lambda: live.look(queued) == [2], PATIENCE, "both requests queued")
            assert _verdicts(live).get("/hello") is True  # judged, so routed, on arrival
            live.look(lambda state: state.switch(engine))
            asgi_apps.GATE.set()
            first = conn.response()
            assert (first.status, first.body) == (200, b"gated")
            assert conn.response().status == 404
            # A request after the reload is the new generation's too.
            assert _get(conn, "/hello/x")[0] == 404
    finally:
        live.look(lambda state: state.switch(live.engine))
        engine.close()
