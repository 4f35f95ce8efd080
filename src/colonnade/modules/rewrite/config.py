"""``[rewrite]``: IIS URL Rewrite 2 rules, conditions, actions and rewrite maps.

Everything a rule says is checked when the configuration loads, naming the file,
line and key: a pattern that does not compile, a ``{R:3}`` where the pattern
has two groups, a ``{C:1}`` without a condition that captures, an unknown
function. What only the merged settings can tell (a map or a server variable
defined at another level) is checked by :meth:`RewriteSection.check_level` with
the effective settings at the level's path. A request never meets a malformed rule.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section, SettingError, Where
from colonnade.modules.rewrite.template import Template, TemplateError, parse

PatternSyntax = Literal["regex", "wildcard", "exact"]
ActionType = Literal["rewrite", "redirect", "custom_response", "abort", "none"]
RedirectType = Literal[
    301, 302, 303, 307, 308, "Permanent", "Found", "SeeOther", "Temporary", "PermanentRedirect"
]
#: IIS's names for the redirect statuses (and 308, which IIS lacks).
REDIRECT_NAMES = {"Permanent": 301, "Found": 302, "SeeOther": 303, "Temporary": 307}
REDIRECT_NAMES["PermanentRedirect"] = 308

#: Server variables a template may read besides ``HTTP_*`` request headers and
#: the variables ``allowed_server_variables`` lists (set by rules).
SERVER_VARIABLES = frozenset(
    {
        "CACHE_URL",
        "HTTPS",
        "HTTP_HOST",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_PORT",
        "REQUEST_FILENAME",
        "REQUEST_METHOD",
        "REQUEST_URI",
        "SERVER_ADDR",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PORT_SECURE",
        "SERVER_PROTOCOL",
        "UNENCODED_URL",
        "URL",
    }
)

_FARM = "a farm name: 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_VARIABLE_NAME = "a server variable name such as 'HTTP_X_FORWARDED_PROTO' (letters, digits, _)"
_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ABSOLUTE = re.compile(r"^https?://", re.IGNORECASE)
#: ``http://HOST`` and the rest of an absolute rewrite URL (a route to a farm).
_TO_HOST = re.compile(r"^(https?)://([^/?#{}]*)(.*)\Z", re.IGNORECASE | re.DOTALL)
#: A farm's name, as ``[farms.NAME]`` allows it (config.schema.FarmName).
_FARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_JS_NAMED_GROUP = re.compile(r"(?<!\\)\(\?<(?![=!])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Condition(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One ``conditions`` entry (IIS ``<conditions><add>``)."""

    input: Annotated[str, Meta(min_length=1)]
    """What is tested: a template such as `{HTTP_HOST}`, `{HTTPS}`,
    `{QUERY_STRING}` or `{REQUEST_FILENAME}` (back-references allowed)."""
    match_type: Literal["pattern", "is_file", "is_directory"] = "pattern"
    """`pattern`: `input` matches `pattern`; `is_file` / `is_directory`: `input`
    (normally `{REQUEST_FILENAME}`) is an existing file / folder."""
    pattern: str | None = None
    """The pattern (in the rule's `pattern_syntax`); required for `match_type =
    "pattern"`, not allowed otherwise."""
    negate: bool = False
    """The condition holds when the input does *not* match (captures nothing)."""
    ignore_case: bool = True
    """Match without regard to case (IIS's default)."""


