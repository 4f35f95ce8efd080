"""Compile once, run a flat plan.

At configuration load every application's enabled modules are turned into a
:class:`Plan`: for each stage of ``STAGES`` that somebody joined, a tuple of bound
hooks in their final order (priority, then configuration order; reversed for
SEND_RESPONSE). Stages nobody joined are not in the plan at all, so they cost
nothing per request. Two built-in steps are always present: the handler mapping
(the end of MAP_REQUEST_HANDLER) and the flush (the SEND_RESPONSE point).

The MAP_PATH hooks become one function, ``Plan.run_map_path``, that the
application calls where a URL becomes a file path (``Context.physical_path``);
it is None when nobody joined MAP_PATH, so the mapping then costs nothing more.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from colonnade.core.module import Module, Priority
from colonnade.core.stages import INFO, STAGES, Always, Stage
from colonnade.errors import ModuleError

if TYPE_CHECKING:
    from colonnade.core.handler import Handler

HookFn = Callable[[Any], Any]
#: The SEND_RESPONSE hooks of a plan, called as ``fn(ctx)``: a plain function when
#: every hook is one (it ran them all and returns None), else a coroutine function
#: (its call returns the awaitable that runs them).
SendResponseFn = Callable[[Any], Awaitable[None] | None]
#: ``(ctx, url_path, physical_path) -> physical_path``: the MAP_PATH hooks in order.
MapPathFn = Callable[[Any, str, str], str]


class BoundHook(NamedTuple):
    """One call of the plan: a bound method (or built-in step) and how to call it."""

    fn: HookFn
    #: True: a coroutine function; False: synchronous; None (built-in steps only):
    #: returns None or an awaitable to wait for, so a step that had nothing to wait
    #: for makes no coroutine.
    is_async: bool | None
    owner: str  # module id, or "(engine)" for built-in steps
    priority: Priority
    #: The hook is declared ``-> None`` (a plain one then needs no wrapper to be a
    #: SEND_RESPONSE chain of its own).
    answers_none: bool = False


class Step(NamedTuple):
    """The hooks of one stage, in call order."""

    stage: Stage
    always: Always
    hooks: tuple[BoundHook, ...]
    calls: tuple[tuple[HookFn, bool | None], ...]  # (fn, is_async): what the runner walks


#: A built-in step's common case as lines of the pure install's generated walk
#: (``pipeline.runner``), in place of the call of the step's function: the lines
#: leave what the call would give in ``a`` (None or an awaitable), and call the
#: function itself (``{call}``) for every other case (lines that never set ``a``,
#: none of them starting ``a = ``: the step answers None); ``{n}`` makes the names
#: (the dict: name -> value, globals of the walk) the step's own. Interpreted, a
#: call is a Python frame per request; the compiled walker calls the function.
Inline = tuple[tuple[str, ...], dict[str, Any]]


class Plan:
    """The immutable, per-application order of every hook."""

    __slots__ = (
        "error",
        "inline",
        "map_path",
        "modules",
        "run_map_path",
        "run_send_response",
        "send_response",
        "steps",
    )

    def __init__(
        self,
        steps: tuple[Step, ...],
        send_response: tuple[BoundHook, ...],
        error: tuple[BoundHook, ...],
        map_path: tuple[BoundHook, ...],
        modules: tuple[Module, ...],
        inline: dict[Any, Inline] | None = None,
    ) -> None:
        self.steps = steps
        #: Built-in steps the generated walk runs inline, by their function (see
        #: :data:`Inline`); empty where none.
        self.inline: dict[Any, Inline] = inline or {}
        self.send_response = send_response
        self.error = error
        self.map_path = map_path
        self.modules = modules
        #: Calls the SEND_RESPONSE hooks (reverse order; errors propagate to the
        #: runner), or None when nobody joined SEND_RESPONSE. A plain function when
        #: they all are, so that a buffered response costs no coroutine to send.
        self.run_send_response = _chain(send_response)
        #: Calls the MAP_PATH hooks in order (see :func:`map_path_chain`), or None
        #: when nobody joined MAP_PATH.
        self.run_map_path = map_path_chain(map_path)

    def describe(self) -> list[tuple[Stage, list[str]]]:
        """Stage by stage, who runs (for ``colonnade modules``)."""

        def names(hooks: tuple[BoundHook, ...]) -> list[str]:
            return [f"{h.owner} ({h.priority.name.lower()})" for h in hooks]

        rows: list[tuple[Stage, list[str]]] = [
            (s.stage, names(s.hooks)) for s in self.steps if s.stage is not Stage.SEND_RESPONSE
        ]
        rows.append((Stage.SEND_RESPONSE, [*names(self.send_response), "(engine) flush"]))
        rows.sort(key=lambda r: r[0])
        for hooks, stage in ((self.map_path, Stage.MAP_PATH), (self.error, Stage.ERROR)):
            if hooks:
                rows.append((stage, names(hooks)))
        return rows


def generate(
    label: str,
    names: dict[str, Any],
    body: list[str],
    *,
    coroutine: bool = True,
    params: str = "ctx",
) -> Any:
    """``async def fn(ctx)`` (or ``def fn(ctx)`` when not ``coroutine``; ``params``:
    other parameters) with ``body`` (lines indented for it), compiled once.

    ``names`` become the globals of the function, in a namespace of its own (hooks,
    stages, helpers): only generated identifiers go into the source, never
    configuration text. Globals rather than closure variables: a call would copy
    every closure cell into the new coroutine's frame, which for 50 modules of 24
    hooks is 1,200 cells per request, while a global is read in place through the
    interpreter's per-instruction cache.
    """
    source = (
        ("async def" if coroutine else "def")
        + f" fn({params}):\n"
        + "".join(f"{line}\n" for line in body or ["    pass"])
    )
    namespace: dict[str, Any] = dict(names)
    exec(compile(source, f"<colonnade {label}>", "exec"), namespace)
    return namespace["fn"]


def _chain(hooks: tuple[BoundHook, ...]) -> SendResponseFn | None:
    # One generated function calling ``hooks`` in order: no loop, no tuple
    # unpacking per hook. A plain function when every hook is one (a plain
    # function is called without creating a coroutine); it returns None whatever
    # the hooks answer, so the caller can tell it from an awaitable.
    if not hooks:
        return None
    if len(hooks) == 1 and hooks[0].is_async is False and hooks[0].answers_none:
        # One plain hook declared to answer None (http.compression alone, by
        # default): it is the chain, without a generated call around it.
        return hooks[0].fn
    coroutine = any(hook.is_async is not False for hook in hooks)
    names = {f"h{i}": hook.fn for i, hook in enumerate(hooks)}

    def call(i: int, is_async: bool | None) -> str:
        if is_async is None:  # awaits=True: await only what it answers
            return f"    if (a := h{i}(ctx)) is not None: await a"
        return f"    {'await ' if is_async else ''}h{i}(ctx)"

    body = [call(i, hook.is_async) for i, hook in enumerate(hooks)]
    chain: SendResponseFn = generate("send_response hooks", names, body, coroutine=coroutine)
    return chain


def _answers_none(fn: HookFn) -> bool:
    # The hook's own declaration: "-> None" (a string under postponed annotations).
    declared = getattr(fn, "__annotations__", {}).get("return", inspect.Parameter.empty)
    return declared is None or declared == "None"


def map_path_chain(hooks: tuple[BoundHook, ...]) -> MapPathFn | None:
    """One function calling the MAP_PATH ``hooks`` in order, or None without hooks.

    Each hook is called as ``hook(ctx, url_path, physical_path)`` with the path
    so far (the application's own mapping, then what earlier hooks chose) and
    answers a new absolute file path or None to keep it. It runs at most once per
    request and URL (``Context.physical_path`` keeps the result), so a plain loop
    serves: no generated code is worth it here.
    """
    if not hooks:
        return None
    # A MAP_PATH hook takes (ctx, url_path, physical_path), not HookFn's (ctx).
    calls: tuple[tuple[Callable[..., Any], str], ...] = tuple((h.fn, h.owner) for h in hooks)

    def run_map_path(ctx: Any, url_path: str, physical_path: str) -> str:
        for fn, owner in calls:
            found = fn(ctx, url_path, physical_path)
            if found is None:
                continue
            if not isinstance(found, str) or not os.path.isabs(found):
                raise ModuleError(
                    owner,
                    f"MAP_PATH hook answered {found!r} for {url_path!r}: not an absolute path",
                )
            physical_path = found
        return physical_path

    return run_map_path


def _mark_state_acquired(ctx: Any) -> None:
    ctx.state_acquired = True


def _bind(module: Module, method: str, priority: Priority, awaits: bool = False) -> BoundHook:
    # What the plan calls is the instance's attribute: the bound method, or what the
    # module put in its place (a compiled form of the hook, see Module); what it is
    # (a coroutine function, answering None) is read from the class's declaration.
    fn = getattr(module, method)
    declared = getattr(type(module), method)
    # awaits: called plainly, its answer awaited when it is not None (as built-in steps).
    is_async = None if awaits else inspect.iscoroutinefunction(declared)
    return BoundHook(fn, is_async, module.id, priority, _answers_none(declared))


def compile_plan(
    modules: Sequence[Module],
    *,
    map_handler: HookFn,
    execute_handler: HookFn,
    flush: HookFn,
    close_mapping: HookFn | None = None,
    mapped: tuple[Handler, ...] | None = None,
    inline: dict[Any, Inline] | None = None,
) -> Plan:
    """Order every module's subscriptions into a :class:`Plan`.

    ``modules`` are in configuration order (a module that ``leads`` goes first
    within each priority). The built-in steps are supplied by
    the engine and return None or an awaitable; handler execution sits among the
    EXECUTE_REQUEST_HANDLER hooks as a MEDIUM-priority hook after the modules'
    MEDIUM hooks; ``close_mapping``, where given, is the last hook of
    POST_MAP_REQUEST_HANDLER (the end of remapping). ``mapped``, where given, are
    the handlers the application's mapping can choose: a hook whose module says
    it does not join its stage with them (``Module.joins``) is left out.
    ``inline``: built-in steps' common cases for the generated walk (:data:`Inline`),
    by the function given here.
    """
    by_stage: dict[Stage, list[tuple[Priority, int, BoundHook]]] = {s: [] for s in INFO}
    # A leading module's hooks sort ahead of the others' of the same priority
    # (Module.leads); the rest keep the configuration order.
    count = len(modules)
    for position, module in enumerate(modules):
        rank = position - count if type(module).leads else position
        for sub in type(module).subscriptions:
            if mapped is not None and not module.joins(sub.stage, mapped):
                continue
            by_stage[sub.stage].append(
                (sub.priority, rank, _bind(module, sub.method, sub.priority, sub.awaits))
            )
    engine = "(engine)"
    last = len(modules)
    by_stage[Stage.MAP_REQUEST_HANDLER].append(
        (Priority.LAST, last, BoundHook(map_handler, None, engine, Priority.LAST))
    )
    by_stage[Stage.EXECUTE_REQUEST_HANDLER].append(
        (Priority.MEDIUM, last, BoundHook(execute_handler, None, engine, Priority.MEDIUM))
    )
    if close_mapping is not None:
        by_stage[Stage.POST_MAP_REQUEST_HANDLER].append(
            (Priority.LAST, last, BoundHook(close_mapping, None, engine, Priority.LAST))
        )
    # RELEASE_REQUEST_STATE runs after an early finish only if state was acquired;
    # the runner learns that by passing the ACQUIRE step, so keep one when needed.
    needs_acquire = (
        by_stage[Stage.RELEASE_REQUEST_STATE] or by_stage[Stage.POST_RELEASE_REQUEST_STATE]
    )

    def ordered(stage: Stage) -> tuple[BoundHook, ...]:
        rows = sorted(by_stage[stage], key=lambda r: (r[0], r[1]))
        hooks = tuple(r[2] for r in rows)
        return hooks[::-1] if INFO[stage].reverse else hooks

    steps: list[Step] = []
    for info in STAGES:
        if info.stage is Stage.SEND_RESPONSE:
            flush_hook = BoundHook(flush, None, engine, Priority.MEDIUM)
            steps.append(Step(info.stage, info.always, (flush_hook,), ((flush, None),)))
            continue
        hooks = ordered(info.stage)
        if hooks or (info.stage is Stage.ACQUIRE_REQUEST_STATE and needs_acquire):
            calls = tuple((h.fn, h.is_async) for h in hooks)
            if info.stage is Stage.ACQUIRE_REQUEST_STATE:
                calls = ((_mark_state_acquired, False), *calls)
            steps.append(Step(info.stage, info.always, hooks, calls))
    return Plan(
        tuple(steps),
        ordered(Stage.SEND_RESPONSE),
        ordered(Stage.ERROR),
        ordered(Stage.MAP_PATH),
        tuple(modules),
        inline,
    )
