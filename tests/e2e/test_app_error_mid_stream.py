"""An application that fails in the middle of a streamed response has its
connection aborted by the server (the client must not take a truncated body as
whole), and its access log line says so as IIS does for a connection the server
ends: Win32 status 1236 (ERROR_CONNECTION_ABORTED), not 0 (a whole answer) nor
64 (the client's leaving). Over a real socket: the abort's connection_lost comes
at a later turn of the loop, while the failed request may still be running its
always-run stages."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import h2.events as h2_events
import pytest

from colonnade import Context, Module, Stage, hook
from tests.e2e.conftest import LiveServer, win32_statuses
from tests.e2e.test_client_leaving_h2 import H2Client
from tests.e2e.wire import Conn
from tests.hosting.support import EXTRA, site_config
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

ASGI = "tests.hosting.apps.asgi_apps:raise_mid_stream"
WSGI = "tests.hosting.apps.wsgi_apps:raises_in_iteration"


class SlowRelease(Module):
    """An always-run stage that awaits (as a session store's save would): the
    abort's connection_lost comes while the failed request is still in it."""

    id = "test.slow_release"

    @hook(Stage.RELEASE_REQUEST_STATE)
    async def on_release_request_state(self, ctx: Context) -> None:
        await asyncio.sleep(0.05)


def _failed(
    tmp_path: Path, app: str, *modules: str, h2: bool = False, **sections: Any
) -> list[str]:
    """GET ``/`` from ``app``, which fails mid-stream: the client sees the head and
    the first chunk, then the connection's end (no last chunk), or on HTTP/2
    (``h2``) the stream's reset. The request's Win32 status in the access log."""
    log = tmp_path / "access.log"
    logging_section = {"http_logging": {"target": str(log), "buffer_size": 0}}
    config = site_config(app, modules=[*modules, "log.http"], sections=sections | logging_section)
    with LiveServer(config, tmp_path, [*EXTRA, SlowRelease]).start() as server:
        if h2:
            with H2Client(server.port) as client:
                stream = client.get("/")
                assert client.head(stream) == 200
                reset = client.until(lambda e: isinstance(e, h2_events.StreamReset))
                assert reset.stream_id == stream  # type: ignore[attr-defined]
        else:
            with Conn(server.port) as conn:
                conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert conn.closed()
                assert conn.buf.startswith(b"HTTP/1.1 200 ")
                assert b"partial" in conn.buf
                assert not conn.buf.endswith(b"0\r\n\r\n")
        wait_for(lambda: log.exists() and " / " in log.read_text(), PATIENCE, "the line")
    return win32_statuses(log, " / ")


def test_an_asgi_app_failing_mid_stream_is_logged_as_the_servers_abort(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        assert _failed(tmp_path, ASGI) == ["1236"]
    assert any("unhandled RuntimeError" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("blocking", [True, False], ids=["pool", "inline"])
def test_a_wsgi_app_failing_mid_stream_is_logged_as_the_servers_abort(
    tmp_path: Path, blocking: bool
) -> None:
    assert _failed(tmp_path, WSGI, wsgi={"blocking": blocking}) == ["1236"]


def test_the_abort_reaching_a_request_still_ending_does_not_blame_the_client(
    tmp_path: Path,
) -> None:
    # Without the fix: 64, the abort's own connection end taken for the client's.
    assert _failed(tmp_path, ASGI, "test.slow_release") == ["1236"]


@pytest.mark.parametrize("modules", [(), ("test.slow_release",)], ids=["now", "awaiting"])
def test_an_http2_stream_failing_mid_stream_is_logged_as_the_servers_abort(
    tmp_path: Path, modules: tuple[str, ...]
) -> None:
    # Its stream is reset (INTERNAL_ERROR), the connection goes on.
    assert _failed(tmp_path, ASGI, *modules, h2=True) == ["1236"]
