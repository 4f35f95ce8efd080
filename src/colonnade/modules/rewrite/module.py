"""URL Rewrite (IIS RewriteModule) at BEGIN_REQUEST.

How this works:

- IIS runs global rules at GL_PRE_BEGIN_REQUEST and distributed rules at
  BeginRequest. Here both run in one BEGIN_REQUEST hook (priority HIGH): after
  the FIRST hooks (request filtering judges the URL the client sent, trusted
  proxies set the client and scheme the conditions read), before
  authentication, authorization, the handler mapping and the handler, which
  all serve the rewritten URL (``ctx.remap``: before the mapping, a remap is
  simply a new path).
- The rules of a request are a :class:`Program`, made once per set of
  configuration levels (``ctx.sections`` is one object per set) in
  ``provision``: the global rule set, then one :class:`RuleSet` per level on the
  path that has rules of its own (the server file's site-level ``[rewrite]``,
  ``[[locations]]``, ``web.toml`` files), parent to child. Each set sees the
  path relative to its folder.
- A pass runs rule sets on a local path and query (rules see the previous
  rule's output) and remaps once at its end. When a rewrite takes the URL into
  folders whose rules did not run in that pass, a new pass runs those (a
  ``web.toml``'s rules apply to every request its folder serves, however the
  URL got there). Rules that send the URL back and forth between two folders
  would do that forever: past ``MAX_REMAPS`` the request ends in a 500.50
  naming the rule, with a log line.
- Outbound rules (response headers) run in a SEND_RESPONSE hook, from the
  effective section of the request's path: see ``outbound.py``.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import quote, unquote

from colonnade.config.toml_lines import KeyLines
from colonnade.config.validation import SettingError, convert
from colonnade.core.app import Application, Level
from colonnade.core.context import Context
from colonnade.core.handler import ROUTE as ROUTE_ITEM
from colonnade.core.handler import Route
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage
from colonnade.core.urlpath import covers, normalize
from colonnade.errors import ConfigError
from colonnade.modules.rewrite.config import (
    ParsedRule,
    RewriteSection,
    check_farms,
    check_references,
)
from colonnade.modules.rewrite.outbound import CompiledOutbound
from colonnade.modules.rewrite.outbound import apply as apply_outbound
from colonnade.modules.rewrite.outbound import compile_rules as compile_outbound
from colonnade.modules.rewrite.rules import (
    ABORT,
    CUSTOM,
    NONE,
    REDIRECT,
    ROUTE,
    CompiledRule,
    RuleSet,
    State,
    url_text,
)

#: The request header carrying the URL the client asked for, once rewritten (IIS's
#: ``HTTP_X_ORIGINAL_URL``): applications read it as any header.
ORIGINAL_URL = b"x-original-url"

# What a rule set's run ends with.
_GO_ON = 0
_STOP = 1  # stop_processing: no further rule of this kind
_DONE = 2  # the response is made (redirect, custom response, abort, error)
_ROUTED = 3  # handed to the proxy for a farm: no further rule of any kind

#: The handler a route to a farm hands the request to (by id: never imported).
PROXY = "handler.proxy"
#: What a path sent to a farm keeps unescaped (as handler.proxy sends a remapped path).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class Program(NamedTuple):
    """Every distributed rule set for one set of configuration levels."""

    sets: tuple[RuleSet, ...]
    bases: frozenset[str]


_NO_PROGRAM = Program((), frozenset())
_ABSOLUTE = re.compile(r"^https?://", re.IGNORECASE)


class UrlRewrite(Module):
    """``rewrite``: IIS URL Rewrite 2 (global and distributed rules) at BEGIN_REQUEST."""

    id = "rewrite"
    section = RewriteSection

    def __init__(self) -> None:
        self.global_rules: RuleSet | None = None
        # id(SectionSet) → (the SectionSet, its program): made in provision for
        # every level path; a SectionSet is one object per set of levels.
        self.programs: dict[int, tuple[object, Program]] = {}
        # id(RewriteSection) → (the section, its compiled outbound rules).
        self.outbound: dict[int, tuple[RewriteSection, tuple[CompiledOutbound, ...]]] = {}
        # Whether any level of the applications provisioned has outbound rules:
        # without any, a response costs this module one attribute test.
        self.any_outbound = False

    def provision(self, app: Application) -> None:
        """Compile the global rules and the program of every level path."""
        settings = app.section(RewriteSection)
        for name in settings.allowed_farms:
            if not any(n.lower() == name.lower() for n in app.farms):
                defined = ", ".join(sorted(app.farms)) or "none"
                raise ConfigError(
                    f"rewrite.allowed_farms names {name!r}, but the server file defines no "
                    f"[farms.{name}] (defined: {defined})",
                    file=app.levels[0].source if app.levels else None,
                    key="rewrite.allowed_farms",
                )
        global_rules = settings.parsed[0]
        if global_rules:
            server = app.levels[0].source if app.levels else ""
            compiled = self._compile(app, global_rules, server, "", settings, is_global=True)
            self.global_rules = RuleSet("/", compiled)
        for path in app.level_paths():
            self._program(app, path)
            if app.sections_for(path).get(RewriteSection).outbound_rules:
                self.any_outbound = True

    def cleanup(self) -> None:
        """Forget the compiled rules."""
        self.programs.clear()
        self.outbound.clear()
        self.any_outbound = False
        self.global_rules = None

    def _program(self, app: Application, path: str) -> Program:
        sections = app.sections_for(path)
        found = self.programs.get(id(sections))
        if found is not None:
            return found[1]
        sets = []
        for level in app.levels:
            if not covers(level.path, path):
                continue
            rules = _level_rules(level)
            if not rules:
                continue
            # A [[locations]] entry's source is "FILE: locations[i]", its keys below it.
            file, _, entry = level.source.rpartition(": ")
            if not entry.startswith("locations["):
                file, entry = level.source, ""
            prefix = f"{entry}." if entry else ""
            settings = app.sections_for(level.path).get(RewriteSection)
            parsed = _parse_level(rules, file, prefix)
            compiled = self._compile(app, parsed, file, prefix, settings, is_global=False)
            if compiled:
                sets.append(RuleSet(level.path, compiled))
        program = Program(tuple(sets), frozenset(s.base for s in sets)) if sets else _NO_PROGRAM
        self.programs[id(sections)] = (sections, program)
        return program

    def config_warnings(self, app: Application, workers: int) -> list[str]:
        """``colonnade check`` (which provisions nothing) says what provisioning
        refuses: a route to a farm the server file does not define, or where
        handler.proxy is not enabled."""
        probe = UrlRewrite()
        try:
            probe.provision(app)
        except ConfigError as exc:
            return [f"{exc}: the server will not start"]
        finally:
            probe.cleanup()
        return []

    @staticmethod
    def _compile(
        app: Application,
        parsed: tuple[ParsedRule, ...],
        file: str,
        prefix: str,
        settings: RewriteSection,
        *,
        is_global: bool,
    ) -> tuple[CompiledRule, ...]:
        # The level's rules with the maps and variables its folder sees (the
        # builder checked them already: RewriteSection.check_level).
        try:
            check_references(
                parsed if is_global else (),
                () if is_global else parsed,
                settings.maps,
                settings.allowed_server_variables,
                setters=settings.parsed[0],
            )
            if not is_global:
                check_farms(parsed, settings.allowed_farms)
        except SettingError as exc:
            key = f"{prefix}rewrite.{exc.key}"
            raise ConfigError(
                exc.message, file=file or None, line=_line(file, key), key=key
            ) from None
        where = f"{file}: " if file else ""
        return tuple(
            CompiledRule(
                p,
                i,
                f"{where}{prefix}rewrite.{p.key}",
                settings.maps,
                None if p.farm is None else _farm(app, p, file, prefix),
            )
            for i, p in enumerate(parsed)
        )

    @hook(Stage.BEGIN_REQUEST, priority=Priority.HIGH)
    def begin_request(self, ctx: Context) -> Outcome:
        """Run the global rules, then the distributed rules of the request's path."""
        request = ctx.request
        if request.headers:
            _strip_original_url(request.headers)  # never taken for the server's
        found = self.programs.get(id(ctx.sections))
        program = found[1] if found is not None else self._late_program(ctx)
        state: State | None = None
        if self.global_rules is not None:
            state = State(ctx, request.path, request.query)
            outcome = _run(self.global_rules, state)
            if outcome == _DONE:
                return FINISH
            if outcome == _ROUTED:
                return CONTINUE
            if state.path != request.path or state.query is not request.query:
                if not _apply(ctx, state):
                    return FINISH
                found = self.programs.get(id(ctx.sections))
                program = found[1] if found is not None else self._late_program(ctx)
        done: frozenset[str] = frozenset()
        while program.sets:
            sets = program.sets
            if done:
                sets = tuple(s for s in sets if s.base not in done)
                if not sets:
                    break
            if state is None:
                outcome, state = _run_lazily(sets, ctx)
            else:
                outcome = _GO_ON
                for rule_set in sets:
                    outcome = _run(rule_set, state)
                    if outcome != _GO_ON:
                        break
            if outcome == _DONE:
                return FINISH
            if outcome == _ROUTED:
                return CONTINUE
            if state is None or (state.path == request.path and state.query is request.query):
                break
            if not _apply(ctx, state):
                return FINISH
            if outcome == _STOP:
                break
            done = program.bases
            found = self.programs.get(id(ctx.sections))
            program = found[1] if found is not None else self._late_program(ctx)
        return CONTINUE

    @hook(Stage.SEND_RESPONSE, priority=Priority.MEDIUM)
    def send_response(self, ctx: Context) -> None:
        """Outbound rules on the response headers (see ``outbound.py``)."""
        if not self.any_outbound:
            return
        section = ctx.sections.get(RewriteSection)
        if section.outbound_rules:
            found = self.outbound.get(id(section))
            if found is None or found[0] is not section:
                found = self.outbound[id(section)] = (section, compile_outbound(section))
            apply_outbound(found[1], ctx)

    def _late_program(self, ctx: Context) -> Program:
        # A set of levels provision did not see (not expected: every set of
        # levels is some level path's): made now.
        return self._program(ctx.app, ctx.request.path)


