"""A stage harness: run one module's hooks for one stage on a built context."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from colonnade.config.sections import Raw
from colonnade.core.app import Application, Level
from colonnade.core.context import Context
from colonnade.core.module import FINISH, Module, Outcome
from colonnade.core.request import BytesBody, Request
from colonnade.core.stages import Stage
from colonnade.core.urlpath import decode_path
from colonnade.pipeline.plan import BoundHook, map_path_chain
from colonnade.testing.client import RecordingWriter


async def _no_send_hooks(ctx: Context) -> None:
    return None


def make_context(
    method: str = "GET",
    target: str = "/",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    root: str | None = None,
    settings: Raw | None = None,
    app_path: str = "/",
) -> Context:
    """A context for ``method target`` in an application at ``root`` with ``settings``."""
    path, _, query = target.partition("?")
    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    request = Request(
        method,
        decode_path(path.encode()),
        raw_path=path.encode(),
        query=query.encode(),
        headers=hdrs,
        host="localhost",
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 8080),
        body=BytesBody(body),
    )
    app = Application(
        site="test",
        path=app_path,
        root=root or os.getcwd(),
        levels=(Level("/", settings or {}, "<test>"),),
    )
    return Context(request, app, RecordingWriter(), _no_send_hooks)


def run_stage(module: Module, stage: Stage, ctx: Context) -> Outcome:
    """Call ``module``'s hooks for ``stage`` on ``ctx``; FINISH if any answered it.

    For ``Stage.MAP_PATH`` the module's hooks become the application's and
    ``ctx.physical_path`` is mapped anew through them: read it afterwards.
    """
    if stage is Stage.MAP_PATH:
        hooks = tuple(
            BoundHook(getattr(module, sub.method), False, module.id, sub.priority)
            for sub in type(module).subscriptions
            if sub.stage is stage
        )
        ctx.app.map_path_hooks = map_path_chain(hooks)
        ctx._physical_path = None
        _ = ctx.physical_path
        return Outcome.CONTINUE

    async def go() -> Outcome:
        for sub in type(module).subscriptions:
            if sub.stage is not stage:
                continue
            answer: Any = getattr(module, sub.method)(ctx)
            if asyncio.iscoroutine(answer):
                answer = await answer
            if answer is FINISH:
                return Outcome.FINISH
        return Outcome.CONTINUE

    return asyncio.run(go())
