"""Which answers the connection's response cache may keep: the rule, in one place.

The response cache (``transport/respcache.py``) answers a request without the
pipeline. That is only right where no module needs to see the request, so the rule
reads the application's compiled plan and the path's effective configuration, the
same inputs the walk itself has; it runs once per stored entry (a miss whose answer
the cache offers to keep), never on a hit. See docs/response-cache.md.

A module of the application is *transparent* for a request when its part in the
answer is the same for every request with the same cache key (method, scheme, port,
Host, target, Accept-Encoding):

- always: the access log (its hook runs on every hit), the static file handler,
  static compression (its choice follows Accept-Encoding, part of the key), default
  documents and directory listings (a fixed remap of the path; a listing is no file,
  so never stored), custom headers (fixed per path: stored with the answer), custom
  error pages (only errors, never stored), HSTS (fixed per scheme and port), and
  anonymous authentication;
- request filtering where no rule looks at the request's other headers (no
  ``header_limits``, no filtering rule with ``scan_headers``): every other rule
  reads the method, path and query, which the key holds;
- Basic, JWT and Negotiate authentication where they are not enabled for the path;
- any module with no hook at all (a handler the request is not mapped to).

Every other module with a hook (URL authorization, rewrite, IP restrictions,
forms authentication, sessions, the output cache, tracing, a third-party or
application module...) makes the application's requests ineligible: a module the
rule does not know might need to see each one. Enabling Basic authentication for
a path therefore switches the cache off for that path, and a reload starts an
empty cache, so nothing stored before serves the path after.

The answer must also be a 200 of the static file handler, with no error, no user but
the anonymous one, no ``Set-Cookie``, no per-request ``Expires``, a ``Vary`` of
Accept-Encoding at most, nothing in ``Cache-Control`` forbidding shared storage, and
a file whose identity (the ETag's modification time and size) is still the one on
disk and that has not changed in the last two seconds (as the static handler's own
"racy" rule).

Or a module granted it (``ctx.cache_grant``, :mod:`colonnade.core.cachegrant`: the
output cache's hit): then the granting module is transparent for the request, any
handler or none may have answered, the grant's deadline is the lifetime, and the
answer must be a 200 with no error, no user but the anonymous one, no ``Set-Cookie``,
a ``Vary`` of Accept-Encoding at most and nothing in ``Cache-Control`` forbidding
shared storage (an ``Expires`` is the stored answer's own, the same on every hit).
Every other module must be transparent as above.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

from colonnade.core.context import Context
from colonnade.core.stages import Stage

if TYPE_CHECKING:
    from colonnade.config.sections import SectionSet
    from colonnade.engine.engine import Engine
    from colonnade.engine.runtime import AppRuntime

#: Module ids transparent for every request (see the module docstring).
TRANSPARENT: Final = frozenset(
    {
        "log.http",
        "handler.static",
        "http.compression",
        "static.default_document",
        "static.directory_listing",
        "http.custom_headers",
        "http.custom_errors",
        "http.hsts",
        "auth.anonymous",
    }
)

#: Modules transparent where their section says ``enabled = false`` for the path.
OFF_WHEN_DISABLED: Final = frozenset({"auth.basic", "auth.jwt", "auth.negotiate"})

#: The most pairs of application runtime and section set each of the response
#: cache's memos keeps per generation (:func:`remember`). The configuration bounds
#: them already (an application's section sets are one per set of levels matching
#: some path); this holds whatever it does not foresee: a full memo starts again.
MAX_VERDICTS: Final = 1024

#: The static handler's default ``cache_check_interval`` (seconds).
DEFAULT_CHECK: Final = 1.0

#: A file changed this recently may change again within its timestamp's tick.
RACY_NS: Final = 2_000_000_000

_STORE_FORBIDDEN: Final = (b"no-store", b"private", b"no-cache")


def _transparent(module: Any, sections: SectionSet) -> bool:
    module_id = module.id
    if module_id in TRANSPARENT or not module.subscriptions:
        return True
    section_type = module.section
    if section_type is None:
        return False
    section = sections.get(section_type)
    if module_id in OFF_WHEN_DISABLED:
        return getattr(section, "enabled", True) is False
    if module_id == "security.request_filtering":
        rules = section.rules
        return not rules.limits_headers and not any(rule.headers for rule in rules.filtering)
    return False


def blocking(modules: Any, sections: SectionSet) -> frozenset[str]:
    """The ids of ``modules`` not transparent for a request whose effective settings
    are ``sections`` (see :func:`_transparent`; what it says depends on nothing
    else): unless one of them grants the answer, any of them makes the answer
    ineligible."""
    return frozenset(module.id for module in modules if not _transparent(module, sections))


_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    """``memo[key] = value`` in one of the response cache's memos, emptied first
    when it holds :data:`MAX_VERDICTS` keys."""
    if len(memo) >= MAX_VERDICTS:
        memo.clear()
    memo[key] = value


def blocked_by(
    memo: dict[tuple[Any, Any], frozenset[str]], runtime: AppRuntime, sections: SectionSet
) -> frozenset[str]:
    """:func:`blocking` of ``runtime``'s modules for ``sections``, kept in ``memo``
    (the response cache's, one per engine generation) per pair: a path where a
    module is not transparent is refused every answer, and the walk over the
    modules, interpreted, was ~15k instructions of each such request."""
    pair = (runtime, sections)
    blocked = memo.get(pair)
    if blocked is None:
        blocked = blocking(runtime.modules, sections)
        remember(memo, pair, blocked)
    return blocked


def refusing(runtime: AppRuntime, blocked: frozenset[str]) -> bool:
    """Whether :func:`eligible` refuses every answer to a request that ``runtime``
    serves with the settings for which ``blocked`` is :func:`blocking`, whatever
    the answer: the verdict the connection asks before a candidate request takes
    the pipeline (``ResponseCache.judge``), so that such a request makes no
    record to offer and the rule is not asked again per answer.

    True where a module is not transparent there and no grant could make up for
    it (two such modules, or one that never grants: ``grants_response_cache``),
    or where the application can answer neither from the static file handler (no
    handler mapping names it) nor by a grant (no module of it may grant one).
    False says only that some answer might be kept: :func:`eligible` decides on
    each. A True is never wrong for a request's safety (it only sends the request
    to the pipeline, as any miss goes); it must only not refuse what the rule
    would keep, and it reads what the rule reads, per generation."""
    granters = {
        module.id for module in runtime.modules if getattr(module, "grants_response_cache", False)
    }
    if blocked and (len(blocked) > 1 or blocked.isdisjoint(granters)):
        return True
    return not granters and not any(
        rule.handler.id == "handler.static" for rule in runtime.handler_map.rules
    )


def _headers_allow(headers: list[tuple[bytes, bytes]], granted: bool) -> tuple[bool, bytes | None]:
    """Whether a response's headers allow storing it, and its ETag (None: none).
    ``granted``: a stored answer sent again, whose ``Expires`` is not per request."""
    etag = None
    for name, value in headers:
        lname = name.lower()
        if lname == b"etag":
            etag = value
        elif lname == b"set-cookie" or (lname == b"expires" and not granted):
            return False, None
        elif lname == b"vary":
            if value.strip().lower() != b"accept-encoding":
                return False, None
        elif lname == b"cache-control":
            lowered = value.lower()
            if any(word in lowered for word in _STORE_FORBIDDEN):
                return False, None
    return True, etag


def _file_current(path: str, etag: bytes) -> bool:
    """Whether ``path`` is still the version ``etag`` names and has settled."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
        return False
    return etag.startswith(b'"%x-%x' % (st.st_mtime_ns, st.st_size))