def _line(file: str, key: str) -> int | None:
    # Where the builder could not point (see _compile): read the file again.
    try:
        with open(file, encoding="utf-8") as text:
            return KeyLines(text.read()).line_for(key)
    except (OSError, UnicodeDecodeError):
        return None


def _farm(app: Application, parsed: ParsedRule, file: str, prefix: str) -> str:
    # The farm a route goes to, as the server file names it (host names, and
    # so ARR's farm names in rules, are not case-sensitive); ConfigError when
    # it is not defined or handler.proxy is not there to take the request.
    key = f"{prefix}rewrite.{parsed.key}.action.url"
    wanted = parsed.farm or ""
    name = next((n for n in app.farms if n.lower() == wanted.lower()), None)
    what = f"{parsed.rule.action.url!r} routes to farm {wanted!r}"
    problem = None
    if name is None:
        defined = ", ".join(sorted(app.farms)) or "none"
        problem = f"{what}, but the server file defines no [farms.{wanted}] (defined: {defined})"
    elif app.handler_map is None or app.handler_map.handler(PROXY) is None:
        problem = f"{what}, but {PROXY} is not enabled here: add it to [server] modules"
    if problem is not None or name is None:
        raise ConfigError(problem or what, file=file or None, line=_line(file, key), key=key)
    return name


