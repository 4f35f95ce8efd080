"""HTTP/2 by prior knowledge with the process model: the master's front door, a
port spanning pools, and a worker's drain (GOAWAY)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame

from colonnade.management.operations import format_pools
from tests.e2e.h2wire import RawH2, get_headers
from tests.support.wait import PATIENCE

from .conftest import Master, wait_for

pytestmark = pytest.mark.e2e

StartMaster = Callable[..., Master]


def test_h2c_reaches_the_owner_pool_through_the_front_door(start_master: StartMaster) -> None:
    # Pools start on demand: the master accepts the first connection itself, sees the
    # preface instead of a request head, and delivers it to the port's owner pool.
    master = start_master({"default": {}, "api": {}}, apps={"/api": "api"})
    with httpx.Client(http1=False, http2=True, timeout=PATIENCE) as c:
        base = f"http://127.0.0.1:{master.port}"
        first = c.get(f"{base}/page")
        assert first.http_version == "HTTP/2" and first.status_code == 200
        assert first.json()["pool"] == "default"
        # Another pool's application, on this connection: the connection cannot move.
        misdirected = c.get(f"{base}/api/x")
        assert misdirected.status_code == 421
        assert c.get(f"{base}/page2").json()["pool"] == "default"  # the connection serves on
    # Over HTTP/1.1 the same request reaches its pool (hand-off, as always).
    assert master.json("/api/x")["pool"] == "api"


def test_a_recycle_ends_an_http2_connection_with_goaway(start_master: StartMaster) -> None:
    master = start_master({"default": {"start": "always"}})
    before = set(wait_for(lambda: master.pids("default"), PATIENCE, "a worker"))
    with RawH2(master.port) as c:
        # The response head goes out at once, the body after 1.5 s: in flight.
        c.send(c.headers(1, get_headers("/slow?ms=1500&head=1")))
        deadline = time.monotonic() + PATIENCE
        while not any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in c.frames):
            assert c.next_frame(deadline) is not None, "closed"
        assert "recycling" in master.command("recycle", "default")
        outcome = c.outcome(stream=1)
        assert (outcome.kind, outcome.code, outcome.stream) == ("goaway", ErrorCodes.NO_ERROR, 1)
        assert c.response(1) == (200, b"slow:")  # the stream in flight finished
        assert c.next_frame(time.monotonic() + PATIENCE) is None  # then the worker closed
    wait_for(lambda: master.replaced(before, 1), PATIENCE, "the worker replaced")


def test_the_master_reports_http2_errors_by_worker(start_master: StartMaster) -> None:
    master = start_master({"default": {"start": "always"}})
    wait_for(lambda: master.pids("default"), PATIENCE, "a worker")
    with RawH2(master.port) as c:
        c.send(*[c.ping() for _ in range(101)])  # max_pings is 100 per 10 s
        outcome = c.outcome()
        assert (outcome.kind, outcome.code) == ("goaway", ErrorCodes.ENHANCE_YOUR_CALM)
    counted = wait_for(
        lambda: master.pool("default")["workers"][0]["http2_errors"],
        PATIENCE,
        "the worker's HTTP/2 errors reported",
    )
    assert counted == {"ping_flood": 1}
    shown = format_pools(master.status())
    assert "HTTP/2 connections ended for the client's fault: ping_flood 1" in shown


def test_the_master_reports_clients_cut_or_refused_by_worker(start_master: StartMaster) -> None:
    # Not HTTP/2, but the same plumbing: a worker's ServerState.slow_clients reaches
    # `colonnade pools` and /metrics through its Stats.
    master = start_master(
        {"default": {"start": "always"}},
        extra="[server.limits]\nmax_connections_per_client = 1\n",
    )
    wait_for(lambda: master.pids("default"), PATIENCE, "a worker")
    with socket.create_connection(("127.0.0.1", master.port), timeout=PATIENCE) as held:
        held.sendall(b"GET /page HTTP/1.1\r\nHost: t\r\n\r\n")
        assert held.recv(65536).startswith(b"HTTP/1.1 200")  # kept alive: one held
        with socket.create_connection(("127.0.0.1", master.port), timeout=PATIENCE) as over:
            over.sendall(b"GET /page HTTP/1.1\r\nHost: t\r\n\r\n")
            assert over.recv(65536).startswith(b"HTTP/1.1 503")
    counted = wait_for(
        lambda: master.pool("default")["workers"][0]["slow_clients"],
        PATIENCE,
        "the worker's refusals reported",
    )
    assert counted == {"per_client": 1}
    assert "connections cut or refused: per_client 1" in format_pools(master.status())
