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
from typing import Generic, TypeVar

from colonnade.config.sections import Section

S = TypeVar("S", bound=Section)
T = TypeVar("T")


class PerSection(Generic[S, T]):
    """``build(section)``, made once per section object and kept.

    Looked up by the section's identity, not its value: sections hash by value
    (slow, and impossible for those holding tables) and two equal sections are
    still two objects. Each entry holds its section, so while the entry exists no
    other object can take that identity. Bounded: past ``limit`` entries it
    starts over (an application has a handful of distinct sections; the bound
    is against a runaway, not a working set).

    ``build`` may raise (a ``ConfigError`` for a log file that cannot be
    opened): nothing is kept, and the next :meth:`get` tries again.
    """

    __slots__ = ("_build", "_entries", "_limit")

    def __init__(self, build: Callable[[S], T], *, limit: int = 256) -> None:
        self._build = build
        self._entries: dict[int, tuple[S, T]] = {}
        self._limit = limit

    def get(self, section: S) -> T:
        """The compiled form of ``section`` (built on first use)."""
        entry = self._entries.get(id(section))
        if entry is not None:
            return entry[1]
        value = self._build(section)
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[id(section)] = (section, value)
        return value

    def clear(self) -> None:
        """Forget every compiled form (the module's ``cleanup``)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
