"""Strict decoding that reports every error of a document, each in plain words with its key.

How this works: msgspec decodes strictly but stops at the first error, and words
it for programmers: ``Expected `str` matching regex '^/[^\\s]*$' - at `$.path```,
``Invalid enum value 'Deny' - at `$.lock[...]``` (which entry?). :func:`convert`
tries the fast whole-document decode first; only when it fails does
:func:`find_errors` walk the document beside its type (struct fields, list items,
table entries) and decode each part on its own, so that every independent
mistake is reported in one run. :func:`explain` turns one msgspec message into a
sentence and the dotted key of the offending value:

- an unknown key gets "did you mean" from the fields of the table it is in;
- a value that does not match a pattern is described with the ``description``
  of its ``msgspec.Meta`` (every pattern in the schema has one);
- a value that is not one of a fixed set lists the allowed values;
- ``[...]`` and ``key in`` (msgspec's "some entry of this table") become the
  entry's own key.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec

from colonnade.config.keys import did_you_mean
from colonnade.config.toml_lines import KeyLines
from colonnade.errors import ConfigError, combined, each_error

T = TypeVar("T")


class SettingError(Exception):
    """A section's own check refuses the setting at ``key``.

    ``key`` is dotted and relative to the section (``"rules[2].pattern"``); the
    decoder (:func:`convert`) prefixes the section's place, so the error
    names the file, line and full key. Raise it from ``__post_init__`` (a
    ``ValueError`` there can only name the struct that raised it) or from
    :meth:`Section.check_level`. Deliberately not a ``ValueError``: msgspec lets
    it through unchanged.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_PATTERN = re.compile(r"^Expected `str` matching regex ")
_ENUM = re.compile(r"^Invalid enum value (.+)$")


def convert(data: Any, cls: type[T], *, prefix: str = "", file: str | None = None) -> T:
    """``data`` decoded strictly as ``cls``.

    Raises :class:`ConfigError` (one mistake) or :class:`ConfigErrors` (several),
    each naming ``file`` and the dotted key below ``prefix``; the caller adds the
    line.
    """
    try:
        return msgspec.convert(data, cls, strict=True)
    except msgspec.ValidationError:
        errors = find_errors(data, cls, prefix)
    except SettingError as exc:  # a section's own check, naming the key itself
        raise ConfigError(exc.message, key=_join(prefix, exc.key), file=file) from None
    for error in errors:
        error.file = file
    raise combined(errors)


def locate(exc: ConfigError, source: str, lines: KeyLines | None) -> ConfigError:
    """``exc`` (each error, for several) with its file and the line of its key filled in:
    errors without a file are about ``source``, whose key index is ``lines``."""
    located = []
    for error in each_error(exc):
        file = error.file or source
        line = error.line
        if line is None and lines is not None and file == source and error.key:
            line = lines.line_for(error.key)
        located.append(ConfigError(error.message, file=file, line=line, key=error.key))
    return combined(located)


def find_errors(data: Any, tp: Any, key: str) -> list[ConfigError]:
    """Every error of ``data`` decoded as ``tp``, each with its dotted key."""
    try:
        msgspec.convert(data, tp, strict=True)
    except msgspec.ValidationError as exc:
        whole = exc
    else:
        return []
    base, _ = _unwrap(tp)
    found: list[ConfigError] = []
    struct = _struct_of(base, data)
    if struct is not None and isinstance(data, dict):
        fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
        for name, value in data.items():
            field = fields.get(name)
            where = _join(key, str(name))
            if field is None:
                if struct_forbids_unknown(struct):
                    hint = did_you_mean(str(name), fields)
                    found.append(ConfigError(f"unknown key{hint}", key=where))
                continue
            found.extend(find_errors(value, field.type, where))
        for name, field in fields.items():
            if field.required and name not in data:
                found.append(ConfigError(_missing(name), key=key))
    elif _origin(base) is list and isinstance(data, list):
        (item,) = typing.get_args(base) or (Any,)
        for i, value in enumerate(data):
            found.extend(find_errors(value, item, f"{key}[{i}]"))
    elif _origin(base) is dict and isinstance(data, dict):
        key_type, value_type = typing.get_args(base) or (Any, Any)
        for name, value in data.items():
            where = _join(key, str(name))
            if _fails(name, key_type):
                found.append(ConfigError(_entry_message(name, key_type), key=where))
                continue
            found.extend(find_errors(value, value_type, where))
    if not found:
        # The parts are fine alone: the error is about the whole (its length,
        # its type), which msgspec's own message says.
        message, where = explain(str(whole), key, tp, data)
        found.append(ConfigError(message, key=where))
    return found


def explain(message: str, prefix: str, tp: Any, data: Any) -> tuple[str, str]:
    """``(plain message, dotted key)`` for msgspec's ``message`` about ``data`` as ``tp``."""
    text, sep, where = message.partition(" - at `")
    where = where.rstrip("`") if sep else ""
    in_key = False
    if where.startswith("key` in `"):  # a table's key is wrong: "`key` in `$.d`"
        in_key = True
        where = where[len("key` in `") :]
    key, leaf, value = prefix, tp, data
    for name, index in _segments(where.removeprefix("$")):
        key, leaf, value = _step(key, leaf, value, name, index)
    if in_key:
        key_type, _ = _dict_types(leaf)
        bad = next((k for k in _keys(value) if _fails(k, key_type)), None)
        if bad is not None:
            return _entry_message(bad, key_type), _join(key, str(bad))
        return text, key
    if text.startswith("Object contains unknown field `"):
        name = text.split("`")[1]
        struct = _struct_of(_unwrap(leaf)[0], value)
        known = [f.encode_name for f in msgspec.structs.fields(struct)] if struct else []
        return f"unknown key{did_you_mean(name, known)}", _join(key, name)
    if text.startswith("Object missing required field `"):
        return _missing(text.split("`")[1]), key
    return _plain(text, leaf, value), key


