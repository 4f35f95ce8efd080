"""Compile once per section object: ``PerSection`` and ``cached_property`` on sections."""

from __future__ import annotations

from functools import cached_property

import pytest

from colonnade import Section
from colonnade.core.compiled import PerSection
from colonnade.errors import ConfigError


class Words(Section, frozen=True):
    key = "words"
    words: list[str] = []

    @cached_property
    def joined(self) -> str:
        built.append(self.words)
        return ",".join(self.words)


built: list[list[str]] = []


def test_per_section_builds_once_per_object_not_per_value() -> None:
    calls: list[Words] = []

    def build(section: Words) -> str:
        calls.append(section)
        return "|".join(section.words)

    cache: PerSection[Words, str] = PerSection(build)
    a, b = Words(words=["x"]), Words(words=["x"])
    assert a == b and a is not b
    assert cache.get(a) == cache.get(a) == "x"
    assert cache.get(b) == "x"
    assert calls == [a, b]  # equal values, two objects: two builds
    assert len(cache) == 2
    cache.clear()
    cache.get(a)
    assert len(calls) == 3


def test_per_section_is_bounded_and_keeps_no_failure() -> None:
    fail = {"now": True}

    def build(section: Words) -> int:
        if fail["now"]:
            raise ConfigError("cannot open the log file", key="words")
        return len(section.words)

    cache: PerSection[Words, int] = PerSection(build, limit=3)
    section = Words(words=["a", "b"])
    with pytest.raises(ConfigError):
        cache.get(section)
    assert len(cache) == 0
    fail["now"] = False
    assert cache.get(section) == 2  # tried again
    sections = [Words(words=["w"] * n) for n in range(5)]
    for s in sections:
        cache.get(s)
    assert len(cache) <= 3
    # Entries hold their sections: an id in the cache is never another object's.
    assert all(cache.get(s) == n for n, s in enumerate(sections))


def test_a_section_carries_cached_properties_without_declaring_dict() -> None:
    built.clear()
    section = Words(words=["a", "b"])
    assert section.joined == section.joined == "a,b"
    assert built == [["a", "b"]]


def test_the_section_holds_the_built_value_for_a_call_free_read() -> None:
    # The per-request idiom reads the section's own dict; clear() must take the
    # value back out, or a cleaned-up module's policy would outlive it.
    one: PerSection[Words, str] = PerSection(lambda s: "one")
    two: PerSection[Words, str] = PerSection(lambda s: "two")
    assert one.key != two.key
    section = Words(words=["a"])
    assert section.__dict__.get(one.key) is None
    assert one.get(section) == "one" and two.get(section) == "two"
    assert section.__dict__[one.key] == "one" and section.__dict__[two.key] == "two"
    one.clear()
    assert one.key not in section.__dict__
    assert section.__dict__[two.key] == "two"
