"""Rules made ready for requests: templates become getters, rules flat objects.

How this works: a rule's parsed form (``config.ParsedRule``) is turned once per
configuration into a :class:`CompiledRule` whose ``test`` is the bound
``search``/``fullmatch`` of its regex, and whose templates are functions of a
:class:`State` (the request being rewritten: its current path and query and the
last matches). A request that matches no rule pattern costs one ``test`` call
per rule and allocates nothing; the :class:`State` is made when a pattern first
matches. Nothing is looked up by name on a request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from colonnade.modules.rewrite.config import Map, ParsedRule
from colonnade.modules.rewrite.template import Ref, Template

if TYPE_CHECKING:
    from colonnade.core.context import Context

#: ``ctx.items`` key of the server variables rules set that are not request headers.
SERVER_VARIABLES_ITEM = "rewrite.server_variables"

Getter = Callable[["State"], str]

# Action kinds, compared by identity on a request.
REWRITE = "rewrite"
REDIRECT = "redirect"
CUSTOM = "custom_response"
ABORT = "abort"
NONE = "none"
ROUTE = "route"  # a rewrite to http://FARM/...: handed to handler.proxy

#: What a URL may carry as it is: printable ASCII but for the characters that are
#: never valid in one. Anything else (space, controls, non-ASCII) is
#: percent-encoded; existing escapes are kept.
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?\Z|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

URL_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in '"<>\\^`{|}')


_UNSAFE = re.compile("[^!#-;=?-\\[\\]_a-z~]")  # anything not in URL_SAFE


def url_text(text: str) -> str:
    """``text`` made safe to send as URL text (a ``Location``, a query string)."""
    if _UNSAFE.search(text) is None:
        return text  # the common case: nothing to encode
    return quote(text, safe=URL_SAFE)


class Captures:
    """The groups of every condition that matched (``track_all_captures``):
    ``group(0)`` is the first one's whole match, then their groups in order."""

    __slots__ = ("values",)

    def __init__(self, values: list[str]) -> None:
        self.values = values

    def group(self, number: int) -> str | None:
        """Group ``number``, or None if there is none."""
        values = self.values
        return values[number] if number < len(values) else None


class State:
    """One request being rewritten: its current path and query, the last matches."""

    __slots__ = ("c", "ctx", "path", "query", "r", "rule")

    def __init__(self, ctx: Context, path: str, query: bytes) -> None:
        self.ctx = ctx
        self.path = path  # the URL path as rewritten so far (decoded, leading "/")
        self.query = query  # the query string as rewritten so far (raw)
        self.r: re.Match[str] | None = None
        self.c: re.Match[str] | Captures | None = None
        self.rule: CompiledRule | None = None  # the last rule that rewrote


class CompiledCondition:
    """A condition ready for requests."""

    __slots__ = ("input", "is_dir", "is_file", "negate", "test")

    def __init__(
        self,
        input: Getter,
        test: Callable[[str], re.Match[str] | None] | None,
        kind: str,
        negate: bool,
    ) -> None:
        self.input = input
        self.test = test
        self.is_file = kind == "is_file"
        self.is_dir = kind == "is_directory"
        self.negate = negate


