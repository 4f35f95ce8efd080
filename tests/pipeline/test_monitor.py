"""The request monitor's view of one process: where each executing request is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from colonnade import FINISH, Context, Handler, Module, Stage, hook
from colonnade.engine import Engine
from colonnade.engine import engine as engine_module
from colonnade.pipeline.monitor import ExecutingRequest, snapshot
from colonnade.testing import Client, build_engine
from tests.builds import take_path

#: The gates requests wait at, by stage name (set by the test to let them on).
GATES: dict[str, asyncio.Event] = {}


async def _gate(ctx: Context, stage: Stage) -> None:
    wanted = ctx.request.header(b"x-wait-at")
    if wanted is not None and wanted.decode() == stage.name:
        await GATES[stage.name].wait()


class First(Module):
    """A plain hook ahead of the gate in AUTHENTICATE_REQUEST."""

    id = "test.first"

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate(self, ctx: Context) -> None:
        ctx.items["first"] = True


class Gate(Module):
    """Waits where the request's ``x-wait-at`` header says; finishes on ``x-finish``."""

    id = "test.gate"

    @hook(Stage.AUTHENTICATE_REQUEST)
    async def authenticate(self, ctx: Context) -> object:
        await _gate(ctx, Stage.AUTHENTICATE_REQUEST)
        if ctx.request.header(b"x-finish") is not None:
            ctx.error_response(401)
            return FINISH
        return None

    @hook(Stage.LOG_REQUEST)
    async def log(self, ctx: Context) -> None:
        await _gate(ctx, Stage.LOG_REQUEST)


class Waiter(Handler):
    """A handler that waits at the EXECUTE_REQUEST_HANDLER gate."""

    id = "test.waiter"

    async def execute(self, ctx: Context) -> None:
        await _gate(ctx, Stage.EXECUTE_REQUEST_HANDLER)
        ctx.response.body = b"done"