def _level_rules(level: Level) -> list[object]:
    table = level.raw.get(RewriteSection.key)
    if not isinstance(table, dict):
        return []
    rules = table.get("rules")
    if isinstance(rules, dict):  # collection operations: only what they add is this level's
        return [*rules.get("prepend", ()), *rules.get("add", ())]
    return list(rules) if isinstance(rules, list) else []


def _parse_level(rules: list[object], file: str, prefix: str) -> tuple[ParsedRule, ...]:
    # Decoded (and checked) with the level when the configuration was built; the
    # distributed rules of one level, alone.
    section = convert({"rules": rules}, RewriteSection, prefix=f"{prefix}rewrite", file=file)
    return section.parsed[1]


def _strip_original_url(headers: list[tuple[bytes, bytes]]) -> None:
    # An application behind a rewriting server trusts X-Original-URL to say what
    # the client asked for (frameworks route by it): one the client sent itself
    # would let it choose the route that authorization did not judge.
    for name, _ in headers:
        if name == ORIGINAL_URL:
            headers[:] = [(k, v) for k, v in headers if k != ORIGINAL_URL]
            return


def _run_lazily(sets: tuple[RuleSet, ...], ctx: Context) -> tuple[int, State | None]:
    """The distributed rule sets without a :class:`State` until a pattern matches:
    the common request (no rule applies) allocates nothing."""
    path = ctx.request.path
    for index, rule_set in enumerate(sets):
        if rule_set.base != "/" and not covers(rule_set.base, path):
            continue
        subject = path[rule_set.cut :]
        for rule in rule_set.candidates(subject):
            found = rule.test(subject)
            if (found is None) != rule.negate:
                continue
            # A pattern matched: from here on with a State, from this rule.
            state = State(ctx, path, ctx.request.query)
            outcome = _fire(rule, rule_set, state, found)
            if outcome == _GO_ON:
                outcome = _run(rule_set, state, rule.index)
            if outcome == _GO_ON:
                for later in sets[index + 1 :]:
                    outcome = _run(later, state)
                    if outcome != _GO_ON:
                        break
            return outcome, state
    return _GO_ON, None