def _check_interval(modules: Any, ctx: Context) -> float:
    """The static handler's ``cache_check_interval`` for the request's path: how long
    an answer made from files that may change is kept (its default, 1 s, where the
    application does not enable the static handler)."""
    for module in modules:
        if module.id == "handler.static" and module.section is not None:
            interval: float = getattr(
                ctx.sections.get(module.section), "cache_check_interval", DEFAULT_CHECK
            )
            return interval
    return DEFAULT_CHECK


def stored_hook(module: Any, fn: Any, sections: SectionSet) -> Any:
    """The LOG_REQUEST hook ``fn`` of ``module`` as the hits of a stored answer call
    it, whose requests all have the effective settings ``sections`` (the entry's):
    what the module offers for them (``module.log_capture(sections)``: the access
    log's capture for those settings, found once per entry, not per hit), or else
    the hook itself."""
    offer = getattr(module, "log_capture", None)
    if offer is not None:
        found = offer(sections)
        if found is not None:
            return found
    return fn


def eligible(
    engine: Engine,
    ctx: Context,
    headers: list[tuple[bytes, bytes]],
    memo: dict[tuple[Any, Any], frozenset[str]] | None = None,
) -> tuple[tuple[Any, ...], float] | None:
    """``(access log hooks, lifetime in seconds)`` when the response cache may keep
    the answer ``ctx`` ended with (``headers``: those the writer was handed), else None.
    The hooks are the plan's LOG_REQUEST calls, each as :func:`stored_hook` makes it.

    ``memo`` (the cache's, one per engine generation) keeps :func:`blocking` per
    runtime and section set (:func:`blocked_by`). A path whose every answer is
    refused whatever it is (:func:`refusing`) is seldom offered: the connection
    asks that verdict first (``ResponseCache.judge``) and makes no record."""
    handler = ctx.handler
    response = ctx.response
    user = ctx.user
    grant = ctx.cache_grant
    if response.status != 200 or ctx.error is not None or (user is not None and not user.anonymous):
        return None
    if grant is None:
        if handler is None or handler.id != "handler.static":
            return None
    elif grant.revoked:
        return None
    request = ctx.request
    server = request.server
    runtime = engine.route(server[1] if server else 0, request.host, request.path)
    if runtime.app is not ctx.app:
        return None
    granted_by = grant.by if grant is not None else None
    if memo is None:
        blocked = blocking(runtime.modules, ctx.sections)
    else:
        blocked = blocked_by(memo, runtime, ctx.sections)
    if blocked and (granted_by is None or len(blocked) > 1 or granted_by not in blocked):
        return None
    log: tuple[Any, ...] = ()
    for step in runtime.plan.steps:
        if step.stage is Stage.LOG_REQUEST:
            if any(is_async is not False for _, is_async in step.calls):
                return None
            owners = {module.id: module for module in runtime.modules}
            log = tuple(
                stored_hook(owners.get(hook.owner), hook.fn, ctx.sections) for hook in step.hooks
            )
    if grant is not None:
        lifetime = grant.expires - time.monotonic()
        if grant.recheck:
            lifetime = min(lifetime, _check_interval(runtime.modules, ctx))
        if lifetime <= 0 or not _headers_allow(headers, True)[0]:
            return None
        return log, lifetime
    assert handler is not None
    static = type(handler).section
    lifetime = getattr(ctx.sections.get(static), "cache_check_interval", 0.0) if static else 0.0
    if lifetime <= 0:
        return None
    allowed, etag = _headers_allow(headers, False)
    # The file the answer came from (compression replaces a HEAD's file body with
    # its cached copy: then the mapped path names it).
    source = response.source or response.file
    path = source.path if source is not None else ctx.physical_path
    if not allowed or etag is None or not path or not _file_current(path, etag):
        return None
    return log, lifetime
