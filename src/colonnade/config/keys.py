"""Names a configuration may use: suggestions for a misspelt one, dotted keys of a section.

Every "unknown name" error of the configuration ends with the same hint, made
here: ``did you mean 'max_url'?`` when one known name is close.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when a known name is close to ``name``, else ``""``."""
    import difflib  # only on an error's path: not in every worker

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _struct(info: Any) -> Any:
    """The struct type inside ``info`` (``X | None`` included), else ``info``."""
    if isinstance(info, msgspec.inspect.UnionType):
        structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
        return structs[0] if len(structs) == 1 else info
    return info


def check_dotted_key(section: type[msgspec.Struct], dotted: str) -> str | None:
    """Why ``dotted`` (a key below ``section``, e.g. ``"limits.max_url"``) names no
    setting of the section; None when it names one. Keys of a table-valued
    setting (a dict) are free-form and always accepted."""
    info: Any = msgspec.inspect.type_info(section)
    walked: list[str] = []
    for part in dotted.split("."):
        info = _struct(info)
        if isinstance(info, msgspec.inspect.DictType | msgspec.inspect.AnyType):
            return None
        if not isinstance(info, msgspec.inspect.StructType):
            where = ".".join(walked)
            return f"{where!r} is a single setting: it has no key {part!r}"
        fields = {f.encode_name: f for f in info.fields}
        found = fields.get(part)
        if found is None:
            return f"no setting named {part!r}{did_you_mean(part, fields)}"
        walked.append(part)
        info = found.type
    return None
