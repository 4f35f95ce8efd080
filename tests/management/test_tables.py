"""The CLI's aligned tables and their colours."""

from __future__ import annotations

import io

import pytest

from colonnade.management.tables import table, use_colour


def test_columns_align_and_numbers_go_right() -> None:
    lines = table(("PID", "STATE", "NAME"), [(7, "ready", "a"), (12345, "stopped", "bb")])
    assert lines == [
        "    PID  STATE    NAME",
        "      7  ready    a",
        "  12345  stopped  bb",
    ]


def test_states_are_coloured_only_when_asked() -> None:
    plain = table(("STATE",), [("ready",), ("stopped",)])
    coloured = table(("STATE",), [("ready",), ("stopped",)], colour=True)
    assert "\x1b[" not in "".join(plain)
    assert coloured[1] == "  \x1b[32mready  \x1b[0m"
    assert coloured[2] == "  \x1b[31mstopped\x1b[0m"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(_Terminal())
    assert not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(_Terminal())
