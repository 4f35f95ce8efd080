"""Handler mapping: a URL (and verb) picks the handler, first matching rule wins."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Sequence
from typing import NamedTuple

from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import method_not_allowed
from colonnade.errors import HttpError


class Rule(NamedTuple):
    """One compiled mapping."""

    pattern: str
    match: re.Pattern[str] | None  # None: matches every path
    verbs: frozenset[str] | None  # None: every verb
    handler: Handler


def compile_rule(pattern: str, verbs: Sequence[str], handler: Handler) -> Rule:
    """``*`` → all; ``*.ext`` → last segment; ``/x/*`` → whole path (fnmatch style)."""
    if pattern == "*":
        regex = None
    elif pattern.startswith("/"):
        regex = re.compile(fnmatch.translate(pattern))
    else:
        regex = re.compile(r"(?:.*/)?" + fnmatch.translate(pattern))
    verb_set = None if "*" in verbs else frozenset(v.upper() for v in verbs)
    return Rule(pattern, regex, verb_set, handler)


class HandlerMap:
    """The MAP_REQUEST_HANDLER built-in step for one application."""

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def select(self, path: str, method: str) -> Handler:
        """The handler for ``method path``; 405 or 404.4 when there is none."""
        allowed: set[str] = set()
        for rule in self.rules:
            if rule.match is not None and rule.match.fullmatch(path) is None:
                continue
            if rule.verbs is None or method in rule.verbs:
                return rule.handler
            allowed |= rule.verbs
        if allowed:
            raise method_not_allowed(allowed)
        raise HttpError(404, 4, "no handler is mapped for this path")

    def map(self, ctx: Context) -> None:
        """Choose ``ctx.handler`` unless a module already did."""
        if ctx.handler is None:
            ctx.handler = self.select(ctx.request.path, ctx.request.method)


def execute(ctx: Context) -> Awaitable[None] | None:
    """The EXECUTE_REQUEST_HANDLER built-in step: run the chosen handler.

    Returns what the handler returned: None, or an awaitable the walk waits for.
    """
    handler = ctx.handler
    if handler is None:
        raise HttpError(404, 4, "no handler is mapped for this path")
    verbs = handler.verbs
    if verbs is not None and ctx.request.method not in verbs:
        raise method_not_allowed(verbs)
    return handler.execute(ctx)