def _run(rule_set: RuleSet, state: State, after: int = -1) -> int:
    """Run the rules of ``rule_set`` after the one at index ``after`` on ``state``."""
    base = rule_set.base
    cut = rule_set.cut
    while True:
        path = state.path
        if base != "/" and not covers(base, path):
            return _GO_ON  # rewritten out of this folder: its rules no longer apply
        subject = path[cut:]
        for rule in rule_set.candidates(subject):
            if rule.index <= after:
                continue
            found = rule.test(subject)
            if (found is None) != rule.negate:
                continue
            outcome = _fire(rule, rule_set, state, found)
            if outcome != _GO_ON:
                return outcome
            if state.path != path:
                after = rule.index
                break  # the next rules see the new path: choose them for it
        else:
            return _GO_ON


def _fire(rule: CompiledRule, rule_set: RuleSet, state: State, found: re.Match[str] | None) -> int:
    """``rule``, whose pattern matched (``found``; None when negated): its
    conditions, then its variables and action. ``_GO_ON`` also when the conditions
    do not hold."""
    state.r = found
    if rule.conditions and not rule.conditions_hold(state):
        return _GO_ON
    if rule.variables:
        rule.set_variables(state)
    kind = rule.kind
    if (trace := state.ctx.trace) is not None:
        trace.event("rewrite_rule", rule=rule.name, source=rule.source, action=kind)
    if kind is NONE:
        pass
    elif kind is REDIRECT:
        _redirect(rule, rule_set, state)
        return _DONE
    elif kind is CUSTOM:
        _custom(rule, state)
        return _DONE
    elif kind is ABORT:
        _abort(rule, state)
        return _DONE
    elif kind is ROUTE:
        return _route(rule, state)
    else:
        _rewrite(rule, rule_set, state)
    return _STOP if rule.stop else _GO_ON


