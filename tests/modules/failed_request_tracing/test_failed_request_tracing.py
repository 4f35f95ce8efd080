"""Failed request tracing: which requests are traced, what a kept trace holds (every
stage and hook timed, the events modules emit), when it is dropped, the file-count
limit, and the rules' configuration errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.stages import Always, Stage
from colonnade.core.tracestore import list_traces, read_trace
from colonnade.errors import ConfigError
from colonnade.modules.failed_request_tracing import module as tracing_module
from colonnade.modules.failed_request_tracing.config import parse_status_codes
from colonnade.modules.failed_request_tracing.module import FailedRequestTracing
from colonnade.testing import Client
from tests.hosting.support import engine, site_config
from tests.support.wait import PATIENCE, wait_for

APPS = "tests.hosting.apps.wsgi_apps"
MODULES = [
    "rewrite",
    "auth.anonymous",
    "cache.output",
    "http.compression",
    "tracing.failed_requests",
]


def tracing_config(
    tmp_path: Path, rules: list[dict[str, Any]], app: str = "raises", **section: Any
) -> dict[str, Any]:
    return site_config(
        f"{APPS}:{app}",
        modules=MODULES,
        sections={
            "failed_request_tracing": {
                "directory": str(tmp_path / "traces"),
                "rules": rules,
                **section,
            },
            # One rule that rewrites /old/* to /*: its event must show up.
            "rewrite": {
                "rules": [
                    {
                        "name": "old",
                        "pattern": "^old/(.*)",
                        "action": {"type": "rewrite", "url": "/{R:1}"},
                    }
                ]
            },
            "output_cache": {"policy": "for_time_period", "duration": 60},
            "compression": {"dynamic": True, "min_size": 0},
        },
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(config: dict[str, Any], **kw: Any) -> Client:
        client = Client(engine(config), **kw)
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        if not client.loop.is_closed():  # not closed() by the test already
            client.__exit__(None, None, None)


def traces_of(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "traces").rglob("*.json"))


def wait_for_traces(tmp_path: Path, count: int) -> list[Path]:
    return wait_for(
        lambda: (found := traces_of(tmp_path)) and len(found) >= count and found,
        PATIENCE,
        f"{count} trace file(s) under {tmp_path / 'traces'}",
    )


def closed(client: Client) -> None:
    # The module's writer thread finishes what is queued when the engine closes.
    client.__exit__(None, None, None)


def test_a_failing_wsgi_request_keeps_a_trace_of_every_stage_and_hook(
    serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="colonnade.error")
    client = serve(tracing_config(tmp_path, [{"path": "*", "status_codes": "500-599"}]))
    response = client.get("/old/report?x=1", headers={"accept-encoding": "gzip"})
    assert response.status == 500
    assert response.context is not None
    correlation_id = response.context.correlation_id
    [path] = wait_for_traces(tmp_path, 1)
    assert path.parent.name == "s"  # the site's folder
    assert path.name.endswith(f"-{correlation_id}.json")
    data = json.loads(path.read_text())

    assert data["id"] == correlation_id
    assert data["site"] == "s"
    assert data["reason"].startswith("status 500.0 matches '500-599'")
    request = data["request"]
    assert request["status"] == 500
    assert request["method"] == "GET"
    assert request["url"] == "/old/report?x=1"
    assert request["original_path"] == "/old/report"
    assert request["path"] == "/report"  # rewritten
    assert request["handler"] == "handler.wsgi"
    assert request["auth_type"] == "anonymous"

    # Every hook of every stage that ran is there, timed, in order.
    runtime = client.engine.runtimes[0]
    hooks = data["hooks"]
    for row in hooks:
        assert 0 <= row["entry_us"] <= row["exit_us"] <= request["time_taken_ms"] * 1000 + 1
    entries = [row["entry_us"] for row in hooks]
    assert entries == sorted(entries)
    recorded: dict[str, list[str]] = {}
    for row in hooks:
        recorded.setdefault(row["stage"], []).append(row["module"])
    failed_at = Stage.EXECUTE_REQUEST_HANDLER
    for step in runtime.plan.steps:
        runs = step.stage <= failed_at or step.always is Always.YES
        if not runs:
            assert step.stage.name not in recorded
            continue
        modules = [h.owner for h in step.hooks]
        names = recorded[step.stage.name]
        if step.stage is Stage.SEND_RESPONSE:
            # The flush, and inside it each module's SEND_RESPONSE hook.
            modules = [h.owner for h in runtime.plan.send_response] + modules
            assert sorted(names) == sorted(
                "(engine) flush" if m == "(engine)" else m for m in modules
            )
            continue
        assert len(names) == len(modules), step.stage
        for expected, got in zip(modules, names, strict=True):
            if expected != "(engine)":
                assert got == expected
            else:
                assert got.startswith("(engine)") or got == "handler.wsgi"
    [execute] = [row for row in hooks if row["stage"] == "EXECUTE_REQUEST_HANDLER"]
    assert execute["module"] == "handler.wsgi" and execute["outcome"] == "error"
    stages = [row["stage"] for row in data["stages"]]
    assert stages[0] == "BEGIN_REQUEST" and "LOG_REQUEST" not in stages  # log.http is off
    assert "END_REQUEST" in stages  # the output cache's clean-up

    # The events modules emitted, and what the runner saw change.
    kinds = {event["kind"]: event for event in data["events"]}
    assert kinds["rewrite_rule"]["rule"] == "old"
    assert kinds["authenticated"]["module"] == "auth.anonymous"
    assert kinds["cache"]["result"] == "miss"
    assert kinds["handler_changed"]["handler"] == "handler.wsgi"
    error = kinds["module_error"]
    assert error["level"] == "error"
    assert error["module"] == "handler.wsgi"
    assert error["stage"] == "EXECUTE_REQUEST_HANDLER"
    assert error["exception"] == "RuntimeError"
    assert "SECRET" not in path.read_text()  # the exception's message is the log's


def test_a_kept_successful_request_shows_cache_and_compression_events(
    serve: Any, tmp_path: Path
) -> None:
    client = serve(
        tracing_config(tmp_path, [{"path": "/hello*", "status_codes": "200"}], app="hello")
    )
    client.get("/hello", headers={"accept-encoding": "gzip"})
    client.get("/hello", headers={"accept-encoding": "gzip"})
    first, second = (json.loads(p.read_text()) for p in wait_for_traces(tmp_path, 2))
    by_kind = {e["kind"]: e for e in first["events"]}
    assert by_kind["cache"]["result"] == "miss"
    assert by_kind["compression"]["coding"] == "gzip"
    assert {e["kind"]: e for e in second["events"]}["cache"]["result"] == "hit"
    # The hit finished the request in RESOLVE_REQUEST_CACHE: no handler ran.
    assert "EXECUTE_REQUEST_HANDLER" not in {row["stage"] for row in second["hooks"]}
    resolve = [row for row in second["hooks"] if row["stage"] == "RESOLVE_REQUEST_CACHE"]
    assert resolve[0]["outcome"] == "finish"


def test_a_request_no_rule_selects_is_not_traced_and_writes_nothing(
    serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="colonnade.error")
    client = serve(
        tracing_config(
            tmp_path,
            [{"path": "/api/*", "status_codes": "500"}, {"path": "*.php", "status_codes": "404"}],
        )
    )
    response = client.get("/report")
    assert response.status == 500
    assert response.context is not None and response.context.trace is None
    traced = client.get("/api/x")
    assert traced.context is not None and traced.context.trace is not None
    closed(client)
    files = traces_of(tmp_path)
    assert [p.name.rsplit("-", 1)[1] for p in files] == [f"{traced.context.correlation_id}.json"]


def test_a_traced_request_whose_outcome_matches_no_definition_is_dropped(
    serve: Any, tmp_path: Path
) -> None:
    client = serve(
        tracing_config(tmp_path, [{"path": "*", "status_codes": "500", "time_taken": 60}], "hello")
    )
    response = client.get("/hello")
    assert response.status == 200
    assert response.context is not None and response.context.trace is not None  # traced...
    closed(client)
    assert traces_of(tmp_path) == []  # ...and dropped: 200 in well under 60 s


def test_time_taken_and_verbosity_keep_a_trace(serve: Any, tmp_path: Path) -> None:
    client = serve(
        tracing_config(
            tmp_path,
            [
                {"path": "/slow", "time_taken": 0.000001},
                {"path": "/missing", "verbosity": "warning"},
            ],
            "hello",
        )
    )
    client.get("/slow")
    client.get("/missing")  # a 200 from the app: no warning, dropped
    closed(client)
    [kept] = traces_of(tmp_path)
    data = json.loads(kept.read_text())
    assert data["request"]["path"] == "/slow"
    assert data["reason"].startswith("time taken")


def test_the_file_count_limit_keeps_the_newest(
    serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="colonnade.error")
    client = serve(tracing_config(tmp_path, [{"path": "*", "status_codes": "500"}], max_files=3))
    ids = []
    for i in range(7):
        response = client.get(f"/r{i}")
        assert response.context is not None
        ids.append(response.context.correlation_id)
    closed(client)
    files = traces_of(tmp_path)
    assert len(files) == 3
    assert [json.loads(p.read_text())["id"] for p in files] == ids[-3:]
    listed = list_traces(str(tmp_path / "traces"))
    assert [t["id"] for t in listed] == ids[-3:][::-1]  # newest first
    assert listed[0]["url"] == "/r6" and listed[0]["status"] == 500
    assert list_traces(str(tmp_path / "traces"), "other") == []
    shown = read_trace(str(tmp_path / "traces"), ids[-1])
    assert shown is not None and shown["request"]["url"] == "/r6"
    assert read_trace(str(tmp_path / "traces"), ids[0]) is None  # removed
    assert read_trace(str(tmp_path / "traces"), "../../etc/passwd") is None


def test_rules_per_location(serve: Any, tmp_path: Path) -> None:
    config = tracing_config(tmp_path, [], "hello")
    config["locations"] = [
        {
            "path": "s/shop",
            "failed_request_tracing": {"rules": [{"path": "*", "status_codes": "200"}]},
        }
    ]
    client = serve(config)
    outside = client.get("/home")
    inside = client.get("/shop/cart")
    assert outside.context is not None and outside.context.trace is None
    assert inside.context is not None and inside.context.trace is not None
    closed(client)
    assert len(traces_of(tmp_path)) == 1


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("500", ((500, 500, -1),)),
        ("404.2, 500-599", ((404, 404, 2), (500, 599, -1))),
        ("400-499,500.12", ((400, 499, -1), (500, 500, 12))),
    ],
)
def test_status_codes(text: str, spans: tuple[tuple[int, int, int], ...]) -> None:
    assert parse_status_codes(text) == spans


@pytest.mark.parametrize(
    ("rule", "key", "says"),
    [
        ({"status_codes": "5xx"}, "status_codes", "a range (400-599)"),
        ({"status_codes": "599-500"}, "status_codes", "low-high"),
        ({"status_codes": "99"}, "status_codes", "a status"),
        ({"path": "*"}, "status_codes", "keeps no trace"),
        ({"status_codes": "500", "verbosity": "loud"}, "verbosity", "warning"),
        ({"status_codes": "500", "time_taken": -1}, "time_taken", ">= 0"),
    ],
)
def test_bad_rules_are_refused_with_their_key(
    tmp_path: Path, rule: dict[str, Any], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        engine(tracing_config(tmp_path, [rule]))
    text = str(caught.value)
    assert f"failed_request_tracing.rules[0].{key}" in text
    assert says in text


def test_the_folder_is_set_in_the_server_file_only(tmp_path: Path) -> None:
    config = tracing_config(tmp_path, [])
    config["locations"] = [
        {"path": "s/x", "failed_request_tracing": {"directory": "/tmp/elsewhere"}}
    ]
    with pytest.raises(ConfigError, match="directory"):
        engine(config)


def tracer(client: Client) -> FailedRequestTracing:
    [module] = [m for m in client.engine.runtimes[0].modules if isinstance(m, FailedRequestTracing)]
    return module


def test_paths_no_rule_selects_are_remembered_within_a_bound(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing_module, "MAX_UNTRACED", 3)
    client = serve(tracing_config(tmp_path, [{"path": "/api/*", "status_codes": "200"}], "hello"))
    module = tracer(client)
    for path in ("/a", "/b", "/a"):
        client.get(path)
    assert module.untraced == {"/a", "/b"}
    traced = client.get("/api/x")
    assert traced.context is not None and traced.context.trace is not None
    assert "/api/x" not in module.untraced  # asked again each time: it is traced
    for path in ("/c", "/d", "/e"):
        client.get(path)
    assert len(module.untraced) <= 3 and "/e" in module.untraced


def test_a_failing_trace_source_leaves_the_request_untraced(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: FailedRequestTracing, ctx: Any) -> None:
        raise RuntimeError("rule store gone")

    monkeypatch.setattr(FailedRequestTracing, "start_trace", broken)
    client = serve(tracing_config(tmp_path, [{"path": "*", "status_codes": "200"}], "hello"))
    response = client.get("/x")
    assert response.status == 200 and response.text == "Hello, world!"
    assert response.context is not None and response.context.trace is None
    assert "starting a trace failed" in caplog.text
