"""An application as modules see it: where it is mounted, its files, its settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from colonnade.config.schema import FarmSettings, RedisSettings
from colonnade.config.sections import Raw, Section, SectionSet, merge_into
from colonnade.core import metrics
from colonnade.core.confine import lstat_inside
from colonnade.core.urlpath import covers, normalize
from colonnade.errors import ConfigError, HttpError

if TYPE_CHECKING:
    from colonnade.core.context import Context, Remapper

S = TypeVar("S", bound=Section)

#: How many distinct URL paths keep their resolved settings in the cache.
_PATH_CACHE_SIZE = 4096


class Level(NamedTuple):
    """One level of the configuration tree: settings for a URL subtree of a site.

    The server file's module sections are the level at ``/``; each
    ``[[locations]]`` entry and each ``web.toml`` is a level at its path. Levels
    are ordered root first; deeper levels win.

    A ``web.toml`` that cannot be used (it does not parse, or sets what it may
    not) is a *broken* level: ``broken`` holds its error and ``raw`` is empty.
    It confines the error to its URL subtree, as IIS confines a bad
    ``web.config``: requests at and below ``path`` are answered 500.19, the rest
    of the site serves.
    """

    path: str  # URL path relative to the site, "/" or "/a/b" (no trailing slash)
    raw: Raw  # section tables
    source: str  # the file (and entry) it came from, for `colonnade config show`
    broken: ConfigError | None = None


class PythonApp(NamedTuple):
    """The Python application an application hosts (WSGI or ASGI)."""

    target: str  # "pkg.module:attr"
    interface: str  # "auto", "asgi" or "wsgi"
    factory: bool = False
    app_dir: str | None = None


class VirtualDirectory(NamedTuple):
    """A URL subtree served from another folder."""

    path: str
    root: str


def _normalized(path: str) -> bool:
    try:
        return normalize(path) == path
    except HttpError:  # climbs above the root
        return False


def root_prefixes(roots: Iterable[str]) -> tuple[str, ...]:
    """``roots`` made absolute and normal, each ending with a separator, longest first."""
    prefixes = set()
    for root in roots:
        root = os.path.normpath(os.path.abspath(root))
        prefixes.add(root if root.endswith(os.sep) else root + os.sep)
    return tuple(sorted(prefixes, key=len, reverse=True))


class Application:
    """One application of a site: a URL prefix, a root folder and its settings.

    The effective settings of a URL are resolved once per path and cached: the
    per-request cost is a dict lookup.
    """

    def __init__(
        self,
        *,
        site: str,
        path: str,
        root: str,
        levels: tuple[Level, ...] = (),
        defaults: Mapping[str, Raw] | None = None,
        virtual_directories: tuple[VirtualDirectory, ...] = (),
        pool: str = "default",
        python: PythonApp | None = None,
        https_port: int | None = None,
        redis: RedisSettings | None = None,
        farms: Mapping[str, FarmSettings] | None = None,
    ) -> None:
        self.site = site
        #: The site's request counters in this process (``GET /metrics``).
        self.metrics = metrics.for_site(site)
        #: The server's ``[redis]`` settings (None: it has none): what
        #: ``colonnade.providers.redis.shared_redis`` connects with.
        self.redis = redis
        #: The server's ``[farms.NAME]`` tables by name: what
        #: ``colonnade.providers.farms.farm_for`` gives the live farm of.
        self.farms: Mapping[str, FarmSettings] = farms or {}
        #: The port of the site's first ``https://`` binding (None: it has none):
        #: where a redirect to HTTPS goes.
        self.https_port = https_port
        self.path = path.rstrip("/") or "/"
        self.root = os.path.abspath(root)
        self.pool = pool
        self.python = python
        self.levels = tuple(
            lvl for lvl in levels if covers(lvl.path, self.path) or covers(self.path, lvl.path)
        )
        #: Whether some path of the application lies below a broken level (the
        #: engine then checks ``SectionSet.broken`` per request; else never).
        self.broken = any(lvl.broken is not None for lvl in self.levels)
        self.defaults: Mapping[str, Raw] = defaults or {}
        self.virtual_directories = tuple(
            sorted(virtual_directories, key=lambda v: len(v.path), reverse=True)
        )
        self.roots = tuple(
            os.path.realpath(r) for r in (self.root, *(v.root for v in self.virtual_directories))
        )
        #: The folders map_path joins URLs onto, with a trailing separator so a
        #: prefix test cannot match "/srv/www-other" for "/srv/www"; longest first.
        self.root_prefixes = root_prefixes(
            (self.root, *(vdir.root for vdir in self.virtual_directories))
        )
        self.log = logging.getLogger(f"colonnade.app.{site}{self.path}")
        #: The effective settings of each URL path seen so far (:meth:`sections_for`'s
        #: cache): a request's context reads it first and calls only on a miss.
        #: Read-only for others; bounded here.
        self.path_sections: dict[str, SectionSet] = {}
        self._remap_cache: dict[str, SectionSet] = {}
        self._map_cache: dict[str, str] = {}
        self._by_levels: dict[tuple[int, ...], SectionSet] = {}
        self._reported: set[str] = set()
        self.settings = self.sections_for(self.path)
        #: The MAP_PATH notification: ``(ctx, url_path, physical_path) -> path``,
        #: the modules' MAP_PATH hooks in order, set by the engine with the plan;
        #: None when no module joined MAP_PATH (the common case: no call at all).
        self.map_path_hooks: Callable[[Context, str, str], str] | None = None
        #: The application's handler mapping, set by the engine with the plan:
        #: what ``Context.redirect_locally`` maps a handler's local redirect with.
        self.handler_map: Remapper | None = None

    @property
    def id(self) -> str:
        """``site/path``: how tools and logs name the application."""
        return f"{self.site}{self.path}"

    def section(self, cls: type[S]) -> S:
        """The application-level settings of ``cls`` (no location applied)."""
        return self.settings.get(cls)

    def sections_for(self, path: str) -> SectionSet:
        """The effective settings for URL ``path`` (merged once, then cached)."""
        cached = self.path_sections.get(path)
        if cached is not None:
            return cached
        matched = tuple(i for i, lvl in enumerate(self.levels) if covers(lvl.path, path))
        found = self._by_levels.get(matched)
        if found is None:
            found = self._by_levels[matched] = self.merge_levels(self.levels[i] for i in matched)
        if len(self.path_sections) >= _PATH_CACHE_SIZE:
            self.path_sections.clear()
        self.path_sections[path] = found
        return found

    def remap_sections(self, path: str) -> SectionSet:
        """The effective settings for ``path`` as the target of a remap.

        ``ValueError`` unless ``path`` is a normalized URL path (as the server
        decodes one: no dot or empty segments, no NUL) under this application's
        path. Checked once per path, then cached: a default document remaps to
        the same few paths again and again.
        """
        found = self._remap_cache.get(path)
        if found is not None:
            return found
        if not (path.startswith("/") and "\x00" not in path and _normalized(path)):
            raise ValueError(f"remap to {path!r}: not a normalized URL path")
        if not covers(self.path, path):
            raise ValueError(f"remap to {path!r}: outside the application at {self.path!r}")
        found = self.sections_for(path)
        if len(self._remap_cache) >= _PATH_CACHE_SIZE:
            self._remap_cache.clear()
        self._remap_cache[path] = found
        return found

    def level_paths(self) -> list[str]:
        """The application's path and the path of every configuration level below it
        (a location, a ``web.toml``), sorted: each place its settings may change.

        What a module reads to check or prepare every setting the application can
        see when it starts (open every log target, load every key file).
        """
        return sorted(
            {self.path, *(lvl.path for lvl in self.levels if covers(self.path, lvl.path))}
        )

    def first_report(self, what: str) -> bool:
        """True the first time ``what`` (a problem to log) is reported for this
        application: a log line once, not per request. Bounded in size."""
        if what in self._reported:
            return False
        if len(self._reported) >= _PATH_CACHE_SIZE:
            self._reported.clear()
        self._reported.add(what)
        return True

    def merge_levels(self, levels: Iterable[Level]) -> SectionSet:
        """Merge ``levels`` (root first) over the section defaults; a broken level
        adds nothing but marks the result (the first one found, the shallowest)."""
        raw: Raw = {}
        origins: dict[str, str] = {}
        broken: ConfigError | None = None
        for level in levels:
            if level.broken is not None and broken is None:
                broken = level.broken
            for key, table in level.raw.items():
                target = raw.setdefault(key, {})
                try:
                    merge_into(
                        target,
                        table,
                        defaults=self.defaults.get(key),
                        origins=origins,
                        source=level.source,
                        prefix=key + ".",
                    )
                except ConfigError as exc:
                    # Name the file (and, for a location, the entry) that asked for it.
                    file, _, entry = level.source.partition(": ")
                    where = f"{entry}.{exc.key}" if entry else exc.key
                    raise ConfigError(exc.message, file=file, key=where) from None
        return SectionSet(raw, origins, broken)

    def map_path(self, url_path: str) -> str:
        """The application's own file path for ``url_path`` (already normalised: no
        dot segments): a virtual directory's folder, else the application's.

        Before the MAP_PATH hooks: a request's path is ``Context.physical_path``,
        which starts from this and lets the hooks change it.
        """
        found = self._map_cache.get(url_path)
        if found is None:
            found = self._map(url_path)
            if len(self._map_cache) >= _PATH_CACHE_SIZE:
                self._map_cache.clear()
            self._map_cache[url_path] = found
        return found

    def _map(self, url_path: str) -> str:
        for vdir in self.virtual_directories:
            if covers(vdir.path, url_path):
                rest = url_path[len(vdir.path) :] if vdir.path != "/" else url_path
                return os.path.join(vdir.root, rest.lstrip("/"))
        rest = url_path[len(self.path) :] if self.path != "/" else url_path
        return os.path.join(self.root, rest.lstrip("/"))

    def lstat_inside(self, path: str) -> os.stat_result | None:
        """The stat of ``path`` (as :meth:`map_path` makes it) if no component
        below its root is a symlink: then its real path is inside the app.

        One ``lstat`` per component below the root, where ``os.path.realpath``
        costs several times that. None when the walk cannot vouch for the path
        (a symlink, a path outside the roots, an odd segment): the caller then
        resolves it (``os.path.realpath`` and :meth:`contains`). Raises OSError
        (a missing component) and ``NotADirectoryError`` for "file/".
        (``core.confine.lstat_inside`` over :attr:`root_prefixes`.)
        """
        return lstat_inside(self.root_prefixes, path)

    def contains(self, real_path: str) -> bool:
        """True if ``real_path`` (symlinks resolved) lies under a root of this app."""
        for root in self.roots:
            if real_path == root or real_path.startswith(root.rstrip("/") + "/"):
                return True
        return False

    def describe(self) -> dict[str, Any]:
        """A plain summary for tools."""
        return {"site": self.site, "path": self.path, "root": self.root, "pool": self.pool}
