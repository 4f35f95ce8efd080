"""Run a compiled plan for one request; the one place exceptions become responses.

How this works: ``run`` walks ``plan.steps`` in order. A hook's answer is checked
with one identity test (``is FINISH``); after FINISH or an error the walk skips
every step whose row in ``STAGES`` is not marked "always" (RELEASE_REQUEST_STATE
runs only if state was acquired). An exception escaping a hook is turned into a
500 page carrying a short correlation id, logged once with its traceback under the
same id, and shown to ERROR subscribers; it never escapes to the connection. An
``HttpError`` becomes its own status instead, without a traceback.
"""

from __future__ import annotations

import logging

from colonnade.core.context import Context
from colonnade.core.module import FINISH
from colonnade.core.stages import Always, Stage
from colonnade.errors import HttpError
from colonnade.pipeline.plan import Plan

log = logging.getLogger("colonnade.error")

_NO = Always.NO
_IF_STATE = Always.IF_STATE
_SEND = Stage.SEND_RESPONSE


async def run(plan: Plan, ctx: Context) -> None:
    """Walk the plan for ``ctx``; never raises for a module's failure."""
    for step in plan.steps:
        if ctx.finished:
            always = step.always
            if always is _NO or (always is _IF_STATE and not ctx.state_acquired):
                continue
            await _run_always(plan, ctx, step.stage, step.calls)
            continue
        try:
            for fn, is_async in step.calls:
                answer = fn(ctx)
                if is_async:
                    answer = await answer
                if answer is FINISH:
                    ctx.finished = True
                    break
        except Exception as exc:
            await fail(plan, ctx, exc, step.stage)
            if step.stage is _SEND:
                await _send_plain(ctx)


async def _run_always(
    plan: Plan, ctx: Context, stage: Stage, calls: tuple[tuple[object, bool], ...]
) -> None:
    # Every hook of an always-run stage gets its turn, whatever the others did.
    for fn, is_async in calls:
        try:
            answer = fn(ctx)  # type: ignore[operator]
            if is_async:
                await answer
        except Exception as exc:
            await fail(plan, ctx, exc, stage)
            if stage is _SEND:
                await _send_plain(ctx)


async def fail(plan: Plan, ctx: Context, exc: Exception, stage: Stage) -> None:
    """Turn ``exc`` raised in ``stage`` into the response (or an abort) and log it."""
    ctx.finished = True
    response = ctx.response
    if isinstance(exc, HttpError):
        if response.headers_sent:
            ctx.writer.abort()
            return
        ctx.error_response(exc.status, exc.substatus, exc.message)
        response.headers.extend(exc.headers)
        return
    ctx.error = exc
    request = ctx.request
    log.error(
        "correlation_id=%s stage=%s %s %s: unhandled %s",
        ctx.correlation_id,
        stage.name,
        request.method,
        request.target.decode("latin-1"),
        type(exc).__name__,
        exc_info=exc,
    )
    if stage > _SEND:
        return  # the response is out already; logging it was all there was to do
    if response.headers_sent:
        ctx.writer.abort()  # mid-stream: the client must not take a truncated body as whole
        return
    ctx.error_response(500)
    for hook in plan.error:
        try:
            answer = hook.fn(ctx)
            if hook.is_async:
                await answer
        except Exception:
            log.exception(
                "correlation_id=%s ERROR hook of %s failed", ctx.correlation_id, hook.owner
            )


async def _send_plain(ctx: Context) -> None:
    # A SEND_RESPONSE hook failed before the head went out: send the error page
    # without running the hooks again.
    response = ctx.response
    if response.headers_sent:
        return
    response.headers_sent = True
    ctx.writer.send_all(response.status, response.reason, response.headers, response.body)
