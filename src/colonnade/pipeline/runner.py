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

Traced requests take another path. Where an application's modules include a
:class:`~colonnade.core.tracing.TraceSource` (``tracing.failed_requests``), the
walk begins by looking the request's path up in the source's set of paths no
rule selects (one set lookup: all an untraced request pays). For any other
path it asks the source for a trace; with one, the request continues in
:func:`_traced_request`, a loop over the same plan that times every hook (and
every SEND_RESPONSE hook) and records what each changed: the handler, the user,
an error status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from colonnade.core.context import Context
from colonnade.core.errorpage import FAILED_AT
from colonnade.core.module import FINISH
from colonnade.core.stages import Always, Stage
from colonnade.core.tracing import ERROR, WARNING, Trace, TraceSource
from colonnade.errors import ClientDisconnectedError, HttpError
from colonnade.pipeline.plan import BoundHook, HookFn, Plan, generate

log = logging.getLogger("colonnade.error")

_SEND = Stage.SEND_RESPONSE
_EXECUTE = Stage.EXECUTE_REQUEST_HANDLER
_ENGINE = "(engine)"
_EXECUTE_STEP = "(engine) execute"

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
    source = next((m for m in plan.modules if isinstance(m, TraceSource)), None)
    if source is not None:
        # A path the source found no rule for costs a set lookup; any other path
        # asks the source, which may start a trace (the timed walk then runs).
        names.update(
            untraced=source.untraced,
            start_trace=source.start_trace,
            traced=_traced_request,
            source=source,
            start_failed=_start_failed,
        )
        body.append("    if ctx.request.path not in untraced:")
        body.append("        try:")
        body.append("            trace = start_trace(ctx)")
        body.append("        except Exception:")
        body.append("            trace = start_failed(ctx)")
        body.append("        if trace is not None:")
        body.append("            return await traced(plan, ctx, trace, source)")
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
        owners = _owners(step.calls, step.hooks)
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
        return _traced_position(awaited) if ctx.trace is not None else None
    stage, owner = found
    if owner is None:  # in run_always: the hook is its frame's ``fn``
        inner = getattr(awaited, "cr_await", None)
        fn = getattr(getattr(inner, "cr_frame", None), "f_locals", {}).get("fn")
        step = next(s for s in frame.f_globals["plan"].steps if s.stage is stage)
        owner = next((h.owner for h in step.hooks if h.fn is fn), "(engine)")
    if owner.startswith(_ENGINE) and stage is Stage.EXECUTE_REQUEST_HANDLER and ctx.handler:
        owner = ctx.handler.id
    return stage, owner


