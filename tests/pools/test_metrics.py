"""GET /metrics over a real master with two workers: the control socket's HTTP API
and the admin binding, read with a strict parser of the text format."""

from __future__ import annotations

import http.client
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from colonnade.management import cli
from tests.e2e.wire import Conn
from tests.support.ports import free_port
from tests.support.wait import PATIENCE

from . import prometheus
from .conftest import MODULES, Master, get, wait_for
from .test_admin_api import OPENED, UnixConnection

pytestmark = pytest.mark.e2e

StartMaster = Callable[..., Master]

#: A site name with every character the label format escapes (from the configuration).
EVIL = 'evil "quoted" \\ back\nslash'
EVIL_TOML = 'evil \\"quoted\\" \\\\ back\\nslash'
TOKEN = "m3trics-token"


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


@pytest.fixture
def served(start_master: StartMaster, tmp_path: Path) -> Iterator[Master]:
    (tmp_path / "tokens").write_text(f"ops {TOKEN}\n")
    (tmp_path / "tokens").chmod(0o600)
    admin, evil = free_port(), free_port()
    master = start_master(
        {"default": {"start": "always"}},
        workers=2,
        modules=[*MODULES, "security.request_filtering"],
        extra=(
            f'[admin]\nbind = "127.0.0.1:{admin}"\ntoken_file = "tokens"\n\n'
            f'[[sites]]\nname = "{EVIL_TOML}"\nbindings = ["http://127.0.0.1:{evil}"]\n'
            'root = "www"\n'
        ),
    )
    master.admin_port = admin  # type: ignore[attr-defined]
    master.evil_port = evil  # type: ignore[attr-defined]
    wait_for(
        lambda: (
            [w["state"] for p in master.status()["pools"] for w in p["workers"]]
            == ["ready", "ready"]
        ),
        PATIENCE,
        "two ready workers",
    )
    wait_for(lambda: "admin API on" in master.log(), PATIENCE, "the admin binding")
    yield master


def scrape(conn: http.client.HTTPConnection, **headers: str) -> tuple[int, str, str]:
    conn.request("GET", "/metrics", headers=headers)
    response = conn.getresponse()
    return response.status, response.headers["content-type"], response.read().decode()


def request(port: int, path: str) -> tuple[int, bytes]:
    with Conn(port, timeout=PATIENCE) as c:
        c.send(get(path))
        response = c.response()
    return response.status, response.body


