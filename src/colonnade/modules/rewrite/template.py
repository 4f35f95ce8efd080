"""The text of inputs, URLs and values: ``{R:1}``, ``{C:2}``, ``{HTTP_HOST}``,
``{ToLower:{R:1}}``, ``{MapName:{R:1}}``, parsed once when the configuration loads.

A template is literal text with references in braces, which nest:

- ``{R:n}`` (n = 0-9): group n of the rule's pattern; ``{C:n}``: of the last
  condition that matched with a pattern;
- ``{NAME}``: a server variable (``HTTP_HOST``, ``QUERY_STRING``, ...);
- ``{ToLower:...}``, ``{UrlEncode:...}``, ``{UrlDecode:...}``: a function of the
  inner text;
- ``{Map:...}``: the value of a rewrite map for the inner text.

Names are case-insensitive, as in IIS. Whether a function or map name and a
variable exist, and whether a back-reference has its group, is checked by the
caller (``config.py``) with the parsed :class:`Ref` list; nothing is looked up
by name on a request.
"""

from __future__ import annotations

import re
from typing import NamedTuple

FUNCTIONS = ("tolower", "urlencode", "urldecode")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Ref(NamedTuple):
    """One reference in braces.

    ``kind`` is ``"R"``, ``"C"``, ``"var"``, ``"fn"`` or ``"map"``; ``name`` the
    group number (``"0"``-``"9"``), the variable's name (upper case), the
    function's (lower case) or the map's (lower case); ``inner`` the argument of
    a function or map.
    """

    kind: str
    name: str
    inner: Template | None = None


class Template(NamedTuple):
    """Literal strings and references, in order."""

    parts: tuple[str | Ref, ...]

    def refs(self) -> list[Ref]:
        """Every reference, nested ones included (outer first)."""
        found: list[Ref] = []
        for part in self.parts:
            if isinstance(part, Ref):
                found.append(part)
                if part.inner is not None:
                    found.extend(part.inner.refs())
        return found

    @property
    def literal(self) -> str | None:
        """The text of a template without references, else None."""
        if all(isinstance(p, str) for p in self.parts):
            return "".join(p for p in self.parts if isinstance(p, str))
        return None


class TemplateError(ValueError):
    """The text is not a well-formed template."""


def parse(text: str) -> Template:
    """``text`` as a :class:`Template`; :class:`TemplateError` if malformed."""
    parts, end = _parse(text, 0, nested=False)
    assert end == len(text)
    return Template(tuple(parts))


def _parse(text: str, i: int, *, nested: bool) -> tuple[list[str | Ref], int]:
    # Returns the parts and the index of the closing brace (nested) or the end.
    parts: list[str | Ref] = []
    literal: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "}":
            if nested:
                break
            raise TemplateError(f"{text!r}: '}}' without its '{{' at {i}")
        if char != "{":
            literal.append(char)
            i += 1
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        ref, i = _reference(text, i + 1)
        parts.append(ref)
    else:
        if nested:
            raise TemplateError(f"{text!r}: a '{{' is not closed")
    if literal:
        parts.append("".join(literal))
    return parts, i


def _reference(text: str, i: int) -> tuple[Ref, int]:
    # ``i`` is just after "{"; returns the reference and the index after its "}".
    colon = text.find(":", i)
    close = text.find("}", i)
    if close == -1:
        raise TemplateError(f"{text!r}: a '{{' is not closed")
    if colon == -1 or colon > close:
        name = text[i:close]
        if not _NAME.match(name):
            raise TemplateError(f"{text!r}: {{{name}}} is not a server variable name")
        return Ref("var", name.upper()), close + 1
    head = text[i:colon]
    if head in ("R", "C", "r", "c"):
        number = text[colon + 1 : close]
        if len(number) != 1 or not number.isdigit():
            raise TemplateError(f"{text!r}: {{{head}:{number}}}: a back-reference is 0-9")
        return Ref(head.upper(), number), close + 1
    if not _NAME.match(head):
        raise TemplateError(f"{text!r}: {{{head}:...}} is not a function or map name")
    inner, end = _parse(text, colon + 1, nested=True)
    if end >= len(text):
        raise TemplateError(f"{text!r}: a '{{' is not closed")
    kind = "fn" if head.lower() in FUNCTIONS else "map"
    return Ref(kind, head.lower(), Template(tuple(inner))), end + 1