def _rewrite(rule: CompiledRule, rule_set: RuleSet, state: State) -> None:
    assert rule.url is not None
    target, mark, query = rule.url(state).partition("?")
    if not target.startswith("/"):
        target = rule_set.folder + target
    target = unquote(target)
    if "/." in target or "//" in target:
        target = normalize(target)  # 400 for a path above the root
    state.path = target
    if mark:
        new = url_text(query).encode("ascii")
        if rule.append_query and state.query:
            new = new + b"&" + state.query if new else state.query
        state.query = new
    elif not rule.append_query:
        state.query = b""
    state.rule = rule


def _route(rule: CompiledRule, state: State) -> int:
    """Hand the request to handler.proxy for the rule's farm (ARR's
    ``http://FARM/{R:0}``), with the path and query the URL renders. What rules
    before it rewrote is served as usual (the front end's settings and
    authorization follow it); the upstream gets the route's target."""
    assert rule.url is not None and rule.farm is not None
    ctx = state.ctx
    request = ctx.request
    path, mark, query = rule.url(state).partition("?")
    target = quote(path, safe=_PATH_SAFE).encode("ascii")
    sent = url_text(query).encode("ascii") if mark else b""
    if rule.append_query and state.query:
        sent = sent + b"&" + state.query if sent else state.query
    if sent:
        target += b"?" + sent
    if (state.path != request.path or state.query is not request.query) and not _apply(ctx, state):
        return _DONE
    try:
        ctx.hand_to(PROXY)
    except (LookupError, RuntimeError) as exc:
        name = f"{rule.name!r} ({rule.source})"
        ctx.error_response(
            500, 50, "URL rewrite error", f"the URL rewrite rule {name} failed: {exc}"
        )
        return _DONE
    ctx.items[ROUTE_ITEM] = Route(rule.farm, target)
    if target != request.target and not any(k == ORIGINAL_URL for k, _ in request.headers):
        request.headers.append((ORIGINAL_URL, request.target))
    return _ROUTED


def _apply(ctx: Context, state: State) -> bool:
    """Serve the rewritten URL; False when that failed (the response says why)."""
    request = ctx.request
    rule = state.rule
    if state.path != request.path:
        try:
            ctx.remap(state.path)
        except (ValueError, RuntimeError) as exc:
            name = f"{rule.name!r} ({rule.source})" if rule is not None else "?"
            ctx.error_response(
                500, 50, "URL rewrite error", f"the URL rewrite rule {name} failed: {exc}"
            )
            return False
    request.query = state.query
    if not any(k == ORIGINAL_URL for k, _ in request.headers):
        request.headers.append((ORIGINAL_URL, request.target))
    return True


def _redirect(rule: CompiledRule, rule_set: RuleSet, state: State) -> None:
    assert rule.url is not None
    location = rule.url(state)
    if not _ABSOLUTE.match(location):
        if not location.startswith("/"):
            location = rule_set.folder + location
        # Exactly one leading slash: "//host" or "/\\host" would leave the site.
        location = "/" + location.lstrip("/\\")
    if rule.append_query and state.query:
        location += ("&" if "?" in location else "?") + state.query.decode("latin-1")
    state.ctx.response.redirect(rule.status, url_text(location))


def _custom(rule: CompiledRule, state: State) -> None:
    ctx = state.ctx
    ctx.error_response(
        rule.status,
        rule.sub_status,
        rule.description or rule.reason,
        f"the URL rewrite rule {rule.name!r} ({rule.source}) answers {rule.status}",
    )
    if rule.reason:
        ctx.response.reason = rule.reason.encode("latin-1", "replace")


def _abort(rule: CompiledRule, state: State) -> None:
    # IIS's AbortRequest: no answer at all. The response stays for the access log;
    # marked as sent, nothing tries to send it.
    ctx = state.ctx
    ctx.error_response(
        400, 0, "request aborted", f"the URL rewrite rule {rule.name!r} ({rule.source}) aborts"
    )
    ctx.request.keep_alive = False
    ctx.response.headers_sent = True
    ctx.writer.abort()