def test_metrics_summed_across_workers(served: Master, capsys: pytest.CaptureFixture[str]) -> None:
    # Requests on new connections until both workers have answered some.
    pids: list[int] = []

    def both_answered() -> bool:
        status, body = request(served.port, "/hello")
        assert status == 200
        pids.append(json.loads(body)["pid"])
        return len(set(pids)) == 2

    wait_for(both_answered, PATIENCE, "requests answered by both workers")
    ok = len(pids)
    for _ in range(3):
        assert request(served.port, "/web.toml")[0] == 404  # hidden segment: 404.8
    for _ in range(2):
        assert request(served.port, "/slow?ms=nan")[0] == 500  # the handler raises
    assert request(served.port, "/slow?ms=300")[0] == 200
    for _ in range(2):
        assert request(served.evil_port, "/x")[0] == 200  # type: ignore[attr-defined]

    # `colonnade metrics` prints the same exposition (checked below through the API).
    assert cli.main(["metrics", "--control", served.control]) == 0
    printed = capsys.readouterr().out
    assert "# TYPE colonnade_requests_total counter" in printed
    assert 'colonnade_requests_total{site="main",code="5xx"} 2' in printed

    status, content_type, text = scrape(UnixConnection(served.control))
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = prometheus.parse(text)
    # The hostile site name, escaped as the format says, and read back whole.
    assert 'site="evil \\"quoted\\" \\\\ back\\nslash"' in text
    v = prometheus.value
    assert v(families, "colonnade_requests_total", site=EVIL, code="2xx") == 2
    main = ok + 3 + 2 + 1
    assert v(families, "colonnade_requests_total", site="main", code="2xx") == ok + 1
    assert v(families, "colonnade_requests_total", site="main", code="4xx") == 3
    assert v(families, "colonnade_requests_total", site="main", code="5xx") == 2
    assert v(families, "colonnade_requests_total", site="main", code="3xx") == 0
    assert v(families, "colonnade_requests_executing", site="main") == 0
    assert families["colonnade_requests_total"].kind == "counter"

    # The histogram: cumulative buckets ending in +Inf = _count; the 300 ms request
    # lies above the 0.25 s bucket.
    hist = families["colonnade_request_duration_seconds"]
    assert hist.kind == "histogram"
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in hist.samples.items()
        if name.endswith("_bucket") and dict(labels)["site"] == "main"
    )
    counts = [count for _, count in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == math.inf
    name = "colonnade_request_duration_seconds"
    assert buckets[-1][1] == v(families, f"{name}_count", site="main") == main
    assert v(families, f"{name}_bucket", site="main", le="0.25") <= main - 1
    assert v(families, f"{name}_bucket", site="main", le="+Inf") == main
    assert 0.3 <= v(families, f"{name}_sum", site="main") < 60

    assert v(families, "colonnade_workers", pool="default", state="ready") == 2
    assert v(families, "colonnade_workers", pool="default", state="draining") == 0
    assert v(families, "colonnade_pool_queue_length", pool="default") == 0
    assert v(families, "colonnade_response_bytes_total", site="main") > 0
    # At least the request lines and Host headers of every request.
    least = sum(len(get(p)) for p in ["/hello"] * ok + ["/web.toml"] * 3)
    assert v(families, "colonnade_received_bytes_total") >= least

    # The admin binding: signed in, the same numbers; not signed in, 401.
    conn = http.client.HTTPConnection("127.0.0.1", served.admin_port, timeout=PATIENCE)  # type: ignore[attr-defined]
    try:
        status, _, body = scrape(conn)
        assert status == 401 and json.loads(body) == {"ok": False, "error": "not signed in"}
        status, _, body = scrape(conn, Authorization="Bearer wrong")
        assert status == 403
        status, _, body = scrape(conn, Authorization=f"Bearer {TOKEN}")
        assert status == 200
        again = prometheus.parse(body)
        assert v(again, "colonnade_requests_total", site="main", code="4xx") == 3
    finally:
        conn.close()

    # A recycle: the counters of the workers gone stay in the sums.
    before = set(served.pids("default"))
    conn2 = UnixConnection(served.control)
    conn2.request("POST", "/api/pools/default/recycle")
    assert conn2.getresponse().status == 200
    wait_for(lambda: served.replaced(before, 2), PATIENCE, "two new workers")
    _, _, text = scrape(UnixConnection(served.control))
    after = prometheus.parse(text)
    assert v(after, "colonnade_requests_total", site="main", code="2xx") == ok + 1
    assert v(after, "colonnade_requests_total", site="main", code="5xx") == 2
    assert v(after, f"{name}_count", site="main") == main
    assert v(after, "colonnade_worker_recycles_total", pool="default", reason="command") == 2
    assert v(after, "colonnade_worker_failures_total", pool="default") == 0


def test_access_log_lines_lost_reach_the_metrics_and_outlive_their_worker(
    start_master: StartMaster,
) -> None:
    # /dev/full: every write fails with ENOSPC, as on a full disk; every line is lost.
    master = start_master(
        {"default": {"start": "always"}},
        workers=2,
        modules=[*MODULES, "log.http"],
        extra='[http_logging]\ntarget = "/dev/full"\nbuffer_size = 0\n',
    )
    wait_for(lambda: len(master.pids("default")) == 2, PATIENCE, "two workers")
    family = "colonnade_access_log_lines_lost_total"

    def lost() -> float:
        _, _, text = scrape(UnixConnection(master.control))
        families = prometheus.parse(text)
        if family not in families:  # no worker has reported yet
            return 0
        assert families[family].kind == "counter"
        return prometheus.value(families, family, log="/dev/full")

    # Each worker lost the log's four directive lines (#Software, #Version, #Date,
    # #Fields) when it opened the log.
    wait_for(lambda: lost() == 2 * 4, PATIENCE, "both workers' header lines counted")
    for _ in range(5):
        assert request(master.port, "/hello")[0] == 200
    wait_for(lambda: lost() == 8 + 5, PATIENCE, "five more lines lost")
    # A recycle: the lines the old workers lost stay in the sum, the new ones add theirs.
    before = set(master.pids("default"))
    master.command("recycle", "default")
    wait_for(lambda: master.replaced(before, 2), PATIENCE, "two new workers")
    wait_for(lambda: lost() == 8 + 5 + 8, PATIENCE, "the new workers' header lines")
