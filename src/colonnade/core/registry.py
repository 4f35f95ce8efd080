"""The module registry: ids → classes, loaded only when a configuration enables them.

Built-in modules come as ``(id, "package.module:Class")`` pairs (the list in
``colonnade.modules.standard``); third-party ones from the ``colonnade.modules``
entry-point group. Nothing is imported until :meth:`Registry.load` asks for it,
so a module that is not enabled is never imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from colonnade.config.sections import Section
from colonnade.core.module import Module, check_declaration
from colonnade.errors import ModuleError

if TYPE_CHECKING:
    # importlib.metadata is imported where entry points are read: it brings email,
    # zipfile and csv (about 2.7 MiB), which a worker, handed the master's list
    # (:meth:`Registry.entry_points`), never needs.
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "colonnade.modules"


class Entry(NamedTuple):
    """Where a module comes from, before it is imported."""

    id: str
    target: str | type[Module] | EntryPoint
    origin: str  # "builtin", "entry point <dist>", "application <path>", "code"
    #: ``"package.module:Section"``: where the module's section lives, when it can be
    #: read without importing the module (see :meth:`Registry.section`).
    section: str | None = None


#: A built-in module: (id, ``"package.module:Class"``), or with a third item, the
#: ``"package.module:Section"`` its settings are read with (:meth:`Registry.section`).
Builtin = tuple[str, str] | tuple[str, str, str]


class Registry:
    """Known modules by id; refuses empty and duplicate ids."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, type[Module]] = {}

    @classmethod
    def standard(cls, builtins: Iterable[Builtin], *, with_entry_points: bool = True) -> Registry:
        """The built-in list plus every installed ``colonnade.modules`` entry point."""
        registry = cls()
        for module_id, target, *section in builtins:
            registry.add(
                module_id, target, origin="builtin", section=section[0] if section else None
            )
        if with_entry_points:
            from importlib.metadata import entry_points

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                dist = ep.dist.name if ep.dist is not None else "?"
                registry.add(ep.name, ep, origin=f"entry point ({dist})")
        return registry

    def add(
        self,
        module_id: str,
        target: str | type[Module] | EntryPoint,
        *,
        origin: str,
        section: str | None = None,
    ) -> None:
        """Register ``module_id``; an empty or already-registered id is an error.
        ``section`` (``"package.module:Section"``) names the module's section where it
        can be imported without the module."""
        if not module_id or not module_id.strip() or module_id != module_id.strip():
            raise ModuleError(repr(module_id), f"empty or blank module id (from {origin})")
        previous = self._entries.get(module_id)
        if previous is not None:
            raise ModuleError(module_id, f"registered twice: by {previous.origin} and by {origin}")
        self._entries[module_id] = Entry(module_id, target, origin, section)

    def entry_points(self) -> list[tuple[str, str, str]]:
        """The modules registered from entry points, as (id, ``module:attr``, origin):
        what a worker registers as they are, without reading entry points again."""
        return [
            (e.id, e.target.value, e.origin)
            for e in self._entries.values()
            if not isinstance(e.target, str | type)
        ]

    def __contains__(self, module_id: object) -> bool:
        return module_id in self._entries

    def ids(self) -> list[str]:
        """Every registered id, in registration order."""
        return list(self._entries)

    def origin(self, module_id: str) -> str:
        """Where ``module_id`` was registered from."""
        return self._entries[module_id].origin

    def loaded(self) -> list[str]:
        """The ids whose classes have been imported so far."""
        return list(self._loaded)

    def section(self, module_id: str) -> type[Section] | None:
        """The section type ``module_id`` reads, without importing the module where
        its entry names the section: the Python handlers join every application, but a
        worker serving an ASGI app never needs the WSGI handler's code, only to know
        its ``[wsgi]`` settings."""
        found = self._loaded.get(module_id)
        if found is not None:
            return found.section
        entry = self._entries.get(module_id)
        if entry is None or entry.section is None:
            return self.load(module_id).section
        try:
            section = _resolve(entry.section)
        except Exception as exc:
            raise ModuleError(module_id, f"its section cannot be loaded: {exc!r}") from exc
        if not (isinstance(section, type) and issubclass(section, Section)):
            raise ModuleError(module_id, f"{entry.section!r} is not a Section subclass")
        return section

    def load(self, module_id: str) -> type[Module]:
        """Import (once) and check the class registered as ``module_id``."""
        found = self._loaded.get(module_id)
        if found is not None:
            return found
        entry = self._entries.get(module_id)
        if entry is None:
            raise ModuleError(module_id, "no such module is registered")
        try:
            obj: object
            if isinstance(entry.target, str):
                obj = _resolve(entry.target)
            elif isinstance(entry.target, type):
                obj = entry.target
            else:
                obj = entry.target.load()
        except Exception as exc:  # the import failed: say which module and why
            raise ModuleError(module_id, f"cannot be loaded: {exc!r}") from exc
        if not (isinstance(obj, type) and issubclass(obj, Module)):
            raise ModuleError(module_id, f"{entry.target!r} is not a Module subclass")
        if obj.id != module_id:
            raise ModuleError(module_id, f"class {obj.__qualname__} declares id {obj.id!r}")
        check_declaration(obj)
        if entry.section is not None and obj.section is not self.section(module_id):
            raise ModuleError(
                module_id, f"its section is {obj.section!r}, not {entry.section!r} as registered"
            )
        self._loaded[module_id] = obj
        return obj


def _resolve(target: str) -> object:
    """The object ``"package.module:attr"`` names (attr may be dotted)."""
    mod_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(mod_name)
    for name in attr.split("."):
        obj = getattr(obj, name)
    return obj
