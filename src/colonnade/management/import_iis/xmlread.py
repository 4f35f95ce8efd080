"""Read IIS configuration XML into a small tree that remembers file and line.

IIS names elements and attributes case-insensitively (``<defaultDocument>`` and
``<DefaultDocument>`` are one section), so every node keeps its name as written
(for the report) and lower-cased (for matching).

Safety: the files come from another machine and may be hostile. The parser is
the stdlib's expat, told never to read parameter entities or external DTD
subsets, and any document type declaration, entity declaration or external
entity reference is refused outright: that closes entity expansion ("billion
laughs", quadratic blow-up) and external entity reads (XXE) the way
``defusedxml`` does (its ``forbid_dtd``/``forbid_entities``), without a new
dependency. IIS's own schema never uses a DTD, so nothing legitimate is lost.
"""

from __future__ import annotations

import xml.parsers.expat
from dataclasses import dataclass, field
from typing import NoReturn

MAX_BYTES = 16 * 1024 * 1024
"""The largest configuration file read (IIS itself refuses files over 100 KiB by default)."""


class XmlReadError(Exception):
    """A file that cannot be read as IIS configuration: the message names file and line."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(eq=False)
class Node:
    """One XML element with its source position."""

    tag: str
    attrs: dict[str, str]
    """Attribute names lower-cased (IIS matches them case-insensitively)."""
    file: str
    line: int
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None
    spelled: dict[str, str] = field(default_factory=dict)
    """Lower-cased attribute name → as written."""
    visited: bool = False
    """A converter reached this element (by name): see :meth:`child`, :meth:`each`."""
    read: set[str] = field(default_factory=set)
    """Attributes a converter looked at: the others are reported as not converted."""

    @property
    def name(self) -> str:
        """The element name, lower-cased."""
        return self.tag.lower()

    @property
    def where(self) -> str:
        """``file:line`` of the element."""
        return f"{self.file}:{self.line}"

    def get(self, attr: str, default: str | None = None) -> str | None:
        """An attribute's value (name matched without regard to case)."""
        self.read.add(attr.lower())
        return self.attrs.get(attr.lower(), default)

    def flag(self, attr: str, default: bool) -> bool:
        """A boolean attribute (``true``/``false`` in any case), else ``default``."""
        self.read.add(attr.lower())
        value = self.attrs.get(attr.lower())
        if value is None:
            return default
        return value.strip().lower() == "true"

    def child(self, name: str) -> Node | None:
        """The first child element called ``name`` (any case)."""
        name = name.lower()
        found = next((c for c in self.children if c.name == name), None)
        if found is not None:
            found.visited = True
        return found

    def each(self, name: str) -> list[Node]:
        """Every child element called ``name`` (any case)."""
        name = name.lower()
        found = [c for c in self.children if c.name == name]
        for node in found:
            node.visited = True
        return found

    def unread(self) -> list[str]:
        """Attributes as written that no converter looked at."""
        return [
            self.spelled.get(name, name)
            for name in self.attrs
            if name not in self.read and not name.startswith("xmlns")
        ]

    @property
    def path(self) -> str:
        """The element path from the document root, as the report shows it."""
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.name != "configuration":
            label = node.tag
            key = node.attrs.get("name") or node.attrs.get("path")
            if key is not None:
                kind = "name" if node.attrs.get("name") is not None else "path"
                label += f'[{kind}="{key}"]'
            parts.append(label)
            node = node.parent
        return "/".join(reversed(parts))


def _refuse(file: str, parser: xml.parsers.expat.XMLParserType, what: str) -> NoReturn:
    raise XmlReadError(file, parser.CurrentLineNumber, f"{what} is refused (no DTDs or entities)")


def parse(data: bytes, file: str) -> Node:
    """Parse one configuration file; raise :class:`XmlReadError` with its line."""
    if len(data) > MAX_BYTES:
        raise XmlReadError(file, 1, f"larger than {MAX_BYTES} bytes")
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = Node(
            tag=tag,
            attrs={k.lower(): v for k, v in attrs.items()},
            spelled={k.lower(): k for k in attrs},
            file=file,
            line=parser.CurrentLineNumber,
            parent=stack[-1] if stack else None,
        )
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def doctype(*_: object) -> None:
        _refuse(file, parser, "a document type declaration")

    def entity(*_: object) -> None:
        _refuse(file, parser, "an entity declaration")

    def external(*_: object) -> int:
        _refuse(file, parser, "an external entity reference")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        message = xml.parsers.expat.ErrorString(exc.code)
        raise XmlReadError(file, exc.lineno, f"malformed XML: {message}") from None
    if not root or root[0].name != "configuration":
        found = root[0].tag if root else "nothing"
        raise XmlReadError(
            file, root[0].line if root else 1, f"expected <configuration>, found <{found}>"
        )
    return root[0]
