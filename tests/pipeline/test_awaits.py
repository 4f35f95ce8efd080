"""Hooks marked ``awaits=True``: plain functions whose answer is awaited when it is
not None, on every stage of the walk, in SEND_RESPONSE and ERROR."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import pytest

from colonnade import Context, Module, Stage, hook
from colonnade.core.module import check_declaration
from colonnade.core.stages import STAGES, Always
from colonnade.errors import ModuleError
from colonnade.testing import Client, build_engine

from .conftest import WALK, Echo, _record, _trail, engine_config


def _awaiting_hook(stage: Stage):  # type: ignore[no-untyped-def]
    def on(self: Module, ctx: Context) -> Awaitable[object] | None:
        if ctx.request.header(b"x-defer") is None:
            return _record(self, ctx, stage)  # None: nothing to wait for

        async def later() -> object:
            await asyncio.sleep(0)  # a real suspension
            return _record(self, ctx, stage)

        return later()

    return hook(stage, awaits=True)(on)


# Every stage of the walk, SEND_RESPONSE included, joined with awaits=True.
Awaiting: type[Module] = type(
    "Awaiting",
    (Module,),
    {"id": "test.awaiting"} | {f"on_{s.name.lower()}": _awaiting_hook(s) for s in WALK},
)


def client() -> Client:
    return Client(
        build_engine(engine_config("test.awaiting", "test.echo"), modules=[Awaiting, Echo])
    )


@pytest.mark.parametrize("defer", [False, True])
def test_every_stage_runs_in_order(defer: bool) -> None:
    with client() as c:
        r = c.get("/x", headers={"x-defer": "1"} if defer else {})
    assert r.status == 200
    expected = [s.name for s in WALK]
    expected.insert(expected.index("EXECUTE_REQUEST_HANDLER") + 1, "HANDLER")
    assert r.context.items["trail"] == expected


@pytest.mark.parametrize("stage", [s for s in WALK if s < Stage.SEND_RESPONSE])
def test_a_deferred_finish_skips_to_the_always_stages(stage: Stage) -> None:
    with client() as c:
        r = c.get("/x", headers={"x-defer": "1", "x-finish-at": stage.name})
    assert r.status == 403
    seen = r.context.items["trail"]
    after = seen[seen.index(stage.name) + 1 :]
    acquired = stage >= Stage.ACQUIRE_REQUEST_STATE
    assert after == [
        s.stage.name
        for s in STAGES
        if s.stage > stage
        and (s.always is Always.YES or (s.always is Always.IF_STATE and acquired))
    ]


@pytest.mark.parametrize(
    "stage", [Stage.AUTHENTICATE_REQUEST, Stage.SEND_RESPONSE, Stage.LOG_REQUEST]
)
def test_a_deferred_failure_is_a_500_or_a_log_line(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="colonnade.error"), client() as c:
        r = c.get("/x", headers={"x-defer": "1", "x-fail-at": stage.name})
    assert r.status == (500 if stage <= Stage.SEND_RESPONSE else 200)
    assert any(f"boom at {stage.name}" in str(rec.exc_info) for rec in caplog.records)
    assert _trail(r.context)[-1] == "END_REQUEST"


def test_awaits_is_refused_on_a_coroutine_function_and_on_map_path() -> None:
    class Coroutine(Module):
        id = "test.coroutine_awaits"

        @hook(Stage.BEGIN_REQUEST, awaits=True)
        async def begin(self, ctx: Context) -> None:
            return None

    class MapPath(Module):
        id = "test.map_path_awaits"

        @hook(Stage.MAP_PATH, awaits=True)
        def map_path(self, ctx: Context, url_path: str, physical_path: str) -> str | None:
            return None

    for cls in (Coroutine, MapPath):
        with pytest.raises(ModuleError, match="awaits=True"):
            check_declaration(cls)
