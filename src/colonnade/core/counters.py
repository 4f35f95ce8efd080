"""Counters by label that a module keeps for ``GET /metrics``.

A module that counts an event the operator should see (``http.logging``'s lines
lost to a full disk) declares a family here once, at import, and adds to the
:class:`collections.Counter` it gets back. The worker sends :func:`snapshot` with
its periodic statistics, the master adds up every worker's and the departed
workers' last counts (``pools/metrics.py``) and renders each family as a
Prometheus counter ``colonnade_<family>_total{<label>="..."}``. Neither side
needs to know which modules are enabled: a family no worker declared is absent.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple


class Family(NamedTuple):
    """What the master needs to render a family: its help text and label name."""

    about: str
    label: str


_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_FAMILIES: dict[str, Family] = {}
_COUNTS: dict[str, Counter[str]] = {}


def declare(family: str, about: str, label: str) -> Counter[str]:
    """The counter of ``family`` (one per process: declaring it again returns the
    same one), counted by ``label``."""
    if not _NAME.match(family) or not _NAME.match(label):
        raise ValueError(f"counter family and label are [a-z0-9_] words: {family!r}, {label!r}")
    _FAMILIES[family] = Family(about, label)
    return _COUNTS.setdefault(family, Counter())


def snapshot() -> dict[str, dict[str, int]]:
    """Every declared family's counts so far (families counting nothing left out)."""
    return {family: dict(counts) for family, counts in _COUNTS.items() if counts}


def families() -> dict[str, Family]:
    """The declared families (sent with the counts: the master declares nothing)."""
    return dict(_FAMILIES)
