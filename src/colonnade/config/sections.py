"""Effective module settings for one URL path, and the one generic merge.

A level (the server file, a ``[[locations]]`` entry, later a ``web.toml``) holds
raw tables keyed by section name. The effective settings of a path are the levels
from the root down merged with :func:`merge` (child, else parent, else the
section's default), then decoded once per section type and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import msgspec

from colonnade.errors import ConfigError


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of every module's configuration section.

    Subclasses set ``key``: the table name in ``colonnade.toml`` and ``web.toml``.
    Decoding is strict: unknown keys and wrong types are errors.
    """

    key: ClassVar[str] = ""


S = TypeVar("S", bound=Section)

Raw = dict[str, Any]


def merge(parent: Mapping[str, Any], child: Mapping[str, Any]) -> Raw:
    """Child keys win; nested tables merge key by key; lists are replaced."""
    out: Raw = dict(parent)
    for key, value in child.items():
        base = out.get(key)
        if isinstance(value, Mapping) and isinstance(base, Mapping):
            out[key] = merge(base, value)
        else:
            out[key] = value
    return out


def decode_section(cls: type[S], raw: Mapping[str, Any], *, file: str | None = None) -> S:
    """Decode one section strictly, naming the dotted key on error."""
    try:
        return msgspec.convert(dict(raw), cls, strict=True)
    except msgspec.ValidationError as exc:
        message, key = _split_validation(str(exc), cls.key)
        raise ConfigError(message, file=file, key=key) from None


def _split_validation(message: str, prefix: str) -> tuple[str, str]:
    """Turn msgspec's ``"Expected int, got str - at `$.limits.max`"`` into (msg, key)."""
    text, sep, where = message.partition(" - at `$")
    key = prefix
    if sep:
        key += where.rstrip("`")
    elif text.startswith("Object contains unknown field `"):
        name = text.split("`")[1]
        rest = text.partition(" - at `$")[2].rstrip("`")
        key = f"{prefix}{rest}.{name}"
        text = "unknown key"
    return text, key


class SectionSet:
    """The settings every module sees for one path: decoded lazily, then shared."""

    __slots__ = ("_decoded", "raw")

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self._decoded: dict[type[Any], Any] = {}

    def get(self, cls: type[S]) -> S:
        """The effective ``cls`` section (its defaults where nothing is set)."""
        try:
            return self._decoded[cls]  # type: ignore[no-any-return]
        except KeyError:
            value = decode_section(cls, self.raw.get(cls.key, {}))
            self._decoded[cls] = value
            return value
