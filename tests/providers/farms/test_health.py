"""Health: active probes over real sockets, passive detection, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.providers.farms import Farm, farm_for
from colonnade.providers.farms.health import MAX_HEAD, ProbeFailedError, probe
from colonnade.providers.farms.members import Member
from tests.providers.farms.conftest import settings
from tests.support.wait import PATIENCE, wait_for_async

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy"


class Upstream:
    """A member over a real socket whose answer the test changes: bytes to send
    (then close), or "stall" (read the request, never answer)."""

    def __init__(self, answer: bytes | str = OK) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.address = ""

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            if self.answer == "stall":
                await reader.read()  # until the prober gives up and closes
                return
            assert isinstance(self.answer, bytes)
            writer.write(self.answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start(self, unix: str | None = None) -> Upstream:
        if unix is not None:
            self.server = await asyncio.start_unix_server(self._client, path=unix)
            self.address = f"unix:{unix}"
        else:
            self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            port = self.server.sockets[0].getsockname()[1]
            self.address = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)


@contextlib.asynccontextmanager
async def upstreams(*answers: bytes | str) -> AsyncIterator[list[Upstream]]:
    started = [await Upstream(answer).start() for answer in answers]
    try:
        yield started
    finally:
        for upstream in started:
            await upstream.close()


def member_of(upstream: Upstream, **health: Any) -> tuple[Member, Any]:
    config = settings([{"address": upstream.address}], health={"url": "/health", **health})
    return Member("app", config.members[0]), config.health


async def outcome(upstream: Upstream, **health: Any) -> str | None:
    """None when a probe of ``upstream`` passes, else why it failed."""
    member, config = member_of(upstream, **health)
    try:
        await probe(member, config, config.status_ranges())
    except (ProbeFailedError, OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- one probe ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "health", "failure"),
    [
        (OK, {}, None),
        (b"HTTP/1.1 204 No Content\r\n\r\n", {}, None),
        (b"HTTP/1.0 302 Found\r\nLocation: /\r\n\r\n", {}, None),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", {}, "status 500"),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", {}, "status 404"),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", {"statuses": "200,404"}, None),
        (OK, {"body_match": "healthy"}, None),
        (OK, {"body_match": "ready"}, "does not contain 'ready'"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nall \r\n5\r\nready\r\n0\r\n\r\n",
            {"body_match": "all ready"},
            None,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nstatus: ready (until close)", {"body_match": "ready"}, None),
        (
            b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000 + b"ready",
            {"body_match": "ready", "max_body": 4096},
            "does not contain",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", {}, "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", {}, "not a status"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * MAX_HEAD + b"\r\n\r\n", {}, "head over"),
        (b"HTTP/1.1 200 OK\r\n", {}, "closed before a whole response head"),
        ("stall", {"timeout": 0.2}, "TimeoutError"),
    ],
)
def test_a_probe_judges_the_answer(answer: bytes | str, health: Any, failure: str | None) -> None:
    async def go() -> str | None:
        async with upstreams(answer) as (upstream,):
            return await outcome(upstream, **health)

    found = run(go())
    if failure is None:
        assert found is None
    else:
        assert found is not None and failure in found


def test_the_probe_request_is_a_bounded_get_that_closes() -> None:
    async def go() -> list[bytes]:
        async with upstreams(OK) as (upstream,):
            assert await outcome(upstream) is None
            assert await outcome(upstream, url="/ready?deep=1", host="app.example") is None
            return upstream.requests

    plain, custom = run(go())
    port = plain.split(b"Host: 127.0.0.1:")[1].split(b"\r\n")[0]
    assert plain.startswith(b"GET /health HTTP/1.1\r\n") and port.isdigit()
    assert b"Connection: close\r\n" in plain and b"User-Agent: colonnade-health-probe" in plain
    assert custom.startswith(b"GET /ready?deep=1 HTTP/1.1\r\nHost: app.example\r\n")


def test_a_refused_connection_fails_the_probe() -> None:
    async def go() -> str | None:
        async with upstreams(OK) as (upstream,):
            address = upstream.address
        gone = Upstream()
        gone.address = address  # closed: nothing listens there any more
        return await outcome(gone)

    found = run(go())
    assert found is not None and "Error" in found


def test_a_unix_socket_member_is_probed(tmp_path: Path) -> None:
    async def go() -> str | None:
        upstream = await Upstream(OK).start(unix=str(tmp_path / "app.sock"))
        try:
            return await outcome(upstream, body_match="healthy")
        finally:
            await upstream.close()

    assert run(go()) is None


# -- probes of a farm ------------------------------------------------------------------


def probed_farm(ups: list[Upstream], **health: Any) -> Farm:
    return farm_for(
        settings(
            [{"address": u.address} for u in ups],
            health={"url": "/health", "interval": 0.05, "timeout": 1.0, **health},
        ),
        name="app",
    )


def test_probes_start_at_first_use_mark_members_down_and_up_and_stop() -> None:
    async def go() -> None:
        async with upstreams(OK, b"HTTP/1.1 503 Busy\r\n\r\n") as (good, bad):
            farm = probed_farm([good, bad])
            assert not good.requests  # nothing is probed before the farm is used
            healthy, sick = farm.members
            assert farm.choose(None) is not None
            await wait_for_async(lambda: sick.state == "unavailable", PATIENCE, "probe: down")
            assert "status 503" in sick.down_reason
            assert healthy.state == "available" and healthy.probes >= 1
            for _ in range(4):
                lease = farm.choose(None)
                assert lease is not None and lease.member is healthy
                lease.finished("ok", 0.01)
            bad.answer = OK  # it recovers: the next passing probe brings it back
            await wait_for_async(lambda: sick.state == "available", PATIENCE, "probe: back")
            tasks = farm._prober.tasks if farm._prober is not None else []
            assert len(tasks) == 2
            await farm.close()
            assert all(task.done() for task in tasks)
            count = len(good.requests)
            await asyncio.sleep(0.2)  # several intervals: no probe runs any more
            assert len(good.requests) == count
            farm.choose(None)  # used again: probing again
            await wait_for_async(lambda: len(good.requests) > count, PATIENCE, "probing again")
            await farm.close()

    run(go())


def test_a_stalled_member_is_marked_down_by_the_probe_timeout() -> None:
    async def go() -> None:
        async with upstreams("stall") as (stalled,):
            farm = probed_farm([stalled], timeout=0.2)
            member = farm.members[0]
            farm.choose(None)
            await wait_for_async(lambda: not member.healthy, PATIENCE, "stalled member down")
            assert "no answer within 0.2s" in member.down_reason
            assert farm.choose(None) is None  # the only member is down: 502.4
            await farm.close()

    run(go())


def test_a_reload_with_new_members_restarts_the_probes() -> None:
    async def go() -> None:
        async with upstreams(OK, OK) as (first, second):
            farm = probed_farm([first])
            farm.choose(None)
            await wait_for_async(lambda: first.requests, PATIENCE, "first probed")
            probed_farm([first, second])  # the same farm, reloaded with a member more
            farm.choose(None)
            await wait_for_async(lambda: second.requests, PATIENCE, "new member probed")
            await farm.close()

    run(go())


def test_the_loop_closing_leaves_no_task_behind() -> None:
    async def use() -> None:
        async with upstreams(OK) as (up,):
            probed_farm([up]).choose(None)
            await wait_for_async(lambda: up.requests, PATIENCE, "probed")

    run(use())  # no close(): asyncio.run cancels the probe on the way out
    # A new loop (a test, or a worker started afresh) gets probes of its own.
    run(use())


# -- passive detection -----------------------------------------------------------------


def fail(farm: Farm, times: int, outcome: str = "connect_failed") -> None:
    for _ in range(times):
        lease = farm.choose(None)
        assert lease is not None
        lease.finished(outcome, 0.001)  # type: ignore[arg-type]


def test_n_failures_within_the_window_mark_a_member_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    farm = farm_for(settings(1, health={"failures": 3, "window": 60}), name="app")
    member = farm.members[0]
    fail(farm, 2, "failed")
    assert member.healthy  # two of three
    with caplog.at_level("WARNING", logger="colonnade.farms"):
        fail(farm, 1, "connect_failed")
        # Requests still in flight that fail later add no second line.
        member.failed("request failed", farm.settings.health, time.monotonic(), probed=False)
    assert not member.healthy and member.state == "unavailable"
    assert "3 failed request(s) within 60s: connection failed" in member.down_reason
    assert [r.getMessage() for r in caplog.records] == [
        "farm app: member 10.0.0.1:8080 is down: 3 failed request(s) within 60s: connection failed"
    ]
    assert farm.choose(None) is None
    assert member.failures == 4


def test_failures_outside_the_window_do_not_add_up() -> None:
    farm = farm_for(settings(1, health={"failures": 2, "window": 0.05}), name="app")
    member = farm.members[0]
    fail(farm, 1)
    first = member._recent[0]
    # Wait until the first failure has left the window, then fail once more.
    run(wait_for_async(lambda: time.monotonic() > first + 0.06, 5, "window"))
    fail(farm, 1)
    assert member.healthy


def test_success_between_failures_starts_the_count_again() -> None:
    farm = farm_for(settings(1, health={"failures": 2, "window": 60}), name="app")
    fail(farm, 1)
    lease = farm.choose(None)
    assert lease is not None
    lease.finished("ok", 0.01)
    fail(farm, 1)
    assert farm.members[0].healthy


def test_without_a_probe_a_down_member_is_retried_after_retry_after() -> None:
    farm = farm_for(
        settings(2, health={"failures": 1, "window": 60, "retry_after": 0.1}), name="app"
    )
    a, b = farm.members
    lease = farm.choose(None)
    assert lease is not None and lease.member is a
    lease.finished("connect_failed", 0.001)
    assert not a.healthy
    assert {farm.choose(None).member for _ in range(3)} == {b}  # type: ignore[union-attr]

    def a_again() -> bool:
        lease = farm.choose(None)
        assert lease is not None
        return lease.member is a

    run(wait_for_async(a_again, PATIENCE, "a retried after retry_after"))
    # On probation: one failure puts it straight back down.
    assert a.healthy and a.probation
    again = farm.choose(None)
    while again is not None and again.member is not a:
        again = farm.choose(None)
    assert again is not None
    again.finished("failed", 0.001)
    assert not a.healthy and "1 failed request(s)" in a.down_reason


def test_with_a_probe_only_the_probe_brings_a_member_back() -> None:
    async def go() -> None:
        async with upstreams(OK) as (up,):
            farm = probed_farm([up], failures=1, retry_after=0.01, interval=3600)
            member = farm.members[0]
            lease = farm.choose(None)  # starts the probe, which passes at once
            await wait_for_async(lambda: member.probes == 1, PATIENCE, "first probe")
            assert lease is not None
            lease.finished("failed", 0.001)
            assert not member.healthy
            await asyncio.sleep(0.05)  # well past retry_after: still down (probe's job)
            assert farm.choose(None) is None
            await farm.close()
            member.mark_up("test")  # what a passing probe does
            assert farm.choose(None) is not None
            await farm.close()

    run(go())


def test_a_member_whose_address_changes_starts_afresh() -> None:
    farm = farm_for(
        settings([{"address": "http://a", "name": "m"}], health={"failures": 1}), name="app"
    )
    member = farm.members[0]
    fail(farm, 1)
    assert not member.healthy
    farm_for(settings([{"address": "http://b", "name": "m"}], health={"failures": 1}), name="app")
    assert farm.members[0] is member and member.healthy and (member.host, member.port) == ("b", 80)
    assert member.failures == 1  # the counters stay: the member is the same name


def test_outcomes_after_a_member_left_the_farm_are_harmless() -> None:
    farm = farm_for(settings(2), name="app")
    lease = farm.choose(None)
    assert lease is not None
    gone = lease.member
    remaining = next(m for m in farm.members if m is not gone)
    farm_for(settings([{"address": "http://" + remaining.name}]), name="app")
    lease.finished("failed", 0.1)
    assert gone.in_flight == 0 and [m.name for m in farm.members] == [remaining.name]


def test_no_probe_without_a_loop() -> None:
    # choose() outside an event loop (a check, a test) starts nothing.
    farm = farm_for(settings(1, health={"url": "/health"}), name="app")
    assert farm.choose(None) is not None and farm._prober is None
