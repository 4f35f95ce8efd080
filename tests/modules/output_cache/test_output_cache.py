"""``cache.output`` through the real pipeline (in-process client)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import Context, Handler, Module, Stage, hook
from colonnade.config.sections import decode_section
from colonnade.core.principal import Principal
from colonnade.errors import ConfigError
from colonnade.modules.output_cache.config import OutputCacheSection
from colonnade.modules.output_cache.keys import accept_encoding
from colonnade.modules.output_cache.module import DEPENDS_ON, OutputCache
from colonnade.providers.response_cache import RACY_SECONDS
from colonnade.testing import Client, build_engine
from colonnade.testing.client import TestResponse

TEXT = b"".join(b"line %d of some cacheable text\n" % i for i in range(400))


def query(ctx: Context) -> dict[str, str]:
    pairs = ctx.request.query.decode().split("&")
    return dict(p.split("=", 1) if "=" in p else (p, "1") for p in pairs if p)


class App(Handler):
    """Counts its executions; query knobs shape the response."""

    id = "test.app"
    calls = 0

    async def execute(self, ctx: Context) -> None:
        App.calls += 1
        q = query(ctx)
        response = ctx.response
        response.headers.append((b"content-type", b"text/plain"))
        if "cookie" in q:
            response.headers.append((b"set-cookie", b"a=b"))
        if "cc" in q:
            response.headers.append((b"cache-control", q["cc"].replace("_", " ").encode()))
        if "expires" in q:
            response.headers.append((b"expires", b"Thu, 01 Jan 1970 00:00:00 GMT"))
        if "vary" in q:
            response.headers.append((b"vary", q["vary"].encode()))
        if "status" in q:
            response.status = int(q["status"])
        if "depends" in q:
            ctx.items[DEPENDS_ON] = [q["depends"]]
        response.headers.append((b"etag", b'"v%d"' % App.calls))
        body = b"call %d lang=%s user=%s\n" % (
            App.calls,
            (ctx.request.header(b"accept-language") or b"-"),
            (ctx.user.name if ctx.user else "-").encode(),
        )
        if "big" in q:
            body += TEXT * 5
        if "stream" in q:
            await ctx.write(body)
            for _ in range(3):
                await asyncio.sleep(0)
                await ctx.write(TEXT[:100])
            return
        if "slow" in q:
            await asyncio.sleep(0.05)
        response.body = body


class FakeAuth(Module):
    """``X-User: name`` makes the user (a stand-in for any authentication module)."""

    id = "test.fakeauth"

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate(self, ctx: Context) -> None:
        name = ctx.request.header(b"x-user")
        if name is not None:
            ctx.user = Principal(name.decode(), "test")


class FakeRewrite(Module):
    """``/lang/xx/rest`` → ``/rest`` with ``Accept-Language: xx`` (a rewrite rule
    that sets a server variable)."""

    id = "test.fakerewrite"

    @hook(Stage.BEGIN_REQUEST)
    def rewrite(self, ctx: Context) -> None:
        parts = ctx.request.path.split("/", 3)
        if len(parts) == 4 and parts[1] == "lang":
            ctx.request.headers.append((b"accept-language", parts[2].encode()))
            ctx.remap("/" + parts[3])


MODULES = [
    "test.fakerewrite",
    "test.fakeauth",
    "cache.output",
    "test.app",
    "http.compression",
    "handler.static",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_bytes(TEXT)
    (site / "data.bin").write_bytes(bytes(range(256)) * 40)
    (site / "index.html").write_bytes(b"<p>index</p>")
    return site


def config(root: Path, **cache: Any) -> dict[str, Any]:
    return {
        "server": {"modules": MODULES},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [
            {"path": "/app*", "handler": "test.app"},
            {"path": "*", "handler": "handler.static"},
        ],
        "compression": {"dynamic": True},
        # The static handler's own copy is checked on every request here (see
        # test_a_file_changed_just_now_is_kept_briefly for the default).
        "static_content": {"cache_check_interval": 0},
        "output_cache": {"policy": "for_time_period", "duration": 60, **cache},
    }


@pytest.fixture
def serve(root: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def make(**cache: Any) -> Client:
        engine = build_engine(config(root, **cache), modules=[App, FakeAuth, FakeRewrite])
        client = Client(engine).__enter__()
        clients.append(client)
        return client

    App.calls = 0
    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(serve: Any) -> Client:
    return serve()  # type: ignore[no-any-return]


def cache_of(client: Client) -> OutputCache:
    for module in client.engine.runtimes[0].modules:
        if isinstance(module, OutputCache):
            return module
    raise AssertionError("cache.output is not enabled")


def twice(client: Client, target: str, **kw: Any) -> tuple[TestResponse, TestResponse]:
    return client.get(target, **kw), client.get(target, **kw)


# -- hits and misses -------------------------------------------------------------------


def test_a_second_request_is_answered_from_the_cache(client: Client) -> None:
    first, second = twice(client, "/app")
    assert first.status == second.status == 200
    assert first.body == second.body == b"call 1 lang=- user=-\n"
    assert App.calls == 1
    assert second.header("age") is not None and first.header("age") is None
    assert second.header("etag") == first.header("etag")
    stats = cache_of(client).tier.stats()
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["entries"] == 1


def test_nothing_is_cached_by_default(serve: Any) -> None:
    client = serve(policy="dont_cache")
    twice(client, "/app")
    assert App.calls == 2


def test_the_query_string_is_part_of_the_key_by_default(client: Client) -> None:
    assert client.get("/app?a=1").body != client.get("/app?a=2").body
    assert client.get("/app?a=1").body == b"call 1 lang=- user=-\n"
    assert App.calls == 2


def test_listed_query_keys_vary_and_others_are_ignored(serve: Any) -> None:
    client = serve(vary_by_query_string=["page"])
    a = client.get("/app?page=1&utm=x").body
    assert client.get("/app?page=1&utm=y").body == a
    # Keys are matched as an application decodes them: an encoded listed key
    # is not taken for an ignored one (another variant, never page=1's copy).
    assert client.get("/app?%70age=2").body != a
    assert client.get("/app?page=2").body != a
    assert App.calls == 3


def test_an_empty_query_key_list_ignores_the_query(serve: Any) -> None:
    client = serve(vary_by_query_string=[])
    assert client.get("/app?x=1").body == client.get("/app?y=2").body
    assert App.calls == 1


def test_vary_by_headers_makes_variants(serve: Any) -> None:
    client = serve(vary_by_headers=["Accept-Language"])
    en = client.get("/app", headers={"accept-language": "en"})
    fr = client.get("/app", headers={"accept-language": "fr"})
    assert b"lang=en" in en.body and b"lang=fr" in fr.body
    assert client.get("/app", headers={"accept-language": "fr"}).body == fr.body
    assert App.calls == 2


def test_the_applications_vary_is_honoured(client: Client) -> None:
    en = client.get("/app?vary=Accept-Language", headers={"accept-language": "en"})
    fr = client.get("/app?vary=Accept-Language", headers={"accept-language": "fr"})
    assert b"lang=en" in en.body and b"lang=fr" in fr.body
    assert client.get("/app?vary=Accept-Language", headers={"accept-language": "en"}).body == (
        en.body
    )
    assert App.calls == 2


def test_rewritten_urls_keep_their_own_entries(client: Client) -> None:
    de = client.get("/lang/de/app")
    fr = client.get("/lang/fr/app")
    assert b"lang=de" in de.body and b"lang=fr" in fr.body
    assert client.get("/lang/de/app").body == de.body
    assert App.calls == 2
    # Purged by the URL the client asked for.
    assert cache_of(client).tier.purge("/lang/de/app") == 1
    assert cache_of(client).tier.purge("/app") == 0


def test_vary_star_is_never_cached(client: Client) -> None:
    twice(client, "/app?vary=*")
    assert App.calls == 2


def test_compressed_variants_are_kept_apart(client: Client) -> None:
    plain = client.get("/app?big")
    br = client.get("/app?big", headers={"accept-encoding": "br"})
    gz = client.get("/app?big", headers={"accept-encoding": "gzip, deflate"})
    assert plain.header("content-encoding") is None
    assert br.header("content-encoding") == "br" and gz.header("content-encoding") == "gzip"
    again = client.get("/app?big", headers={"accept-encoding": "br"})
    assert again.header("content-encoding") == "br" and again.body == br.body
    # Elements that name no coding do not make another variant.
    assert client.get("/app?big", headers={"accept-encoding": "br, foo;q=0.5"}).body == br.body
    assert App.calls == 3
    assert accept_encoding([b"GZip ;q=0.5, Foo, br"]) == b"gzip;q=0.5,br"


# -- never cached ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "knob",
    [
        "cookie",
        "cc=private",
        "cc=no-store",
        "cc=no-cache",
        "cc=max-age=0",
        "cc=public,_s-maxage=0,_max-age=60",
        "cc=max-age=bogus",
        "expires",
        "status=404",
        "status=500",
    ],
)
def test_never_cached(client: Client, knob: str) -> None:
    twice(client, f"/app?{knob}")
    assert App.calls == 2
    assert cache_of(client).tier.stats()["entries"] == 0


def test_listed_error_statuses_are_cached(serve: Any) -> None:
    client = serve(statuses=[200, 404])
    first, second = twice(client, "/app?status=404")
    assert second.status == 404 and second.body == first.body
    assert App.calls == 1


def test_post_is_never_cached_nor_answered_from_the_cache(client: Client) -> None:
    client.get("/app")
    assert client.post("/app").body == b"call 2 lang=- user=-\n"
    assert App.calls == 2


def test_authenticated_requests_are_not_cached_unless_shared(serve: Any) -> None:
    client = serve()
    alice = client.get("/app", headers={"x-user": "alice"})
    bob = client.get("/app", headers={"x-user": "bob"})
    assert b"user=alice" in alice.body and b"user=bob" in bob.body
    client.get("/app", headers={"authorization": "Bearer x"})
    assert App.calls == 3
    # An anonymous request's entry is not served to an authenticated one either.
    client.get("/app")
    assert b"user=carol" in client.get("/app", headers={"x-user": "carol"}).body

    shared = serve(shared=True)
    App.calls = 0
    one = shared.get("/app", headers={"x-user": "alice"})
    assert shared.get("/app", headers={"x-user": "bob"}).body == one.body
    assert App.calls == 1


def test_s_maxage_shortens_the_lifetime(client: Client) -> None:
    client.get("/app?cc=s-maxage=1")
    module = cache_of(client)
    (entry,) = module.tier._entries.values()
    assert entry.expires - time.monotonic() <= 1.0
    entry.expires = time.monotonic() - 1  # as if the second had passed
    client.get("/app?cc=s-maxage=1")
    assert App.calls == 2


def test_a_response_larger_than_the_limit_is_not_kept(serve: Any) -> None:
    client = serve(max_response_size=1000)
    first, second = twice(client, "/app?big")
    assert len(second.body) > 1000 and second.body == first.body.replace(b"call 1", b"call 2")
    assert App.calls == 2
    assert cache_of(client).tier.counters.rejected == 2


# -- streamed responses and static files ----------------------------------------------


def test_a_streamed_response_is_captured_as_sent(client: Client) -> None:
    first, second = twice(client, "/app?stream")
    assert second.body == first.body and len(first.body) > 300
    assert App.calls == 1


def test_a_stream_over_the_limit_is_passed_through(serve: Any) -> None:
    client = serve(max_response_size=100)
    first, second = twice(client, "/app?stream")
    assert first.body == second.body.replace(b"call 2", b"call 1")
    assert App.calls == 2


def test_static_files_until_change(serve: Any, root: Path) -> None:
    client = serve(policy="dont_cache", profiles=[{"extension": ".html", "policy": "until_change"}])
    first = client.get("/page.html")
    assert first.body == TEXT
    second = client.get("/page.html")
    assert second.header("age") is not None and second.body == TEXT
    (root / "page.html").write_bytes(b"changed")
    third = client.get("/page.html")
    assert third.body == b"changed" and third.header("age") is None
    assert client.get("/page.html").header("age") is not None
    # The profile is for .html only.
    twice(client, "/data.bin")
    assert cache_of(client).tier.stats()["entries"] == 1


def test_a_file_changed_just_now_is_kept_briefly(serve: Any, root: Path) -> None:
    # The static handler trusts its own copy for cache_check_interval: what is
    # stored right after a change may be the version before it, so it is kept
    # only RACY_SECONDS.
    client = serve(policy="until_change")
    client.get("/page.html")
    (entry,) = cache_of(client).tier._entries.values()
    assert entry.expires - time.monotonic() <= RACY_SECONDS


def test_declared_sources_until_change(serve: Any, tmp_path: Path) -> None:
    template = tmp_path / "template.txt"
    template.write_text("v1")
    client = serve(policy="until_change")
    twice(client, f"/app?depends={template}")
    assert App.calls == 1
    os.utime(template, ns=(0, 0))
    client.get(f"/app?depends={template}")
    assert App.calls == 2
    # An application with no file to watch is not cached under until_change.
    twice(client, "/app")
    assert App.calls == 4


# -- hits answer HEAD, conditional and range requests ----------------------------------


def test_head_is_answered_from_the_entry(client: Client) -> None:
    first = client.get("/app")
    head = client.head("/app")
    assert head.status == 200 and head.body == b"" and head.header("etag") == first.header("etag")
    assert App.calls == 1


def test_conditional_requests_get_304_from_the_entry(client: Client) -> None:
    first = client.get("/app")
    etag = first.header("etag")
    assert etag is not None
    again = client.get("/app", headers={"if-none-match": etag})
    assert again.status == 304 and again.body == b""
    assert again.header("content-type") is None and again.header("etag") == etag
    assert client.get("/app", headers={"if-none-match": '"other"'}).status == 200
    assert client.get("/app", headers={"if-match": '"other"'}).status == 412
    assert App.calls == 1


def test_a_conditional_miss_does_not_fill(client: Client) -> None:
    assert client.get("/app", headers={"if-none-match": '"x"'}).status == 200
    client.get("/app")
    assert App.calls == 2


def test_a_single_range_from_the_entry(client: Client) -> None:
    client.get("/app?big")
    part = client.get("/app?big", headers={"range": "bytes=5-9"})
    assert part.status == 206 and part.body == b"1 lan"
    assert part.header("content-range") == f"bytes 5-9/{len(TEXT) * 5 + 21}"
    bad = client.get("/app?big", headers={"range": "bytes=999999999-"})
    assert bad.status == 416
    assert App.calls == 1


def test_a_range_of_a_compressed_entry_is_sent_whole(client: Client) -> None:
    br = client.get("/app?big", headers={"accept-encoding": "br"})
    again = client.get("/app?big", headers={"accept-encoding": "br", "range": "bytes=0-9"})
    assert again.status == 200 and again.body == br.body
    assert App.calls == 1


# -- bounds ----------------------------------------------------------------------------


def test_variants_per_url_are_capped(serve: Any) -> None:
    client = serve(max_variants=3)
    for i in range(10):
        client.get(f"/app?junk={i}")
    tier = cache_of(client).tier
    assert len(tier) == 3 and tier.counters.rejected == 7
    client.get("/app?junk=0")
    assert App.calls == 10  # the first three stayed


def test_lru_eviction_under_the_budget(serve: Any) -> None:
    client = serve(max_bytes=1500)
    for i in range(6):
        client.get(f"/app?n={i}")
    tier = cache_of(client).tier
    assert tier.bytes <= 1500 and tier.counters.evictions > 0
    assert len(tier) < 6
    calls = App.calls
    client.get("/app?n=5")  # the most recent one stayed
    assert App.calls == calls
    client.get("/app?n=0")  # the oldest one went
    assert App.calls == calls + 1


def test_purge_by_url_and_prefix(client: Client) -> None:
    for target in ("/app", "/app?x=1", "/app/a", "/app/b"):
        client.get(target)
    tier = cache_of(client).tier
    assert tier.purge("/app") == 2
    assert len(tier) == 2
    assert tier.purge("/app/", prefix=True) == 2
    assert len(tier) == 0


# -- the stampede rule -----------------------------------------------------------------


def test_concurrent_misses_run_the_handler_once(client: Client) -> None:
    async def burst() -> list[TestResponse]:
        return await asyncio.gather(*(client.arequest("GET", "/app?slow") for _ in range(100)))

    responses = client.loop.run_until_complete(burst())
    assert App.calls == 1
    assert {r.body for r in responses} == {b"call 1 lang=- user=-\n"}


def test_waiters_go_uncached_after_the_wait(serve: Any) -> None:
    client = serve(wait_timeout=0.01)

    async def burst() -> list[TestResponse]:
        return await asyncio.gather(*(client.arequest("GET", "/app?slow") for _ in range(3)))

    responses = client.loop.run_until_complete(burst())
    assert App.calls == 3 and all(r.status == 200 for r in responses)


# -- settings --------------------------------------------------------------------------


def test_profiles_win_and_disable_cache_forbids(serve: Any) -> None:
    section = decode_section(
        OutputCacheSection,
        {"policy": "for_time_period", "profiles": [{"extension": ".txt", "policy": "dont_cache"}]},
    )
    assert section.rule_for("/a.txt") is None
    assert section.rule_for("/a.TXT") is None
    rule = section.rule_for("/a.html")
    assert rule is not None and rule.policy == "for_time_period"
    off = decode_section(
        OutputCacheSection,
        {
            "policy": "disable_cache",
            "profiles": [{"extension": ".txt", "policy": "for_time_period"}],
        },
    )
    assert off.rule_for("/a.txt") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"statuses": [206]},
        {"policy": "sometimes"},
        {"duration": 0},
        {"profiles": [{"extension": "html", "policy": "until_change"}]},
        {
            "profiles": [
                {"extension": ".a", "policy": "dont_cache"},
                {"extension": ".A", "policy": "dont_cache"},
            ]
        },
        {"vary_by_headers": ["bad header"]},
    ],
)
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises((msgspec.ValidationError, ValueError, ConfigError)):
        decode_section(OutputCacheSection, bad)


def test_fill_locks_left_behind_are_swept(client: Client) -> None:
    from colonnade.modules.output_cache import module as oc

    cache = cache_of(client)
    gone = asyncio.Event()
    for i in range(oc.MAX_FILLING):
        cache._filling[b"%016d" % i] = oc._Lock(gone, time.monotonic() - 1)
    client.get("/app")
    assert len(cache._filling) == 0  # swept, and the new fill released its own
    assert client.get("/app").header("age") is not None
