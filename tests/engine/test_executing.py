"""The request monitor's table of the compiled build: a list linked through the contexts."""

from __future__ import annotations

from typing import Any

from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.request import Request
from colonnade.engine.engine import Executing


def _context(path: str) -> Context:
    app = Application(site="s", path="/", root="/")
    return Context(Request("GET", path), app, None, None)  # type: ignore[arg-type]


def _walk(name: str) -> Any:
    return name  # a stand-in: the table keeps whatever walk it is given


def test_listed_oldest_first_and_read_as_a_mapping() -> None:
    table = Executing()
    assert not table and len(table) == 0 and table == {} and table.items() == []
    a, b, c = _context("/a"), _context("/b"), _context("/c")
    table.add(a, _walk("a"))
    table.add(b, _walk("b"))
    table.add(c, _walk("c"))
    assert table and len(table) == 3
    assert table.items() == [(a, "a"), (b, "b"), (c, "c")]
    assert list(table) == [a, b, c]
    assert table == {a: "a", b: "b", c: "c"}
    assert table != {a: "a"}


def test_taken_off_from_the_middle_the_head_and_the_tail() -> None:
    table = Executing()
    a, b, c, d = (_context(p) for p in ("/a", "/b", "/c", "/d"))
    for ctx in (a, b, c, d):
        table.add(ctx, _walk(ctx.request.path))
    table.remove(b)  # middle
    assert list(table) == [a, c, d]
    table.remove(a)  # head
    assert list(table) == [c, d]
    table.remove(d)  # tail
    assert list(table) == [c]
    table.add(b, _walk("b"))  # after the tail was taken off
    assert list(table) == [c, b]
    table.remove(b)
    table.remove(c)
    assert table == {} and len(table) == 0 and not table
    # Nothing is left linked: a context taken off holds no walk and no neighbour.
    for ctx in (a, b, c, d):
        assert ctx.monitor_walk is None
        assert ctx.monitor_prev is None
        assert ctx.monitor_next is None


def test_a_context_not_listed_is_left_alone() -> None:
    table = Executing()
    a, b = _context("/a"), _context("/b")
    table.add(a, _walk("a"))
    table.remove(b)
    table.remove(b)
    assert table.items() == [(a, "a")] and len(table) == 1
    table.remove(a)
    table.remove(a)
    assert table == {} and len(table) == 0


def test_a_context_can_be_listed_again() -> None:
    table = Executing()
    a, b = _context("/a"), _context("/b")
    table.add(a, _walk("a1"))
    table.add(b, _walk("b"))
    table.remove(a)
    table.add(a, _walk("a2"))
    assert table.items() == [(b, "b"), (a, "a2")]
