"""``[output_cache]``: which responses are cached, for how long, keyed by what
(IIS ``system.webServer/caching`` and its ``profiles``)."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section, Where

#: IIS's ``policy`` values: DontCache, CacheUntilChange, CacheForTimePeriod,
#: DisableCache.
Policy = Literal["dont_cache", "until_change", "for_time_period", "disable_cache"]

#: ``.html``; ``.`` alone: URLs whose last segment has no extension.
Extension = Annotated[
    str,
    Meta(
        pattern=r"^\.[^/\\]{0,63}$",
        description="a file extension such as '.html' ('.' alone: URLs without one)",
    ),
]

#: A request header (field name) a response varies on.
HeaderName = Annotated[
    str,
    Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$", description="a request header name"),
]

#: A query string key (``*``: every key).
QueryKey = Annotated[str, Meta(min_length=1, max_length=128, description="a query string key")]

#: Statuses a cache may store by default (RFC 9111 4.2.2 "heuristically
#: cacheable") besides 206, which this cache makes from a 200 itself.
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

Seconds = Annotated[float, Meta(gt=0, le=366 * 86_400)]


def _all_keys() -> list[str]:
    return ["*"]


def _ok() -> list[int]:
    return [200]


def _check_statuses(name: str, statuses: list[int]) -> None:
    for status in statuses:
        if status not in CACHEABLE_STATUSES:
            allowed = ", ".join(str(s) for s in sorted(CACHEABLE_STATUSES))
            raise ValueError(f"{name}: {status} is not a cacheable status ({allowed})")


class CacheRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True, dict=True):
    """What one profile (or the section itself) says about the responses it covers."""

    policy: Policy = "dont_cache"
    """`until_change`: until a file the response came from changes (the static
    file, or files the handler declared); `for_time_period`: for `duration`;
    `dont_cache`: not cached; `disable_cache`: not cached, and at the section
    level no profile may cache either."""
    duration: Seconds = 30.0
    """How long a `for_time_period` response is kept, in seconds (IIS 00:00:30).
    The application's `Cache-Control: s-maxage`/`max-age` shortens it, never
    lengthens it; for `until_change` they are the only time limit."""
    vary_by_query_string: list[QueryKey] = msgspec.field(default_factory=_all_keys)
    """Query string keys that make another cached copy: `["*"]` (the default)
    every key, `[]` none (the query string is ignored: `/a?x=1` is served the
    copy of `/a`), or the listed keys (the others are ignored)."""
    vary_by_headers: list[HeaderName] = msgspec.field(default_factory=list)
    """Request headers that make another cached copy (besides `Accept-Encoding`,
    always, and what the response's own `Vary` names)."""
    shared: bool = False
    """Cache responses to authenticated requests (a logged-on user, or an
    `Authorization` header), served to every user who passes authorization for
    the URL. Only for content that is the same whoever asks."""
    statuses: list[int] = msgspec.field(default_factory=_ok)
    """Statuses that are cached (200 by default; also allowed: 203, 204, 300,
    301, 308, 404, 405, 410, 414, 501)."""
    response_cache: bool = True
    """Also let the connection's response cache (the kernel-cache analog, see
    docs/response-cache.md) answer a cached 200 of this rule without the pipeline
    (IIS `kernelCachePolicy`), for the entry's remaining lifetime at most. Only
    ever for anonymous requests without a query string, for an entry that varies
    on nothing but `Accept-Encoding`, with `store = "memory"`, and where every
    other module of the request lets the response cache answer; `false`: hits
    always take the pipeline."""

    def __post_init__(self) -> None:
        _check_statuses("statuses", self.statuses)

    @cached_property
    def query_keys(self) -> frozenset[bytes] | None:
        """The query keys that vary the copy; None: all of them."""
        if "*" in self.vary_by_query_string:
            return None
        return frozenset(k.encode("utf-8") for k in self.vary_by_query_string)

    @cached_property
    def header_names(self) -> tuple[bytes, ...]:
        """``vary_by_headers`` lower-cased, each once, in a stable order."""
        return tuple(sorted({h.lower().encode("ascii") for h in self.vary_by_headers}))

    @cached_property
    def caches(self) -> bool:
        """True for a rule that stores responses."""
        return self.policy in ("until_change", "for_time_period")


class CacheProfile(CacheRule, frozen=True, dict=True):
    """A profile for the URLs ending in ``extension`` (IIS ``profiles/add``)."""

    extension: Extension
    """The extension of the URL's last segment, with its dot (`.html`), matched
    without regard to case; `.` for URLs that have none (`/`, `/api/items`)."""


class OutputCacheSection(Section, frozen=True, dict=True):
    """The output cache (IIS ``caching``): responses of any handler (static
    files, WSGI and ASGI applications, CGI, FastCGI) kept in the worker's
    memory and sent again, without running the handler, to later requests
    for the same URL and variant.

    Nothing is cached until a profile or a location says so: IIS's default
    policy is `dont_cache`. A rule is the section's own `policy` and friends
    (set them in a `[[locations]]` entry or a `web.toml` to cache a folder)
    or, for URLs with a listed extension, the matching entry of `profiles`,
    which wins. `disable_cache` at the section level forbids caching below it
    whatever the profiles say.

    Never cached: methods other than GET (HEAD is answered from what GET
    stored); responses with `Set-Cookie`, `Cache-Control: private`,
    `no-store` or `no-cache`, `Vary: *`, a `max-age`/`s-maxage` of 0 or an
    `Expires` in the past; statuses not listed; responses to authenticated
    requests unless the rule says `shared`; responses larger than
    `max_response_size`. A hit answers conditional requests (304) and a single
    range (206) itself. One request fills a missing entry while the others
    for it wait up to `wait_timeout`, then go uncached.
    """

    key = "output_cache"
    allowed_keys: ClassVar[dict[str, Where]] = {
        "max_bytes": Where.SERVER | Where.APPLICATION,
        "max_response_size": Where.SERVER | Where.APPLICATION,
        "max_variants": Where.SERVER | Where.APPLICATION,
        "wait_timeout": Where.SERVER | Where.APPLICATION,
        "store": Where.SERVER | Where.APPLICATION,
        "memory_seconds": Where.SERVER | Where.APPLICATION,
    }

    enabled: bool = True
    """Use the cache here (IIS `caching enabled`)."""
    store: Literal["memory", "redis"] = "memory"
    """Where entries live: `memory`, each worker's own (`max_bytes`), or
    `redis`, the server's `[redis]`, shared by every worker and node (a purge
    anywhere empties it for all; while Redis is down requests run uncached)."""
    policy: Policy = "dont_cache"
    """The rule for URLs no profile covers (see `profiles` for the values)."""
    duration: Seconds = 30.0
    """Seconds a `for_time_period` response is kept (the application's
    `max-age`/`s-maxage` may shorten it)."""
    vary_by_query_string: list[QueryKey] = msgspec.field(default_factory=_all_keys)
    """Query string keys that make another cached copy: `["*"]` every key
    (the default), `[]` none, or the listed ones."""
    vary_by_headers: list[HeaderName] = msgspec.field(default_factory=list)
    """Request headers that make another cached copy (`Accept-Encoding` always does)."""
    shared: bool = False
    """Cache responses to authenticated requests too (content that is the same
    for every user allowed to see it)."""
    statuses: list[int] = msgspec.field(default_factory=_ok)
    """Statuses that are cached (200 by default)."""
    response_cache: bool = True
    """Let the connection's response cache (the kernel-cache analog) answer this
    rule's cached 200s without the pipeline (IIS `kernelCachePolicy`); see
    `response_cache` of `profiles`."""
    profiles: list[CacheProfile] = msgspec.field(default_factory=list)
    """Rules per extension (IIS `caching/profiles`): tables with `extension`,
    `policy` and optional `duration`, `vary_by_query_string`,
    `vary_by_headers`, `shared`, `statuses`, `response_cache` (same meaning
    and defaults as the section's keys). In a `web.toml`, `profiles = { add = [...] }` adds to the
    inherited ones; entries are keyed by `extension`."""
    max_bytes: Annotated[int, Meta(ge=0, le=1 << 40)] = 64 * 1024 * 1024
    """Memory budget of one application's cache in one worker, in bytes (bodies,
    headers and keys); past it the least recently used entries go. 0 turns
    storing off."""
    max_response_size: Annotated[int, Meta(ge=0, le=1 << 32)] = 262_144
    """Larger responses are not cached (IIS `maxResponseSize`, 256 KiB), and
    never held in memory beyond this size while they stream."""
    max_variants: Annotated[int, Meta(ge=1, le=100_000)] = 64
    """Cached copies one URL path may have (across query strings and varying
    headers). Once reached, further variants are served uncached, so hostile
    query strings or headers cannot grow the cache or push the others out."""
    memory_seconds: Annotated[float, Meta(ge=0, le=3600)] = 0.0
    """With `store = "redis"`: also keep what a worker reads from or writes to
    Redis in its own memory for this many seconds (within `max_bytes`), so that
    most hits need no round trip. A purge made on any node reaches these
    copies through a Redis channel the worker subscribes to (copies are kept
    only while it hears it); an entry replaced on another node reaches them
    only when they expire. 0 (the default): every lookup asks Redis."""
    wait_timeout: Annotated[float, Meta(ge=0, le=600)] = 10.0
    """Seconds a request waits for another one filling the same entry before
    it runs uncached itself."""

    def __post_init__(self) -> None:
        _check_statuses("statuses", self.statuses)
        seen: set[str] = set()
        for profile in self.profiles:
            ext = profile.extension.lower()
            if ext in seen:
                raise ValueError(f"profiles: extension {profile.extension!r} is listed twice")
            seen.add(ext)

    def redis_key(self) -> str | None:
        """``store`` when it is ``"redis"`` (the server's ``[redis]`` table)."""
        return "store" if self.store == "redis" else None

    @cached_property
    def own_rule(self) -> CacheRule:
        """The section's own rule (for URLs no profile covers)."""
        return CacheRule(
            policy=self.policy,
            duration=self.duration,
            vary_by_query_string=self.vary_by_query_string,
            vary_by_headers=self.vary_by_headers,
            shared=self.shared,
            statuses=self.statuses,
            response_cache=self.response_cache,
        )

    @cached_property
    def by_extension(self) -> dict[str, CacheRule]:
        """Profiles by lower-cased extension."""
        return {p.extension.lower(): p for p in self.profiles}

    def rule_for(self, path: str) -> CacheRule | None:
        """The rule for URL ``path``, or None when nothing may be cached there."""
        if not self.enabled or self.policy == "disable_cache":
            return None
        profiles = self.by_extension
        rule: CacheRule = self.own_rule
        if profiles:
            name = path[path.rfind("/") + 1 :]
            dot = name.rfind(".")
            found = profiles.get(name[dot:].lower() if dot > 0 else ".")
            if found is not None:
                rule = found
        return rule if rule.caches else None
