"""What every WSGI handler test starts from: no recorded events, a closed gate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hosting.apps import wsgi_apps


@pytest.fixture(autouse=True)
def _clear_events() -> Iterator[None]:
    wsgi_apps.EVENTS.clear()
    wsgi_apps.GATE.clear()
    yield
    wsgi_apps.GATE.set()  # a stream still waiting on it goes on, and ends
    wsgi_apps.EVENTS.clear()
