"""``cache.output`` over real sockets, in front of a real WSGI application."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tests.hosting.support import live, site_config
from tests.modules.output_cache import apps

pytestmark = pytest.mark.e2e

APP = "tests.modules.output_cache.apps:wsgi"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    www = tmp_path / "www"
    www.mkdir()
    (www / "page.html").write_text("version 1")
    config = site_config(
        APP,
        path="/app",
        root="www",
        modules=["cache.output", "http.compression", "handler.static"],
        handlers=[{"path": "*", "handler": "handler.static"}],
        sections={
            "output_cache": {
                "policy": "for_time_period",
                "duration": 60,
                "profiles": [
                    {"extension": ".html", "policy": "until_change"},
                    {"extension": ".tpl", "policy": "until_change"},
                ],
            },
            "compression": {"dynamic": True, "min_size": 16},
            "static_content": {"cache_check_interval": 0},
        },
    )
    apps.CALLS.clear()
    with live(config, tmp_path) as running:
        yield running


def url(server: LiveServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_a_hundred_concurrent_misses_run_the_application_once(server: LiveServer) -> None:
    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            return await asyncio.gather(*(http.get(url(server, "/app/slow")) for _ in range(100)))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 100
    assert {r.content for r in responses} == {b"/slow call 1 " + b"x" * 200 + b"\n"}
    assert apps.CALLS["/slow"] == 1


def test_head_304_and_range_from_the_cache(server: LiveServer) -> None:
    with httpx.Client() as http:
        first = http.get(url(server, "/app/page"), headers={"accept-encoding": "identity"})
        assert first.status_code == 200 and "age" not in first.headers
        etag = first.headers["etag"]
        head = http.head(url(server, "/app/page"), headers={"accept-encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(first.content))
        assert head.headers["age"] == "0" or int(head.headers["age"]) >= 0
        cond = http.get(
            url(server, "/app/page"),
            headers={"accept-encoding": "identity", "if-none-match": etag},
        )
        assert cond.status_code == 304 and cond.content == b""
        part = http.get(
            url(server, "/app/page"), headers={"accept-encoding": "identity", "range": "bytes=0-4"}
        )
        assert part.status_code == 206 and part.content == b"/page"
        assert part.headers["content-range"] == f"bytes 0-4/{len(first.content)}"
        # A gzip variant is another entry, filled once.
        gz = [http.get(url(server, "/app/page"), headers={"accept-encoding": "gzip"}) for _ in "ab"]
        assert [r.headers["content-encoding"] for r in gz] == ["gzip", "gzip"]
        assert gz[0].content == gz[1].content == first.content.replace(b"call 1", b"call 2")
    assert apps.CALLS["/page"] == 2


@pytest.mark.parametrize("path", ["/cookie", "/private"])
def test_never_cached_over_the_wire(server: LiveServer, path: str) -> None:
    with httpx.Client() as http:
        bodies = [http.get(url(server, f"/app{path}")).content for _ in range(3)]
    assert len(set(bodies)) == 3 and apps.CALLS[path] == 3


def test_a_static_file_edit_invalidates_its_entry(server: LiveServer, tmp_path: Path) -> None:
    page = tmp_path / "www" / "page.html"
    with httpx.Client() as http:
        assert http.get(url(server, "/page.html")).text == "version 1"
        hit = http.get(url(server, "/page.html"))
        assert hit.text == "version 1" and "age" in hit.headers
        page.write_text("version 2, longer")
        fresh = http.get(url(server, "/page.html"))
        assert fresh.text == "version 2, longer" and "age" not in fresh.headers


def test_an_application_names_the_files_its_page_came_from(
    server: LiveServer, tmp_path: Path
) -> None:
    template = tmp_path / "page.template"
    template.write_text("template 1")
    target = url(server, f"/app/page.tpl?file={template}")
    with httpx.Client() as http:
        assert http.get(target).text == "template 1"
        hit = http.get(target)
        assert hit.text == "template 1" and "age" in hit.headers
        template.write_text("template 2")
        assert http.get(target).text == "template 2"
    assert apps.CALLS["/page.tpl"] == 2


def test_hits_over_http2(server: LiveServer) -> None:
    target = url(server, "/app/h2")
    with httpx.Client(http1=False, http2=True) as http:
        first = http.get(target, headers={"accept-encoding": "gzip"})
        assert first.http_version == "HTTP/2" and "age" not in first.headers
        hit = http.get(target, headers={"accept-encoding": "gzip"})
        assert hit.http_version == "HTTP/2" and "age" in hit.headers
        assert hit.headers["content-encoding"] == "gzip" and hit.content == first.content
        head = http.head(target, headers={"accept-encoding": "gzip"})
        assert head.status_code == 200 and head.content == b"" and "age" in head.headers
        etag = first.headers["etag"]
        cond = http.get(target, headers={"accept-encoding": "gzip", "if-none-match": etag})
        assert cond.status_code == 304
    assert apps.CALLS["/h2"] == 1
