"""state.session through the real pipeline, with both stores (memory, and a real
redis-server): the cookie, saved only when changed, locking (read-write requests
of one session serialize, read-only ones run together), lock timeout, forged
cookies and corrupt entries (a fresh session, never a 500 or another's data),
size limit, abandon, sign-in through forms authentication (a new id), Redis
down (503 or an unsaved session), and ``colonnade check``'s warning."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade import Context, Handler, auth
from colonnade.core.request import TlsInfo
from colonnade.core.session import ID_LENGTH, Session
from colonnade.testing import Client, TestResponse, build_engine
from tests.modules.forms_auth.support import new_key, write_keys
from tests.support.redis import RedisServer
from tests.support.wait import PATIENCE

COOKIE = "ColonnadeSessionId"
_sites = itertools.count()


class Probe(Handler):
    """A page that uses the session: ``/inc`` counts, ``/read`` shows it, ``/big``
    writes a large value, ``/bye`` abandons, ``/signin`` signs in (forms), and
    ``/held/...`` waits for the test's gate, recording who is inside."""

    id = "test.session"
    gate: asyncio.Event | None = None
    inside = 0
    most_inside = 0
    entered: list[str] = []

    async def execute(self, ctx: Context) -> None:
        session = ctx.session
        path = ctx.request.path
        if session is None:
            ctx.response.body = b"no session"
            return
        if path.startswith(("/held", "/ro/held")):
            cls = type(self)
            cls.inside += 1
            cls.most_inside = max(cls.most_inside, cls.inside)
            cls.entered.append(path)
            try:
                assert cls.gate is not None
                n = session.get("n", 0)
                await cls.gate.wait()
                if not session.read_only:
                    session["n"] = n + 1
            finally:
                cls.inside -= 1
        elif path == "/inc":
            session["n"] = session.get("n", 0) + 1
        elif path == "/big":
            session["big"] = "x" * 100_000
        elif path == "/bad":
            session["when"] = object()
        elif path == "/bye":
            session.abandon()
        elif path == "/signin":
            auth.set_auth_cookie({"colonnade.context": ctx}, "alice")
        ctx.response.body = json.dumps(dict(session)).encode()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    Probe.gate, Probe.inside, Probe.most_inside, Probe.entered = None, 0, 0, []
    yield


