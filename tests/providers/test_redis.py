"""The shared Redis client (providers/redis.py) against a real ``redis-server``:
the ``[redis]`` table, passwords from a file or the environment (never logged),
TLS with a client certificate, Redis killed and started again (one log line
each way, counters), the back-off, one pool closed by its last user."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
import trustme

from colonnade.config.load import from_dict
from colonnade.config.schema import RedisSettings
from colonnade.errors import ConfigError
from colonnade.providers.redis import RedisUnavailableError, SharedRedis, shared_redis
from tests.support.redis import RedisServer, RedisTls
from tests.support.tls import issue
from tests.support.wait import PATIENCE

DOWN = "cannot be reached"
BACK = "answers again"


def settings(tmp_path: Path, **redis: object) -> RedisSettings:
    config = from_dict({"redis": redis}, source=str(tmp_path / "c.toml"), base_dir=str(tmp_path))
    assert config.redis is not None
    return config.redis


def quick(url: str, **extra: object) -> dict[str, object]:
    return {"url": url, "command_timeout": 0.3, "connect_timeout": 0.3, **extra}


# -- the [redis] table -------------------------------------------------------------------


def test_no_redis_table_is_none(tmp_path: Path) -> None:
    config = from_dict({}, source="c.toml", base_dir=str(tmp_path))
    assert config.redis is None
    with pytest.raises(ConfigError, match=r"needs a \[redis\] table"):
        shared_redis(None, user="state.session")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "http://x"}, "url"),
        ({"url": "redis://h", "tls_ca": "ca.pem"}, "only for a rediss:// URL"),
        ({"url": "rediss://h", "tls_key": "k.pem"}, "needs tls_certificate"),
        ({"password_file": "p", "password_env": "P"}, "give one of them"),
        ({"retry_min": 5, "retry_max": 1}, "less than retry_min"),
        ({"pool_size": 0}, "pool_size"),
        ({"host": "x"}, "host"),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({"redis": table}, source="c.toml", base_dir=str(tmp_path))


def test_files_are_taken_from_the_server_file_folder(tmp_path: Path) -> None:
    s = settings(tmp_path, url="rediss://h", password_file="pw", tls_ca="ca.pem")
    assert s.password_file == str(tmp_path / "pw")
    assert s.tls_ca == str(tmp_path / "ca.pem")


def test_a_missing_password_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="cannot read the password file"):
        shared_redis(settings(tmp_path, password_file="nope"), user="m")
    monkeypatch.delenv("COLONNADE_TEST_REDIS_PW", raising=False)
    with pytest.raises(ConfigError, match="COLONNADE_TEST_REDIS_PW is not set"):
        shared_redis(settings(tmp_path, password_env="COLONNADE_TEST_REDIS_PW"), user="m")


# -- against redis-server -------------------------------------------------------------------


async def roundtrip(shared: SharedRedis, value: str) -> bytes | None:
    key = shared.prefix + "test"
    await shared.call(lambda r: r.set(key, value))
    return await shared.call(lambda r: r.get(key))


def test_password_from_a_file_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path, password="pw-Hq72nd")
    try:
        (tmp_path / "pw").write_text("pw-Hq72nd\n")
        url = f"redis://127.0.0.1:{server.port}/0"
        shared = shared_redis(settings(tmp_path, **quick(url), password_file="pw"), user="m")

        async def go() -> None:
            assert await roundtrip(shared, "v") == b"v"
            server.kill()
            with pytest.raises(RedisUnavailableError):
                await roundtrip(shared, "w")
            await shared.release()

        with caplog.at_level(logging.INFO, logger="colonnade.redis"):
            asyncio.run(go())
        assert DOWN in caplog.text
        assert "pw-Hq72nd" not in caplog.text
    finally:
        server.kill()


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer(tmp_path, password="pw-Env1")
    try:
        monkeypatch.setenv("COLONNADE_TEST_REDIS_PW", "pw-Env1")
        url = f"redis://127.0.0.1:{server.port}/0"
        s = settings(tmp_path, **quick(url), password_env="COLONNADE_TEST_REDIS_PW")
        shared = shared_redis(s, user="m")

        async def go() -> None:
            assert await roundtrip(shared, "e") == b"e"
            await shared.release()

        asyncio.run(go())
    finally:
        server.kill()


def test_a_wrong_password_is_an_outage_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path, password="right-pw")
    try:
        url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
        shared = shared_redis(settings(tmp_path, **quick(url), retry_min=0.01), user="m")

        async def go() -> None:
            for _ in range(5):
                with pytest.raises(RedisUnavailableError):
                    await roundtrip(shared, "x")
                await asyncio.sleep(0.02)  # past the back-off: each call really tries
            await shared.release()

        with caplog.at_level(logging.INFO, logger="colonnade.redis"):
            asyncio.run(go())
        assert caplog.text.count(DOWN) == 1, caplog.text
        assert "wrong-pw" not in caplog.text
        assert f"redis://:***@127.0.0.1:{server.port}/0" in caplog.text
        assert shared.outages == 1 and shared.errors >= 2
    finally:
        server.kill()


def test_killed_and_restarted_logged_once_each_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path)
    s = settings(tmp_path, **quick(server.url), retry_min=0.05, retry_max=0.2)
    shared = shared_redis(s, user="m")
    again: RedisServer | None = None

    async def go() -> None:
        nonlocal again
        assert await roundtrip(shared, "1") == b"1"
        server.kill()
        # Many requests during the outage: each fails, none waits long, one line.
        began = time.monotonic()
        for _ in range(200):
            with pytest.raises(RedisUnavailableError):
                await roundtrip(shared, "2")
        assert time.monotonic() - began < 10
        assert shared.down and shared.stats()["state"] == "down"
        # While the back-off runs, a call does not even try.
        commands = shared.commands
        if not shared.available():
            with pytest.raises(RedisUnavailableError):
                await roundtrip(shared, "3")
            assert shared.commands == commands
        again = RedisServer(tmp_path, server.port)

        async def works() -> bool:
            try:
                return await roundtrip(shared, "4") == b"4"
            except RedisUnavailableError:
                return False

        deadline = time.monotonic() + PATIENCE
        while not await works():
            assert time.monotonic() < deadline, "Redis used again"
            await asyncio.sleep(0.02)
        # The pooled connections of the dead server were replaced: all work.
        results = await asyncio.gather(*(roundtrip(shared, str(i)) for i in range(50)))
        assert all(r is not None for r in results)
        await shared.release()

    try:
        with caplog.at_level(logging.INFO, logger="colonnade.redis"):
            asyncio.run(go())
        assert caplog.text.count(DOWN) == 1, caplog.text
        assert caplog.text.count(BACK) == 1, caplog.text
        stats = shared.stats()
        assert stats["state"] == "up" and stats["outages"] == 1 and stats["errors"] >= 1
    finally:
        server.kill()
        if again is not None:
            again.kill()


def test_an_error_answer_is_not_an_outage(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = shared_redis(settings(tmp_path, **quick(redis_server.url)), user="m")

    async def go() -> None:
        key = shared.prefix + "list"
        await shared.call(lambda r: r.rpush(key, "a"))
        for _ in range(3):
            with pytest.raises(RedisUnavailableError, match="WRONGTYPE"):
                await shared.call(lambda r: r.get(key))
        assert not shared.down and shared.available()
        assert await shared.call(lambda r: r.lrange(key, 0, -1)) == [b"a"]
        await shared.release()

    with caplog.at_level(logging.INFO, logger="colonnade.redis"):
        asyncio.run(go())
    assert DOWN not in caplog.text
    assert caplog.text.count("answered with an error") == 1
    assert shared.errors == 3 and shared.outages == 0


def test_one_client_per_settings_closed_by_the_last_user(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    s = settings(tmp_path, **quick(redis_server.url))
    a = shared_redis(s, user="a")
    b = shared_redis(settings(tmp_path, **quick(redis_server.url)), user="b")
    assert a is b
    other = shared_redis(settings(tmp_path, **quick(redis_server.url), pool_size=3), user="c")
    assert other is not a

    async def go() -> None:
        assert await roundtrip(a, "x") == b"x"
        client = a.client()
        await a.release()
        assert a.client() is client  # b still uses it
        await b.release()
        assert shared_redis(s, user="d") is not a  # a new one for the next user
        await other.release()

    asyncio.run(go())


def test_pool_size_bounds_connections(redis_server: RedisServer, tmp_path: Path) -> None:
    # Forty calls queue for two connections: with quick()'s 0.3 s wait for a free
    # one, a loaded machine would time the queue out. The bound is what is tested.
    shared = shared_redis(
        settings(
            tmp_path, url=redis_server.url, command_timeout=10, connect_timeout=10, pool_size=2
        ),
        user="m",
    )

    async def go() -> int:
        await asyncio.gather(*(roundtrip(shared, str(i)) for i in range(40)))
        clients = await shared.call(lambda r: r.client_list())
        await shared.release()
        return len(clients)

    # Two pooled connections (one of them asked CLIENT LIST).
    assert asyncio.run(go()) <= 2


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = issue(ca, tmp_path / "server", "redis", "127.0.0.1")
    client_cert = issue(ca, tmp_path / "client", "client", "client.example")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    assert server_cert.key is not None and client_cert.key is not None
    server = RedisServer(tmp_path, tls=RedisTls(server_cert.cert, server_cert.key, ca_file))
    try:
        s = settings(
            tmp_path,
            **quick(server.url),
            tls_ca=str(ca_file),
            tls_certificate=str(client_cert.cert),
            tls_key=str(client_cert.key),
        )
        shared = shared_redis(s, user="m")

        async def go() -> None:
            assert await roundtrip(shared, "tls") == b"tls"
            await shared.release()

        asyncio.run(go())
        # Without a client certificate the server refuses the handshake.
        bare = shared_redis(settings(tmp_path, **quick(server.url), tls_ca=str(ca_file)), user="m")

        async def refused() -> None:
            with pytest.raises(RedisUnavailableError):
                await roundtrip(bare, "x")
            await bare.release()

        asyncio.run(refused())
    finally:
        server.kill()


def test_applications_carry_the_redis_table(tmp_path: Path) -> None:
    from colonnade.testing.client import build_engine

    engine = build_engine(
        {
            "redis": {"url": "redis://127.0.0.1:1/0", "pool_size": 4},
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": "."}],
        },
        root=str(tmp_path),
    )
    engine.start()
    try:
        runtime = engine.sites[0].app_for("/")
        assert runtime is not None and runtime.app.redis is not None
        assert runtime.app.redis.pool_size == 4
    finally:
        engine.close()


def test_config_show_never_shows_the_redis_password(tmp_path: Path) -> None:
    from colonnade.management.effective import effective_config
    from colonnade.testing.client import build_engine

    engine = build_engine(
        {
            "server": {"modules": ["state.session", "handler.static"]},
            "redis": {"url": "redis://:pw-Show93k@127.0.0.1:1/0"},
            "session_state": {"provider": "redis"},
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": "."}],
        },
        root=str(tmp_path),
    )
    engine.start()
    try:
        shown = effective_config(engine, None, "/")
    finally:
        engine.close()
    assert shown["sections"]["session_state"]["provider"]["value"] == "redis"
    assert "pw-Show93k" not in repr(shown)


def test_calls_in_flight_when_redis_goes_do_not_lengthen_the_back_off(tmp_path: Path) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    shared = SharedRedis(settings(tmp_path, retry_min=5, retry_max=60), None)
    for _ in range(50):  # fifty requests failing at once: one outage, the first wait
        shared.failed(RedisConnectionError("refused"))
    assert shared.outages == 1 and shared.errors == 50
    assert shared._backoff == 5
    shared._retry_at = 0  # the back-off has passed: the probe fails, the wait doubles
    shared.failed(RedisConnectionError("refused"))
    assert shared._backoff == 10


def test_a_unix_socket(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, unix=tmp_path / "redis.sock")
    try:
        shared = shared_redis(settings(tmp_path, **quick(server.url)), user="m")

        async def go() -> None:
            assert await roundtrip(shared, "unix") == b"unix"
            await shared.release()

        asyncio.run(go())
    finally:
        server.kill()


def test_a_subscription_hears_every_node_and_leaves_the_pool_alone(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # pool_size 1: a subscription holding the pool's only connection would
    # leave none for commands; it has a connection of its own.
    shared = shared_redis(settings(tmp_path, **quick(redis_server.url), pool_size=1), user="s")
    heard: list[bytes] = []
    lost: list[bool] = []

    async def go() -> None:
        first = shared.subscribe("chan", heard.append, lambda: lost.append(True))
        second = shared.subscribe("chan", heard.append, lambda: None)
        deadline = time.monotonic() + PATIENCE
        while not (first.live and second.live):
            assert time.monotonic() < deadline, "subscribed"
            await asyncio.sleep(0.01)
        # One subscription per channel and loop, however many subscribers.
        channels = await shared.call(lambda r: r.pubsub_numsub("chan"))
        assert channels == [(b"chan", 1)]
        assert await shared.call(lambda r: r.publish("chan", b"one")) == 1
        while len(heard) < 2:
            assert time.monotonic() < deadline, "the message heard by both"
            await asyncio.sleep(0.01)
        assert heard == [b"one", b"one"] and lost == []
        await first.close()
        assert second.live  # the channel's other subscriber still hears
        await second.close()
        # Its connection closed (Redis may see that after our next command).
        while await shared.call(lambda r: r.pubsub_numsub("chan")) != [(b"chan", 0)]:
            assert time.monotonic() < deadline, "unsubscribed"
            await asyncio.sleep(0.01)
        await shared.release()

    asyncio.run(go())
