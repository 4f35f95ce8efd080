"""Outbound rules (IIS URL Rewrite ``outboundRules``) on response headers.

How this works: the effective ``[rewrite]`` section of a request's path holds its
``outbound_rules`` and ``preconditions``; they are compiled once per section
object (:func:`compiled`) into :class:`CompiledOutbound` objects whose tests and
templates are those of the inbound rules (``rules.py``), so a value reads
``{R:1}``, ``{C:1}``, request variables and ``{RESPONSE_*}`` alike. When the
response head is about to be sent, :func:`apply` runs the rules in order: each
matches its header, line by line (a missing header matches as the empty
string), checks its precondition and conditions, and rewrites the lines it
matched. A value never carries a control character (no response splitting), and
the headers that frame the message are refused when the configuration loads.
Body rewriting (``filterByTags``) has no counterpart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from colonnade.modules.rewrite.config import (
    Condition,
    Map,
    OutboundRule,
    Precondition,
    RewriteSection,
    compile_pattern,
)
from colonnade.modules.rewrite.rules import (
    CompiledCondition,
    Getter,
    State,
    conditions_hold,
    getter,
)
from colonnade.modules.rewrite.template import parse

if TYPE_CHECKING:
    from colonnade.core.context import Context

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Test:
    """Conditions with their grouping: what a precondition is, and part of a rule."""

    __slots__ = ("conditions", "match_any", "track_all")

    def __init__(
        self,
        conditions: list[Condition],
        syntax: str,
        match_any: bool,
        track_all: bool,
        maps: dict[str, Map],
    ) -> None:
        self.match_any = match_any
        self.track_all = track_all
        self.conditions = tuple(
            CompiledCondition(
                getter(parse(c.input), maps),
                _test(c.pattern or "", syntax, c.ignore_case),
                "pattern",
                c.negate,
            )
            for c in conditions
        )

    def holds(self, state: State) -> bool:
        """Whether the conditions hold (``state.c``: their captures)."""
        return conditions_hold(self.conditions, self.match_any, self.track_all, state)


class CompiledOutbound:
    """One outbound rule ready for responses (read-only)."""

    __slots__ = ("field", "negate", "precondition", "stop", "test", "value", "when")

    def __init__(self, rule: OutboundRule, pre: Test | None, maps: dict[str, Map]) -> None:
        self.field = rule.server_variable[9:].lower().replace("_", "-").encode("ascii")
        self.test = _test(rule.pattern, rule.pattern_syntax, rule.ignore_case)
        self.negate = rule.negate
        self.precondition = pre
        self.when = Test(
            rule.conditions,
            rule.pattern_syntax,
            rule.logical_grouping == "match_any",
            rule.track_all_captures,
            maps,
        )
        self.value: Getter | None = (
            getter(parse(rule.action.value), maps) if rule.action.type == "rewrite" else None
        )
        self.stop = rule.stop_processing


def _test(pattern: str, syntax: str, ignore_case: bool) -> Callable[[str], re.Match[str] | None]:
    regex, _, exact = compile_pattern(pattern, syntax, ignore_case)
    return regex.fullmatch if exact else regex.search


def _precondition(pre: Precondition, maps: dict[str, Map]) -> Test:
    return Test(
        pre.conditions, pre.pattern_syntax, pre.logical_grouping == "match_any", False, maps
    )


def compile_rules(section: RewriteSection) -> tuple[CompiledOutbound, ...]:
    """The enabled outbound rules of ``section`` (checked when it loaded)."""
    pres = {name: _precondition(p, section.maps) for name, p in section.preconditions.items()}
    return tuple(
        CompiledOutbound(rule, pres.get(rule.precondition), section.maps)
        for rule in section.outbound_rules
        if rule.enabled
    )


def apply(rules: tuple[CompiledOutbound, ...], ctx: Context) -> None:
    """Run ``rules`` on the response of ``ctx`` (its head not yet sent)."""
    request = ctx.request
    state = State(ctx, request.path, request.query)
    for rule in rules:
        pre = rule.precondition
        if pre is not None and not pre.holds(state):
            continue
        response = ctx.response
        field = rule.field
        lines = [v for k, v in response.headers if k == field]
        subjects = [v.decode("latin-1") for v in lines] if lines else [""]
        fired = False
        out: list[str] = []
        for subject in subjects:
            found = rule.test(subject)
            if (found is None) is not rule.negate:
                out.append(subject)
                continue
            state.r = found
            if not rule.when.holds(state):
                out.append(subject)
                continue
            fired = True
            out.append(_CONTROL.sub("", rule.value(state)) if rule.value is not None else subject)
        if fired and rule.value is not None:
            # A new list: the response's may be shared (a cached response's).
            headers = [pair for pair in response.headers if pair[0] != field]
            if lines or any(out):
                headers.extend((field, value.encode("latin-1", "replace")) for value in out)
            response.headers = headers
        if fired and rule.stop:
            return
