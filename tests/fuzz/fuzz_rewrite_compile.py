"""URL Rewrite rules as a configuration gives them: patterns (regular expression,
wildcard, exact), conditions, server variables and action URLs with ``{R:n}``,
``{C:n}``, ``{VAR}`` and ``{map:...}`` references, compiled when the engine is
built; a rule set that compiles then serves a request.

The input is NUL-separated fields: a control byte (syntax, match type, action
type, negate, ignore case), the pattern, the action URL, a condition's input
and its pattern, a server variable's value. Property: a bad rule is a
``ConfigError`` naming where it is (a key), never another exception; a good one
serves a request without an exception of the pipeline's own making.
"""

from __future__ import annotations

from typing import Any

from colonnade.errors import ConfigError, HttpError, each_error
from colonnade.testing import Client, build_engine
from tests.fuzz.fuzz_rewrite import CONFIG

_SYNTAX = ("ecma_script", "wildcard", "exact_match")
_MATCH = ("pattern", "is_file", "is_directory")
_ACTION = ("rewrite", "redirect", "custom_response", "abort", "none")


def rule_config(data: bytes) -> dict[str, Any]:
    """The configuration ``data`` describes (see the module docstring)."""
    control = data[0]
    fields = [f.decode("utf-8", "replace") for f in data[1:].split(b"\x00")] + [""] * 5
    pattern, url, cond_input, cond_pattern, variable = fields[:5]
    condition: dict[str, Any] = {"input": cond_input, "match_type": _MATCH[control % 3]}
    if condition["match_type"] == "pattern":
        condition["pattern"] = cond_pattern
    action: dict[str, Any] = {"type": _ACTION[control // 3 % 5]}
    if action["type"] in ("rewrite", "redirect"):
        action["url"] = url
    rule: dict[str, Any] = {
        "name": "fuzzed",
        "pattern": pattern,
        "pattern_syntax": _SYNTAX[control // 15 % 3],
        "ignore_case": bool(control & 0x40),
        "negate": bool(control & 0x80),
        "conditions": [condition] if cond_input else [],
        "action": action,
    }
    if variable:
        rule["server_variables"] = [{"name": "HTTP_X_ROUTE", "value": variable}]
    rewrite = {**CONFIG["rewrite"], "rules": [rule]}
    return {**CONFIG, "rewrite": rewrite}


def one_input(data: bytes) -> None:
    """See the module docstring."""
    if not data:
        return
    try:
        engine = build_engine(rule_config(data))
    except ConfigError as exc:
        for one in each_error(exc):
            assert one.key or one.file, f"an error that says not where: {one}"
        return
    with Client(engine) as client:
        response = client.get("/docs/x?q=1")
        error = response.context.error if response.context is not None else None
        assert error is None or isinstance(error, HttpError), repr(error)
