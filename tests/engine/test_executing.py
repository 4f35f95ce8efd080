"""The request monitor's table of the compiled build: a list linked through the contexts."""

from __future__ import annotations

from typing import Any

import pytest

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
    table[a] = _walk("a")
    table[b] = _walk("b")
    table[c] = _walk("c")
    assert table and len(table) == 3
    assert table.items() == [(a, "a"), (b, "b"), (c, "c")]
    assert list(table) == [a, b, c]
    assert table == {a: "a", b: "b", c: "c"}
    assert table != {a: "a"}


def test_taken_off_from_the_middle_the_head_and_the_tail() -> None:
    table = Executing()
    a, b, c, d = (_context(p) for p in ("/a", "/b", "/c", "/d"))
    for ctx in (a, b, c, d):
        table[ctx] = _walk(ctx.request.path)
    del table[b]  # middle
    assert list(table) == [a, c, d]
    del table[a]  # head
    assert list(table) == [c, d]
    del table[d]  # tail
    assert list(table) == [c]
    table[b] = _walk("b")  # after the tail was taken off
    assert list(table) == [c, b]
    del table[b]
    del table[c]
    assert table == {} and len(table) == 0 and not table
    # Nothing is left linked: a context taken off holds no walk and no neighbour.
    for ctx in (a, b, c, d):
        assert ctx.monitor_walk is None
        assert ctx.monitor_prev is None
        assert ctx.monitor_next is None


def test_a_context_not_listed_is_a_key_error_and_changes_nothing() -> None:
    table = Executing()
    a, b = _context("/a"), _context("/b")
    table[a] = _walk("a")
    with pytest.raises(KeyError):
        del table[b]  # never listed
    assert table.items() == [(a, "a")] and len(table) == 1
    del table[a]
    with pytest.raises(KeyError):
        del table[a]  # listed before, taken off since
    assert table == {} and len(table) == 0


def test_a_context_can_be_listed_again() -> None:
    table = Executing()
    a, b = _context("/a"), _context("/b")
    table[a] = _walk("a1")
    table[b] = _walk("b")
    del table[a]
    table[a] = _walk("a2")
    assert table.items() == [(b, "b"), (a, "a2")]
