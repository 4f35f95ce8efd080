"""Compile once per section object: what a module derives from its settings.

A section object (``ctx.section(MySection)``) is shared by every URL path whose
effective settings are the same and lives as long as its application, so a
module's compiled forms (regexes, rule lists, writers) are few and can be made
once per section object, never per request.

- Derived from the settings alone: a ``functools.cached_property`` on the
  section class (``Section`` has a ``__dict__`` for it).
- Needing the module's own state (open files, objects shared between sections):
  a :class:`PerSection` owned by the module instance.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Generic, TypeVar

from colonnade.config.sections import Section

S = TypeVar("S", bound=Section)
T = TypeVar("T")

_KEYS = count()


class PerSection(Generic[S, T]):
    """``build(section)``, made once per section object and kept.

    Kept in the section object's own ``__dict__`` (as ``functools.cached_property``
    keeps its value) under :attr:`key`, a name unique to this instance: a hook on
    every request reads it there without a Python call:
    ``section.__dict__.get(per.key) or per.get(section)`` for values that are never
    false, else ``section.__dict__[per.key]`` with ``per.get(section)`` on
    ``KeyError``. The instance also remembers what it built, to forget it in :meth:`clear`.
    Bounded: past ``limit`` entries it starts over (an application has a handful of
    distinct sections; the bound is against a runaway, not a working set).

    ``build`` may raise (a ``ConfigError`` for a log file that cannot be
    opened): nothing is kept, and the next :meth:`get` tries again.
    """

    __slots__ = ("_build", "_entries", "_limit", "key")

    def __init__(self, build: Callable[[S], T], *, limit: int = 256) -> None:
        self._build = build
        self._entries: dict[int, tuple[S, T]] = {}
        self._limit = limit
        #: The attribute name under which a section holds what this instance built.
        self.key = f"_compiled_{next(_KEYS)}"

    def get(self, section: S) -> T:
        """The compiled form of ``section`` (built on first use)."""
        entry = self._entries.get(id(section))
        if entry is not None:
            return entry[1]
        value = self._build(section)
        if len(self._entries) >= self._limit:
            self.clear()
        self._entries[id(section)] = (section, value)
        section.__dict__[self.key] = value
        return value

    def clear(self) -> None:
        """Forget every compiled form (the module's ``cleanup``)."""
        key = self.key
        for section, _ in self._entries.values():
            section.__dict__.pop(key, None)
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
