"""The walk: stage order, FINISH, always-run stages, errors becoming 500s."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from colonnade.core.stages import STAGES, Always, Stage
from colonnade.errors import ClientDisconnectedError, ServerAbortedError
from colonnade.modules.http_logging.fields import win32_status
from colonnade.testing import Client, build_engine

from .conftest import WALK, Echo, Every, engine_config


def client(traces: Path | None = None) -> Client:
    """``traces``: a failed-request-tracing rule selects every request, so that
    the traced walk runs it (its trace files go there)."""
    config = engine_config("test.every", "test.echo")
    if traces is not None:
        config["server"]["modules"].append("tracing.failed_requests")  # type: ignore[index]
        config["failed_request_tracing"] = {
            "directory": str(traces),
            "rules": [{"path": "*", "status_codes": "100-999"}],
        }
    return Client(build_engine(config, modules=[Every, Echo]))


def trail(response) -> list[str]:  # type: ignore[no-untyped-def]
    return response.context.items["trail"]


def test_every_stage_runs_in_order_with_post_stages() -> None:
    with client() as c:
        r = c.get("/x")
    assert r.status == 200
    expected = [s.name for s in WALK]
    handler_at = expected.index("EXECUTE_REQUEST_HANDLER") + 1
    expected.insert(handler_at, "HANDLER")
    assert trail(r) == expected
    # The body was built in the handler: it shows the walk up to there.
    assert r.body.decode().split(",") == expected[: handler_at + 1]


@pytest.mark.parametrize("stage", [s for s in WALK if s < Stage.SEND_RESPONSE])
def test_finish_skips_to_the_always_stages(stage: Stage) -> None:
    with client() as c:
        r = c.get("/x", headers={"x-finish-at": stage.name})
    assert r.status == 403
    seen = trail(r)
    index = seen.index(stage.name)
    after = seen[index + 1 :]
    acquired = stage >= Stage.ACQUIRE_REQUEST_STATE
    expected = [
        s.stage.name
        for s in STAGES
        if s.stage > stage
        and (s.always is Always.YES or (s.always is Always.IF_STATE and acquired))
    ]
    assert after == expected
    assert "HANDLER" not in seen or stage > Stage.EXECUTE_REQUEST_HANDLER


@pytest.mark.parametrize("stage", [s for s in WALK if s < Stage.SEND_RESPONSE])
def test_exception_becomes_500_with_correlation_id(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="colonnade.error"), client() as c:
        r = c.get("/x", headers={"x-fail-at": stage.name})
    assert r.status == 500
    match = re.search(r"Correlation id: <code>([0-9a-f]{12})</code>", r.text)
    assert match, r.text
    assert "Traceback" not in r.text and "boom" not in r.text
    logged = [rec for rec in caplog.records if match.group(1) in rec.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    # LOG_REQUEST and END_REQUEST still ran after the failure.
    assert trail(r)[-3:] == ["LOG_REQUEST", "POST_LOG_REQUEST", "END_REQUEST"]


@pytest.mark.parametrize("stage", ["LOG_REQUEST", "POST_LOG_REQUEST", "END_REQUEST"])
def test_failure_after_the_response_is_only_logged(
    stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="colonnade.error"), client() as c:
        r = c.get("/x", headers={"x-fail-at": stage})
        again = c.get("/y")
    assert r.status == 200 and r.complete and not r.aborted
    assert trail(r)[-1] == "END_REQUEST"
    assert any("boom at " + stage in str(rec.exc_info) for rec in caplog.records)
    assert again.status == 200


def test_failure_in_send_response_hook_still_answers_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="colonnade.error"), client() as c:
        r = c.get("/x", headers={"x-fail-at": "SEND_RESPONSE"})
    assert r.status == 500 and r.complete
    assert "Correlation id" in r.text


def test_streaming_then_failure_aborts_the_connection() -> None:
    with client() as c:
        r = c.get("/x", headers={"x-stream": "1", "x-fail-mid-stream": "1"})
    assert r.status == 200  # the head was out before the failure
    assert r.aborted, "a truncated body must not look complete"
    assert r.body == b"part1,"


def test_streaming_response() -> None:
    with client() as c:
        r = c.get("/x", headers={"x-stream": "1"})
    assert r.status == 200 and r.complete and r.body == b"part1,part2"
    # SEND_RESPONSE ran once, at the first write, before the rest of the walk.
    seen = trail(r)
    assert seen.count("SEND_RESPONSE") == 1
    assert seen.index("SEND_RESPONSE") < seen.index("POST_EXECUTE_REQUEST_HANDLER")


@pytest.mark.parametrize("stage", [Stage.AUTHENTICATE_REQUEST, Stage.SEND_RESPONSE])
def test_a_client_gone_ends_the_request_quietly(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    # Not the server's fault: no 500 page for nobody, no error line, no ERROR
    # notification; the always-run stages still run (the access log records it).
    with caplog.at_level(logging.DEBUG, logger="colonnade.error"), client() as c:
        r = c.get("/x", headers={"x-gone-at": stage.name})
    assert r.aborted and r.body == b""
    assert isinstance(r.context.error, ClientDisconnectedError)
    assert [rec.levelno for rec in caplog.records] == [logging.DEBUG]
    assert caplog.records[0].exc_info is None
    seen = trail(r)
    assert seen[-3:] == ["LOG_REQUEST", "POST_LOG_REQUEST", "END_REQUEST"]
    assert ("HANDLER" in seen) == (stage is Stage.SEND_RESPONSE)


@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
@pytest.mark.parametrize("by", ["client", "server"])
@pytest.mark.parametrize(
    "stage", [Stage.AUTHENTICATE_REQUEST, Stage.EXECUTE_REQUEST_HANDLER, Stage.LOG_REQUEST]
)
def test_a_lost_connections_cancellation_ends_the_request_as_a_client_gone(
    stage: Stage, by: str, traced: bool, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # The connection's task cancelled with CLIENT_GONE (connection_lost) or
    # SERVER_ABORTED (a stop's deadline, abort_all) while a hook awaits: the request
    # ends as a client's leaving, quietly, and the always-run stages after it still
    # run (the access log line, EndRequest). The server's abort is told apart
    # (ServerAbortedError: Win32 status 1236 in the access log, not 64).
    traces = tmp_path / "traces" if traced else None
    with caplog.at_level(logging.DEBUG, logger="colonnade.error"), client(traces) as c:
        r = c.get("/x", headers={"x-cancel-at": stage.name, "x-cancel-lost": by})
    assert (r.context.trace is not None) == traced
    error = r.context.error
    assert isinstance(error, ClientDisconnectedError)
    assert isinstance(error, ServerAbortedError) == (by == "server")
    assert win32_status(error) == (1236 if by == "server" else 64)
    assert [rec.levelno for rec in caplog.records] == [logging.DEBUG]
    seen = trail(r)
    assert seen[seen.index(stage.name) :][-2:] == ["POST_LOG_REQUEST", "END_REQUEST"]
    if stage is not Stage.LOG_REQUEST:
        assert "LOG_REQUEST" in seen[seen.index(stage.name) + 1 :]


@pytest.mark.parametrize("message", [None, "the application's own"])
@pytest.mark.parametrize("stage", [Stage.AUTHENTICATE_REQUEST, Stage.EXECUTE_REQUEST_HANDLER])
def test_another_cancellation_goes_on_through_the_walk(stage: Stage, message: str | None) -> None:
    # The application cancelling its own task (bare, or with a message of its
    # own): as before, the cancellation is not the walk's to end.
    headers = {"x-cancel-at": stage.name}
    if message is not None:
        headers["x-cancel-message"] = message
    with client() as c, pytest.raises(asyncio.CancelledError) as raised:
        c.get("/x", headers=headers)
    assert raised.value.args == (() if message is None else (message,))
