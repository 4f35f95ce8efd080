"""Helpers for the farm tests: settings from plain dicts, a fresh registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from colonnade.config.schema import FarmSettings
from colonnade.core import farms as farm_states
from colonnade.providers import farms as farms_module


def settings(members: list[dict[str, Any]] | int, **extra: Any) -> FarmSettings:
    """Farm settings: ``members`` as dicts, or a count of made-up members."""
    if isinstance(members, int):
        members = [{"address": f"http://10.0.0.{i + 1}:8080"} for i in range(members)]
    return msgspec.convert({"members": members, **extra}, FarmSettings)


@pytest.fixture(autouse=True)
def _fresh_farms() -> Iterator[None]:
    # farm_for keeps one farm per name for the process: each test starts empty.
    # The core's registry and the operator's states likewise.
    registries = (farms_module._FARMS, farm_states._FARMS, farm_states._ADMIN)
    saved = [dict(registry) for registry in registries]
    for registry in registries:
        registry.clear()
    yield
    for registry, before in zip(registries, saved, strict=True):
        registry.clear()
        registry.update(before)  # type: ignore[arg-type]
