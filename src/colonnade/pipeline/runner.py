"""Run a compiled plan for one request; the one place exceptions become responses.

How this works: the walk visits ``plan.steps`` in order. A hook's answer is checked
with one identity test (``is FINISH``); after FINISH or an error the walk skips
every step whose row in ``STAGES`` is not marked "always" (RELEASE_REQUEST_STATE
runs only if state was acquired). An exception escaping a hook is turned into a
500 page carrying a short correlation id, logged once with its traceback under the
same id, and shown to ERROR subscribers; it never escapes to the connection. An
``HttpError`` becomes its own status instead, without a traceback. A
``ClientDisconnectedError`` (the client went away mid-request) ends the request quietly:
nobody is left to read a page, and it is not the server's fault.

The walk is generated once per plan (:func:`compile_walk`): straight-line code with
each step's hooks in one ``or`` chain, so a request pays a call and an identity
test per hook and nothing for looping over steps and call tuples. Each hook's
call is on a source line of its own: the request monitor reads where a request
is from the line its suspended walk waits on (:func:`position`), so the walk
itself records nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from colonnade.core.context import Context
from colonnade.core.module import FINISH
from colonnade.core.stages import Always, Stage
from colonnade.errors import ClientDisconnectedError, HttpError
from colonnade.pipeline.plan import Plan, Step, generate

log = logging.getLogger("colonnade.error")

_SEND = Stage.SEND_RESPONSE

#: The generated walk of one plan.
Walk = Callable[[Context], Coroutine[Any, Any, None]]


def compile_walk(plan: Plan) -> Walk:
    """Generate the walk of ``plan``: one coroutine function, no loops; it never
    raises for a module's failure.

    Per step::

        if not ctx.finished:
            try:
                if ((r := h0(ctx)) is not None and r is FINISH) or (
                    (r := await h1(ctx)) is not None and r is FINISH
                ):
                    ctx.finished = True
            except Exception as exc:
                await fail(plan, ctx, exc, stage)
        elif <the step is "always" (or "if-state" with state acquired)>:
            await run_always(plan, ctx, stage, calls)

    Hooks are the globals of the generated function; only generated names and
    stage numbers go into the source.
    """
    names: dict[str, Any] = {
        "plan": plan,
        "FINISH": FINISH,
        "fail": fail,
        "run_always": _run_always,
        "send_plain": _send_plain,
    }
    body: list[str] = []
    # The request monitor's map of the walk: source line -> (stage, module id).
    # Each hook is called on a line of its own, so a suspended walk's line says
    # which hook it waits in (see position()); the line table costs nothing.
    where: dict[int, tuple[Stage, str | None]] = {}
    names["_where"] = where

    def add(line: str, stage: Stage | None = None, owner: str | None = None) -> None:
        body.append(line)
        if stage is not None:
            where[len(body) + 1] = (stage, owner)  # line 1 is the "async def"

    for i, step in enumerate(plan.steps):
        stage = step.stage
        names[f"stage{i}"] = stage
        names[f"calls{i}"] = step.calls
        owners = _owners(step)
        add("    if not ctx.finished:")
        add("        try:")
        for j, (fn, is_async) in enumerate(step.calls):
            names[f"h{i}_{j}"] = fn
            call = f"h{i}_{j}(ctx)"
            if is_async is None:  # a built-in step or awaits=True: await what it returns
                call = f"((await a) if (a := {call}) is not None else None)"
            elif is_async:
                call = f"(await {call})"
            # CONTINUE is mostly None: one fused "is not None" jump decides it.
            test = f"((r := {call}) is not None and r is FINISH)"
            end = ":" if j == len(step.calls) - 1 else _CONTINUED
            add(f"            {'if' if j == 0 else '    or'} {test}{end}", stage, owners[j])
        if not step.calls:
            add("            if False:")
        add("                ctx.finished = True")
        add("        except Exception as exc:")
        add(f"            await fail(plan, ctx, exc, stage{i})", stage, _FAILING)
        if stage is _SEND:
            add("            await send_plain(ctx)", stage, _FAILING)
        if step.always is Always.YES:
            add("    else:")
        elif step.always is Always.IF_STATE:
            add("    elif ctx.state_acquired:")
        if step.always is not Always.NO:
            # run_always's own frame says which hook (position() looks into it).
            add(f"        await run_always(plan, ctx, stage{i}, calls{i})", stage, None)
    walk: Walk = generate("pipeline walk", names, body)
    return walk


_CONTINUED = " \\"  # the test goes on on the next line

#: The module a request is "in" while the runner turns a failure into its page.
_FAILING = "(engine) error"


def _owners(step: Step) -> list[str]:
    # The module id of each of ``step.calls`` (ACQUIRE_REQUEST_STATE may call
    # the engine's state mark ahead of its hooks).
    owners = [hook.owner for hook in step.hooks]
    return ["(engine)"] * (len(step.calls) - len(owners)) + owners


def position(walk: Coroutine[Any, Any, None], ctx: Context) -> tuple[Stage, str] | None:
    """Where the suspended ``walk`` of ``ctx`` is: its stage and the id of the module
    whose hook it waits in (the handler's id in the engine's handler step); None
    when it has not started or has ended.

    Read from the coroutine's frame, for the request monitor: the walk records
    nothing while it runs, so a request that nobody looks at pays nothing.
    """
    frame = getattr(walk, "cr_frame", None)
    # A wrapped walk (a broken web.toml's 500.19 check) awaits the generated one.
    awaited: object = walk
    while frame is not None and "_where" not in frame.f_globals:
        awaited = getattr(awaited, "cr_await", None)
        frame = getattr(awaited, "cr_frame", None)
    if frame is None:
        return None
    found = frame.f_globals["_where"].get(frame.f_lineno)
    if found is None:
        return None
    stage, owner = found
    if owner is None:  # in run_always: the hook is its frame's ``fn``
        inner = getattr(awaited, "cr_await", None)
        fn = getattr(getattr(inner, "cr_frame", None), "f_locals", {}).get("fn")
        step = next(s for s in frame.f_globals["plan"].steps if s.stage is stage)
        owner = next((h.owner for h in step.hooks if h.fn is fn), "(engine)")
    if owner == "(engine)" and stage is Stage.EXECUTE_REQUEST_HANDLER and ctx.handler:
        owner = ctx.handler.id
    return stage, owner


async def _run_always(
    plan: Plan, ctx: Context, stage: Stage, calls: tuple[tuple[object, bool | None], ...]
) -> None:
    # Every hook of an always-run stage gets its turn, whatever the others did.
    for fn, is_async in calls:
        try:
            answer = fn(ctx)  # type: ignore[operator]
            if is_async or (is_async is None and answer is not None):
                await answer
        except Exception as exc:
            await fail(plan, ctx, exc, stage)
            if stage is _SEND:
                await _send_plain(ctx)


async def fail(plan: Plan, ctx: Context, exc: Exception, stage: Stage) -> None:
    """Turn ``exc`` raised in ``stage`` into the response (or an abort) and log it."""
    ctx.finished = True
    response = ctx.response
    if isinstance(exc, ClientDisconnectedError):
        # Nobody is left to answer and nothing is wrong with the server: no error
        # page, no error line; the access log shows it (Win32 status 64).
        ctx.error = exc
        ctx.writer.abort()
        log.debug("correlation_id=%s %s in %s", ctx.correlation_id, exc, stage.name)
        return
    if isinstance(exc, HttpError):
        if response.headers_sent:
            ctx.writer.abort()
            return
        ctx.error_response(exc.status, exc.substatus, exc.message, exc.detail)
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
            if hook.is_async or (hook.is_async is None and answer is not None):
                await answer
        except Exception:
            log.exception(
                "correlation_id=%s ERROR hook of %s failed", ctx.correlation_id, hook.owner
            )


async def _send_plain(ctx: Context) -> None:
    # A SEND_RESPONSE hook failed before the head went out: send the error page
    # without running the hooks again.
    response = ctx.response
    if response.headers_sent or isinstance(ctx.error, ClientDisconnectedError):
        return
    response.headers_sent = True
    ctx.writer.send_all(response.status, response.reason, response.headers, response.body)
