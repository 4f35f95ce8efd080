"""Fixtures of the proxy tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import LiveServer
from tests.handlers.proxy.kit import upstream_node


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LiveServer]]:
    """Two Colonnade nodes serving the upstream app, for a module's tests."""
    with (
        upstream_node(tmp_path_factory.mktemp("a")) as a,
        upstream_node(tmp_path_factory.mktemp("b")) as b,
    ):
        yield [a, b]
