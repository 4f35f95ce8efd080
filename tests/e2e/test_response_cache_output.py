"""The response cache keeps the output cache's hits (issue #24 item 2, IIS's kernel
cache of output-cached responses): a WSGI application's cached answer is then answered
by the connection without the pipeline (the application not called, the access log
line written, byte for byte the pipeline's hit but for Date), for no longer than the
output cache entry lives, dropped with it by a purge, and never where IIS's kernel
cache would not keep it (Basic authentication enabled for the path, a cookie, a query
string, a vary by request headers, the rule's ``response_cache = false``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.core import caches
from colonnade.modules.http_logging.config import IIS_DEFAULT_FIELDS
from colonnade.providers.response_cache import KIND
from tests.e2e.conftest import LiveServer
from tests.e2e.test_response_cache import counters, fetch
from tests.e2e.wire import Conn
from tests.hosting.support import live, site_config
from tests.modules.basic_auth.support import htpasswd, needs_htpasswd
from tests.modules.output_cache import apps
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

APP = "tests.modules.output_cache.apps:wsgi"


def make_config(base: Path, **output_cache: Any) -> dict[str, Any]:
    return site_config(
        APP,
        path="/app",
        root="www",
        modules=["auth.anonymous", "auth.basic", "cache.output", "handler.static", "log.http"],
        sections={
            "output_cache": {"policy": "for_time_period", "duration": 60, **output_cache},
            "http_logging": {
                "target": str(base / "access.log"),
                "buffer_size": 0,
                "fields": [*IIS_DEFAULT_FIELDS, "sc-bytes"],
            },
            "locations": [
                {
                    "path": "/app/locked",
                    "basic_authentication": {
                        "enabled": True,
                        "realm": "r",
                        "user_file": str(base / "users"),
                    },
                }
            ],
        },
    )


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    return tmp_path


def serve(base: Path, **output_cache: Any) -> Iterator[LiveServer]:
    apps.CALLS.clear()
    with live(make_config(base, **output_cache), base) as running:
        yield running


@pytest.fixture
def server(base: Path) -> Iterator[LiveServer]:
    yield from serve(base)


def without_age(raw: bytes) -> bytes:
    return b"\r\n".join(ln for ln in raw.split(b"\r\n") if not ln.lower().startswith(b"age:"))


def log_lines(base: Path, stem: str) -> list[str]:
    text = (base / "access.log").read_text()
    return [ln for ln in text.splitlines() if ln[:1] != "#" and f" {stem} " in ln]


def test_an_output_cached_answer_is_answered_by_the_response_cache(
    base: Path, server: LiveServer
) -> None:
    with Conn(server.port) as conn:
        filled, _ = fetch(conn, "/app/page")  # the application runs, the entry is filled
        assert filled.status == 200 and "age" not in filled.headers
        assert counters(server) == (0, 0)
        pipeline, pipeline_bytes = fetch(conn, "/app/page")  # the output cache's hit
        assert "age" in pipeline.headers
        assert counters(server) == (1, 0), "the hit's answer kept by the response cache"
        hit, hit_bytes = fetch(conn, "/app/page")
        assert counters(server) == (1, 1), "answered by the response cache"
        again, _ = fetch(conn, "/app/page")
        assert counters(server) == (1, 2)
    assert apps.CALLS["/page"] == 1
    assert hit.body == pipeline.body == filled.body
    # Byte for byte the pipeline's hit but for Date, and Age as the clock went on.
    assert without_age(hit_bytes) == without_age(pipeline_bytes)
    assert int(pipeline.headers["age"]) <= int(hit.headers["age"]) <= int(again.headers["age"])
    assert int(again.headers["age"]) <= int(pipeline.headers["age"]) + 2
    # Every request logged, the response cache's as the pipeline's.
    lines = wait_for(
        lambda: (found := log_lines(base, "/app/page")) and len(found) >= 4 and found,
        PATIENCE,
        "the access log lines",
    )
    assert len(lines) == 4
    assert all(" 200 " in line for line in lines)


def test_age_goes_on_in_the_response_cache(server: LiveServer) -> None:
    with Conn(server.port) as conn:
        fetch(conn, "/app/page")
        fetch(conn, "/app/page")
        first, _ = fetch(conn, "/app/page")
        time.sleep(1.1)
        later, _ = fetch(conn, "/app/page")
    assert counters(server) == (1, 2)
    assert int(later.headers["age"]) >= int(first.headers["age"]) + 1
    assert apps.CALLS["/page"] == 1


def test_the_entry_expires_with_the_output_cache_duration(base: Path) -> None:
    for running in serve(base, duration=1.5):
        with Conn(running.port) as conn:
            fetch(conn, "/app/page")
            fetch(conn, "/app/page")
            kept, _ = fetch(conn, "/app/page")
            assert counters(running) == (1, 1) and apps.CALLS["/page"] == 1
            time.sleep(1.6)
            fresh, _ = fetch(conn, "/app/page")
            assert apps.CALLS["/page"] == 2, "the application ran again"
            assert fresh.body != kept.body and "age" not in fresh.headers
            assert counters(running) == (1, 1)


def test_a_purge_drops_the_response_cache_copy(server: LiveServer) -> None:
    with Conn(server.port) as conn:
        for _ in range(3):
            fetch(conn, "/app/page")
        assert counters(server) == (1, 1)
        purged = asyncio.run_coroutine_threadsafe(
            caches.purge(KIND, "/app/page"), server.loop
        ).result(PATIENCE)
        assert purged == 1
        fresh, _ = fetch(conn, "/app/page")
        assert apps.CALLS["/page"] == 2 and "age" not in fresh.headers
        assert counters(server) == (1, 1)


def test_response_cache_hits_count_as_output_cache_hits(server: LiveServer) -> None:
    with Conn(server.port) as conn:
        for _ in range(5):
            fetch(conn, "/app/page")
    totals = server.look(lambda state: caches.totals()[KIND])
    assert counters(server) == (1, 3)
    assert (totals["hits"], totals["misses"], totals["entries"]) == (4, 1, 1)


@needs_htpasswd
def test_not_kept_where_basic_authentication_is_enabled(base: Path) -> None:
    htpasswd(base / "users", "alice", "wonder-land", "-B")
    for running in serve(base, shared=True):
        with Conn(running.port) as conn:
            # Anonymous requests still pass (anonymous authentication stays on), the
            # output cache answers them, yet the response cache keeps nothing there.
            for _ in range(4):
                wire, _ = fetch(conn, "/app/locked/page")
                assert wire.status == 200
            assert apps.CALLS["/locked/page"] == 1
            assert counters(running) == (0, 0)
            for _ in range(3):
                fetch(conn, "/app/other")
            assert counters(running) == (1, 1), "other paths keep it"


def test_not_kept_with_credentials(base: Path) -> None:
    for running in serve(base, shared=True):
        with Conn(running.port) as conn:
            for _ in range(4):
                fetch(conn, "/app/page", "Authorization: Bearer x")
            assert apps.CALLS["/page"] == 1  # the output cache's shared entry
            assert counters(running) == (0, 0)


def test_an_answer_that_sets_a_cookie_is_never_kept(server: LiveServer) -> None:
    with Conn(server.port) as conn:
        bodies = {fetch(conn, "/app/cookie")[0].body for _ in range(3)}
    assert len(bodies) == 3 and apps.CALLS["/cookie"] == 3
    assert counters(server) == (0, 0)


@pytest.mark.parametrize(
    ("settings", "target"),
    [
        ({}, "/app/page?x=1"),
        ({"vary_by_headers": ["Accept-Language"]}, "/app/page"),
        ({"response_cache": False}, "/app/page"),
        ({"profiles": [{"extension": ".txt", "policy": "for_time_period"}]}, "/app/a.txt"),
    ],
)
def test_not_kept(base: Path, settings: dict[str, Any], target: str) -> None:
    if "profiles" in settings:
        settings["profiles"][0]["response_cache"] = False
    for running in serve(base, **settings):
        with Conn(running.port) as conn:
            for _ in range(4):
                wire, _ = fetch(conn, target)
                assert wire.status == 200
            assert sum(apps.CALLS.values()) == 1  # the output cache's hits
            assert counters(running) == (0, 0)


def test_http10_and_http11_are_entries_of_their_own(server: LiveServer) -> None:
    with Conn(server.port) as conn:
        for _ in range(3):
            fetch(conn, "/app/page")
    assert counters(server) == (1, 1)
    # An HTTP/1.0 client's request is not the HTTP/1.1 entry's (its answer may differ:
    # compression leaves HTTP/1.0 alone by default).
    for expect in ((1, 1), (2, 1), (2, 2)):
        with Conn(server.port) as conn:
            wire, _ = fetch(conn, "/app/page", version="1.0")
            assert wire.status == 200
        assert counters(server) == expect


@pytest.mark.parametrize("interval", [0.0, 0.5])
def test_an_until_change_entry_is_kept_for_the_static_check_interval(
    base: Path, interval: float
) -> None:
    page = base / "www" / "page.html"
    page.write_text("version 1")
    config = make_config(base, profiles=[{"extension": ".html", "policy": "until_change"}])
    config["static_content"] = {"cache_check_interval": interval}
    config["handlers"] = [{"path": "*", "handler": "handler.static"}]
    with live(config, base) as running, Conn(running.port) as conn:
        for _ in range(3):
            assert fetch(conn, "/page.html")[0].body == b"version 1"
        # 0: never kept (as a static file's answer); else kept, and an edit is seen
        # once the interval is over (the output cache looks at the file again).
        assert counters(running) == ((0, 0) if interval == 0 else (1, 1))
        page.write_text("version 2, longer")
        wait_for(
            lambda: fetch(conn, "/page.html")[0].body == b"version 2, longer",
            PATIENCE,
            "the edit served",
        )
