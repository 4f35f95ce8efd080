"""Helpers for the farm tests: settings from plain dicts, a fresh registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from colonnade.config.schema import FarmSettings
from colonnade.providers import farms as farms_module


def settings(members: list[dict[str, Any]] | int, **extra: Any) -> FarmSettings:
    """Farm settings: ``members`` as dicts, or a count of made-up members."""
    if isinstance(members, int):
        members = [{"address": f"http://10.0.0.{i + 1}:8080"} for i in range(members)]
    return msgspec.convert({"members": members, **extra}, FarmSettings)


@pytest.fixture(autouse=True)
def _fresh_farms() -> Iterator[None]:
    # farm_for keeps one farm per name for the process: each test starts empty.
    saved = dict(farms_module._FARMS)
    farms_module._FARMS.clear()
    yield
    farms_module._FARMS.clear()
    farms_module._FARMS.update(saved)
