"""handler.proxy against a deliberately broken upstream: every way of failing
is a 502 (or a 504, or a cut connection once the response began), the
connection is never pooled again, and nothing leaks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.handlers.proxy.broken import BrokenUpstream
from tests.handlers.proxy.kit import front

pytestmark = pytest.mark.e2e

#: Failed upstream requests in the leak test. The issue asks for 10,000: run it
#: with COLONNADE_PROXY_LEAK_REQUESTS=10000 (about 30 s on the test machine, each
#: failure a new upstream connection and an error log line; 2,000 by default).
FAILED_REQUESTS = int(os.environ.get("COLONNADE_PROXY_LEAK_REQUESTS", "2000"))


@pytest.fixture(scope="module")
def broken() -> Iterator[BrokenUpstream]:
    with BrokenUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def proxy(broken: BrokenUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # A patient front end: every bad answer below is immediate, so no test of it
    # depends on a timeout. (With 0.5 s, a loaded machine once turned the leak
    # test's prompt 502s into a 504: the upstream's thread had not answered yet.)
    root = tmp_path_factory.mktemp("front")
    with front(root, f"http://127.0.0.1:{broken.port}", timeout=30) as server:
        yield server


@pytest.fixture(scope="module")
def hasty(broken: BrokenUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A front end with a 0.5 s timeout, for the tests of silence and trickling."""
    root = tmp_path_factory.mktemp("hasty")
    with front(root, f"http://127.0.0.1:{broken.port}", timeout=0.5) as server:
        yield server


def get(server: LiveServer, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=30)


@pytest.mark.parametrize(
    "path",
    ["/reset", "/close", "/half", "/halfhead", "/garbage", "/status", "/hugehead", "/badchunk"],
)
def test_bad_answers_are_502_3(
    proxy: LiveServer, broken: BrokenUpstream, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    got = get(proxy, path)
    assert got.status_code == 502
    assert f"upstream 127.0.0.1:{broken.port}" in caplog.text  # logged with the upstream
    # The next request gets a good answer on a connection of its own.
    before = broken.connections
    assert get(proxy, "/ok").text == "ok"
    assert broken.connections == before + 1


def test_a_silent_upstream_is_504(hasty: LiveServer) -> None:
    got = get(hasty, "/stall")
    assert got.status_code == 504


def test_a_trickling_head_is_502_within_the_timeout(hasty: LiveServer) -> None:
    got = get(hasty, "/trickle")
    assert got.status_code == 502
    assert got.elapsed.total_seconds() < 5


def test_a_body_that_stalls_after_its_head_is_504(
    hasty: LiveServer, broken: BrokenUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # A small body the proxy would hand on whole: its head came, then part of
    # it, then nothing. The wait is a body's (no byte within the timeout), not
    # the head's.
    got = get(hasty, "/bodystall")
    assert got.status_code == 504
    assert f"upstream 127.0.0.1:{broken.port}: no byte from the upstream in 0.5 s" in caplog.text


def test_a_small_body_in_pieces_is_handed_on_whole(
    proxy: LiveServer, broken: BrokenUpstream
) -> None:
    with Conn(proxy.port) as conn:
        for _ in range(2):
            before = broken.connections
            conn.send(b"GET /pieces HTTP/1.1\r\nHost: x\r\n\r\n")
            got = conn.response()
            assert got.status == 200
            assert got.body == b"one two three!"
            assert got.headers["content-length"] == "14"
            # The upstream connection is kept for the next request.
            assert broken.connections <= before + 1
        assert broken.connections == before


def test_each_wait_for_a_small_body_is_bounded_alone(hasty: LiveServer) -> None:
    # Four pieces 0.15 s apart: longer than the 0.5 s timeout in all, but no wait
    # for a byte of the body is as long (the head's deadline no longer counts).
    got = get(hasty, "/pieces?0.15")
    assert got.status_code == 200
    assert got.text == "one two three!"


def test_an_upstream_closing_mid_body_on_a_reused_connection_is_not_retried(
    proxy: LiveServer, broken: BrokenUpstream
) -> None:
    with Conn(proxy.port) as conn:
        conn.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 200
        before = broken.connections
        conn.send(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 502
        # Part of the answer came: the request is not sent again elsewhere.
        assert broken.connections == before


def test_a_failure_mid_response_cuts_the_connection(proxy: LiveServer) -> None:
    with Conn(proxy.port) as conn:
        conn.send(b"GET /halfbig HTTP/1.1\r\nHost: x\r\n\r\n")
        head = conn.response(head_only=True)
        assert head.status == 200
        assert head.headers["content-length"] == "10000000"
        received = len(conn.buf)
        while conn._fill():
            received = len(conn.buf)
        assert received < 10_000_000  # cut, never completed


def test_bytes_after_a_response_are_not_taken_for_the_next(
    proxy: LiveServer, broken: BrokenUpstream
) -> None:
    assert get(proxy, "/extra").text == "ok"
    before = broken.connections
    assert get(proxy, "/ok").text == "ok"
    assert broken.connections == before + 1


def test_keep_alive_with_a_good_upstream(proxy: LiveServer, broken: BrokenUpstream) -> None:
    get(proxy, "/ok")
    before = broken.connections
    for _ in range(20):
        assert get(proxy, "/ok").text == "ok"
    assert broken.connections == before


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_fd_leak_after_many_failures(proxy: LiveServer, broken: BrokenUpstream) -> None:
    kinds = [b"/reset", b"/close", b"/garbage", b"/half", b"/hugehead", b"/status"]
    with Conn(proxy.port) as conn:
        conn.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 200
        before = open_fds()
        for i in range(FAILED_REQUESTS):
            conn.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % kinds[i % len(kinds)])
            assert conn.response().status == 502
        conn.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().status == 200
        after = open_fds()
    # The front's pool holds one idle connection at most (the last /ok), the broken
    # upstream's side of it one more.
    assert after - before <= 2, (before, after)
    assert broken.open <= 2
