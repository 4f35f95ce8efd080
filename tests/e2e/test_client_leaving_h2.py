"""HTTP/2: a stream whose client resets it (RST_STREAM CANCEL), or whose connection
is lost, while its request waits (the application's own await, a window that does
not open) ends as a client's leaving, as on HTTP/1.1 (test_client_leaving.py): its
always-run stages run, it is logged once with Win32 status 64, with no error line,
and the connection goes on (a reset) or is let go (a loss). The client is the
``h2`` library's, over a real socket, by prior knowledge (h2c).

And a request a stop's deadline cuts short (HTTP/1.1 and HTTP/2) is logged too, as
the server's abort: Win32 status 1236 (ERROR_CONNECTION_ABORTED), not the client's
64; the stop still ends within its deadline and the moment it gives those requests
to log, even where an application will not let go of its task."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from tests.e2e.conftest import LiveServer, win32_statuses
from tests.e2e.test_client_leaving import _lose, _site, let_go, logged, proxy_site, quiet
from tests.e2e.wire import Conn
from tests.support.wait import PATIENCE, wait_for

#: The ASGI app of these tests beside test_client_leaving's: one that will not
#: let its task be cancelled (it swallows the cancellation and sleeps on), one
#: that cancels itself (raises CancelledError of its own).
MORE_ASGI = """
import asyncio
from pathlib import Path


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/stubborn"):
        Path(__file__).with_name("sleeping").touch()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)
    if scope["path"].endswith("/self-cancel"):
        raise asyncio.CancelledError("the application's own")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"more"})
"""


class H2Client:
    """An ``h2`` client connection that reads nothing it is not asked to: it never
    opens a window, so a response of more than 64 KiB waits for one."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        # The connection's window wide open: only a stream's own (64 KiB) holds
        # its response back, and the next request on the connection is answered.
        self.conn.increment_flow_control_window(2**31 - 1 - 65_535)
        self._flush()
        self.events: list[h2.events.Event] = []  # received, not yet looked at

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path: str) -> int:
        stream = self.conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", path)]
        self.conn.send_headers(stream, headers, end_stream=True)
        self._flush()
        return stream

    def reset(self, stream: int) -> None:
        self.conn.reset_stream(stream, ErrorCodes.CANCEL)
        self._flush()

    def until(self, done: Callable[[h2.events.Event], bool]) -> h2.events.Event:
        """Read until an event ``done`` accepts (and return it)."""
        end = time.monotonic() + PATIENCE
        while time.monotonic() < end:
            while self.events:
                event = self.events.pop(0)
                if done(event):
                    return event
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.events.extend(self.conn.receive_data(data))
            self._flush()
        raise AssertionError("waited in vain for the server's frames")

    def head(self, stream: int) -> int:
        """The status of ``stream``'s response."""
        event = self.until(
            lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream
        )
        assert isinstance(event, h2.events.ResponseReceived)
        return int(dict(event.headers)[b":status"])

    def body(self, stream: int) -> bytes:
        """The rest of ``stream``'s response (a short one)."""
        data = b""
        while True:
            event = self.until(
                lambda e: (
                    isinstance(e, (h2.events.DataReceived, h2.events.StreamEnded))
                    and e.stream_id == stream
                )
            )
            if isinstance(event, h2.events.StreamEnded):
                return data
            assert isinstance(event, h2.events.DataReceived)
            data += event.data


def _stream_waits(state: Any) -> bool:
    """A stream's task waits for its window (or the socket) to let its body out."""
    return any(
        stream._waiter is not None and not stream._waiter.done()
        for conn in state.connections
        for stream in getattr(conn, "streams", {}).values()
    )


def _flag(tmp_path: Path) -> Callable[[Any], bool]:
    flag = tmp_path / "code" / "sleeping"
    return lambda state: flag.exists()


