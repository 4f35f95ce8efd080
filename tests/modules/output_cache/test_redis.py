"""The Redis tier of ``cache.output`` against a real ``redis-server``: a farm of two
masters sharing entries and purges, Redis killed and restarted under ``wrk``,
corrupt entries."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from colonnade.core import caches
from colonnade.errors import ConfigError
from colonnade.management import operations
from colonnade.providers.response_cache_redis import RedisTier
from colonnade.testing import Client, build_engine
from colonnade.testing.client import TestResponse
from tests.e2e.conftest import LiveServer
from tests.hosting.support import live, site_config
from tests.modules.output_cache import apps
from tests.modules.output_cache.test_output_cache import (
    App,
    FakeAuth,
    FakeRewrite,
    cache_of,
    config,
)
from tests.modules.output_cache.test_output_cache import root as root
from tests.pools.conftest import MODULES, Master, server_toml
from tests.support.ports import free_port
from tests.support.redis import RedisServer
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

APP = "tests.modules.output_cache.apps:wsgi"
WRK = shutil.which("wrk")


def redis_table(server: RedisServer) -> dict[str, Any]:
    # A short back-off: the tests wait for Redis to be used again after a restart.
    return {"url": server.url, "retry_min": 0.1, "retry_max": 0.3, "command_timeout": 0.5}


# -- a farm: two masters, one Redis ------------------------------------------------------


@pytest.fixture(params=[0, 600], ids=["redis-only", "with-copies"])
def farm(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Iterator[tuple[Master, Master]]:
    """Two masters of two workers on one Redis; ``with-copies``: each worker also
    keeps copies of Redis entries in its memory tier (``memory_seconds``)."""
    yield from _farm(tmp_path, redis_server, f"memory_seconds = {request.param}\n")


def _farm(
    tmp_path: Path, redis_server: RedisServer, cache: str = ""
) -> Iterator[tuple[Master, Master]]:
    table = redis_table(redis_server)
    extra = (
        '[output_cache]\nstore = "redis"\npolicy = "for_time_period"\nduration = 600\n'
        + cache
        + "\n[redis]\n"
        + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())
    )
    nodes: list[Master] = []
    try:
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            port = free_port()
            config = server_toml(
                port,
                {"default": {"start": "always"}},
                modules=["cache.output", *MODULES],
                extra=extra,
            )
            nodes.append(Master(folder, config, workers=2, port=port))
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()


def _toml(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def stored(server: RedisServer) -> int:
    """How many entries Redis holds (a store follows the response it keeps)."""
    raw = redis.Redis.from_url(server.url)
    try:
        return len(list(raw.scan_iter(match="colonnade:cache:e:*")))
    finally:
        raw.close()


def memory_copies(node: Master) -> int:
    """Entries in the memory tiers of the node's workers, as they last reported."""
    return operations.cache_stats(node.status()).get("output_cache", {}).get("entries", 0)


