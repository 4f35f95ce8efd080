"""An application as modules see it: where it is mounted, its files, its settings."""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple, TypeVar

from colonnade.config.sections import Raw, Section, SectionSet, merge

S = TypeVar("S", bound=Section)

#: How many distinct URL paths keep their resolved settings in the cache.
_PATH_CACHE_SIZE = 4096


class Location(NamedTuple):
    """Settings scoped to a URL subtree of the application (``[[locations]]``)."""

    path: str  # URL path relative to the site, "/" or "/a/b" (no trailing slash)
    raw: Raw
    source: str  # where it was declared, for `colonnade config show`


class VirtualDirectory(NamedTuple):
    """A URL subtree served from another folder."""

    path: str
    root: str


def _covers(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


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
        settings: Raw,
        locations: tuple[Location, ...] = (),
        virtual_directories: tuple[VirtualDirectory, ...] = (),
        pool: str = "default",
        app: str | None = None,
    ) -> None:
        self.site = site
        self.path = path.rstrip("/") or "/"
        self.root = os.path.abspath(root)
        self.pool = pool
        self.app = app
        self.settings = SectionSet(settings)
        self.locations = tuple(
            loc for loc in locations if _covers(self.path, loc.path) or _covers(loc.path, self.path)
        )
        self.virtual_directories = tuple(
            sorted(virtual_directories, key=lambda v: len(v.path), reverse=True)
        )
        self.roots = tuple(
            os.path.realpath(r) for r in (self.root, *(v.root for v in self.virtual_directories))
        )
        self.log = logging.getLogger(f"colonnade.app.{site}{self.path}")
        self._path_cache: dict[str, SectionSet] = {}
        self._by_locations: dict[tuple[int, ...], SectionSet] = {(): self.settings}

    @property
    def id(self) -> str:
        """``site/path``: how tools and logs name the application."""
        return f"{self.site}{self.path}"

    def section(self, cls: type[S]) -> S:
        """The application-level settings of ``cls`` (no location applied)."""
        return self.settings.get(cls)

    def sections_for(self, path: str) -> SectionSet:
        """The effective settings for URL ``path`` (decoded, cached)."""
        cached = self._path_cache.get(path)
        if cached is not None:
            return cached
        matched = tuple(i for i, loc in enumerate(self.locations) if _covers(loc.path, path))
        found = self._by_locations.get(matched)
        if found is None:
            raw: Raw = self.settings.raw
            for i in matched:
                raw = merge(raw, self.locations[i].raw)
            found = self._by_locations[matched] = SectionSet(raw)
        if len(self._path_cache) >= _PATH_CACHE_SIZE:
            self._path_cache.clear()
        self._path_cache[path] = found
        return found

    def map_path(self, url_path: str) -> str:
        """The file path for ``url_path`` (already normalised: no dot segments)."""
        for vdir in self.virtual_directories:
            if _covers(vdir.path, url_path):
                rest = url_path[len(vdir.path) :] if vdir.path != "/" else url_path
                return os.path.join(vdir.root, rest.lstrip("/"))
        rest = url_path[len(self.path) :] if self.path != "/" else url_path
        return os.path.join(self.root, rest.lstrip("/"))

    def contains(self, real_path: str) -> bool:
        """True if ``real_path`` (symlinks resolved) lies under a root of this app."""
        for root in self.roots:
            if real_path == root or real_path.startswith(root.rstrip("/") + "/"):
                return True
        return False

    def describe(self) -> dict[str, Any]:
        """A plain summary for tools."""
        return {"site": self.site, "path": self.path, "root": self.root, "pool": self.pool}
