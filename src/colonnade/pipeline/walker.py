"""The walk of a plan as one compiled loop (the compiled build's :func:`runner.compile_walk`).

How this works: :class:`Walker` holds each step of the plan as two parallel tuples,
the hooks and how to call each one (:data:`PLAIN`, :data:`AWAIT`, :data:`MAYBE`),
and ``walk(ctx)`` visits them in order under the rules of the generated walk
(``runner.compile_walk``): a hook's answer is checked with one identity test, after
FINISH or an error only the steps marked "always" run (RELEASE_REQUEST_STATE only
when state was acquired), and an exception becomes the response through the
runner's ``fail``. mypyc compiles this module: a native coroutine calls each hook
with one vectorcall, where the generated walk is interpreted bytecode whose every
attribute read on the (native) context is a generic lookup. The pure-Python build
keeps the generated walk: the interpreter runs straight-line code faster than
this loop.

A compiled coroutine has no frame for the request monitor to read, so the walk
records, before each wait, the ``(stage, owner)`` it waits in
(``Context.waiting``, a prebuilt tuple: one store); a hook that answers at once
costs nothing for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from colonnade.core.context import Context
from colonnade.core.stages import Stage
from colonnade.errors import connection_ended

#: How a step calls a hook: a plain function's answer is the outcome.
PLAIN: Final = 0
#: A coroutine function: its answer is awaited.
AWAIT: Final = 1
#: A built-in step or an ``awaits=True`` hook: what it answers is awaited when not None.
MAYBE: Final = 2

#: When a step runs after FINISH or an error (``Always`` NO, IF_STATE, YES).
NEVER: Final = 0
IF_STATE: Final = 1
ALWAYS: Final = 2

Hook = Callable[[Context], Any]
#: ``fail(ctx, exc, stage)``: turn ``exc`` into the response (the runner's, plan bound).
Fail = Callable[[Context, Exception, Stage], Awaitable[None]]
#: ``send_plain(ctx)``: the error page of a failed SEND_RESPONSE hook, hooks not rerun.
SendPlain = Callable[[Context], Awaitable[None]]
#: ``traced(ctx, trace)``: the timed walk of a traced request (the runner's).
Traced = Callable[[Context, Any], Awaitable[None]]
#: ``start(ctx)``: the trace a source starts for the request, or None.
StartTrace = Callable[[Context], Any]


class Bookkeeping:
    """What a walk tells where it ends: the engine (a subclass) counts the request
    and takes it off the request monitor's map. This base keeps no books (a bare
    walk's). A class rather than a callable: the compiled walk calls a native
    method, no bound method made and no arguments unpacked."""

    def ended(self, ctx: Context) -> None:
        """The walk of ``ctx`` ended, or failed."""


#: The books of a bare walk.
NO_BOOKKEEPING: Final = Bookkeeping()


class WalkStep:
    """One step of the plan as the walker reads it."""

    def __init__(
        self,
        stage: Stage,
        always: int,
        hooks: tuple[Hook, ...],
        kinds: tuple[int, ...],
        where: tuple[Any, ...],
        failing: tuple[Stage, str],
        sends: bool,
    ) -> None:
        self.stage = stage
        self.always = always
        self.hooks = hooks
        self.kinds = kinds
        #: ``(stage, owner)`` of each hook, for the request monitor. Typed as any
        #: tuple: one of pairs would have the compiled walk take each pair apart
        #: and make a new one to store it in ``ctx.waiting``.
        self.where = where
        #: Where a request is while its failure here becomes the response.
        self.failing = failing
        #: The SEND_RESPONSE point: a failure sends the page without the hooks.
        self.sends = sends


class Walker:
    """Walks the steps of one plan; ``walk`` is the application's walk."""

    def __init__(
        self,
        steps: list[WalkStep],
        finish: object,
        fail: Fail,
        send_plain: SendPlain,
        untraced: set[str] | None = None,
        start_trace: StartTrace | None = None,
        traced: Traced | None = None,
    ) -> None:
        self.steps = steps
        self.finish = finish  # Outcome.FINISH: a field read, not a global lookup
        self.fail = fail
        self.send_plain = send_plain
        #: The trace source's paths that no rule selects (None: no trace source).
        self.untraced = untraced
        self.start_trace = start_trace
        self.traced = traced

    async def walk(self, ctx: Context) -> None:
        """Run the plan for ``ctx``; never raises for a module's failure."""
        await self.serve(ctx, NO_BOOKKEEPING)

    async def serve(self, ctx: Context, books: Bookkeeping) -> Context:
        """:meth:`walk`, then ``books.ended(ctx)`` however it ended; gives ``ctx``.

        The engine's request (``runner.compile_serve``): its bookkeeping in the
        walk's own coroutine, not in one more around it."""
        try:
            untraced = self.untraced
            if untraced is not None and ctx.request.path not in untraced:
                start = self.start_trace
                traced = self.traced
                if start is not None and traced is not None:
                    trace = start(ctx)
                    if trace is not None:
                        await traced(ctx, trace)
                        return ctx
            finish = self.finish
            for step in self.steps:
                hooks = step.hooks
                kinds = step.kinds
                count = len(hooks)
                if not ctx.finished:
                    if step.sends:
                        response = ctx.response
                        if response.headers_sent and not response.streaming:
                            # The handler sent the response whole (an ASGI
                            # application's): the flush has nothing to do.
                            continue
                    i = 0
                    try:
                        while i < count:
                            answer = hooks[i](ctx)
                            kind = kinds[i]
                            if kind != PLAIN and (kind == AWAIT or answer is not None):
                                ctx.waiting = step.where[i]
                                answer = await answer
                            if answer is finish:
                                ctx.finished = True
                                break
                            i += 1
                    except Exception as exc:
                        await self._failed(ctx, step, exc)
                    except asyncio.CancelledError as cancel:
                        await self._lost(ctx, step, cancel)
                elif step.always == ALWAYS or (step.always == IF_STATE and ctx.state_acquired):
                    # Every hook of an always-run stage gets its turn, whatever the others did.
                    for j in range(count):
                        try:
                            answer = hooks[j](ctx)
                            kind = kinds[j]
                            if kind != PLAIN and (kind == AWAIT or answer is not None):
                                ctx.waiting = step.where[j]
                                await answer
                        except Exception as exc_always:
                            await self._failed(ctx, step, exc_always)
                        except asyncio.CancelledError as cancel_always:
                            await self._lost(ctx, step, cancel_always)
        finally:
            books.ended(ctx)
        return ctx

    async def _lost(self, ctx: Context, step: WalkStep, exc: asyncio.CancelledError) -> None:
        # The connection ended under the request (its task cancelled with
        # CLIENT_GONE, or SERVER_ABORTED where the server dropped it, on a timer or
        # a stop's deadline: ServerState.cancel_request): the request ends as
        # a client's leaving, and the walk goes on with its always-run stages; any
        # other cancellation goes on up.
        ended = connection_ended(exc)
        if ended is None:
            raise exc
        await self._failed(ctx, step, ended)

    async def _failed(self, ctx: Context, step: WalkStep, exc: Exception) -> None:
        ctx.waiting = step.failing
        await self.fail(ctx, exc, step.stage)
        if step.sends:
            await self.send_plain(ctx)