def test_an_entry_filled_on_one_node_is_a_hit_on_the_other(
    farm: tuple[Master, Master], redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    a, b = farm
    copies = request.node.callspec.id == "with-copies"
    first = a.get("/page")
    assert first.status == 200 and "age" not in first.headers
    wait_for(lambda: stored(redis_server) == 1, PATIENCE, "the entry in Redis")

    # acme.pid answers with the pid of the worker that ran it: node b sends node a's.
    def hit_on_b() -> bool:
        from_b = b.get("/page")
        assert from_b.status == 200 and "age" in from_b.headers and from_b.body == first.body
        # With copies: b's workers subscribe at their first lookup and keep a
        # copy from then on; asked until one reports it.
        return not copies or memory_copies(b) >= 1

    wait_for(hit_on_b, PATIENCE, "a hit on node b (and a copy in its memory tier)")
    again = a.get("/page")
    assert "age" in again.headers and again.body == first.body

    # A purge on a empties the entry for both: in Redis, and b's copies.
    message = operations.purge_cache(a.control, "/page")
    assert message.startswith("purged ") and "cached response(s) of /page" in message
    assert stored(redis_server) == 0
    if copies:
        wait_for(lambda: memory_copies(b) == 0, PATIENCE, "node b's copies purged")
    refilled = b.get("/page")
    assert "age" not in refilled.headers
    wait_for(lambda: stored(redis_server) == 1, PATIENCE, "the entry in Redis again")
    assert "age" in a.get("/page").headers  # and b's new entry is a's hit


# -- Redis going away under load -----------------------------------------------------------


@pytest.fixture
def node(tmp_path: Path, redis_server: RedisServer) -> Iterator[LiveServer]:
    config = site_config(
        APP,
        modules=["cache.output"],
        sections={
            "output_cache": {"store": "redis", "policy": "for_time_period", "duration": 600},
            "redis": redis_table(redis_server),
        },
    )
    apps.CALLS.clear()
    with live(config, tmp_path) as running:
        yield running


def hits() -> int:
    return caches.totals().get("output_cache", {}).get("hits", 0)


@pytest.mark.skipif(WRK is None, reason="wrk is not installed (make sysdeps)")
def test_redis_killed_and_restarted_under_wrk_gives_no_5xx(
    node: LiveServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    assert WRK is not None
    url = f"http://127.0.0.1:{node.port}/page"
    load = subprocess.Popen(
        # As long as the scenario takes: stopped by SIGINT once it is over (wrk then
        # prints its summary). A fixed duration raced the restart on a loaded machine.
        [WRK, "-t2", "-c8", "-d300s", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: hits() > 200, PATIENCE, "hits from Redis under load")
        redis_server.kill()
        before = apps.CALLS.get("/page", 0)
        # While Redis is away every request runs the application (uncached).
        wait_for(lambda: apps.CALLS.get("/page", 0) > before + 50, PATIENCE, "uncached answers")
        (tmp_path / "again").mkdir()
        restarted = RedisServer(tmp_path / "again", port=redis_server.port)
        try:
            counted = hits()
            wait_for(lambda: hits() > counted + 100, PATIENCE, "hits again after the restart")
            load.send_signal(signal.SIGINT)
            out = load.communicate(timeout=PATIENCE)[0]
        finally:
            restarted.kill()
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert load.returncode == 0, out
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    assert total > 400
    assert "Non-2xx or 3xx responses" not in out, out


def test_a_corrupt_entry_is_a_miss_never_an_error(
    node: LiveServer, redis_server: RedisServer
) -> None:
    url = f"http://127.0.0.1:{node.port}/page"
    with httpx.Client() as http:
        assert "age" not in http.get(url).headers
        wait_for(lambda: stored(redis_server) == 1, PATIENCE, "the entry in Redis")
        raw = redis.Redis.from_url(redis_server.url)
        try:
            keys = list(raw.scan_iter(match="colonnade:cache:e:*"))
            assert keys
            for key in keys:
                raw.set(key, b"\x93not an entry")
        finally:
            raw.close()
        after = http.get(url)
        assert after.status_code == 200 and "age" not in after.headers
        # Filled again (in the background, after the answer).
        wait_for(lambda: "age" in http.get(url).headers, PATIENCE, "a hit again")
    assert apps.CALLS["/page"] >= 2


# -- the Redis tier through the pipeline (in-process) ---------------------------------------


@pytest.fixture
def shared(root: Path, redis_server: RedisServer) -> Iterator[Any]:
    clients: list[Client] = []

    def make(**cache: Any) -> Client:
        settings = config(root, store="redis", **cache)
        # Each engine its own client (a [redis] table of its own): one process's
        # client serves one event loop, and each in-process engine runs its own.
        settings["redis"] = {**redis_table(redis_server), "pool_size": 10 + len(clients)}
        client = Client(build_engine(settings, modules=[App, FakeAuth, FakeRewrite])).__enter__()
        clients.append(client)
        return client

    App.calls = 0
    yield make
    for client in clients:
        client.__exit__(None, None, None)


def get(client: Client, target: str, **kw: Any) -> TestResponse:
    """A request, then the store it started (into Redis) done."""
    response = client.get(target, **kw)
    client.loop.run_until_complete(cache_of(client).settle())
    return response


def test_variants_head_and_304_from_redis(shared: Any) -> None:
    client = shared()
    target = "/app?vary=Accept-Language"
    en = get(client, target, headers={"accept-language": "en"})
    fr = get(client, target, headers={"accept-language": "fr"})
    assert b"lang=en" in en.body and b"lang=fr" in fr.body
    again = get(client, target, headers={"accept-language": "en"})
    assert again.body == en.body and again.header("age") is not None
    head = client.head(target, headers={"accept-language": "fr"})
    assert head.status == 200 and head.header("etag") == fr.header("etag")
    etag = en.header("etag")
    assert etag is not None
    cond = client.get(target, headers={"accept-language": "en", "if-none-match": etag})
    assert cond.status == 304
    assert App.calls == 2
    # Another node (another engine on the same Redis) sees the same entries.
    other = shared()
    assert other.get(target, headers={"accept-language": "fr"}).body == fr.body
    assert App.calls == 2


def test_until_change_with_redis(shared: Any, tmp_path: Path) -> None:
    template = tmp_path / "t.txt"
    template.write_text("1")
    client = shared(policy="until_change")
    get(client, f"/app?depends={template}")
    assert get(client, f"/app?depends={template}").header("age") is not None
    template.write_text("22")
    assert get(client, f"/app?depends={template}").header("age") is None
    assert App.calls == 2


def test_variants_capped_and_purged_in_redis(shared: Any) -> None:
    client = shared(max_variants=2)
    for i in range(4):
        get(client, f"/app/x?n={i}")
    get(client, "/app/y")
    tier = cache_of(client).shared
    assert tier is not None and tier.counters.stores == 3 and tier.counters.rejected == 2
    assert get(client, "/app/x?n=0").header("age") is not None
    purged = client.loop.run_until_complete(caches.purge("output_cache", "/app/", prefix=True))
    assert purged == 3
    assert get(client, "/app/x?n=0").header("age") is None


def test_redis_down_serves_uncached(serve_down: Client) -> None:
    first = get(serve_down, "/app")
    second = get(serve_down, "/app")
    assert first.status == second.status == 200
    assert second.header("age") is None and App.calls == 2
    tier = cache_of(serve_down).shared
    assert tier is not None and tier.errors >= 1


@pytest.fixture
def serve_down(root: Path) -> Iterator[Client]:
    settings = config(root, store="redis")
    settings["redis"] = {"url": f"redis://127.0.0.1:{free_port()}/0", "connect_timeout": 0.5}
    App.calls = 0
    with Client(build_engine(settings, modules=[App, FakeAuth, FakeRewrite])) as client:
        yield client


def test_store_redis_needs_a_redis_table(root: Path) -> None:
    # Refused when the configuration is built (colonnade check), naming the key.
    with pytest.raises(ConfigError, match=r'output_cache.store: "redis" needs a \[redis\]'):
        build_engine(config(root, store="redis"), modules=[App, FakeAuth, FakeRewrite])


def flush(server: RedisServer) -> None:
    raw = redis.Redis.from_url(server.url)
    try:
        raw.flushdb()
    finally:
        raw.close()


def run_until(client: Client, check: Callable[[], bool], what: str) -> None:
    """Run ``client``'s loop (its subscription reads what was published) until ``check``."""

    async def until() -> None:
        deadline = time.monotonic() + PATIENCE
        while not check():
            assert time.monotonic() < deadline, f"waited in vain for: {what}"
            await asyncio.sleep(0.01)

    client.loop.run_until_complete(until())


def hear(client: Client) -> RedisTier:
    """Run ``client``'s loop until its Redis tier hears purges (its first lookup
    subscribed); that tier."""
    tier = cache_of(client).shared
    assert tier is not None
    run_until(client, lambda: tier.hearing, "the subscription to purges")
    return tier


def with_a_copy(shared: Any) -> tuple[Client, RedisTier]:
    """A node (memory_seconds = 60) with a copy of /app in its memory tier."""
    client = shared(memory_seconds=60)
    get(client, "/app")
    tier = hear(client)
    get(client, "/app")
    assert copies(client) == 1
    return client, tier


def copies(client: Client) -> int:
    """Entries in the worker's memory tier (its copies of Redis entries)."""
    return len(cache_of(client).tier)


def test_a_memory_copy_spares_the_round_trip(shared: Any, redis_server: RedisServer) -> None:
    near = shared(memory_seconds=60)
    get(near, "/app")
    hear(near)  # copies are kept only while purges can reach them
    assert get(near, "/app").header("age") is not None
    flush(redis_server)  # gone from Redis: the worker's copy still answers
    assert get(near, "/app").header("age") is not None
    assert App.calls == 1
    plain = shared()  # memory_seconds = 0: every lookup asks Redis
    get(plain, "/app")
    flush(redis_server)
    assert get(plain, "/app").header("age") is None
    assert App.calls == 3


def test_the_memory_copy_lives_memory_seconds_at_most(shared: Any) -> None:
    client = shared(memory_seconds=1)
    get(client, "/app")
    hear(client)
    get(client, "/app")
    (entry,) = cache_of(client).tier._entries.values()
    assert entry.expires - time.monotonic() <= 1.0


def test_a_purge_on_another_node_drops_the_memory_copy(shared: Any) -> None:
    a, b = shared(memory_seconds=60), shared(memory_seconds=60)
    get(a, "/app")
    get(a, "/app/other")
    get(b, "/app")  # a hit from Redis; subscribes
    hear(b)
    assert get(b, "/app").header("age") is not None  # from Redis, and kept
    assert get(b, "/app/other").header("age") is not None
    assert copies(b) == 2
    # What a purge does on node a: Redis's entries, then the message.
    tier_a = cache_of(a).shared
    assert tier_a is not None
    assert a.loop.run_until_complete(tier_a.purge("/app")) == 1
    run_until(b, lambda: copies(b) == 1, "node b's copy of /app dropped")
    assert get(b, "/app").header("age") is None
    assert get(b, "/app/other").header("age") is not None
    assert App.calls == 3
    # A prefix purge reaches the copies the same way.
    assert a.loop.run_until_complete(tier_a.purge("/app", prefix=True)) == 2
    run_until(b, lambda: copies(b) == 0, "node b's copies under /app dropped")


def test_a_message_not_ours_is_ignored(shared: Any, redis_server: RedisServer) -> None:
    client, tier = with_a_copy(shared)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        for junk in (b"\xff", b"[1]", b'{"path": 7}', b'{"path": "app"}', b'{"path": "/other"}'):
            raw.publish(tier.channel, junk)
    finally:
        raw.close()
    # Only the last one is a purge (of another path); in order on the channel.
    run_until(client, lambda: tier.purges_heard == 1, "the purge of /other heard")
    assert copies(client) == 1


def test_no_copy_while_purges_cannot_be_heard(shared: Any, redis_server: RedisServer) -> None:
    client, tier = with_a_copy(shared)
    redis_server.kill()
    # A purge made now would go unheard: the copy goes with the subscription.
    run_until(client, lambda: not tier.hearing and copies(client) == 0, "the copies dropped")
    again = RedisServer(redis_server.folder, redis_server.port)
    try:
        # Subscribed again once the back-off allows; copies are kept again.
        hear(client)
        get(client, "/app")
        get(client, "/app")
        assert copies(client) == 1
    finally:
        again.kill()


def test_a_subscription_made_again_drops_the_copies(shared: Any, redis_server: RedisServer) -> None:
    client, _ = with_a_copy(shared)
    # Redis drops the subscriber's connection; the client subscribes again at
    # once, but a purge published in between would have gone unheard.
    raw = redis.Redis.from_url(redis_server.url)
    try:
        assert raw.client_kill_filter(_type="pubsub") == 1
    finally:
        raw.close()
    run_until(client, lambda: copies(client) == 0, "the copies dropped")
    hear(client)
    get(client, "/app")
    assert copies(client) == 1