class CompiledRule:
    """A rule ready for requests (read-only)."""

    __slots__ = (
        "append_query",
        "conditions",
        "description",
        "farm",
        "first",
        "index",
        "kind",
        "match_any",
        "name",
        "negate",
        "reason",
        "source",
        "status",
        "stop",
        "sub_status",
        "test",
        "track_all",
        "url",
        "variables",
    )

    def __init__(
        self,
        parsed: ParsedRule,
        index: int,
        source: str,
        maps: dict[str, Map],
        farm: str | None = None,
    ) -> None:
        """``farm``: for a route to a farm, the farm's name as the server file
        spells it (the rule's may differ in case)."""
        rule = parsed.rule
        self.name = rule.name
        self.index = index  # its place in its rule set
        self.first = parsed.first  # what its input must start with, if known
        #: Where it is written: "colonnade.toml: rewrite.rules[2]" (logs, details).
        self.source = source
        regex = parsed.regex
        self.test = regex.fullmatch if parsed.exact else regex.search
        self.negate = rule.negate
        self.match_any = rule.logical_grouping == "match_any"
        self.track_all = rule.track_all_captures
        self.conditions = tuple(
            CompiledCondition(
                getter(c.input, maps),
                None if c.regex is None else (c.regex.fullmatch if c.exact else c.regex.search),
                c.kind,
                c.negate,
            )
            for c in parsed.conditions
        )
        action = rule.action
        self.kind = {
            "rewrite": REWRITE,
            "redirect": REDIRECT,
            "custom_response": CUSTOM,
            "abort": ABORT,
            "none": NONE,
        }[action.type]
        self.farm = farm
        if parsed.farm is not None:
            self.kind = ROUTE
        self.url = getter(parsed.url, maps) if parsed.url is not None else None
        self.status = parsed.status if self.kind is REDIRECT else action.status_code or 0
        self.sub_status = action.sub_status
        self.reason = action.reason
        self.description = action.description
        self.append_query = action.append_query_string
        # Redirect, custom response, abort and a route end processing whatever it says.
        self.stop = rule.stop_processing or self.kind in (REDIRECT, CUSTOM, ABORT, ROUTE)
        self.variables = tuple(
            (name, getter(template, maps), replace)
            for name, template, replace in parsed.server_variables
        )

    def conditions_hold(self, state: State) -> bool:
        """Whether the conditions allow the rule to fire (``state.c``: the captures)."""
        return conditions_hold(self.conditions, self.match_any, self.track_all, state)

    def set_variables(self, state: State) -> None:
        """Set the rule's server variables: ``HTTP_*`` as request headers."""
        ctx = state.ctx
        for name, value_of, replace in self.variables:
            value = value_of(state)
            if name.startswith("HTTP_"):
                field = header_name(name)
                headers = ctx.request.headers
                if field == b"host":
                    # What every module and application takes for the host: only
                    # a host name (and port) is taken.
                    if (replace or not ctx.request.host) and _HOST.match(value):
                        ctx.request.host = value
                    continue
                present = any(k == field for k, _ in headers)
                if present and not replace:
                    continue
                if present:
                    headers[:] = [(k, v) for k, v in headers if k != field]
                headers.append((field, _CONTROL.sub("", value).encode()))
            else:
                table: dict[str, str] = ctx.items.setdefault(SERVER_VARIABLES_ITEM, {})
                if replace or name not in table:
                    table[name] = value


def conditions_hold(
    conditions: tuple[CompiledCondition, ...], match_any: bool, track_all: bool, state: State
) -> bool:
    """Whether ``conditions`` hold for ``state`` (all, or with ``match_any`` one);
    ``state.c`` gets the captures (of every matching one with ``track_all``)."""
    state.c = None
    every: list[str] | None = [] if track_all else None
    for cond in conditions:
        value = cond.input(state)
        if cond.test is not None:
            found = cond.test(value)
            if cond.negate:
                ok = found is None
            else:
                ok = found is not None
                if found is not None:
                    if every is None:
                        state.c = found
                    else:
                        if not every:
                            every.append(found.group(0))
                        every.extend(g or "" for g in found.groups())
                        state.c = Captures(every)
        elif cond.is_file:
            ok = os.path.isfile(value) != cond.negate
        else:
            ok = os.path.isdir(value) != cond.negate
        if ok:
            if match_any:
                return True
        elif not match_any:
            return False
    return not match_any


class RuleSet:
    """The rules of one level, the folder their input is relative to, and which
    rules can match an input that starts with a given character."""

    __slots__ = ("base", "by_first", "cut", "folder", "others", "rules")

    def __init__(self, base: str, rules: tuple[CompiledRule, ...]) -> None:
        self.base = base  # the level's URL path: "/" or "/blog"
        self.folder = base if base == "/" else base + "/"  # where relative URLs start
        self.cut = len(self.folder)  # the input is path[cut:]
        self.rules = rules
        #: The rules for an input whose first character no rule's pattern names.
        self.others = tuple(r for r in rules if r.first is None)
        chars = {c for r in rules if r.first is not None for c in r.first}
        #: First character → the rules that can match such an input, in order.
        self.by_first = {
            c: tuple(r for r in rules if r.first is None or c in r.first) for c in chars
        }

    def candidates(self, subject: str) -> tuple[CompiledRule, ...]:
        """The rules whose pattern can match ``subject``, in order."""
        return self.by_first.get(subject[:1], self.others)


def header_name(variable: str) -> bytes:
    """``HTTP_X_FORWARDED_PROTO`` → ``b"x-forwarded-proto"``."""
    return variable[5:].lower().replace("_", "-").encode("ascii")


# -- templates as getters ----------------------------------------------------------


def getter(template: Template, maps: dict[str, Map]) -> Getter:
    """A function of the :class:`State` rendering ``template``."""
    parts = [_part(p, maps) for p in template.parts]
    if not parts:
        return _constant("")
    if len(parts) == 1:
        return parts[0]
    return lambda state: "".join([part(state) for part in parts])