@pytest.fixture(params=["memory", "redis"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Extra configuration for each store (Redis: a server of its own)."""
    if request.param == "memory":
        yield {"session_state": {"provider": "memory"}}
        return
    server = RedisServer(tmp_path)
    try:
        yield {
            "session_state": {"provider": "redis"},
            "redis": {"url": server.url, "command_timeout": 0.3, "retry_min": 0.05},
            "_redis_server": server,
        }
    finally:
        server.kill()


def engine_for(extra: dict[str, Any], *, modules: list[str] | None = None, **session: Any) -> Any:
    config: dict[str, Any] = {
        "server": {"modules": modules or ["state.session", "test.session"]},
        "sites": [{"name": f"s{next(_sites)}", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "test.session"}],
    }
    for key, value in extra.items():
        if not key.startswith("_"):
            config[key] = dict(value) if isinstance(value, dict) else value
    config["session_state"] = {**config.get("session_state", {}), **session}
    return build_engine(config, modules=[Probe])


def set_cookies(resp: TestResponse) -> list[str]:
    return [v.decode() for k, v in resp.headers if k == b"set-cookie"]


def session_cookie_named(resp: TestResponse, name: str) -> str | None:
    for value in set_cookies(resp):
        if value.startswith(name + "="):
            return value.split(";")[0].split("=", 1)[1]
    return None


def session_cookie(resp: TestResponse) -> str | None:
    return session_cookie_named(resp, COOKIE)


def with_id(sid: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={sid}"}


def test_a_session_is_made_when_written_and_found_again(provider: dict[str, Any]) -> None:
    with Client(engine_for(provider)) as c:
        first = c.get("/read")
        assert first.status == 200 and first.text == "{}"
        assert set_cookies(first) == []  # nothing written: nothing stored, no cookie
        made = c.get("/inc")
        assert made.text == '{"n": 1}'
        header = set_cookies(made)[0]
        sid = session_cookie(made)
        assert sid is not None and len(sid) == ID_LENGTH
        assert re.fullmatch(rf"{COOKIE}=[a-z0-5]{{26}}; Path=/; HttpOnly; SameSite=Lax", header)
        assert made.header("cache-control") == "private"
        again = c.get("/inc", headers=with_id(sid))
        assert again.text == '{"n": 2}'
        assert set_cookies(again) == []  # the client has the id
        assert c.get("/read", headers=with_id(sid)).text == '{"n": 2}'


def test_ids_are_random_and_unique(provider: dict[str, Any]) -> None:
    with Client(engine_for(provider)) as c:
        ids = {session_cookie(c.get("/inc")) for _ in range(50)}
    assert len(ids) == 50 and None not in ids


def test_cookie_attributes_follow_the_settings() -> None:
    engine = engine_for(
        {},
        cookie_name="sid",
        require_ssl=True,
        same_site="Strict",
        cookie_domain="example.com",
        cookie_path="/app",
    )
    with Client(engine) as c:
        tls = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", "localhost", None)
        made = c.get("/inc", tls=tls)
        header = set_cookies(made)[0]
        sid = session_cookie_named(made, "sid")
        assert c.get("/read", tls=tls, headers={"cookie": f"sid={sid}"}).text == '{"n": 1}'
        # In clear the id is not used, and none is issued.
        clear = c.get("/inc", headers={"cookie": f"sid={sid}"})
        assert clear.text == '{"n": 1}' and set_cookies(clear) == []
        assert c.get("/read", tls=tls, headers={"cookie": f"sid={sid}"}).text == '{"n": 1}'
    assert re.fullmatch(
        r"sid=[a-z0-5]{26}; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=Strict",
        header,
    )


@pytest.mark.parametrize(
    "value",
    [
        "x",
        "A" * ID_LENGTH,  # upper case: not our alphabet
        "9" * ID_LENGTH,  # 6-9 are not either
        "a" * (ID_LENGTH + 1),
        "a" * 10_000,
        "%00" * 9,
        "a" * ID_LENGTH,  # the right form, but no such session
    ],
)
def test_forged_cookies_get_a_fresh_session(provider: dict[str, Any], value: str) -> None:
    with Client(engine_for(provider)) as c:
        victim = session_cookie(c.get("/inc"))
        assert victim is not None
        resp = c.get("/inc", headers=with_id(value))
        assert resp.status == 200 and resp.text == '{"n": 1}'
        fresh = session_cookie(resp)
        assert fresh is not None and fresh not in (value, victim)
        # The victim's session is untouched.
        assert c.get("/read", headers=with_id(victim)).text == '{"n": 1}'


def test_several_cookies_of_the_name_the_first_valid_counts(provider: dict[str, Any]) -> None:
    with Client(engine_for(provider)) as c:
        sid = session_cookie(c.get("/inc"))
        resp = c.get("/read", headers={"cookie": f"{COOKIE}=bogus; other=1; {COOKIE}={sid}"})
        assert resp.text == '{"n": 1}'


def test_too_large_is_not_saved_the_previous_stays(
    provider: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with Client(engine_for(provider, max_size=1024)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None
        assert c.get("/big", headers=with_id(sid)).status == 200
        assert c.get("/read", headers=with_id(sid)).text == '{"n": 1}'
        assert c.get("/bad", headers=with_id(sid)).status == 500  # the page's own json.dumps
        # The failed request let the lock go at once (nothing saved).
        began = time.monotonic()
        assert c.get("/read", headers=with_id(sid)).text == '{"n": 1}'
        assert time.monotonic() - began < 5
    assert "more than session_state.max_size 1024" in caplog.text


def test_abandon_deletes_and_clears_the_cookie(provider: dict[str, Any]) -> None:
    with Client(engine_for(provider)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None
        bye = c.get("/bye", headers=with_id(sid))
        assert set_cookies(bye) == [
            f"{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; "
            "Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ]
        after = c.get("/read", headers=with_id(sid))
        assert after.text == "{}"


def test_mode_off_and_read_only(provider: dict[str, Any]) -> None:
    extra = {
        **provider,
        "locations": [
            {"path": "/static", "session_state": {"mode": "off"}},
            {"path": "/ro", "session_state": {"mode": "read_only"}},
        ],
    }
    with Client(engine_for(extra)) as c:
        assert c.get("/static/x").text == "no session"
        sid = session_cookie(c.get("/inc"))
        assert sid is not None
        # Read-only: reads it; what the page writes there is not saved.
        assert c.get("/ro/x", headers=with_id(sid)).text == '{"n": 1}'
        assert c.get("/read", headers=with_id(sid)).text == '{"n": 1}'
        # A new session on a read-only page gets no cookie.
        assert set_cookies(c.get("/ro/x")) == []


async def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"waited in vain for: {what}"
        await asyncio.sleep(0.01)


def test_read_write_requests_of_one_session_run_one_after_the_other(
    provider: dict[str, Any],
) -> None:
    with Client(engine_for(provider)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None

        async def go() -> list[TestResponse]:
            Probe.gate = asyncio.Event()
            first = asyncio.ensure_future(c.arequest("GET", "/held/a", headers=with_id(sid)))
            second = asyncio.ensure_future(c.arequest("GET", "/held/b", headers=with_id(sid)))
            await _until(lambda: Probe.inside == 1, "one request inside")
            # The other waits for the lock: still one inside a while later
            # (another session is not held up meanwhile).
            other = await c.arequest("GET", "/inc")
            assert other.status == 200
            await asyncio.sleep(0.3)
            assert Probe.inside == 1 and len(Probe.entered) == 1
            Probe.gate.set()
            return [await first, await second]

        results = c.loop.run_until_complete(go())
        assert [r.status for r in results] == [200, 200]
        assert Probe.most_inside == 1
        # No lost update: each read the other's write.
        assert c.get("/read", headers=with_id(sid)).text == '{"n": 3}'


def test_read_only_requests_run_together(provider: dict[str, Any]) -> None:
    extra = {**provider, "locations": [{"path": "/ro", "session_state": {"mode": "read_only"}}]}
    with Client(engine_for(extra)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None

        async def go() -> list[TestResponse]:
            Probe.gate = asyncio.Event()
            tasks = [
                asyncio.ensure_future(c.arequest("GET", f"/ro/held/{i}", headers=with_id(sid)))
                for i in range(3)
            ]
            await _until(lambda: Probe.inside == 3, "three read-only requests inside at once")
            Probe.gate.set()
            return [await t for t in tasks]

        results = c.loop.run_until_complete(go())
        assert [r.status for r in results] == [200, 200, 200]
        assert Probe.most_inside == 3


def test_lock_timeout_takes_an_old_lock_over_and_answers_503_behind_it(
    provider: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # The holder keeps its lock past lock_timeout: one waiter takes it over (as
    # ASP.NET force-releases an old lock), the other waits its lock_timeout in
    # vain behind the new holder (503), and the first holder's changes are lost.
    with Client(engine_for(provider, lock_timeout=0.4)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None

        async def go() -> list[TestResponse]:
            Probe.gate = asyncio.Event()
            holder = asyncio.ensure_future(c.arequest("GET", "/held/a", headers=with_id(sid)))
            await _until(lambda: Probe.inside == 1, "the holder inside")
            waiters = [
                asyncio.ensure_future(c.arequest("GET", f"/held/{x}", headers=with_id(sid)))
                for x in "bc"
            ]
            await _until(lambda: any(w.done() for w in waiters), "a waiter answered")
            assert Probe.inside == 2  # the holder and the one that took over
            Probe.gate.set()
            return [await holder] + [await w for w in waiters]

        holder, *waiters = c.loop.run_until_complete(go())
        assert holder.status == 200
        assert sorted(w.status for w in waiters) == [200, 503]
        refused = next(w for w in waiters if w.status == 503)
        assert refused.header("retry-after") == "1"
        # The one that took over saved n = 2; the holder's write was dropped.
        assert c.get("/read", headers=with_id(sid)).text == '{"n": 2}'
    assert "another took it over" in caplog.text
    assert "waited 0.4 s for its session's lock in vain" in caplog.text


def test_sign_in_gives_the_session_a_new_id(provider: dict[str, Any], tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys", new_key())
    extra = {**provider, "forms_authentication": {"key_file": str(keys)}}
    engine = engine_for(extra, modules=["auth.forms", "state.session", "test.session"])
    with Client(engine) as c:
        planted = session_cookie(c.get("/inc"))
        assert planted is not None
        signed = c.get("/signin", headers=with_id(planted))
        assert signed.status == 200
        renewed = session_cookie(signed)
        assert renewed is not None and renewed != planted
        assert any(v.startswith(".COLONNADEAUTH=") for v in set_cookies(signed))
        assert c.get("/read", headers=with_id(renewed)).text == '{"n": 1}'  # data kept
        assert c.get("/read", headers=with_id(planted)).text == "{}"  # the old id is dead


def stored_key(cli: list[str], sid: str) -> str:
    """The Redis key holding session ``sid`` (asked with redis-cli)."""
    keys = subprocess.run(
        [*cli, "--raw", "keys", "*"], capture_output=True, text=True, check=True
    ).stdout.split()
    return next(k for k in keys if k.endswith(sid))


def test_sliding_expiry_in_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    try:
        extra = {"redis": {"url": server.url}, "session_state": {"provider": "redis"}}
        with Client(engine_for(extra, timeout=1)) as c:
            sid = session_cookie(c.get("/inc"))
            assert sid is not None
            cli = ["redis-cli", "-p", str(server.port)]
            data_key = stored_key(cli, sid)
            subprocess.run([*cli, "pexpire", data_key, "5000"], check=True, capture_output=True)
            c.get("/read", headers=with_id(sid))  # a read (unchanged) slides it
            ttl = int(
                subprocess.run(
                    [*cli, "pttl", data_key], capture_output=True, text=True, check=True
                ).stdout
            )
            assert 50_000 < ttl <= 60_000
            assert c.get("/read", headers=with_id(sid)).text == '{"n": 1}'
    finally:
        server.kill()


@pytest.mark.parametrize(
    "stored", [b"not json", b"[1,2]", b'"text"', b"\xff\xfe", b'{"n": 1', b"null"]
)
def test_a_corrupt_entry_gives_a_fresh_session(tmp_path: Path, stored: bytes) -> None:
    server = RedisServer(tmp_path)
    try:
        extra = {"redis": {"url": server.url}, "session_state": {"provider": "redis"}}
        with Client(engine_for(extra)) as c:
            sid = session_cookie(c.get("/inc"))
            assert sid is not None
            cli = ["redis-cli", "-p", str(server.port)]
            data_key = stored_key(cli, sid)
            subprocess.run([*cli, "-x", "set", data_key], input=stored, check=True)
            resp = c.get("/inc", headers=with_id(sid))
            assert resp.status == 200 and resp.text == '{"n": 1}'
            fresh = session_cookie(resp)
            assert fresh is not None and fresh != sid
    finally:
        server.kill()


@pytest.mark.parametrize("failure", ["closed", "open"])
def test_redis_down(tmp_path: Path, failure: str, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path)
    extra = {
        "redis": {"url": server.url, "command_timeout": 0.3, "retry_min": 0.05},
        "session_state": {"provider": "redis", "redis_failure": failure},
    }
    again: RedisServer | None = None
    try:
        with Client(engine_for(extra)) as c:
            sid = session_cookie(c.get("/inc"))
            assert sid is not None
            server.kill()
            for _ in range(5):
                resp = c.get("/inc", headers=with_id(sid))
                if failure == "closed":
                    assert resp.status == 503 and resp.header("retry-after") == "1"
                else:
                    assert resp.status == 200 and resp.text == '{"n": 1}'
                    assert set_cookies(resp) == []
                # A request without a cookie does not need Redis.
                assert c.get("/read").status == 200
            again = RedisServer(tmp_path, server.port)

            def works() -> bool:
                # The restarted Redis is empty: the old id is unknown, a fresh
                # session (with a new id) once Redis is used again.
                resp = c.get("/inc", headers=with_id(sid))
                return resp.status == 200 and session_cookie(resp) not in (None, sid)

            deadline = time.monotonic() + PATIENCE
            while not works():
                assert time.monotonic() < deadline, "Redis used again"
        assert caplog.text.count("cannot be reached") == 1
        assert caplog.text.count("answers again") == 1
    finally:
        server.kill()
        if again is not None:
            again.kill()


def test_redis_provider_needs_a_redis_table() -> None:
    from colonnade.errors import ConfigError

    # Refused when the configuration is built (colonnade check), naming the key.
    with pytest.raises(ConfigError, match=r'session_state.provider: "redis" needs a \[redis\]'):
        engine_for({"session_state": {"provider": "redis"}})


def test_the_session_object() -> None:
    s = Session(None, {}, is_new=True, read_only=False)
    assert not s.modified and not s.has_id
    s["a"] = [1]
    assert s.modified and len(s.id) == ID_LENGTH and s.id == s.id
    with pytest.raises(TypeError):
        s[1] = 2  # type: ignore[index]
    s.regenerate_id()
    assert s.previous_id is None  # a new session has nothing to move
    old = Session("a" * ID_LENGTH, {"x": 1}, is_new=False, read_only=False)
    old.regenerate_id()
    assert old.previous_id == "a" * ID_LENGTH and old.id != old.previous_id


def test_check_warns_about_memory_sessions_in_a_web_garden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from colonnade.management.cli import main

    (tmp_path / "www").mkdir()
    config = tmp_path / "colonnade.toml"
    config.write_text(
        '[server]\nmodules = ["state.session", "handler.static"]\n\n'
        '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:1"]\nroot = "www"\n\n'
        "[pools.default]\nworkers = 2\n"
    )
    assert main(["check", "-c", str(config)]) == 0
    err = capsys.readouterr().err
    assert "warning: main/: session_state.provider is 'memory'" in err
    assert "pool 'default' has 2 workers" in err
    config.write_text(config.read_text().replace("workers = 2", "workers = 1"))
    assert main(["check", "-c", str(config)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_upgrade_request_never_takes_the_lock() -> None:
    # A WebSocket lives long: it reads the session but never holds its lock.
    with Client(engine_for({})) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None
        upgrade = {"cookie": f"{COOKIE}={sid}", "upgrade": "websocket"}

        async def go() -> list[TestResponse]:
            Probe.gate = asyncio.Event()
            tasks = [
                asyncio.ensure_future(c.arequest("GET", f"/held/{i}", headers=upgrade))
                for i in range(2)
            ]
            await _until(lambda: Probe.inside == 2, "both inside at once")
            Probe.gate.set()
            return [await t for t in tasks]

        assert [r.status for r in c.loop.run_until_complete(go())] == [200, 200]
        assert c.get("/read", headers=with_id(sid)).text == '{"n": 1}'  # nothing saved


def test_memory_keeps_max_sessions_least_recently_used_go() -> None:
    with Client(engine_for({}, max_sessions=3)) as c:
        ids = [session_cookie(c.get("/inc")) for _ in range(3)]
        assert None not in ids
        c.get("/read", headers=with_id(str(ids[0])))  # used: now the most recent
        session_cookie(c.get("/inc"))  # a fourth: the least recently used goes
        assert c.get("/read", headers=with_id(str(ids[1]))).text == "{}"
        for kept in (ids[0], ids[2]):
            assert c.get("/read", headers=with_id(str(kept))).text == '{"n": 1}'


def test_the_server_login_page_gives_the_session_a_new_id(tmp_path: Path) -> None:
    from tests.modules.forms_auth.support import USERS, form, write_users

    keys = write_keys(tmp_path / "keys", new_key())
    users = write_users(tmp_path / "users")
    extra = {"forms_authentication": {"key_file": str(keys), "users_file": str(users)}}
    engine = engine_for(extra, modules=["auth.forms", "state.session", "test.session"])
    with Client(engine) as c:
        planted = session_cookie(c.get("/inc"))
        assert planted is not None
        signed = c.post(
            "/login",
            form(username="alice", password=USERS["alice"]),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "origin": "http://localhost",
                "cookie": f"{COOKIE}={planted}",
            },
        )
        assert signed.status == 303, signed.text
        renewed = session_cookie(signed)
        assert renewed is not None and renewed != planted
        assert c.get("/read", headers=with_id(renewed)).text == '{"n": 1}'
        assert c.get("/read", headers=with_id(planted)).text == "{}"


def test_a_read_only_request_waits_for_a_writer_and_sees_its_changes(
    provider: dict[str, Any],
) -> None:
    # As in ASP.NET: read-only requests take no lock, but do not read past a
    # writer that is still running.
    extra = {**provider, "locations": [{"path": "/ro", "session_state": {"mode": "read_only"}}]}
    with Client(engine_for(extra)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None

        async def go() -> TestResponse:
            Probe.gate = asyncio.Event()
            writer = asyncio.ensure_future(c.arequest("GET", "/held/w", headers=with_id(sid)))
            await _until(lambda: Probe.inside == 1, "the writer inside")
            reader = asyncio.ensure_future(c.arequest("GET", "/ro/read", headers=with_id(sid)))
            await asyncio.sleep(0.2)
            assert not reader.done()  # still waiting for the writer
            Probe.gate.set()
            assert (await writer).status == 200
            return await reader

        assert c.loop.run_until_complete(go()).text == '{"n": 2}'


def test_handlers_that_use_no_session_are_served_while_redis_is_down(tmp_path: Path) -> None:
    # Static files (as FastCGI, CGI and the proxy) never read the session:
    # state.session leaves their requests alone, so a Redis outage fails only
    # the pages that use it (the chaos suite's backends scenario found every
    # request of a user with a session cookie answered 503).
    server = RedisServer(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.txt").write_text("static")
    config: dict[str, Any] = {
        "server": {"modules": ["state.session", "handler.static", "test.session"]},
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(site)}],
        "handlers": [
            {"path": "*.txt", "handler": "handler.static"},
            {"path": "*", "handler": "test.session"},
        ],
        "redis": {"url": server.url, "command_timeout": 0.3, "retry_min": 0.05},
        "session_state": {"provider": "redis"},
    }
    try:
        with Client(build_engine(config, modules=[Probe])) as c:
            sid = session_cookie(c.get("/inc"))
            assert sid is not None
            server.kill()
            assert c.get("/inc", headers=with_id(sid)).status == 503
            static = c.get("/a.txt", headers=with_id(sid))
            assert static.status == 200 and static.text == "static"
            assert set_cookies(static) == []
    finally:
        server.kill()