def _leave(
    server: LiveServer,
    target: str,
    waiting: Callable[[Any], bool],
    log: Path,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """GET ``target`` over HTTP/2, then reset its stream (``how`` = "reset") or lose
    the connection ("lost") once ``waiting(state)``, and check the request's end."""
    with H2Client(server.port) as client:
        stream = client.get(target)
        if "sleep-first" not in target:
            assert client.head(stream) == 200
        wait_for(lambda: server.look(waiting), PATIENCE, "the request waiting")
        if how == "reset":
            client.reset(stream)
        else:
            assert server.look(_lose) == 1
        stem = logged(log, target)
        if how == "reset":
            # The connection goes on: another request on it is answered.
            probe = client.get("/hello.txt")
            assert client.head(probe) == 200 and client.body(probe) == b"hello"
    if how == "lost":
        let_go(server)
    assert win32_statuses(log, stem) == ["64"]
    quiet(caplog)


def _h2_site(tmp_path: Path, **sections: Any) -> tuple[dict[str, Any], Path]:
    config, log = _site(tmp_path, **sections)
    code = tmp_path / "code"
    (code / "hello.txt").write_text("hello")
    (code / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    # A name of its own: a module imported by an earlier test is not this one's.
    name = f"more_asgi_{uuid.uuid4().hex[:12]}"
    (code / f"{name}.py").write_text(MORE_ASGI)
    config["sites"][0]["applications"].append(
        {"path": "/more", "root": "code", "app": f"{name}:app", "app_dir": "code"}
    )
    return config, log


HOW = pytest.mark.parametrize("how", ["reset", "lost"])


@HOW
@pytest.mark.parametrize("target", ["/asgi/sleep", "/asgi/sleep-first"])
def test_an_asgi_app_awaiting_when_its_stream_ends_is_interrupted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, target: str, how: str
) -> None:
    config, log = _h2_site(tmp_path)
    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        _leave(server, target, _flag(tmp_path), log, caplog, how)


@HOW
@pytest.mark.parametrize(
    ("target", "sections"),
    [
        ("/asgi/stream", {}),
        ("/wsgi/stream", {"wsgi": {"blocking": True}}),
        ("/wsgi/stream", {"wsgi": {"blocking": False}}),
        ("/big.bin", {}),
    ],
    ids=["asgi", "wsgi-pool", "wsgi-inline", "static"],
)
def test_a_stream_waiting_for_its_window_is_logged(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    target: str,
    sections: dict[str, Any],
    how: str,
) -> None:
    config, log = _h2_site(tmp_path, **sections)
    with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
        _leave(server, target, _stream_waits, log, caplog, how)


@HOW
def test_a_proxied_stream_waiting_for_its_window_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello")  # the probe after a reset
    with proxy_site(tmp_path) as (config, log):
        config["server"]["modules"].append("handler.static")
        config["handlers"].insert(0, {"path": "/hello.txt", "handler": "handler.static"})
        config["sites"][0]["root"] = "www"
        with caplog.at_level(logging.DEBUG), LiveServer(config, tmp_path).start() as server:
            _leave(server, "/big.bin", _stream_waits, log, caplog, how)


def test_an_application_cancelling_itself_resets_its_stream_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Its own cancellation is not a client's leaving: it goes on through the walk
    # (no log line, as before), and its stream is reset, where it was left open,
    # unanswered; the connection goes on.
    config, log = _h2_site(tmp_path)
    with LiveServer(config, tmp_path).start() as server, H2Client(server.port) as client:
        stream = client.get("/more/self-cancel")
        event = client.until(
            lambda e: (
                isinstance(e, (h2.events.StreamReset, h2.events.ResponseReceived))
                and e.stream_id == stream
            )
        )
        assert isinstance(event, h2.events.StreamReset)
        assert event.error_code == ErrorCodes.INTERNAL_ERROR
        probe = client.get("/hello.txt")
        assert client.head(probe) == 200 and client.body(probe) == b"hello"
    assert " /more/self-cancel " not in log.read_text()


def test_an_application_cancelling_itself_over_http1_drops_the_connection(
    tmp_path: Path,
) -> None:
    # The same over HTTP/1.1, unchanged (a guard): no answer, no log line, and the
    # connection is dropped, as it cannot go on without an answer.
    config, log = _h2_site(tmp_path)
    with LiveServer(config, tmp_path).start() as server, Conn(server.port) as conn:
        conn.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.response().body == b"hello"
        conn.send(b"GET /more/self-cancel HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.closed()
    assert " /hello.txt " in log.read_text()
    assert " /more/self-cancel " not in log.read_text()


def _stopped_within(server: LiveServer, seconds: float) -> float:
    began = time.monotonic()
    server.begin_stop()
    server.thread.join(PATIENCE)
    assert not server.thread.is_alive(), "the stop ends"
    took = time.monotonic() - began
    assert took < seconds, took
    return took


GRACEFUL = 0.5


@pytest.mark.parametrize("version", ["1.1", "2"])
def test_a_request_a_stops_deadline_cuts_short_is_logged_as_the_servers_abort(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    config, log = _h2_site(tmp_path)
    config["server"]["timeouts"] = {"graceful": GRACEFUL}
    server = LiveServer(config, tmp_path).start()
    try:
        with caplog.at_level(logging.DEBUG):
            if version == "2":
                client: Any = H2Client(server.port)
                client.get("/asgi/sleep-first")
            else:
                client = Conn(server.port)
                client.send(b"GET /asgi/sleep-first HTTP/1.1\r\nHost: t\r\n\r\n")
            with client:
                wait_for(lambda: server.look(_flag(tmp_path)), PATIENCE, "the app asleep")
                # The deadline, then at most the moment given to log (min(1 s, deadline)).
                _stopped_within(server, GRACEFUL + GRACEFUL + 1.0)
    finally:
        server.stop()
    assert win32_statuses(log, " /asgi/sleep-first ") == ["1236"]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "still busy" in warned[0], warned


def test_a_stop_does_not_wait_on_an_application_that_will_not_let_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # It swallows the abort's cancellation and sleeps on: its request cannot be
    # logged (its walk never gets back), and the stop ends all the same, within its
    # deadline and the moment it gives aborted requests to log, with a warning.
    # (The stop is run on the server's loop here, which goes on after it, so that
    # the task can be ended afterwards: a process would exit, and asyncio say that
    # a pending task was destroyed.)
    config, log = _h2_site(tmp_path)
    with LiveServer(config, tmp_path).start() as server:
        with caplog.at_level(logging.DEBUG), H2Client(server.port) as client:
            client.get("/more/stubborn")
            wait_for(lambda: server.look(_flag(tmp_path)), PATIENCE, "the app asleep")
            began = time.monotonic()
            stop = asyncio.run_coroutine_threadsafe(server.server.stop(GRACEFUL), server.loop)
            stop.result(PATIENCE)
            took = time.monotonic() - began
            assert took < GRACEFUL + GRACEFUL + 1.0, took
        # Still at it; a second cancellation (bare: the application's own kind)
        # ends it, unlogged.
        assert server.look(lambda state: [task.cancel() for task in state.ending]) == [True]
        wait_for(lambda: server.look(lambda state: not state.ending), PATIENCE, "the task ended")
    assert " /more/stubborn " not in (log.read_text() if log.exists() else "")
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("left unlogged" in w for w in warned), warned
