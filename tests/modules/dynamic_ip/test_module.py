"""security.dynamic_ip through the real pipeline: refusals, deny actions, logging-only,
concurrency, failed logons, locations, web.toml and its lock, config show.

Every test uses client addresses of its own: the counters are the process's shared
memory table, shared by every test of the session, as by every worker of a server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest

from colonnade import Context, Handler, Module, Stage, hook
from colonnade.core.auth import authorization, refuse_credentials
from colonnade.core.principal import Principal
from colonnade.errors import ConfigError
from colonnade.management.effective import effective_config
from colonnade.modules.dynamic_ip.config import DynamicIpSection
from colonnade.modules.dynamic_ip.module import ADMITTED, WOULD_DENY
from colonnade.testing import Client, TestResponse, build_engine

_addresses = (f"10.{a}.{b}.{c}" for a in range(100, 200) for b in range(256) for c in range(1, 255))


def address() -> str:
    """A client address no other test uses."""
    return next(_addresses)


_sites = itertools.count()


class Gate(Handler):
    """Answers once the test opens the gate (requests held in flight)."""

    id = "test.gate"
    gate: asyncio.Event | None = None

    async def execute(self, ctx: Context) -> None:
        if ctx.request.path.startswith("/held") and Gate.gate is not None:
            await Gate.gate.wait()
        ctx.response.body = b"ok"


class TestAuth(Module):
    """A logon scheme: ``Authorization: Test good`` logs on, anything else is refused."""

    id = "test.auth"

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate(self, ctx: Context) -> Any:
        found = authorization(ctx.request)
        if found is None or found.scheme != "test":
            return None
        if found.credentials == b"good":
            ctx.user = Principal("alice", "Test")
            return None
        refuse_credentials(ctx, "Test", "wrong password")
        from colonnade import FINISH

        return FINISH


def config(root: Path, settings: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": ["security.dynamic_ip", "test.auth", "test.gate"]},
        "sites": [
            {"name": f"s{next(_sites)}", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}
        ],
        "handlers": [{"path": "*", "handler": "test.gate"}],
        **extra,
    }
    if settings is not None:
        out["dynamic_ip_security"] = settings
    return out


def client(cfg: dict[str, Any], host: str | None = None) -> Client:
    engine = build_engine(cfg, modules=[Gate, TestAuth])
    return Client(engine, client_addr=(host or address(), 40000))


def substatus(response: TestResponse) -> tuple[int, int]:
    return response.status, response.context.response.substatus


RATE = {"deny_by_request_rate": True, "max_requests": 3, "interval": 60}


def test_nothing_is_counted_by_default(tmp_path: Path) -> None:
    with client(config(tmp_path)) as c:
        assert all(c.get("/").status == 200 for _ in range(50))


def test_the_rate_is_refused_with_403_502(tmp_path: Path) -> None:
    with client(config(tmp_path, RATE)) as c:
        answers = [c.get("/") for _ in range(5)]
        assert [a.status for a in answers] == [200, 200, 200, 403, 403]
        assert substatus(answers[-1]) == (403, 502)
        assert "too many requests" in answers[-1].text
        # The administrator's detail names the setting, for a local client only.
        assert "max_requests" not in answers[-1].text
        assert answers[-1].header("retry-after") is None


@pytest.mark.parametrize(
    ("action", "status"), [("Unauthorized", 401), ("Forbidden", 403), ("NotFound", 404)]
)
def test_deny_actions(tmp_path: Path, action: str, status: int) -> None:
    with client(config(tmp_path, {**RATE, "deny_action": action})) as c:
        answers = [c.get("/") for _ in range(4)]
    assert substatus(answers[-1]) == (status, 502)


def test_deny_status_429_says_when_to_retry(tmp_path: Path) -> None:
    settings = {**RATE, "deny_status": 429, "interval": 10}
    with client(config(tmp_path, settings)) as c:
        answers = [c.get("/") for _ in range(4)]
    assert substatus(answers[-1]) == (429, 502)
    retry = int(answers[-1].header("retry-after") or "0")
    assert 1 <= retry <= 21


def test_deny_status_must_be_an_error_status(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="deny_status"):
        build_engine(config(tmp_path, {**RATE, "deny_status": 200}), modules=[Gate, TestAuth])


def test_logging_only_refuses_nothing_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = address()
    with (
        caplog.at_level(logging.WARNING, "colonnade.dynamic_ip"),
        client(config(tmp_path, {**RATE, "logging_only": True}), host) as c,
    ):
        answers = [c.get("/") for _ in range(10)]
    assert all(a.status == 200 for a in answers)
    assert [a.context.items.get(WOULD_DENY) for a in answers[2:4]] == [None, "rate"]
    lines = [r.getMessage() for r in caplog.records if host in r.getMessage()]
    assert len(lines) == 1, lines
    assert "would refuse (logging_only)" in lines[0] and "max_requests = 3" in lines[0]


def test_refusals_are_logged_once_per_client_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = address()
    with (
        caplog.at_level(logging.WARNING, "colonnade.dynamic_ip"),
        client(config(tmp_path, RATE), host) as c,
    ):
        for _ in range(20):
            c.get("/")
    lines = [r.getMessage() for r in caplog.records if host in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"refused {host}")


def test_concurrent_requests_are_refused_with_403_501(tmp_path: Path) -> None:
    settings = {"deny_by_concurrent_requests": True, "max_concurrent_requests": 2}
    with client(config(tmp_path, settings)) as c:

        async def scenario() -> list[TestResponse]:
            Gate.gate = asyncio.Event()
            held = [asyncio.ensure_future(c.arequest("GET", "/held")) for _ in range(2)]
            for _ in range(5):
                await asyncio.sleep(0)  # both are in flight now
            third = await c.arequest("GET", "/")
            Gate.gate.set()
            done = await asyncio.gather(*held)
            after = await c.arequest("GET", "/")
            return [*done, third, after]

        try:
            first, second, third, after = c.loop.run_until_complete(scenario())
        finally:
            Gate.gate = None
    assert (first.status, second.status) == (200, 200)
    assert substatus(third) == (403, 501)
    assert "concurrent" in third.text
    assert after.status == 200  # the two ended: their in-flight counts went back
    assert ADMITTED not in after.context.items


def test_failed_logons_are_counted_and_refused(tmp_path: Path) -> None:
    settings = {
        "deny_by_auth_failures": True,
        "max_auth_failures": 3,
        "auth_failure_interval": 60,
    }
    with client(config(tmp_path, settings)) as c:
        bad = {"authorization": "Test wrong"}
        good = {"authorization": "Test good"}
        assert [c.get("/", headers=bad).status for _ in range(3)] == [401, 401, 401]
        # Now even the right password is refused from this address for a while.
        refused = c.get("/", headers=good)
        assert substatus(refused) == (403, 502)
        assert "failed logons" in refused.text
    with client(config(tmp_path, settings)) as other:
        assert other.get("/", headers=good).status == 200  # another address


def test_failed_logons_do_not_count_unless_asked(tmp_path: Path) -> None:
    with client(config(tmp_path, RATE | {"max_requests": 100})) as c:
        for _ in range(20):
            assert c.get("/", headers={"authorization": "Test wrong"}).status == 401
        assert c.get("/", headers={"authorization": "Test good"}).status == 200


def test_a_location_has_its_own_limits_and_counters(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        {**RATE, "max_requests": 5},
        locations=[{"path": "/login", "dynamic_ip_security": {"max_requests": 1}}],
    )
    with client(cfg) as c:
        assert c.get("/login").status == 200
        assert substatus(c.get("/login")) == (403, 502)
        # The rest of the site counts apart, with its own limit.
        assert [c.get("/page").status for _ in range(6)] == [200] * 5 + [403]


def test_a_location_can_switch_it_off(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        RATE,
        locations=[{"path": "/health", "dynamic_ip_security": {"deny_by_request_rate": False}}],
    )
    with client(cfg) as c:
        assert all(c.get("/health").status == 200 for _ in range(10))
        assert [c.get("/").status for _ in range(4)] == [200, 200, 200, 403]


def test_server_level_keys_are_refused_in_a_location(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        RATE,
        locations=[{"path": "/a", "dynamic_ip_security": {"max_clients": 100}}],
    )
    with pytest.raises(ConfigError, match="max_clients"):
        build_engine(cfg, modules=[Gate, TestAuth])


def test_clients_without_an_address_are_not_counted(tmp_path: Path) -> None:
    with client(config(tmp_path, RATE), "/run/colonnade.sock") as c:
        assert all(c.get("/").status == 200 for _ in range(10))


def _web_toml_site(tmp_path: Path, lock: dict[str, str] | None) -> dict[str, Any]:
    (tmp_path / "strict").mkdir()
    (tmp_path / "strict" / "web.toml").write_text(
        "[dynamic_ip_security]\ndeny_by_request_rate = true\nmax_requests = 1\ninterval = 60\n"
    )
    extra = {"lock": lock} if lock is not None else {}
    return config(tmp_path, {**RATE, "max_requests": 100}, **extra)


def test_web_toml_may_not_set_it_unless_unlocked(tmp_path: Path) -> None:
    with client(_web_toml_site(tmp_path, None)) as c:
        refused = c.get("/strict/x")
        assert substatus(refused) == (500, 19)  # the folder's web.toml is refused
        assert c.get("/x").status == 200


def test_web_toml_sets_it_where_the_lock_allows(tmp_path: Path) -> None:
    with client(_web_toml_site(tmp_path, {"dynamic_ip_security": "allow"})) as c:
        assert c.get("/strict/x").status == 200
        assert substatus(c.get("/strict/x")) == (403, 502)
        assert [c.get("/x").status for _ in range(3)] == [200] * 3


def test_config_show_hides_the_redis_password(tmp_path: Path) -> None:
    url = "redis://colonnade:s3cret-pw@127.0.0.1:6390/0"
    engine = build_engine(config(tmp_path, {**RATE, "redis_url": url}), modules=[Gate, TestAuth])
    shown = effective_config(engine, None, "/")["sections"]["dynamic_ip_security"]
    assert "s3cret-pw" not in repr(shown)
    assert shown["redis_url"]["value"] == "redis://colonnade:***@127.0.0.1:6390/0"
    assert DynamicIpSection().shown("redis_url", "") == ""