def _traced_position(awaited: object) -> tuple[Stage, str] | None:
    # A traced request left the generated walk for _traced_walk: the hook it waits
    # in is the one its innermost _timed frame is calling.
    found = None
    while (frame := getattr(awaited, "cr_frame", None)) is not None:
        if frame.f_code is _timed.__code__:
            found = (frame.f_locals["stage"], frame.f_locals["owner"])
        awaited = getattr(awaited, "cr_await", None)
    return found


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
        if ctx.trace is not None:
            ctx.trace.event(
                "http_error",
                ERROR if exc.status >= 500 else WARNING,
                stage=stage.name,
                status=exc.status,
                substatus=exc.substatus,
            )
        if response.headers_sent:
            ctx.writer.abort()
            return
        ctx.error_response(exc.status, exc.substatus, exc.message, exc.detail)
        response.headers.extend(exc.headers)
        return
    ctx.error = exc
    request = ctx.request
    # Where it failed, for the detailed error page: the stage; the traced walk
    # has named the module already.
    failed_at = ctx.items.setdefault(FAILED_AT, (stage.name, None))
    if ctx.trace is not None:
        ctx.trace.event(
            "module_error",
            ERROR,
            stage=failed_at[0],
            module=failed_at[1],
            exception=type(exc).__name__,
        )
    log.error(
        "correlation_id=%s stage=%s %s %s: unhandled %s",
        ctx.correlation_id,
        stage.name,
        request.method,
        request.target.decode("latin-1"),
        type(exc).__name__,
        exc_info=exc,
        # The request's fields as record attributes (the JSON server log's keys).
        extra={
            "request_id": ctx.correlation_id,
            "site": ctx.app.site,
            "method": request.method,
            "path": request.path,
            "status": response.status if stage > _SEND or response.headers_sent else 500,
            "stage": stage.name,
        },
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


# -- the traced path ---------------------------------------------------------------


def _start_failed(ctx: Context) -> None:
    # A trace source that fails must not fail the request: it goes untraced.
    log.exception("correlation_id=%s starting a trace failed", ctx.correlation_id)


async def _traced_request(plan: Plan, ctx: Context, trace: Trace, source: TraceSource) -> None:
    ctx.trace = trace
    if plan.send_response:
        # The flush calls these through the context: time them one by one too.
        ctx._send_response = _timed_send_response(plan.send_response, trace)
    try:
        await _traced_walk(plan, ctx, trace)
    finally:
        try:
            source.end_trace(ctx, trace)
        except Exception:
            log.exception("correlation_id=%s ending a trace failed", ctx.correlation_id)


async def _traced_walk(plan: Plan, ctx: Context, trace: Trace) -> None:
    # The generated walk's rules (compile_walk), as a loop: the cost of a traced
    # request does not matter, being the same does.
    for step in plan.steps:
        stage = step.stage
        owners = _owners(step.calls, step.hooks)
        if not ctx.finished:
            try:
                for (fn, is_async), owner in zip(step.calls, owners, strict=True):
                    if await _timed(trace, ctx, stage, owner, fn, is_async) is FINISH:
                        ctx.finished = True
                        break
            except Exception as exc:
                await fail(plan, ctx, exc, stage)
                if stage is _SEND:
                    await _send_plain(ctx)
        elif step.always is Always.YES or (step.always is Always.IF_STATE and ctx.state_acquired):
            for (fn, is_async), owner in zip(step.calls, owners, strict=True):
                try:
                    await _timed(trace, ctx, stage, owner, fn, is_async)
                except Exception as exc:
                    await fail(plan, ctx, exc, stage)
                    if stage is _SEND:
                        await _send_plain(ctx)


def _owners(
    calls: tuple[tuple[HookFn, bool | None], ...], hooks: tuple[BoundHook, ...]
) -> tuple[str, ...]:
    # The calls of a step are its hooks, after the engine's own marks (the
    # state-acquired flag of ACQUIRE_REQUEST_STATE). The engine's steps are named
    # by what they do ("(engine) flush").
    marks = ("(engine)",) * (len(calls) - len(hooks))
    return marks + tuple(
        f"{_ENGINE} {getattr(h.fn, '__name__', '')}".rstrip() if h.owner == _ENGINE else h.owner
        for h in hooks
    )


async def _timed(
    trace: Trace, ctx: Context, stage: Stage, owner: str, fn: HookFn, is_async: bool | None
) -> object:
    """Call one hook, record its entry and exit, and what it changed."""
    handler, user, status = ctx.handler, ctx.user, ctx.response.status
    if stage is _EXECUTE and owner == _EXECUTE_STEP and handler is not None:
        owner = handler.id  # the engine's step runs the handler: name it
    entry = trace.now()
    try:
        answer = fn(ctx)
        if is_async or (is_async is None and answer is not None):
            answer = await answer
    except BaseException as exc:
        trace.hook(stage.name, owner, entry, trace.now(), "error")
        if isinstance(exc, Exception) and not isinstance(exc, (HttpError, ClientDisconnectedError)):
            ctx.items.setdefault(FAILED_AT, (stage.name, owner))
        raise
    trace.hook(stage.name, owner, entry, trace.now(), "finish" if answer is FINISH else "continue")
    if ctx.handler is not handler and ctx.handler is not None:
        trace.event("handler_changed", module=owner, stage=stage.name, handler=ctx.handler.id)
    if ctx.user is not user and ctx.user is not None:
        trace.event(
            "authenticated",
            module=owner,
            user=ctx.user.name,
            auth_type=ctx.user.auth_type,
            anonymous=ctx.user.anonymous,
        )
    new_status = ctx.response.status
    if new_status != status and new_status >= 400:
        trace.event(
            "error_status",
            ERROR if new_status >= 500 else WARNING,
            module=owner,
            stage=stage.name,
            status=new_status,
            substatus=ctx.response.substatus,
        )
    return answer


def _timed_send_response(
    hooks: tuple[BoundHook, ...], trace: Trace
) -> Callable[[Context], Coroutine[Any, Any, None]]:
    async def send_response(ctx: Context) -> None:
        for hook in hooks:
            await _timed(trace, ctx, _SEND, hook.owner, hook.fn, hook.is_async)

    return send_response
