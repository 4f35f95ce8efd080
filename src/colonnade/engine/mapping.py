"""Handler mapping: a URL (and verb) picks the handler, first matching rule wins.

A rule matches when its path pattern matches the URL path, its resource type (IIS
``resourceType``) fits what the physical path is, and its verbs include the
method. The mapping runs once in MAP_REQUEST_HANDLER and again for each
``Context.remap`` until the end of POST_MAP_REQUEST_HANDLER (the default document,
URL rewriting), so an extension-mapped handler is reached for ``/dir/`` with
``index.php`` as IIS reaches it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Awaitable, Mapping, Sequence
from stat import S_ISDIR, S_ISREG
from typing import Any, Final, Literal, NamedTuple

from colonnade.core.confine import FILE_CHECKS
from colonnade.core.context import MAPPING_CLOSED, Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import method_not_allowed
from colonnade.core.module import Module, Priority
from colonnade.core.stages import Stage
from colonnade.errors import HttpError

#: What a physical path is, as bits; a rule's ``resource`` is the set it accepts.
FILE = 1
DIRECTORY = 2
#: ``resource_type`` of a mapping → the kinds it accepts (0: not checked).
RESOURCE_TYPES: dict[str, int] = {
    "unspecified": 0,
    "file": FILE,
    "directory": DIRECTORY,
    "either": FILE | DIRECTORY,
}


class Origin(NamedTuple):
    """Where a mapping came from, for the tools (``colonnade modules``, ``config show``).

    Nothing here is a line number: lines move when a file is edited without the
    mapping changing (and the application's runtime is then kept), so the tools
    look the line up in the generation they show (``Engine.lines``).
    """

    kind: Literal["handlers", "default", "application", "virtual_directory"]
    """``handlers``: a ``[[handlers]]`` entry; ``default``: the built-in mapping (the
    server file has no ``[[handlers]]``); ``application``: a hosted Python
    application's catch-all; ``virtual_directory``: the static files of a virtual
    directory inside one."""
    source: str = ""
    """The file of a ``[[handlers]]`` entry (the server file or a ``web.toml``)."""
    key: str = ""
    """The entry's dotted key in that file (``handlers[0]``)."""
    level: str | None = None
    """The URL path of the level that set it (a ``web.toml``'s folder, the path of
    the application or virtual directory); None: the server level."""


#: A mapping's ``resource`` bits → its ``resource_type``, for the tools.
RESOURCE_NAMES = {bits: name for name, bits in RESOURCE_TYPES.items()}


class Rule(NamedTuple):
    """One compiled mapping."""

    pattern: str
    match: re.Pattern[str] | None  # None: matches every path
    verbs: frozenset[str] | None  # None: every verb
    handler: Handler
    resource: int = 0  # FILE | DIRECTORY bits the physical path must be; 0: any, unchecked
    name: str = ""  # the mapping's label (``name``), for the tools
    origin: Origin | None = None  # where it was configured, for the tools
    #: For ``*.ext`` (a ``*``, then no wildcard and no ``/``): the ending a path
    #: matches by, tested instead of ``match`` (the same answer, without the regex).
    suffix: str = ""


def compile_rule(
    pattern: str,
    verbs: Sequence[str],
    handler: Handler,
    resource_type: str = "unspecified",
    *,
    name: str = "",
    origin: Origin | None = None,
) -> Rule:
    """``*`` → all; ``*.ext`` → last segment; ``/x/*`` → whole path (fnmatch style).

    ``resource_type`` is ``file``, ``directory``, ``either`` or ``unspecified``
    (see :meth:`HandlerMap.select`).
    """
    if pattern == "*":
        regex = None
    elif pattern.startswith("/"):
        regex = re.compile(fnmatch.translate(pattern))
    else:
        regex = re.compile(r"(?:.*/)?" + fnmatch.translate(pattern))
    verb_set = None if "*" in verbs else frozenset(v.upper() for v in verbs)
    rest = pattern[1:]
    literal = pattern.startswith("*") and rest != "" and not any(c in rest for c in "*?[/")
    return Rule(
        pattern,
        regex,
        verb_set,
        handler,
        RESOURCE_TYPES[resource_type],
        name,
        origin,
        rest if literal else "",
    )


def resource_kind(physical_path: str) -> int:
    """``FILE`` (a regular file), ``DIRECTORY``, or 0: missing, unreachable (a
    component is not a folder: ``/a.jpg/x.php``) or something else. Symlinks are
    followed; confining the path to the application is the handler's business."""
    try:
        mode = os.stat(physical_path).st_mode
    except (OSError, ValueError):
        return 0
    return FILE if S_ISREG(mode) else DIRECTORY if S_ISDIR(mode) else 0


def _request_kind(ctx: Context) -> int:
    # resource_kind of the request's physical path, found with the application's
    # confinement walk where it can vouch for the path: its stat is then left in
    # ctx.file_stat for the handler (find_script), which needs the same. The
    # walk's answers are kept a short while ([server] file_check_cache).
    path = ctx.physical_path
    try:
        st = FILE_CHECKS.lstat_inside(ctx.app.root_prefixes, path)
    except (OSError, ValueError):
        return 0  # missing, or a file used as a folder: os.stat fails alike
    if st is None:
        return resource_kind(path)  # a symlink on the way (followed), or outside
    ctx.file_stat = (path, st)
    mode = st.st_mode
    return FILE if S_ISREG(mode) else DIRECTORY if S_ISDIR(mode) else 0


class HandlerMap:
    """The MAP_REQUEST_HANDLER built-in step for one application.

    After it ran, ``ctx.remapper`` is the map: a remap runs it again. That ends
    when the handler is about to run (:func:`execute`), or earlier, at the end
    of POST_MAP_REQUEST_HANDLER (:func:`close_mapping`), where modules join the
    stages in between.
    """

    __slots__ = ("handlers", "only", "rules")

    def __init__(
        self, rules: Sequence[Rule], handlers: Mapping[str, Handler] | None = None
    ) -> None:
        self.rules = tuple(rules)
        #: The handler of every request where one rule maps every path and verb
        #: whatever the path names (a hosted application's catch-all): the mapping
        #: is then a store, not a call of :meth:`select`.
        self.only: Handler | None = None
        if len(self.rules) == 1:
            rule = self.rules[0]
            if rule.match is None and not rule.suffix and rule.verbs is None and not rule.resource:
                self.only = rule.handler
        #: Every handler module of the application by id, mapped or not
        #: (``Context.hand_to``): the rules' handlers at least.
        self.handlers: dict[str, Handler] = {r.handler.id: r.handler for r in self.rules}
        if handlers:
            self.handlers.update(handlers)

    def handler(self, handler_id: str) -> Handler | None:
        """The application's handler ``handler_id``; None when it has none."""
        return self.handlers.get(handler_id)

    def select(self, path: str, method: str, physical: str | Context | None = None) -> Handler:
        """The handler for ``method path``; 405 or 404.4 when there is none.

        ``physical`` is the file path the URL maps to, or the context to ask for
        it; it is looked at (one ``stat``, shared by every rule) only when a rule
        whose pattern matches has a resource type. Without it such rules never
        match. A rule whose resource type does not fit does not match, and the
        mapping goes on to the next rule; its verbs are not offered in ``Allow``
        either. Whether IIS falls through or answers 404 there is unverified;
        falling through is the safer choice, as the rule after it is normally
        the static file handler, which answers 404 for a missing file and never
        executes one: ``/uploads/a.jpg/x.php`` (``a.jpg`` a file) does not reach
        a ``*.php`` mapping with resource type ``file``.
        """
        allowed: set[str] | None = None  # made only for a 405: most requests match
        kind = -1  # not looked at yet
        for rule in self.rules:
            suffix = rule.suffix
            if suffix:
                if not path.endswith(suffix):
                    continue
            elif rule.match is not None and rule.match.fullmatch(path) is None:
                continue
            if rule.resource:
                if kind < 0:
                    if physical is None:
                        kind = 0
                    else:
                        kind = (
                            resource_kind(physical)
                            if isinstance(physical, str)
                            else _request_kind(physical)
                        )
                if not rule.resource & kind:
                    continue
            if rule.verbs is None or method in rule.verbs:
                return rule.handler
            if allowed is None:
                allowed = set(rule.verbs)
            else:
                allowed |= rule.verbs
        if allowed:
            raise method_not_allowed(allowed)
        raise HttpError(404, 4, "no handler is mapped for this path")

    def inline(self) -> dict[str, Any] | None:
        """What :meth:`map` does where ``only`` is set, as the pure install's
        generated walk runs it (see ``pipeline.plan.Inline``): its lines, and the
        values they name. None: the walk calls :meth:`map` (many rules)."""
        if self.only is None:
            return None
        return {"only": self.only, "hmap": self}

    def map(self, ctx: Context) -> None:
        """Choose ``ctx.handler`` unless a module already did; leave the map in
        ``ctx.remapper`` (``ctx.remap`` calls :meth:`select` again)."""
        if ctx.handler is None:
            only = self.only
            if only is not None:
                ctx.handler = only
            else:
                request = ctx.request
                ctx.handler = self.select(request.path, request.method, ctx)
        ctx.remapper = self


def close_mapping(ctx: Context) -> None:
    """The last step of POST_MAP_REQUEST_HANDLER: the chosen handler is final.

    Only in plans where modules join a stage between it and the handler (see
    ``needs_close``); otherwise :func:`execute` closes the mapping for free.
    """
    ctx.remapper = MAPPING_CLOSED


#: The stages between the end of the mapping and the handler.
_BETWEEN = frozenset(
    {
        Stage.ACQUIRE_REQUEST_STATE,
        Stage.POST_ACQUIRE_REQUEST_STATE,
        Stage.PRE_EXECUTE_REQUEST_HANDLER,
        Stage.POST_PRE_EXECUTE_REQUEST_HANDLER,
    }
)


def needs_close(modules: Sequence[Module]) -> bool:
    """True if a hook of ``modules`` runs after POST_MAP_REQUEST_HANDLER and before
    the handler (which runs after the modules' FIRST to MEDIUM hooks of
    EXECUTE_REQUEST_HANDLER): such a plan needs the :func:`close_mapping` step."""
    for module in modules:
        for sub in type(module).subscriptions:
            if sub.stage in _BETWEEN or (
                sub.stage is Stage.EXECUTE_REQUEST_HANDLER and sub.priority <= Priority.MEDIUM
            ):
                return True
    return False


#: ``MAPPING_CLOSED`` as a static of the compiled module (not a look-up in its
#: globals on every request).
_CLOSED: Final = MAPPING_CLOSED


#: :meth:`HandlerMap.map` with ``only`` set, and :func:`execute` for a handler
#: that takes every verb, as lines of the pure install's generated walk
#: (``pipeline.plan.Inline``: what the call would give in ``a``); every other
#: case calls the function (``{call}``), which decides again.
MAP_INLINE: Final = (
    "if ctx.handler is None:",
    "    ctx.handler = only{n}",
    "ctx.remapper = hmap{n}",
)
EXECUTE_INLINE: Final = (
    "ctx.remapper = closed{n}",
    "a = hd.execute(ctx) if (hd := ctx.handler) is not None and hd.verbs is None else {call}",
)


def execute(ctx: Context) -> Awaitable[None] | None:
    """The EXECUTE_REQUEST_HANDLER built-in step: run the chosen handler.

    Returns what the handler returned: None, or an awaitable the walk waits for.
    """
    ctx.remapper = _CLOSED
    handler = ctx.handler
    if handler is None:
        raise HttpError(404, 4, "no handler is mapped for this path")
    verbs = handler.verbs
    if verbs is not None and ctx.request.method not in verbs:
        raise method_not_allowed(verbs)
    return handler.execute(ctx)