@pytest.fixture(params=["linked", "dict"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    # The engine's table both ways: the compiled build's linked list (engine.Executing)
    # and the pure install's dict.
    take_path(engine_module, request.param == "linked", monkeypatch)
    config = {
        "server": {"modules": ["test.first", "test.gate", "test.waiter"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "test.waiter"}],
    }
    GATES.clear()
    for stage in (Stage.AUTHENTICATE_REQUEST, Stage.EXECUTE_REQUEST_HANDLER, Stage.LOG_REQUEST):
        GATES[stage.name] = asyncio.Event()
    with Client(build_engine(config, modules=[First, Gate, Waiter])) as c:
        yield c


async def _waiting(engine: Engine, count: int) -> list[ExecutingRequest]:
    # Let the requests run up to their gates (each step of the loop is a chance).
    for _ in range(100):
        rows = snapshot(engine.executing, pid=1)
        if len(rows) == count and all(row.stage for row in rows):
            return rows
        await asyncio.sleep(0)
    raise AssertionError(f"not {count} request(s) at their gates: {rows}")


def test_each_request_shows_its_stage_module_and_elapsed_time(client: Client) -> None:
    async def scenario() -> None:
        engine = client.engine
        asked = {
            "AUTHENTICATE_REQUEST": asyncio.ensure_future(
                client.arequest(
                    "POST", "/login?next=/a", headers={"x-wait-at": "AUTHENTICATE_REQUEST"}
                )
            ),
            "EXECUTE_REQUEST_HANDLER": asyncio.ensure_future(
                client.arequest("GET", "/report", headers={"x-wait-at": "EXECUTE_REQUEST_HANDLER"})
            ),
            # Finished early (401): the walk is in an always-run stage.
            "LOG_REQUEST": asyncio.ensure_future(
                client.arequest(
                    "GET", "/denied", headers={"x-wait-at": "LOG_REQUEST", "x-finish": "1"}
                )
            ),
        }
        rows = await _waiting(engine, 3)
        by_stage = {row.stage: row for row in rows}
        assert set(by_stage) == set(asked)
        login = by_stage["AUTHENTICATE_REQUEST"]
        # The second hook of the stage: the plain one before it has run.
        assert login.module == "test.gate"
        assert (login.verb, login.url, login.site, login.app, login.pool) == (
            "POST",
            "/login?next=/a",
            "main",
            "/",
            "default",
        )
        assert login.client == "127.0.0.1:50000"
        assert by_stage["EXECUTE_REQUEST_HANDLER"].module == "test.waiter"
        assert by_stage["LOG_REQUEST"].module == "test.gate"
        # The id is the request's correlation id (its error page and log lines say it).
        contexts = {ctx.request.method + ctx.request.path: ctx for ctx in engine.executing}
        assert login.id == contexts["POST/login"].correlation_id
        # Elapsed time grows while the request waits; longest-running first.
        await asyncio.sleep(0.02)
        later = snapshot(engine.executing, pid=1)
        assert [row.id for row in later] == [row.id for row in rows]
        again = {row.id: row.elapsed for row in later}
        assert all(again[row.id] >= row.elapsed + 20 for row in rows)
        assert later[0].elapsed >= later[-1].elapsed
        # --elapsed: only those running at least that long.
        assert snapshot(engine.executing, pid=1, min_elapsed=10**6) == []
        for gate in GATES.values():
            gate.set()
        responses = await asyncio.gather(*asked.values())
        assert [r.status for r in responses] == [200, 200, 401]
        assert engine.executing == {}

    client.loop.run_until_complete(scenario())


def test_a_finished_request_leaves_the_monitor(client: Client) -> None:
    response = client.get("/plain")
    assert response.status == 200
    assert client.engine.executing == {}
    assert snapshot(client.engine.executing, pid=1) == []


def test_a_traced_request_shows_where_it_is_too(tmp_path: Path) -> None:
    # A request a failed-request-tracing rule selects leaves the generated walk for
    # the timed one: the monitor follows it there.
    config = {
        "server": {
            "modules": ["test.first", "test.gate", "test.waiter", "tracing.failed_requests"]
        },
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "test.waiter"}],
        "failed_request_tracing": {
            "directory": str(tmp_path / "traces"),
            "rules": [{"path": "*", "status_codes": "500"}],
        },
    }
    GATES.clear()
    for stage in (Stage.AUTHENTICATE_REQUEST, Stage.EXECUTE_REQUEST_HANDLER, Stage.LOG_REQUEST):
        GATES[stage.name] = asyncio.Event()
    engine = build_engine(config, modules=[First, Gate, Waiter])
    with Client(engine) as client:

        async def scenario() -> None:
            asked = [
                asyncio.ensure_future(client.arequest("GET", "/a", headers={"x-wait-at": stage}))
                for stage in ("AUTHENTICATE_REQUEST", "EXECUTE_REQUEST_HANDLER")
            ]
            rows = await _waiting(client.engine, 2)
            assert all(ctx.trace is not None for ctx in client.engine.executing)
            assert {(row.stage, row.module) for row in rows} == {
                ("AUTHENTICATE_REQUEST", "test.gate"),
                ("EXECUTE_REQUEST_HANDLER", "test.waiter"),
            }
            for gate in GATES.values():
                gate.set()
            assert [r.status for r in await asyncio.gather(*asked)] == [200, 200]

        client.loop.run_until_complete(scenario())


def test_switched_off_a_request_writes_nothing_for_the_monitor_or_the_counters() -> None:
    from colonnade.core import metrics

    config = {
        "server": {
            "modules": ["test.first", "test.gate", "test.waiter"],
            "request_monitor": False,
            "metrics": False,
        },
        "sites": [{"name": "quiet", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "test.waiter"}],
    }
    GATES.clear()
    GATES["EXECUTE_REQUEST_HANDLER"] = asyncio.Event()
    counters = metrics.for_site("quiet")
    before = (list(counters.requests), list(counters.duration), counters.bytes_out)
    with Client(build_engine(config, modules=[First, Gate, Waiter])) as client:
        engine = client.engine
        assert (engine.monitor, engine.counting) == (False, False)

        async def scenario() -> None:
            asked = asyncio.ensure_future(
                client.arequest("GET", "/slow", headers={"x-wait-at": "EXECUTE_REQUEST_HANDLER"})
            )
            # The request is under way (the engine counts it active) and the monitor
            # holds nothing of it.
            for _ in range(100):
                if engine.active:
                    break
                await asyncio.sleep(0)
            assert engine.active == 1
            assert engine.executing == {}
            GATES["EXECUTE_REQUEST_HANDLER"].set()
            assert (await asked).status == 200

        client.loop.run_until_complete(scenario())
        assert client.get("/plain").status == 200
    assert (list(counters.requests), list(counters.duration), counters.bytes_out) == before
    assert "quiet" not in metrics.snapshot({})


def test_the_switches_are_on_by_default(client: Client) -> None:
    from colonnade.core import metrics

    counters = metrics.for_site("main")
    answered = sum(counters.requests)
    assert (client.engine.monitor, client.engine.counting) == (True, True)
    assert client.get("/plain").status == 200
    assert sum(counters.requests) == answered + 1