def _constant(text: str) -> Getter:
    return lambda state: text


def _part(part: str | Ref, maps: dict[str, Map]) -> Getter:
    if isinstance(part, str):
        return _constant(part)
    if part.kind in ("R", "C"):
        return _group(part.kind, int(part.name))
    if part.kind == "var":
        return variable(part.name)
    assert part.inner is not None
    inner = getter(part.inner, maps)
    if part.kind == "fn":
        if part.name == "tolower":
            return lambda state: inner(state).lower()
        if part.name == "urlencode":
            return lambda state: quote(inner(state), safe="")
        return lambda state: unquote(inner(state))
    # A map: its name was checked against the maps this rule sees.
    found = next(m for name, m in maps.items() if name.lower() == part.name)
    default = found.default
    if found.ignore_case:
        table = {k.lower(): v for k, v in found.entries.items()}
        return lambda state: table.get(inner(state).lower(), default)
    entries = dict(found.entries)
    return lambda state: entries.get(inner(state), default)


def _group(kind: str, number: int) -> Getter:
    def rule_group(state: State) -> str:
        found = state.r
        return (found.group(number) or "") if found is not None else ""

    def condition_group(state: State) -> str:
        found = state.c
        return (found.group(number) or "") if found is not None else ""

    return rule_group if kind == "R" else condition_group


def physical(state: State) -> str:
    """The file the current path maps to (``REQUEST_FILENAME``)."""
    ctx = state.ctx
    path = state.path
    if path == ctx.request.path:
        return ctx.physical_path
    app = ctx.app
    found = app.map_path(path)
    if app.map_path_hooks is not None:
        found = app.map_path_hooks(ctx, path, found)
    return found


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


_VARIABLES: dict[str, Getter] = {
    "HTTPS": lambda s: "on" if s.ctx.request.scheme == "https" else "off",
    "SERVER_PORT_SECURE": lambda s: "1" if s.ctx.request.scheme == "https" else "0",
    "HTTP_HOST": lambda s: s.ctx.request.host,
    "SERVER_NAME": lambda s: _host_name(s.ctx.request.host),
    "QUERY_STRING": lambda s: s.query.decode("latin-1"),
    "URL": lambda s: s.path,
    "PATH_INFO": lambda s: s.path,
    "REQUEST_URI": lambda s: s.ctx.request.target.decode("latin-1"),
    "UNENCODED_URL": lambda s: s.ctx.request.target.decode("latin-1"),
    "CACHE_URL": lambda s: (
        f"{s.ctx.request.scheme}://{s.ctx.request.host}{s.path}"
        + (f"?{s.query.decode('latin-1')}" if s.query else "")
    ),
    "REQUEST_FILENAME": physical,
    "REQUEST_METHOD": lambda s: s.ctx.request.method,
    "SERVER_PROTOCOL": lambda s: f"HTTP/{s.ctx.request.version}",
    "SERVER_ADDR": lambda s: _address(s.ctx.request.server, 0),
    "SERVER_PORT": lambda s: _address(s.ctx.request.server, 1),
    "REMOTE_ADDR": lambda s: _address(s.ctx.request.client, 0),
    "REMOTE_HOST": lambda s: _address(s.ctx.request.client, 0),
    "REMOTE_PORT": lambda s: _address(s.ctx.request.client, 1),
}


def _address(pair: tuple[Any, ...] | None, index: int) -> str:
    return str(pair[index]) if pair else ""


def response_variable(name: str) -> Getter:
    """``RESPONSE_STATUS``, or ``RESPONSE_<HEADER>``: a response header (the lines of
    a repeated one joined by ``, ``), for outbound rules."""
    if name == "RESPONSE_STATUS":
        return lambda state: str(state.ctx.response.status)
    field = name[9:].lower().replace("_", "-").encode("ascii")

    def response_header(state: State) -> str:
        values = [v for k, v in state.ctx.response.headers if k == field]
        return b", ".join(values).decode("latin-1")

    return response_header


def variable(name: str) -> Getter:
    """The getter of server variable ``name`` (upper case; checked at load)."""
    found = _VARIABLES.get(name)
    if found is not None:
        return found
    if name.startswith("RESPONSE_"):
        return response_variable(name)
    if name.startswith("HTTP_"):
        field = header_name(name)

        def header(state: State) -> str:
            value = state.ctx.request.header(field)
            return value.decode("latin-1") if value is not None else ""

        return header

    def custom(state: State) -> str:
        table = state.ctx.items.get(SERVER_VARIABLES_ITEM)
        return table.get(name, "") if table else ""

    return custom
