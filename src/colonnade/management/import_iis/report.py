"""The import report: one line per IIS element, what became of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from colonnade.management.import_iis.xmlread import Node

Outcome = Literal["converted", "changed", "not converted"]


@dataclass(frozen=True)
class Entry:
    """One report line."""

    outcome: Outcome
    where: str
    element: str
    note: str


@dataclass
class Report:
    """Every element the importer looked at, in source order per file."""

    entries: list[Entry] = field(default_factory=list)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    """id(node) → the last outcome reported for it (for :meth:`audit`)."""

    def converted(self, node: Node, into: str) -> None:
        """``node`` became ``into`` with the same meaning."""
        self.entries.append(Entry("converted", node.where, node.path, into))
        self.outcomes[id(node)] = "converted"

    def changed(self, node: Node, how: str) -> None:
        """``node`` was converted, but its meaning changed as ``how`` says."""
        self.entries.append(Entry("changed", node.where, node.path, how))
        self.outcomes[id(node)] = "changed"

    def skipped(self, node: Node, why: str) -> None:
        """``node`` was not converted (``why`` names the nearest feature if any)."""
        self.entries.append(Entry("not converted", node.where, node.path, why))
        self.outcomes[id(node)] = "not converted"

    def audit(self, root: Node) -> None:
        """Report what no converter looked at: attributes of the elements that were
        converted or read, and child elements of those that nothing reached."""
        self._audit(root)

    def _audit(self, node: Node) -> None:
        unread = node.unread()
        if unread and node.name != "configuration":
            names = ", ".join(unread)
            self.entries.append(
                Entry("not converted", node.where, node.path, f"{names}: no counterpart")
            )
        for child in node.children:
            outcome = self.outcomes.get(id(child))
            if outcome == "not converted":
                continue
            if outcome is None and not child.visited:
                self.skipped(child, "no counterpart")
                continue
            self._audit(child)

    @property
    def not_converted(self) -> int:
        """How many elements were not converted."""
        return sum(1 for e in self.entries if e.outcome == "not converted")

    def render(self) -> str:
        """The report as text, one line per element, then a count."""
        ordered = sorted(self.entries, key=_position)
        lines = [f"{e.where}: {e.outcome}: {e.element}: {e.note}" for e in ordered]
        counts = {k: sum(1 for e in self.entries if e.outcome == k) for k in _ORDER}
        lines.append(
            f"{counts['converted']} converted, {counts['changed']} converted with a change"
            f" of meaning, {counts['not converted']} not converted"
        )
        return "\n".join(lines) + "\n"


def _position(entry: Entry) -> tuple[str, int]:
    file, _, line = entry.where.rpartition(":")
    return (file, int(line) if line.isdigit() else 0)


_ORDER: tuple[Outcome, ...] = ("converted", "changed", "not converted")
