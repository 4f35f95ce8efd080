"""Small modules that record what the pipeline does to them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from colonnade import FINISH, Context, Handler, Module, Stage, hook
from colonnade.core.stages import STAGES
from colonnade.errors import CLIENT_GONE, SERVER_ABORTED, ClientDisconnectedError
from colonnade.pipeline import runner

WALK = [info.stage for info in STAGES]


@pytest.fixture(autouse=True, params=["generated", "walker"])
def walk_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every pipeline test runs with both walks: the generated one (the pure-Python
    build's) and the walker's loop (the compiled build's; interpreted here)."""
    monkeypatch.setattr(runner, "NATIVE", request.param == "walker")
    return str(request.param)


def _trail(ctx: Context) -> list[str]:
    trail: list[str] = ctx.items.setdefault("trail", [])
    return trail


def _record(self: Module, ctx: Context, stage: Stage) -> object:
    _trail(ctx).append(stage.name)
    finish_at = ctx.request.header(b"x-finish-at")
    if finish_at is not None and finish_at.decode() == stage.name:
        ctx.error_response(403)
        return FINISH
    gone_at = ctx.request.header(b"x-gone-at")
    if gone_at is not None and gone_at.decode() == stage.name:
        raise ClientDisconnectedError("the client went away")
    cancel_at = ctx.request.header(b"x-cancel-at")
    if cancel_at is not None and cancel_at.decode() == stage.name:
        # What a cancelled await raises: a lost connection's (CLIENT_GONE), a stop's
        # deadline's (SERVER_ABORTED), or another's (none, or the application's).
        lost = ctx.request.header(b"x-cancel-lost")
        if lost is None:
            message = ctx.request.header(b"x-cancel-message")
            raise asyncio.CancelledError(*(() if message is None else (message.decode(),)))
        raise asyncio.CancelledError(SERVER_ABORTED if lost == b"server" else CLIENT_GONE)
    fail_at = ctx.request.header(b"x-fail-at")
    if fail_at is not None and fail_at.decode() == stage.name:
        raise RuntimeError(f"boom at {stage.name}")
    return None


def _make_hook(stage: Stage, is_async: bool):  # type: ignore[no-untyped-def]
    if is_async:

        async def on_async(self, ctx):  # type: ignore[no-untyped-def]
            return _record(self, ctx, stage)

        return hook(stage)(on_async)

    def on_sync(self, ctx):  # type: ignore[no-untyped-def]
        return _record(self, ctx, stage)

    return hook(stage)(on_sync)


# A module joining every stage of the walk, alternating plain functions and
# coroutines (both kinds must run, in order). Built with type() so the class
# statement's hook collection sees every generated method.
Every: type[Module] = type(
    "Every",
    (Module,),
    {"id": "test.every"}
    | {f"on_{s.name.lower()}": _make_hook(s, i % 2 == 1) for i, s in enumerate(WALK)},
)


class Echo(Handler):
    """Answers with the trail so far."""

    id = "test.echo"

    async def execute(self, ctx: Context) -> None:
        _trail(ctx).append("HANDLER")
        if ctx.request.header(b"x-stream") is not None:
            await ctx.write(b"part1,")
            if ctx.request.header(b"x-fail-mid-stream") is not None:
                raise RuntimeError("broken stream")
            await ctx.write(b"part2")
            return
        ctx.response.body = ",".join(_trail(ctx)).encode()


def engine_config(*modules: str) -> dict[str, object]:
    return {
        "server": {"modules": list(modules)},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "test.echo"}],
    }


@pytest.fixture
def every_classes() -> list[type[Module]]:
    return [Every, Echo]


def colonnade_modules(config: Path) -> tuple[str, dict[str, str]]:
    """``colonnade modules -c config``: its output, and its indented lines by first word."""
    out = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "modules", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return out, {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
