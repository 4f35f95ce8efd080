"""The per-site request counters (core.metrics) and the master's text exposition
(pools.metrics): what each request adds, how workers' counters add up, escaping."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from colonnade.core import metrics
from colonnade.pools import metrics as exposition
from colonnade.testing.harness import make_context
from tests.pools import prometheus


def ended(status: int, substatus: int = 0, *, seconds: float = 0.0, sent: int = 0) -> Any:
    ctx = make_context()
    ctx.response.status = status
    ctx.response.substatus = substatus
    ctx.started -= seconds
    ctx.writer.bytes_sent = sent  # type: ignore[attr-defined]
    return ctx


def test_a_request_counts_its_class_duration_bucket_and_bytes() -> None:
    counters = metrics.SiteCounters()
    counters.done(ended(200, seconds=0.003, sent=100))
    counters.done(ended(404, sent=50))
    counters.done(ended(401))
    counters.done(ended(403, 503))  # ip_security: the address is denied
    counters.done(ended(403, 502))  # dynamic_ip: too many requests
    counters.done(ended(403, 0))  # a plain 403 is not a denied client
    values = counters.snapshot()
    assert len(values) == metrics.SNAPSHOT_SIZE
    assert values[metrics.REQUESTS] == [0, 0, 1, 0, 5, 0]
    assert values[metrics.AUTH_FAILURES] == 1
    assert values[metrics.DENIED] == 2
    assert values[metrics.BYTES_OUT] == 150
    buckets = values[metrics.DURATION]
    # 3 ms lies in (0.0025, 0.005]: the third bucket; the others took under 1 ms.
    assert buckets[2] == 1 and buckets[0] == 5 and sum(buckets) == 6
    assert 0.003 <= values[metrics.DURATION_SUM] < 1


def test_an_out_of_range_status_counts_as_other() -> None:
    counters = metrics.SiteCounters()
    counters.done(ended(999))
    assert counters.requests == [1, 0, 0, 0, 0, 0]


def test_the_bucket_ladder_follows_buckets() -> None:
    # count() finds the bucket by comparisons written out; they must agree with
    # BUCKETS as the exposition labels them: a duration equal to a bound is in
    # its bucket (le), a hair above it in the next.
    for i, bound in enumerate(metrics.BUCKETS):
        for elapsed, index in ((bound, i), (bound * 1.0001, i + 1)):
            counters = metrics.SiteCounters()
            counters.count(elapsed, 200, 0, 0)
            assert counters.duration.index(1) == index, (elapsed, index)
    assert len(metrics.SiteCounters().duration) == len(metrics.BUCKETS) + 1


def test_every_status_class_and_the_denied_substatuses() -> None:
    counters = metrics.SiteCounters()
    for status in (100, 199, 200, 299, 300, 399, 400, 499, 500, 599, 99, 600):
        counters.count(0.0, status, 0, 0)
    assert counters.requests == [2, 2, 2, 2, 2, 2]
    for substatus in range(500, 506):
        counters.count(0.0, 403, substatus, 0)
    # The comparison in count() is DENIED_SUBSTATUSES written out.
    assert counters.denied == len(metrics.DENIED_SUBSTATUSES) == 4
    assert frozenset(range(501, 505)) == metrics.DENIED_SUBSTATUSES


def test_a_site_keeps_one_counters_object() -> None:
    # The same object for a site whatever application asks (a reload keeps it).
    assert metrics.for_site("a site") is metrics.for_site("a site")
    assert make_context().app.metrics is metrics.for_site("test")


def test_recycle_reasons_lose_their_numbers() -> None:
    kind = exposition.recycle_kind
    assert kind("100 requests") == "requests"
    assert kind("uptime 3600s") == "uptime"
    assert kind("memory 1048576 bytes") == "memory"
    assert kind("private memory 5 bytes") == "private_memory"
    assert kind("idle timeout") == "idle_timeout"
    assert kind("schedule 03:00") == "schedule"
    assert kind("configuration changed") == "configuration"
    assert kind("command") == "command"
    assert kind("42") == "other"


def test_label_values_are_escaped() -> None:
    assert exposition.escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    out = exposition.Exposition()
    out.family("x", "counter", "Help with \\ and\nnewline.", [({"l": 'q"\n\\'}, 3)], "_total")
    text = out.text()
    assert text == (
        "# HELP x_total Help with \\\\ and\\nnewline.\n"
        "# TYPE x_total counter\n"
        'x_total{l="q\\"\\n\\\\"} 3\n'
    )
    families = prometheus.parse(text)
    assert prometheus.value(families, "x_total", l='q"\n\\') == 3
    assert families["x_total"].help == "Help with \\ and\nnewline."


def worker(sites: dict[str, list[float]], *, expected: bool = True) -> Any:
    return SimpleNamespace(
        pool=SimpleNamespace(name="p"),
        sites=sites,
        received=10,
        http2_errors={"rapid_reset": 1},
        slow_clients={"response": 2},
        caches={"output_cache": {"hits": 2, "misses": 3, "entries": 7}},
        farms={"f": {"m": {"requests": 4, "failures": 1, "in_flight": 2}}},
        counters={"access_log_lines_lost": {"/var/log/a.log": 3}},
        counter_families={"access_log_lines_lost": ("Lines lost, by log.", "log")},
        expected=expected,
    )


def test_departed_workers_keep_their_counters_but_not_their_gauges() -> None:
    counters = metrics.SiteCounters()
    counters.done(ended(200, sent=5))
    snapshot = {"s": counters.snapshot()}
    departed = exposition.Departed()
    departed.exited(worker(snapshot))
    departed.exited(worker(snapshot, expected=False))
    assert departed.sites["s"][metrics.REQUESTS] == [0, 0, 2, 0, 0, 0]
    assert departed.sites["s"][metrics.BYTES_OUT] == 10
    assert departed.received == 20
    assert departed.caches["output_cache"] == {"hits": 4, "misses": 6}
    assert departed.farms[("f", "m", "requests")] == 8
    assert departed.failures == {"p": 1}
    # A snapshot of another layout (a worker of another build) is left out.
    exposition.add_sites(departed.sites, {"s": [1.0, 2.0]})
    assert departed.sites["s"][metrics.REQUESTS] == [0, 0, 2, 0, 0, 0]


def test_render_adds_up_live_and_departed_workers() -> None:
    from colonnade.pools.pool import WorkerState

    counters = metrics.SiteCounters()
    counters.done(ended(200))
    snapshot = {"s": counters.snapshot(executing=1)}  # one still under way
    live = [worker(snapshot), worker(snapshot)]
    for w, state in zip(live, (WorkerState.READY, WorkerState.DRAINING), strict=True):
        w.state, w.connections = state, 3
    pool = SimpleNamespace(name="p", workers=live, queue=[1])
    departed = exposition.Departed()
    departed.exited(worker(snapshot))
    departed.recycled(live[1], "100 requests")  # type: ignore[arg-type]
    text = exposition.render(SimpleNamespace(departed=departed, pools={"p": pool}))  # type: ignore[arg-type]
    families = prometheus.parse(text)
    v = prometheus.value
    assert v(families, "colonnade_requests_total", site="s", code="2xx") == 3
    # Each worker began 2 and answered 1: one executing in each live worker, and
    # none in the departed one (what it had begun ended with it).
    assert v(families, "colonnade_requests_executing", site="s") == 2
    assert v(families, "colonnade_request_duration_seconds_count", site="s") == 3
    assert v(families, "colonnade_received_bytes_total") == 30
    assert v(families, "colonnade_cache_hits_total", cache="output_cache") == 6
    # A gauge is of the moment: the departed worker's entries are gone with it.
    assert v(families, "colonnade_cache_entries", cache="output_cache") == 14
    assert families["colonnade_cache_entries"].kind == "gauge"
    assert v(families, "colonnade_farm_member_requests_total", farm="f", member="m") == 12
    assert v(families, "colonnade_farm_member_in_flight", farm="f", member="m") == 4
    assert v(families, "colonnade_http2_errors_total", cause="rapid_reset") == 3
    assert v(families, "colonnade_slow_clients_total", cause="response") == 6
    # A module's counter (colonnade.core.counters): declared in the workers only.
    assert v(families, "colonnade_access_log_lines_lost_total", log="/var/log/a.log") == 9
    assert families["colonnade_access_log_lines_lost_total"].help == "Lines lost, by log."
    assert v(families, "colonnade_workers", pool="p", state="draining") == 1
    assert v(families, "colonnade_connections_open", pool="p") == 6
    assert v(families, "colonnade_pool_queue_length", pool="p") == 1
    assert v(families, "colonnade_worker_recycles_total", pool="p", reason="requests") == 1


def test_the_executing_requests_are_counted_when_asked() -> None:
    # No counter of its own per request: begun = answered + under way now.
    counters = metrics.for_site("counted-when-asked")
    counters.done(ended(200))
    assert metrics.snapshot({})["counted-when-asked"][metrics.STARTED] == 1
    found = metrics.snapshot({"counted-when-asked": 2, "idle-site": 1})
    assert found["counted-when-asked"][metrics.STARTED] == 3
    assert metrics.for_site("quiet-site") is not None
    assert "quiet-site" not in metrics.snapshot({})  # nothing counted, nothing sent


def test_a_module_counter_is_declared_once_and_sent_only_once_it_counts() -> None:
    from colonnade.core import counters

    first = counters.declare("test_things_seen", "Things seen, by kind.", "kind")
    assert counters.declare("test_things_seen", "Things seen, by kind.", "kind") is first
    assert "test_things_seen" not in counters.snapshot()
    first["odd"] += 2
    assert counters.snapshot()["test_things_seen"] == {"odd": 2}
    assert counters.families()["test_things_seen"] == ("Things seen, by kind.", "kind")
    with pytest.raises(ValueError, match="counter family and label"):
        counters.declare("Bad-Name", "x", "kind")
