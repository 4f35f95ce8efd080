"""A strict reader of the Prometheus text exposition format 0.0.4, for tests.

Strict where a sloppy writer would get through a lenient scraper: every sample
belongs to the family of the ``# TYPE`` line before it (a histogram's
``_bucket``/``_sum``/``_count``), every family has ``# HELP`` and ``# TYPE`` once,
label values use only the three escapes the format has, no series twice, and
the text ends with a newline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    kind: str
    help: str | None = None
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)


class FormatError(AssertionError):
    """The text is not the format."""


def _value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?", text):
        raise FormatError(f"not a sample value: {text!r}")
    return float(text)


def _labels(text: str, pos: int) -> tuple[Labels, int]:
    """The labels from just after ``{`` at ``pos``; the position after ``}``."""
    labels: list[tuple[str, str]] = []
    while True:
        if text[pos] == "}":
            return tuple(labels), pos + 1
        found = _LABEL.match(text, pos)
        if found is None:
            raise FormatError(f"bad label name at {text[pos:]!r}")
        name = found.group()
        pos = found.end()
        if text[pos : pos + 2] != '="':
            raise FormatError(f'label {name} without ="')
        pos += 2
        value = []
        while text[pos] != '"':
            char = text[pos]
            if char == "\\":
                escaped = _ESCAPES.get(text[pos + 1])
                if escaped is None:
                    raise FormatError(f"bad escape \\{text[pos + 1]} in label {name}")
                value.append(escaped)
                pos += 2
            elif char == "\n":
                raise FormatError("a raw newline in a label value")
            else:
                value.append(char)
                pos += 1
        pos += 1
        if name in dict(labels):
            raise FormatError(f"label {name} twice")
        labels.append((name, "".join(value)))
        if text[pos] == ",":
            pos += 1
        elif text[pos] != "}":
            raise FormatError(f"expected , or }} at {text[pos:]!r}")


def _unescape_help(name: str, text: str) -> str:
    out = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            escaped = {"\\": "\\", "n": "\n"}.get(text[pos + 1 : pos + 2])
            if escaped is None:
                raise FormatError(f"bad escape in the HELP of {name}")
            out.append(escaped)
            pos += 2
        else:
            out.append(char)
            pos += 1
    return "".join(out)


def parse(text: str) -> dict[str, Family]:
    """The families of ``text`` by name; FormatError for anything off the format."""
    if not text.endswith("\n"):
        raise FormatError("the text does not end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    for line in text[:-1].split("\n"):
        if line.startswith(("# HELP ", "# TYPE ")):
            _, keyword, rest = line.split(" ", 2)
            name, _, tail = rest.partition(" ")
            if not _NAME.fullmatch(name):
                raise FormatError(f"bad metric name {name!r}")
            if keyword == "HELP":
                family = families.get(name)
                if family is not None and family.help is not None:
                    raise FormatError(f"HELP twice for {name}")
                if family is None:
                    family = families[name] = Family(name, "untyped")
                family.help = _unescape_help(name, tail)
                current = family
            else:
                if tail not in _TYPES:
                    raise FormatError(f"unknown type {tail!r}")
                family = families.setdefault(name, Family(name, tail))
                if family.samples:
                    raise FormatError(f"TYPE of {name} after its samples")
                family.kind = tail
                current = family
            continue
        if not line or line.startswith("#"):
            continue
        found = _NAME.match(line)
        if found is None:
            raise FormatError(f"bad sample line {line!r}")
        sample = found.group()
        pos = found.end()
        labels: Labels = ()
        if line[pos : pos + 1] == "{":
            labels, pos = _labels(line, pos + 1)
        if line[pos : pos + 1] != " ":
            raise FormatError(f"no space before the value: {line!r}")
        value = _value(line[pos + 1 :])
        if current is None:
            raise FormatError(f"sample {sample} before any TYPE")
        allowed = {current.name}
        if current.kind == "histogram":
            allowed = {current.name + s for s in ("_bucket", "_sum", "_count")}
        if sample not in allowed:
            raise FormatError(f"sample {sample} outside its family ({current.name})")
        key = (sample, tuple(sorted(labels)))
        if key in current.samples:
            raise FormatError(f"series {key} twice")
        current.samples[key] = value
    for family in families.values():
        if family.help is None or family.kind == "untyped":
            raise FormatError(f"{family.name} lacks its HELP or TYPE")
    return families


def value(families: dict[str, Family], sample: str, **labels: str) -> float:
    """The value of one series (KeyError when it is not there)."""
    for family in families.values():
        found = family.samples.get((sample, tuple(sorted(labels.items()))))
        if found is not None:
            return found
    raise KeyError((sample, labels))
