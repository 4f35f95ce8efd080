"""Effective module settings for one URL path, and the one generic merge.

A level (the server file, a ``[[locations]]`` entry, a ``web.toml``) holds raw
tables keyed by section name. The effective settings of a path are the levels
from the root down merged with :func:`merge` (child, else parent, else the
section's default), then decoded once per section type and cached.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

import msgspec

from colonnade.config.validation import SettingError as SettingError  # re-exported
from colonnade.config.validation import convert
from colonnade.errors import ConfigError

#: The per-directory configuration file: read by the configuration tree, never
#: served (the static handler refuses it, request filtering hides it).
WEB_TOML = "web.toml"


class Where(enum.Flag):
    """The levels of the configuration tree where a setting may be set.

    Apache's where-allowed flags (``RSRC_CONF``, ``ACCESS_CONF``, ``OR_*``) and
    IIS's ``allowDefinition``, for our three kinds of level. A level's kind is
    where it sits, whichever file holds it:

    - ``SERVER``: the module sections at the top of the server file;
    - ``APPLICATION``: an application's root: the ``web.toml`` in its folder, or a
      ``[[locations]]`` entry whose path is the application's;
    - ``DIRECTORY``: below an application's root: a ``web.toml`` in a subfolder
      or a virtual directory, or a ``[[locations]]`` entry for such a path.

    Which files may override a section at all is the other, separate question:
    ``Section.locked`` and the server file's ``[lock]`` (``web.toml`` files only).
    """

    SERVER = enum.auto()
    APPLICATION = enum.auto()
    DIRECTORY = enum.auto()
    ANYWHERE = SERVER | APPLICATION | DIRECTORY

    def describe(self) -> str:
        """``"at the server and application levels"``: for error messages and docs."""
        chosen = [str(w.name).lower() for w in _KINDS if w in self]
        if not chosen:
            return "nowhere"
        joined = chosen[0] if len(chosen) == 1 else ", ".join(chosen[:-1]) + " and " + chosen[-1]
        return f"at the {joined} level{'s' if len(chosen) > 1 else ''}"


_KINDS = (Where.SERVER, Where.APPLICATION, Where.DIRECTORY)


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True, dict=True):
    """Base of every module's configuration section.

    Decoding is strict: unknown keys and wrong types are errors. A section object
    is shared by every path with the same settings: what a module derives from
    it alone is a ``functools.cached_property`` of the subclass (hence the
    ``__dict__``), see ``colonnade.core.compiled``. What the
    builder (``engine/build.py``) reads from a subclass, besides its fields:

    - ``key``: the table name in ``colonnade.toml`` and ``web.toml`` (required).
    - ``locked``: True if no ``web.toml`` may set this section unless the server
      file's ``[lock]`` says ``"allow"`` for it (IIS ``overrideModeDefault =
      "Deny"``); ``[[locations]]`` entries in the server file are not affected.
    - ``allowed``: the :class:`Where` levels the section may be set at (default
      anywhere), and ``allowed_keys``: the same for single keys, by dotted name
      relative to the section (``{"cache_max_bytes": Where.SERVER |
      Where.APPLICATION}``), for a setting that is read once per application
      and would be ignored below it. Anything set elsewhere is refused when the
      configuration is built, naming the file, line and key.
    """

    key: ClassVar[str] = ""
    locked: ClassVar[bool] = False
    allowed: ClassVar[Where] = Where.ANYWHERE
    allowed_keys: ClassVar[Mapping[str, Where]] = {}

    @classmethod
    def where_allowed(cls, dotted: str) -> Where:
        """Where ``dotted`` (a key relative to the section; "" for the section
        itself) may be set: the most specific ``allowed_keys`` entry, else
        ``allowed``."""
        parts = dotted.split(".") if dotted else []
        for n in range(len(parts), 0, -1):
            found = cls.allowed_keys.get(".".join(parts[:n]))
            if found is not None:
                return found
        return cls.allowed

    def check_level(self, effective: Self) -> None:
        """Check one level's own settings (``self``: one file's or one location's
        table, decoded alone) against ``effective``, the merged settings at that
        level's path: a name this level uses that a level above defines (a map
        of the server file used in a ``web.toml``). Raise :class:`SettingError`
        naming the key of ``self``; the builder names the file and line. Nothing
        by default."""

    def redis_key(self) -> str | None:
        """The key (relative to the section) whose value makes the module keep
        its state in the server's ``[redis]`` table with these settings
        (``"provider"`` for ``provider = "redis"``), else None (the default).
        Where the server file has no ``[redis]`` table, the builder refuses
        such settings, naming the file, line and key that chose Redis."""
        return None

    def shown(self, key: str, value: Any) -> Any:
        """``value`` of ``key`` (as decoded) the way tools show it (``colonnade
        config show``): a section holding a secret (a password, a key) returns
        it hidden. As it is by default."""
        return value

    def written_paths(self) -> tuple[str, ...]:
        """Files the module writes because of these settings (a log file), as given.

        The pool preflight checks that a pool's user may write them (or create them
        in their folder). None by default; a section naming such files says so.
        """
        return ()


S = TypeVar("S", bound=Section)

Raw = dict[str, Any]


_OPS = frozenset({"add", "prepend", "remove", "clear"})
_ITEM_KEYS = ("id", "name", "path", "extension", "key", "address", "domain")


def is_collection_ops(value: object) -> bool:
    """True for ``{add = [...], remove = [...], clear = true}``-style tables."""
    return isinstance(value, Mapping) and bool(value) and set(value) <= _OPS


def _item_key(item: Any) -> Any:
    # A table in a collection is identified by its natural key field.
    if isinstance(item, Mapping):
        for name in _ITEM_KEYS:
            if name in item:
                return (name, item[name])
        return tuple(sorted((k, repr(v)) for k, v in item.items()))
    return item


def _apply_ops(base: Any, ops: Mapping[str, Any], where: str) -> Any:
    if isinstance(base, Mapping):
        out = {} if ops.get("clear") else dict(base)
        for name in ops.get("remove", ()):
            out.pop(name, None)
        for part in ("prepend", "add"):
            extra = ops.get(part, {})
            if not isinstance(extra, Mapping):
                raise ConfigError(f"{part} must be a table for a table collection", key=where)
            out.update(extra)
        return out
    if not isinstance(base, list):
        raise ConfigError("add/remove/clear apply only to collections", key=where)
    items = [] if ops.get("clear") else list(base)
    gone = {_item_key(x) for x in ops.get("remove", ())}
    front = list(ops.get("prepend", ()))
    back = list(ops.get("add", ()))
    # An added item replaces an existing one with the same key.
    gone |= {_item_key(x) for x in front + back}
    return front + [x for x in items if _item_key(x) not in gone] + back


def merge_into(
    target: Raw,
    child: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    origins: dict[str, str] | None = None,
    source: str = "",
    prefix: str = "",
) -> None:
    """Merge ``child`` over ``target`` in place: the one generic merge.

    A key the child does not set keeps the parent's value (else the default);
    nested tables merge key by key; a list is replaced, unless the child gives
    collection operations (``add``/``prepend``/``remove``/``clear``), which then
    apply to the parent's list (or the section default's). ``origins`` records,
    per dotted key, the source that set it last.
    """
    for key, value in child.items():
        where = f"{prefix}{key}"
        base = target.get(key, _MISSING)
        if base is _MISSING and defaults is not None:
            base = defaults.get(key, _MISSING)
        if is_collection_ops(value):
            target[key] = _apply_ops([] if base is _MISSING else base, value, where)
        elif isinstance(value, Mapping) and isinstance(base, Mapping):
            sub = dict(base)
            nested = defaults.get(key) if defaults is not None else None
            merge_into(
                sub,
                value,
                defaults=nested if isinstance(nested, Mapping) else None,
                origins=origins,
                source=source,
                prefix=where + ".",
            )
            target[key] = sub
            continue
        else:
            target[key] = value
        if origins is not None:
            origins[where] = source


_MISSING: Any = object()


def merge(parent: Mapping[str, Any], child: Mapping[str, Any]) -> Raw:
    """A new table: ``child`` merged over ``parent`` (see :func:`merge_into`)."""
    out: Raw = dict(parent)
    merge_into(out, child)
    return out


def decode_section(cls: type[S], raw: Mapping[str, Any], *, file: str | None = None) -> S:
    """Decode one section strictly; every error names its dotted key."""
    return convert(dict(raw), cls, prefix=cls.key, file=file)


class SectionSet:
    """The settings every module sees for one path: decoded lazily, then shared.

    ``origins`` maps each dotted key that some file set to that file (for
    ``colonnade config show``). ``broken`` is the error of a ``web.toml`` at or
    above the path that cannot be used (its settings are not in ``raw``):
    requests there are answered 500.19 naming it.

    ``decoded`` holds the sections decoded so far, by type: ``ctx.section(cls)``
    (compiled) reads it first, a dict look-up where the common case (decoded
    already) would otherwise cost a call into this interpreted class. Interpreted
    code on every request's path reads ``ctx.sections.decoded.get(MySection) or
    ctx.sections.get(MySection)`` itself (one call less; a section is never false).
    """

    __slots__ = ("broken", "decoded", "origins", "raw")

    def __init__(
        self,
        raw: Raw,
        origins: dict[str, str] | None = None,
        broken: ConfigError | None = None,
    ) -> None:
        self.raw = raw
        self.origins = origins or {}
        self.broken = broken
        self.decoded: dict[type[Any], Any] = {}

    def get(self, cls: type[S]) -> S:
        """The effective ``cls`` section (its defaults where nothing is set)."""
        try:
            return self.decoded[cls]  # type: ignore[no-any-return]
        except KeyError:
            value = decode_section(cls, self.raw.get(cls.key, {}))
            self.decoded[cls] = value
            return value


def section_defaults(cls: type[Section]) -> Raw:
    """The raw table of a section's defaults (the base of collection operations)."""
    value = msgspec.to_builtins(cls())
    assert isinstance(value, dict)
    return value