def _missing(name: str) -> str:
    return f"the required key {name!r} is missing"


def struct_forbids_unknown(struct: type[msgspec.Struct]) -> bool:
    """Whether ``struct`` refuses keys it does not declare."""
    return bool(getattr(struct.__struct_config__, "forbid_unknown_fields", False))


def describe_type(tp: Any) -> str | None:
    """The ``description`` of the ``msgspec.Meta`` on ``tp``, if any."""
    for meta in _unwrap(tp)[1]:
        if meta.description:
            return str(meta.description)
    return None


# -- the walk ---------------------------------------------------------------------


def _segments(path: str) -> Iterator[tuple[str | None, str | None]]:
    for match in _SEGMENT.finditer(path):
        yield match.group(1), match.group(2)


def _step(
    key: str, tp: Any, value: Any, name: str | None, index: str | None
) -> tuple[str, Any, Any]:
    """One segment of msgspec's path: the key, type and value below it."""
    base, _ = _unwrap(tp)
    if name is not None:
        struct = _struct_of(base, value)
        sub = value.get(name) if isinstance(value, dict) else None
        if struct is not None:
            field = next((f for f in msgspec.structs.fields(struct) if f.encode_name == name), None)
            return _join(key, name), (field.type if field else Any), sub
        return _join(key, name), Any, sub
    if index == "...":  # some value of a table: find the one that fails
        _, value_type = _dict_types(tp)
        for k, v in value.items() if isinstance(value, dict) else ():
            if _fails(v, value_type):
                return _join(key, str(k)), value_type, v
        return key, value_type, None
    i = int(index or 0)
    args = typing.get_args(_unwrap_union(base, value))
    item = args[0] if args else Any
    sub = value[i] if isinstance(value, list) and i < len(value) else None
    return f"{key}[{i}]", item, sub


def _plain(text: str, tp: Any, value: Any) -> str:
    """msgspec's ``text`` about ``value`` (of type ``tp``), in plain words where known."""
    if _PATTERN.match(text):
        description = describe_type(tp) or _member_description(tp, value)
        shown = repr(value) if isinstance(value, str) else "the value"
        if description:
            return f"{shown}: expected {description}"
        return f"{shown}: expected a value matching {text.split(' ', 4)[-1]}"
    found = _ENUM.match(text)
    if found:
        allowed = _allowed_values(tp)
        if allowed:
            names = ", ".join(_shown(v) for v in allowed)
            hint = (
                did_you_mean(value, [v for v in allowed if isinstance(v, str)])
                if isinstance(value, str)
                else ""
            )
            return f"{found.group(1)} is not one of: {names}{hint}"
    return text


def _entry_message(name: Any, key_type: Any) -> str:
    """Why ``name`` may not be a key of a table whose keys are ``key_type``."""
    description = describe_type(key_type)
    if description:
        return f"{name!r}: expected {description}"
    allowed = _allowed_values(key_type)
    if allowed:
        return f"{name!r} is not one of: {', '.join(_shown(v) for v in allowed)}"
    return f"{name!r} is not allowed as a key here"


def _member_description(tp: Any, value: Any) -> str | None:
    # A union of patterns (``A | B``): the description of any member.
    base, _ = _unwrap(tp)
    for member in typing.get_args(base) if _is_union(base) else ():
        found = describe_type(member)
        if found:
            return found
    return None


def _shown(value: Any) -> str:
    # As the value is written in TOML: true/false, quoted strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _allowed_values(tp: Any) -> list[Any]:
    base, _ = _unwrap(tp)
    if base is bool:
        return [True, False]
    if _origin(base) is typing.Literal:
        return list(typing.get_args(base))
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return [m.value for m in base]
    if _is_union(base):
        return [v for member in typing.get_args(base) for v in _allowed_values(member)]
    return []


# -- types ------------------------------------------------------------------------


def _unwrap(tp: Any) -> tuple[Any, list[msgspec.Meta]]:
    """``Annotated[T, Meta(...)]`` → ``(T, [Meta, ...])``."""
    metas: list[msgspec.Meta] = []
    while typing.get_origin(tp) is typing.Annotated:
        tp, *extra = typing.get_args(tp)
        metas.extend(m for m in extra if isinstance(m, msgspec.Meta))
    return tp, metas


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp)


def _is_union(tp: Any) -> bool:
    return _origin(tp) in (typing.Union, types.UnionType)


def _unwrap_union(base: Any, value: Any) -> Any:
    """The member of a union ``value`` is meant for (a table for a struct, ...)."""
    if not _is_union(base):
        return base
    for member in typing.get_args(base):
        inner, _ = _unwrap(member)
        origin = _origin(inner) or inner
        if isinstance(origin, type) and isinstance(value, origin):
            return inner
        if (
            isinstance(value, dict)
            and isinstance(inner, type)
            and issubclass(inner, msgspec.Struct)
        ):
            return inner
    return base


def _struct_of(base: Any, value: Any) -> type[msgspec.Struct] | None:
    base = _unwrap_union(base, value)
    base, _ = _unwrap(base)
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return base
    return None


def _dict_types(tp: Any) -> tuple[Any, Any]:
    base, _ = _unwrap(tp)
    base = _unwrap_union(base, {})
    args = typing.get_args(_unwrap(base)[0])
    return (args[0], args[1]) if len(args) == 2 else (Any, Any)


def _keys(value: Any) -> list[Any]:
    return list(value) if isinstance(value, dict) else []


def _fails(value: Any, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError:
        return True
    return False


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name