class Action(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """What a rule does when it fires (IIS ``<action>``)."""

    type: ActionType
    """`rewrite` (serve another URL of the application: the handler mapping runs
    for it; or route to a farm, below), `redirect`, `custom_response` (a status
    without a handler), `abort` (close the connection without an answer) or
    `none`."""
    url: str | None = None
    """The target of `rewrite` and `redirect`: a template. Relative (`index.php?p={R:1}`):
    to the folder the rule is defined for; `/path`: from the site root; a redirect
    may also go to `https://host/...`. A rewrite to `http://FARM/...` (ARR's
    form, `http://app/{R:0}`) routes the request to the server farm
    `[farms.FARM]` through `handler.proxy`, which must be enabled: the rest of
    the URL is what the farm's member is asked for. See
    [Reverse proxy](proxy.md#routing-by-url-rewrite-rules)."""
    redirect_type: RedirectType = 301
    """The status of a redirect: 301, 302, 303, 307, 308, or IIS's names
    `Permanent` (301, IIS's default), `Found`, `SeeOther`, `Temporary`
    (`PermanentRedirect`: 308)."""
    append_query_string: bool = True
    """Keep the request's query string: appended to the URL's own (after `&`),
    or kept as it is when the URL has none."""
    status_code: Annotated[int, Meta(ge=200, le=999)] | None = None
    """The status of a `custom_response` (required there)."""
    sub_status: Annotated[int, Meta(ge=0, le=999)] = 0
    """Its IIS substatus (logged, shown in the error page)."""
    reason: str = ""
    """Its reason phrase (empty: the standard one)."""
    description: str = ""
    """The text of its page."""


class ServerVariable(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One ``server_variables`` entry (IIS ``<serverVariables><set>``)."""

    name: Annotated[str, Meta(pattern=_NAME_PATTERN, description=_VARIABLE_NAME)]
    """`HTTP_X_NAME` sets request header `X-Name` (what applications see); any
    other name a variable later rules read as `{NAME}` and modules find in
    `ctx.items["rewrite.server_variables"]`."""
    value: str
    """A template."""
    replace: bool = True
    """Replace a value already set (false: keep it)."""


class Rule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One rule (IIS ``<rule>``)."""

    name: Annotated[str, Meta(min_length=1)]
    """Unique in its list; named in logs and error details."""
    enabled: bool = True
    """`false` keeps the rule written but inactive."""
    pattern: str
    """What the URL path must match: relative to the folder the rule is defined
    for, without the leading `/`, never the query string (a site-level rule sees
    `blog/2024/post`, a rule of `/blog`'s `web.toml` sees `2024/post`)."""
    pattern_syntax: PatternSyntax = "regex"
    """`regex` (ECMAScript-like, Python's `re`; found anywhere unless anchored
    with `^`/`$`), `wildcard` (the whole path; `*` any text, captured; `?` one
    character) or `exact` (the whole path, literally). Also for the conditions."""
    negate: bool = False
    """Fire when the path does *not* match (then `{R:n}` are not available)."""
    ignore_case: bool = True
    """Match without regard to case (IIS's default)."""
    logical_grouping: Literal["match_all", "match_any"] = "match_all"
    """Whether every condition must hold, or one."""
    track_all_captures: bool = False
    """`{C:n}` number the groups of every condition that matched, in order
    (`{C:0}`: the first one's whole match), instead of the last one's only."""
    conditions: list[Condition] = msgspec.field(default_factory=list)
    """Tested in order once the pattern matched; `{C:n}` are the groups of the last
    condition that matched with a pattern."""
    server_variables: list[ServerVariable] = msgspec.field(default_factory=list)
    """Variables set when the rule fires. Rules of `rules` may set only the names
    `allowed_server_variables` lists; `global_rules` any."""
    action: Action
    stop_processing: bool = False
    """No further rule of this kind (global, or distributed) runs once this one
    fired. Redirect, custom response and abort always stop."""


class Map(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A rewrite map (IIS ``<rewriteMap>``): ``{Name:{R:1}}`` looks a key up."""

    default: str = ""
    """The value for a key the map lacks (empty: a condition with pattern `.+` on
    the lookup then fails, IIS's idiom)."""
    ignore_case: bool = True
    """Look keys up without regard to case."""
    entries: dict[str, str] = msgspec.field(default_factory=dict)
    """The keys and their values (IIS ``<add key value>``)."""


class ParsedCondition(NamedTuple):
    """A condition checked and compiled, independent of the request."""

    input: Template
    kind: str  # "pattern", "is_file", "is_directory"
    regex: re.Pattern[str] | None
    negate: bool
    groups: int  # what it captures when it matches (0 when negated)
    exact: bool  # the regex must match the whole input (wildcard, exact)


class ParsedRule(NamedTuple):
    """A rule checked and compiled, independent of the request and of other levels."""

    rule: Rule
    key: str  # "rules[2]": where it is written
    regex: re.Pattern[str]
    exact: bool
    first: str | None  # what the input must start with (first_chars), if known
    conditions: tuple[ParsedCondition, ...]
    url: Template | None
    status: int  # the redirect's
    server_variables: tuple[tuple[str, Template, bool], ...]
    templates: tuple[tuple[str, Template], ...]  # every template with its key, for checks
    #: A route to a farm (``url = "http://FARM/..."``): the farm's name as written,
    #: ``url`` then the upstream's path and query; None: any other action.
    farm: str | None = None


class RewriteSection(Section, frozen=True, dict=True):
    """URL Rewrite (IIS URL Rewrite 2): rules that rewrite, redirect or answer by
    the URL path, the request's server variables and rewrite maps.

    `global_rules` (server file only) run first, on the path from the site root;
    then the `rules` of every level on the request's path (the server file's
    `[rewrite]` for the site root, `[[locations]]` entries, `web.toml` files),
    parent to child, each on the path relative to its folder. A `rewrite` makes
    the rest of the pipeline (authentication, authorization, the handler
    mapping, the handler) serve the new URL; the access log, `REQUEST_URI` and
    `X-Original-URL` keep the original. See docs/rewrite.md.
    """

    key = "rewrite"
    allowed_keys = {
        "global_rules": Where.SERVER,
        "allowed_server_variables": Where.SERVER,
        "allowed_farms": Where.SERVER,
    }

    global_rules: list[Rule] = msgspec.field(default_factory=list)
    """IIS `globalRules`: run for every request of every site before the
    distributed `rules`, on the whole URL path (without the leading `/`). May set
    any server variable."""
    rules: list[Rule] = msgspec.field(default_factory=list)
    """IIS distributed `rules`: this level's own list, run after the rules of the
    levels above. A plain array: a level's rules never replace its parent's,
    both run."""
    maps: dict[
        Annotated[str, Meta(pattern=_NAME_PATTERN, description="a map name (letters, digits, _)")],
        Map,
    ] = msgspec.field(default_factory=dict)
    """Rewrite maps by name (`[rewrite.maps.products]`), used as `{products:{R:1}}`
    by the rules of this level and the levels below."""
    allowed_server_variables: list[
        Annotated[str, Meta(pattern=_NAME_PATTERN, description=_VARIABLE_NAME)]
    ] = msgspec.field(default_factory=list)
    """The server variables `rules` may set (IIS `allowedServerVariables`)."""
    outbound_rules: list[OutboundRule] = msgspec.field(default_factory=list)
    """IIS `outboundRules` on response headers, run on every response of this
    subtree as its head is sent (after `custom_headers`, before compression).
    A `web.toml` list replaces the inherited one; `{ add = [...] }` adds to it."""
    preconditions: dict[
        Annotated[str, Meta(min_length=1, description="a precondition name")], Precondition
    ] = msgspec.field(default_factory=dict)
    """Named response tests (`[rewrite.preconditions.IsHTML]`) outbound rules name."""
    allowed_farms: list[
        Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description=_FARM)]
    ] = msgspec.field(default_factory=list)
    """The farms `rules` may route to (`http://FARM/...`, see
    [Reverse proxy](proxy.md#routing-by-url-rewrite-rules)); `global_rules` may
    route to any farm. As `allowed_server_variables`: a `web.toml` can send its
    folder's requests only to the servers the administrator lets it."""

    def __post_init__(self) -> None:
        _ = self.parsed  # a malformed rule fails at load, naming its key
        _check_outbound(self.outbound_rules, self.preconditions)

    @cached_property
    def parsed(self) -> tuple[tuple[ParsedRule, ...], tuple[ParsedRule, ...]]:
        """``(global rules, rules)``, enabled ones only, checked and compiled."""
        return (_parse_list(self.global_rules, "global_rules"), _parse_list(self.rules, "rules"))

    def check_level(self, effective: RewriteSection) -> None:
        """The maps and server variables this level's rules name exist at its path,
        and so do the preconditions its outbound rules name."""
        for i, rule in enumerate(self.outbound_rules):
            if rule.precondition and rule.precondition not in effective.preconditions:
                known = ", ".join(sorted(effective.preconditions)) or "none is defined"
                raise SettingError(
                    f"outbound_rules[{i}].precondition",
                    f"no precondition named {rule.precondition!r} here ({known})",
                )
        global_rules, rules = self.parsed
        check_references(
            global_rules,
            rules,
            effective.maps,
            effective.allowed_server_variables,
            setters=effective.parsed[0],
        )
        check_farms(rules, effective.allowed_farms)


def check_farms(rules: tuple[ParsedRule, ...], allowed_farms: list[str]) -> None:
    """``SettingError`` for a route of ``rules`` (distributed rules) to a farm
    ``allowed_farms`` does not list (not case-sensitive, as host names)."""
    allowed = {name.lower() for name in allowed_farms}
    for parsed in rules:
        if parsed.farm is not None and parsed.farm.lower() not in allowed:
            raise SettingError(
                f"{parsed.key}.action.url",
                f"a route to farm {parsed.farm!r}: rules may route only to the farms the "
                "server file lists in rewrite.allowed_farms (global_rules to any)",
            )


#: Response headers outbound rules may not set, and why.
_NOT_REWRITABLE = {
    **dict.fromkeys(
        ("CONTENT_LENGTH", "TRANSFER_ENCODING", "CONNECTION", "UPGRADE", "TRAILER"),
        "frames the response: the protocol layer writes it",
    ),
    "SERVER": "is written by the server: [server] server_header (empty: none is sent)",
    "DATE": "is written by the server from its clock",
}
_RESPONSE_VARIABLE = r"^RESPONSE_[A-Za-z0-9_]+$"


class OutboundAction(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """What an outbound rule does: ``rewrite`` the header to ``value``, or ``none``."""

    type: Literal["rewrite", "none"]
    value: str = ""
    """The header's new value: a template (``{R:1}``, ``{C:1}``, ``{HTTP_HOST}``,
    ``{RESPONSE_STATUS}``...)."""


class Precondition(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A named test of the response an outbound rule may require (IIS ``preCondition``)."""

    logical_grouping: Literal["match_all", "match_any"] = "match_all"
    """Every condition must hold (``match_all``), or one (``match_any``)."""
    pattern_syntax: PatternSyntax = "regex"
    """How the conditions' patterns read: ``regex``, ``wildcard`` or ``exact``."""
    conditions: list[Condition] = msgspec.field(default_factory=list)
    """Inputs such as ``{RESPONSE_CONTENT_TYPE}`` with a pattern each."""


class OutboundRule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """An IIS outbound rule on a response header (``match serverVariable``): body
    rewriting (``filterByTags``) has no counterpart."""

    name: Annotated[str, Meta(min_length=1)]
    """A label; collection operations (``remove``) name the rule by it."""
    enabled: bool = True
    """False: the rule is kept but never runs."""
    server_variable: Annotated[
        str,
        Meta(
            pattern=_RESPONSE_VARIABLE,
            description="a response header as IIS names it: 'RESPONSE_Location'",
        ),
    ]
    """The response header matched and rewritten: ``RESPONSE_`` and its name with
    ``_`` for ``-`` (``RESPONSE_Set_Cookie``). A header sent on several lines is
    matched line by line; a missing one matches as the empty string."""
    pattern: str
    """Matched against the header's value (``{R:n}`` its groups)."""
    pattern_syntax: PatternSyntax = "regex"
    """How ``pattern`` and the conditions' patterns read: ``regex``, ``wildcard``, ``exact``."""
    negate: bool = False
    """The rule applies where the pattern does not match (it then captures nothing)."""
    ignore_case: bool = True
    """Match the pattern without regard to case."""
    precondition: str = ""
    """The name of a ``[rewrite.preconditions]`` entry the response must meet."""
    logical_grouping: Literal["match_all", "match_any"] = "match_all"
    """Every condition must hold (``match_all``), or one (``match_any``)."""
    track_all_captures: bool = False
    """``{C:n}`` numbers the groups of every condition that matched, not the last's."""
    conditions: list[Condition] = msgspec.field(default_factory=list)
    """Inputs with a pattern each, on the request and the response (``{RESPONSE_STATUS}``)."""
    action: OutboundAction
    """``{ type = "rewrite", value = "..." }`` or ``{ type = "none" }``."""
    stop_processing: bool = False
    """No further outbound rule runs once this one matched."""


def _check_outbound(rules: list[OutboundRule], preconditions: dict[str, Precondition]) -> None:
    # Keys relative to the section, so that the error names the rule's place.
    for name, pre in preconditions.items():
        where = f"preconditions.{name}.conditions"
        _pattern_conditions(pre.conditions, pre.pattern_syntax, where, -1)
    for i, rule in enumerate(rules):
        key = f"outbound_rules[{i}]"
        why = _NOT_REWRITABLE.get(rule.server_variable[9:].upper())
        if why is not None:
            raise SettingError(f"{key}.server_variable", f"{rule.server_variable} {why}")
        try:
            _, groups, _ = compile_pattern(rule.pattern, rule.pattern_syntax, rule.ignore_case)
        except (re.error, ValueError) as exc:
            raise SettingError(f"{key}.pattern", f"{rule.pattern!r}: {exc}") from None
        captured = _pattern_conditions(
            rule.conditions, rule.pattern_syntax, f"{key}.conditions", -1 if rule.negate else groups
        )
        if rule.action.type == "rewrite":
            value = _template(rule.action.value, f"{key}.action.value")
            c_groups = _captured(captured, rule, final=True)
            _check_refs(value, f"{key}.action.value", -1 if rule.negate else groups, c_groups)
        elif rule.action.value:
            raise SettingError(f"{key}.action.value", "a none action takes no value")


def _pattern_conditions(
    conditions: list[Condition], syntax: str, key: str, r_groups: int
) -> list[int]:
    """Check conditions that test a response (each needs a pattern: there is no file
    to look at); the groups each one that can capture has, in order."""
    captured: list[int] = []
    for j, cond in enumerate(conditions):
        where = f"{key}[{j}]"
        if cond.match_type != "pattern" or cond.pattern is None:
            raise SettingError(where, "an outbound condition needs a pattern (no is_file here)")
        template = _template(cond.input, f"{where}.input")
        _check_refs(template, f"{where}.input", r_groups, max(captured, default=-1))
        try:
            _, groups, _ = compile_pattern(cond.pattern, syntax, cond.ignore_case)
        except (re.error, ValueError) as exc:
            raise SettingError(f"{where}.pattern", f"{cond.pattern!r}: {exc}") from None
        if not cond.negate:
            captured.append(groups)
    return captured


def check_references(
    global_rules: tuple[ParsedRule, ...],
    rules: tuple[ParsedRule, ...],
    maps: dict[str, Map],
    allowed_server_variables: list[str],
    *,
    setters: tuple[ParsedRule, ...],
) -> None:
    """``SettingError`` for a map or server variable the rules name but that is not
    defined for them (``rules`` may set only ``allowed_server_variables``); the
    variables the global rules ``setters`` set are known to every rule."""
    allowed = {name.upper() for name in allowed_server_variables}
    readable = allowed | {name for r in setters for name, _, _ in r.server_variables}
    names = {name.lower() for name in maps}
    for parsed in global_rules + rules:
        for key, template in parsed.templates:
            for ref in template.refs():
                if ref.kind == "map" and ref.name not in names:
                    known = ", ".join(sorted(maps)) or "none is defined"
                    raise SettingError(
                        key, f"no rewrite map named {ref.name!r} here (maps: {known})"
                    )
                if ref.kind == "var" and not _readable(ref.name, readable):
                    raise SettingError(
                        key,
                        f"{{{ref.name}}} is not a server variable (list it in "
                        "rewrite.allowed_server_variables if rules set it)",
                    )
    for parsed in rules:
        for j, (name, _, _) in enumerate(parsed.server_variables):
            if name not in allowed:
                raise SettingError(
                    f"{parsed.key}.server_variables[{j}].name",
                    f"{name} may be set only if the server file lists it in "
                    "rewrite.allowed_server_variables (global_rules may set any)",
                )


def _readable(name: str, custom: set[str]) -> bool:
    return name in SERVER_VARIABLES or name.startswith("HTTP_") or name in custom


def _parse_list(rules: list[Rule], field: str) -> tuple[ParsedRule, ...]:
    seen: dict[str, int] = {}
    out = []
    for i, rule in enumerate(rules):
        key = f"{field}[{i}]"
        first = seen.setdefault(rule.name.lower(), i)
        if first != i:
            raise SettingError(f"{key}.name", f"{rule.name!r} is also the name of {field}[{first}]")
        parsed = _parse_rule(rule, key)
        if rule.enabled:
            out.append(parsed)
    return tuple(out)


def compile_pattern(
    pattern: str, syntax: str, ignore_case: bool
) -> tuple[re.Pattern[str], int, bool]:
    """``(regex, number of groups, whole-input match?)`` for a rule or condition
    pattern; ``re.error`` / ``ValueError`` when it is not one."""
    flags = re.IGNORECASE if ignore_case else 0
    if syntax == "wildcard":
        # "*" any text (captured), "?" one character (not captured), the whole input.
        out = []
        for char in pattern:
            out.append("(.*)" if char == "*" else "." if char == "?" else re.escape(char))
        regex = re.compile("".join(out), flags | re.DOTALL)
        return regex, regex.groups, True
    if syntax == "exact":
        return re.compile(re.escape(pattern), flags), 0, True
    # ECMAScript's named groups are (?<name>...); Python spells them (?P<name>...).
    regex = re.compile(_JS_NAMED_GROUP.sub("(?P<", pattern), flags)
    return regex, regex.groups, False


_PLAIN = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-~!@%&=,;:'\"<> "
)
_ESCAPED_PLAIN = frozenset("./-_~!@%&=,;:#' ^$*+?()[]{}|\\")


def first_chars(pattern: str, syntax: str, ignore_case: bool) -> str | None:
    """The characters an input must start with for ``pattern`` to match (one, or
    its two cases), or None when that is not known from the pattern's text.

    What lets a request skip the rules that cannot match it with one dict
    lookup: most rules are anchored on a literal (``^products/``, a wildcard
    ``legacy/*``). Conservative: a regex must start with ``^`` and a plain
    character (or an escaped one) not made optional by a quantifier, and have
    no ``|`` outside a group.
    """
    if syntax in ("wildcard", "exact"):
        char = pattern[:1]
        if not char or (syntax == "wildcard" and char in "*?"):
            return None
    else:
        if not pattern.startswith("^") or _top_level_bar(pattern):
            return None
        if pattern[1:2] == "\\" and pattern[2:3] in _ESCAPED_PLAIN:
            char, after = pattern[2], pattern[3:4]
        elif pattern[1:2] in _PLAIN:
            char, after = pattern[1], pattern[2:3]
        else:
            return None
        if after and after in "?*{":
            return None
    if ignore_case:
        lower = char.lower()
        if len(lower) != 1 or not lower.isascii():
            return None  # non-ASCII case folding: not worth knowing here
        return lower + lower.upper() + _MORE_CASES.get(lower, "") if lower.isalpha() else char
    return char


#: Characters that Python's ``re.IGNORECASE`` also matches for an ASCII letter.
_MORE_CASES = {"i": "\u0130\u0131", "s": "\u017f", "k": "\u212a"}


def _top_level_bar(pattern: str) -> bool:
    depth = 0
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1  # "[]...]": the first "]" is a member
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth <= 0:
            return True
        i += 1
    return False


def _parse_rule(rule: Rule, key: str) -> ParsedRule:
    try:
        regex, groups, exact = compile_pattern(rule.pattern, rule.pattern_syntax, rule.ignore_case)
    except (re.error, ValueError) as exc:
        raise SettingError(f"{key}.pattern", f"{rule.pattern!r}: {exc}") from None
    if rule.negate:
        groups = -1  # no back-reference at all
    templates: list[tuple[str, Template]] = []
    conditions = []
    condition_groups: list[int] = []  # groups of each condition that can capture
    for j, cond in enumerate(rule.conditions):
        where = f"{key}.conditions[{j}]"
        template = _template(cond.input, f"{where}.input")
        _check_refs(template, f"{where}.input", groups, _captured(condition_groups, rule))
        templates.append((f"{where}.input", template))
        if cond.match_type == "pattern":
            if cond.pattern is None:
                raise SettingError(where, "a condition with match_type = 'pattern' needs a pattern")
            try:
                cregex, cgroups, cexact = compile_pattern(
                    cond.pattern, rule.pattern_syntax, cond.ignore_case
                )
            except (re.error, ValueError) as exc:
                raise SettingError(f"{where}.pattern", f"{cond.pattern!r}: {exc}") from None
            if not cond.negate:
                condition_groups.append(cgroups)
            conditions.append(
                ParsedCondition(template, "pattern", cregex, cond.negate, cgroups, cexact)
            )
        else:
            if cond.pattern is not None:
                raise SettingError(
                    f"{where}.pattern", f"match_type = {cond.match_type!r} takes no pattern"
                )
            conditions.append(
                ParsedCondition(template, cond.match_type, None, cond.negate, 0, False)
            )
    # {C:n} after the conditions: the last condition that matched with a pattern.
    # With match_all that is the last one that captures; with match_any any one.
    c_groups = _captured(condition_groups, rule, final=True)
    action = rule.action
    url = None
    farm = None
    if action.type in ("rewrite", "redirect"):
        if not action.url:
            raise SettingError(f"{key}.action", f"a {action.type} action needs a url")
        text = action.url
        if action.type == "rewrite" and _ABSOLUTE.match(text):
            farm, text = _farm_route(text, f"{key}.action.url")
        url = _template(text, f"{key}.action.url")
        _check_refs(url, f"{key}.action.url", groups, c_groups)
        templates.append((f"{key}.action.url", url))
        if action.type == "redirect" and action.url.startswith(("//", "/\\")):
            raise SettingError(
                f"{key}.action.url", f"{action.url!r} names another host; write https://host/..."
            )
    elif action.url is not None:
        raise SettingError(f"{key}.action.url", f"a {action.type} action takes no url")
    if action.type == "custom_response":
        if action.status_code is None:
            raise SettingError(f"{key}.action", "a custom_response action needs a status_code")
        for name in ("reason", "description"):
            if _CONTROL.search(getattr(action, name)):
                raise SettingError(f"{key}.action.{name}", "control characters are not allowed")
    elif action.status_code is not None:
        raise SettingError(f"{key}.action.status_code", "only a custom_response has a status")
    variables = []
    for j, var in enumerate(rule.server_variables):
        where = f"{key}.server_variables[{j}].value"
        template = _template(var.value, where)
        _check_refs(template, where, groups, c_groups)
        templates.append((where, template))
        variables.append((var.name.upper(), template, var.replace))
    status = action.redirect_type
    first = (
        None if rule.negate else first_chars(rule.pattern, rule.pattern_syntax, rule.ignore_case)
    )
    return ParsedRule(
        rule,
        key,
        regex,
        exact,
        first,
        tuple(conditions),
        url,
        status if isinstance(status, int) else REDIRECT_NAMES[status],
        tuple(variables),
        tuple(templates),
        farm,
    )


def _farm_route(url: str, key: str) -> tuple[str, str]:
    """``http://FARM/rest`` → ``(FARM, "/rest")``: a rewrite to another host is a
    route to a farm (ARR's own rule form); ``SettingError`` for any other host
    form. Whether the farm exists is known only with the server's farms (the
    module checks it when it provisions the application)."""
    found = _TO_HOST.match(url)
    assert found is not None  # the caller matched _ABSOLUTE
    scheme, host, rest = found.groups()
    problem = f"{url!r}: a rewrite stays on this server (a URL path), or goes to a farm"
    problem += " written as http://FARM/... (the name of a [farms.FARM] of the server file,"
    problem += " without a port); to send the client elsewhere use type = 'redirect'"
    if not _FARM_NAME.match(host) or (rest and not rest.startswith(("/", "?"))):
        raise SettingError(key, problem)
    if scheme.lower() != "http":
        raise SettingError(
            key,
            f"{problem}. Not https://: a farm's members are reached as their addresses "
            "in [farms] say (http:// or unix:), whatever the rule's scheme",
        )
    return host, rest if rest.startswith("/") else "/" + rest


def _template(text: str, key: str) -> Template:
    if _CONTROL.search(text):
        raise SettingError(key, "control characters (CR, LF, ...) are not allowed")
    try:
        return parse(text)
    except TemplateError as exc:
        raise SettingError(key, str(exc)) from None


def _captured(groups: list[int], rule: Rule | OutboundRule, *, final: bool = False) -> int:
    """The highest ``{C:n}`` available after conditions capturing ``groups`` each
    (-1: none). ``final``: after all the conditions, with match_all the last one
    that captures; else (a condition's input, match_any) any one of them."""
    if not groups:
        return -1
    if rule.track_all_captures:
        # match_any stops at the first condition that holds: one at most.
        return max(groups) if rule.logical_grouping == "match_any" else sum(groups)
    if final and rule.logical_grouping == "match_all":
        return groups[-1]
    return max(groups)


def _check_refs(template: Template, key: str, r_groups: int, c_groups: int) -> None:
    # r_groups / c_groups: the highest group number available (-1: none at all).
    for ref in template.refs():
        if ref.kind not in ("R", "C"):
            continue
        number = int(ref.name)
        available = r_groups if ref.kind == "R" else c_groups
        if number <= available:
            continue
        if available < 0:
            why = (
                "the rule's pattern is negated: it captures nothing"
                if ref.kind == "R"
                else "no condition before it captures (a condition with a pattern, not negated)"
            )
        elif ref.kind == "R":
            why = f"the rule's pattern has {available} group{'s' if available != 1 else ''}"
        else:
            why = f"the conditions capture {{C:0}}-{{C:{available}}} only"
        raise SettingError(key, f"{{{ref.kind}:{number}}}: {why}")
