"""Fixtures of the transport tests: a site folder, a test CA per test, and servers
stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from tests.e2e.conftest import LiveServer, www

__all__ = ["ca", "servers", "www"]  # www: the e2e tests' site folder, shared


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    started: list[LiveServer] = []
    yield started
    for server in started:
        server.stop()
