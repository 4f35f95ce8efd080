"""HTTP redirection (IIS HttpRedirectionModule) at MAP_REQUEST_HANDLER.

Why that stage: it is where IIS redirects, so authentication and URL
authorization have judged the original URL first (a protected old URL does not
tell an anonymous client where it moved), request filtering has refused bad URLs
long before, and the redirect is decided before the default document and the
handler mapping look at the file system. Priority HIGH puts it ahead of the
default document (MEDIUM) and directory listing (LOW) in the same stage.

Per request, a section with nothing to redirect costs one attribute read (its
compiled form is None); otherwise the rules are tried in order (a string compare
for exact paths, one ``fullmatch`` for wildcards).
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage
from colonnade.core.urlpath import covers
from colonnade.modules.redirection.config import (
    PATH_SAFE,
    RedirectionSection,
    Redirects,
    clean_query,
)


def _split(location: str) -> tuple[str, str]:
    """``(path part, "?query#fragment" part)`` of a location."""
    cut = len(location)
    for mark in "?#":
        i = location.find(mark)
        if i != -1 and i < cut:
            cut = i
    return location[:cut], location[cut:]


def _path_of(location: str) -> str:
    """The decoded path of a relative location."""
    return unquote(_split(location)[0])


def _with_query(location: str, query: bytes) -> str:
    fragment = ""
    hash_at = location.find("#")
    if hash_at != -1:
        location, fragment = location[:hash_at], location[hash_at:]
    joiner = "&" if "?" in location else "?"
    return location + joiner + clean_query(query) + fragment


def _append_rest(location: str, rest: str) -> str:
    # The rest goes at the end of the destination's path, before any query or
    # fragment the destination carries, joined by exactly one slash.
    if not rest:
        return location
    head, tail = _split(location)
    encoded = quote(rest, safe=PATH_SAFE)
    return (head if head.endswith("/") else head + "/") + encoded + tail


def subtree_base(ctx: Context) -> str:
    """The URL folder of the deepest level that set ``redirection.destination``.

    Needed only when a subtree redirect is about to happen, so it walks the
    application's levels (a handful) rather than caching anything.
    """
    path = ctx.request.path
    base = "/"
    for level in ctx.app.levels:  # root first: the deepest match comes last
        table = level.raw.get(RedirectionSection.key)
        if isinstance(table, dict) and "destination" in table and covers(level.path, path):
            base = level.path
    return base


def find(redirects: Redirects, ctx: Context) -> tuple[str, int] | None:
    """Where ``ctx``'s request goes and with which status, or None."""
    request = ctx.request
    path = request.path
    query = request.query
    if redirects.rules:
        key = path.lower() if redirects.ignore_case else path
        for rule in redirects.rules:
            pattern = rule.pattern
            if pattern is None:
                if key != rule.exact:
                    continue
                captures: tuple[str, ...] = ()
            else:
                found = pattern.fullmatch(path)
                if found is None:
                    continue
                captures = found.groups()
            template = rule.template
            location = template.render(captures, "", path, query)
            if rule.keep_query and query and not template.has_query:
                location = _with_query(location, query)
            if not template.absolute and _path_of(location) == path:
                continue  # a redirect to itself would loop
            return location, rule.status
    destination = redirects.destination
    if destination is None:
        return None
    base = subtree_base(ctx)
    rest = (path[len(base) :] if base != "/" else path).lstrip("/")
    if redirects.child_only and "/" in rest:
        return None
    location = destination.render((), rest, path, query)
    # Unless told to go exactly there (or the destination places the path itself
    # with $S or $V), the rest of the path follows.
    appends = not redirects.exact_destination and not destination.places_path
    if not destination.absolute:
        target = _path_of(location)
        if appends:
            target = target.rstrip("/") or "/"
            if covers(base, target) and covers(target, path):
                return None  # already inside the destination: going again would loop
        elif target == path:
            return None  # a redirect to itself would loop
    if appends:
        location = _append_rest(location, rest)
    if redirects.keep_query and query and not destination.has_query:
        location = _with_query(location, query)
    return location, redirects.status


class HttpRedirection(Module):
    """``http.redirection``: IIS ``httpRedirect`` at MAP_REQUEST_HANDLER (HIGH)."""

    id = "http.redirection"
    section = RedirectionSection

    @hook(Stage.MAP_REQUEST_HANDLER, priority=Priority.HIGH)
    def map_request_handler(self, ctx: Context) -> Outcome:
        """Answer with a redirect when a rule or the subtree destination applies."""
        redirects = ctx.section(RedirectionSection).redirects
        if redirects is None:
            return CONTINUE
        found = find(redirects, ctx)
        if found is None:
            return CONTINUE
        location, status = found
        # Every part was percent-encoded or validated: ASCII, no CR/LF, no space.
        ctx.response.redirect(status, location)
        return FINISH
