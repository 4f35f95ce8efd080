"""The WSGI handler in-process: environ, bodies, streaming, errors, close(), the pool."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest

from colonnade import CONTINUE, Context, Module, Outcome, Principal, Stage, hook
from colonnade.core.httputil import split_host
from colonnade.errors import ConfigError
from colonnade.handlers.wsgi.environ import environ_key, wsgi_path
from colonnade.handlers.wsgi.handler import parse_status
from colonnade.testing import Client, build_engine
from tests.hosting.apps import wsgi_apps
from tests.hosting.support import EXTRA, client, engine, site_config

APPS = "tests.hosting.apps.wsgi_apps"


def environ_of(c: Client, target: str, **kw: Any) -> dict[str, Any]:
    response = c.request(kw.pop("method", "GET"), target, **kw)
    assert response.status == 200, response.text
    data: dict[str, Any] = json.loads(response.body)
    return data


def get_from(app: Any, blocking: bool = True) -> Any:
    """The response of ``GET /`` from the WSGI callable ``app`` (on the pool, or
    inline where ``blocking`` is False)."""
    wsgi_apps.inline = app  # type: ignore[attr-defined]
    try:
        extra = {"sections": {"wsgi": {"blocking": blocking}}}
        with client(f"{APPS}:inline", **extra) as c:
            return c.get("/")
    finally:
        del wsgi_apps.inline  # type: ignore[attr-defined]


# -- the environ --------------------------------------------------------------------------


def test_environ_at_the_site_root() -> None:
    with client(f"{APPS}:environ_app") as c:
        env = environ_of(
            c,
            "/a%20b/caf%C3%A9?x=1&y=%20",
            headers=[
                (b"x-thing", b"one"),
                (b"x-thing", b"two"),
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
                (b"content-type", b"text/plain"),
                (b"x_sneaky", b"dropped"),
            ],
            method="POST",
            body=b"abc",
        )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    # PEP 3333: decoded, the UTF-8 bytes as latin-1 characters.
    assert env["PATH_INFO"] == "/a b/caf\u00c3\u00a9"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/a b/café"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["RAW_URI"] == "/a%20b/caf%C3%A9?x=1&y=%20"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_THING"] == "one,two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_HOST"] == "localhost"
    assert "HTTP_X_SNEAKY" not in env
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == "50000"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["file_wrapper"] == "FileWrapper"
    assert env["has_context"] is True
    assert "REMOTE_USER" not in env


@pytest.mark.parametrize(
    ("target", "path_info"), [("/api", ""), ("/api/", "/"), ("/api/users/7", "/users/7")]
)
def test_script_name_and_path_info_under_a_mount(target: str, path_info: str) -> None:
    with client(f"{APPS}:environ_app", path="/api") as c:
        env = environ_of(c, target)
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == path_info


def test_request_without_body_has_an_empty_input() -> None:
    with client(f"{APPS}:environ_app") as c:
        env = environ_of(c, "/")
    assert env["wsgi.input"] == "EmptyInput"
    assert "CONTENT_LENGTH" not in env


class Authenticate(Module):
    """Plays an authentication module."""

    id = "test.authenticate"

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate(self, ctx: Context) -> Outcome:
        ctx.user = Principal("alice", "Basic")
        ctx.items["session.id"] = "s-42"
        return CONTINUE


def test_remote_user_and_items_from_the_server_modules() -> None:
    config = site_config(f"{APPS}:environ_app", modules=["test.authenticate"])
    with Client(build_engine(config, modules=[*EXTRA, Authenticate])) as c:
        env = environ_of(c, "/")
    assert env["REMOTE_USER"] == "alice"
    assert env["AUTH_TYPE"] == "Basic"
    assert env["items"] == ["session.id"]


def test_environ_helpers() -> None:
    assert environ_key(b"x-forwarded-for") == "HTTP_X_FORWARDED_FOR"
    assert environ_key(b"x_forwarded_for") is None
    assert environ_key(b"content-length") == "CONTENT_LENGTH"
    assert split_host("example.com:8080") == "example.com"
    assert split_host("[::1]:8080") == "::1"
    assert split_host("example.com") == "example.com"
    assert wsgi_path("/caf\u00e9") == "/caf\u00c3\u00a9"
    assert parse_status("200 OK") == (200, None)
    assert parse_status("299 Quite Fine") == (299, b"Quite Fine")
    with pytest.raises(ValueError):
        parse_status("2000 nope")


# -- request bodies -------------------------------------------------------------------------


#: Bodies over 64 KiB: read whole before the application runs (the default), or
#: streamed to it as they arrive.
BUFFERING = pytest.mark.parametrize("buffer", [True, False], ids=["buffered", "streamed"])


def buffering(buffer: bool) -> dict[str, dict[str, Any]]:
    return {"wsgi": {"buffer_request_body": buffer}}


@BUFFERING
@pytest.mark.parametrize("size", [0, 10, 65536, 65537, 300_000])
def test_request_body_read_in_pieces(size: int, buffer: bool) -> None:
    import hashlib

    body = os.urandom(size)
    with Client(engine(site_config(f"{APPS}:digest", sections=buffering(buffer)))) as c:
        response = c.post("/", body=body)
    assert response.text == f"{size} {hashlib.sha256(body).hexdigest()}"


def test_request_body_read_whole() -> None:
    import hashlib

    body = os.urandom(200_000)
    with client(f"{APPS}:read_all") as c:
        response = c.post("/", body=body)
    assert response.text == f"200000 {hashlib.sha256(body).hexdigest()}"


@BUFFERING
@pytest.mark.parametrize("size", [100, 100_000])  # prefetched, and over 64 KiB
def test_readline_readlines_and_iteration(size: int, buffer: bool) -> None:
    body = b"first line\nabcdef\n" + b"".join(b"line %d\n" % i for i in range(size // 8))
    with Client(engine(site_config(f"{APPS}:lines", sections=buffering(buffer)))) as c:
        response = c.post("/", body=body)
    got = json.loads(response.body)
    assert got["first"] == "first line\n"
    assert got["limited"] == "abc"
    assert got["rest_of_line"] == "def\n"
    assert got["iterated"] == ["line 0\n", "line 1\n"]
    assert got["last"] == f"line {size // 8 - 1}\n"


def test_buffer_request_body_spools_large_bodies() -> None:
    import hashlib

    body = os.urandom(300_000)
    config = site_config(
        f"{APPS}:digest", sections={"wsgi": {"buffer_request_body": True, "max_body_buffer": 1000}}
    )
    with Client(engine(config)) as c:
        response = c.post("/", body=body)
    assert response.text == f"300000 {hashlib.sha256(body).hexdigest()}"


# -- responses ---------------------------------------------------------------------------


def test_a_list_is_buffered_with_content_length() -> None:
    with client(f"{APPS}:hello") as c:
        response = c.get("/")
    assert response.status == 200
    assert response.body == b"Hello, world!"
    assert response.header("content-type") == "text/plain"
    assert response.context.writer.content_length == 13


def test_several_list_items_are_joined() -> None:
    with client(f"{APPS}:custom_reason") as c:
        response = c.get("/")
    assert response.status == 299
    assert response.context.response.reason == b"Quite Fine"
    assert response.body == b"abc"
    assert response.context.writer.content_length == 3


def test_a_generator_streams_and_is_closed() -> None:
    with client(f"{APPS}:stream") as c:
        response = c.get("/")
    assert response.body == b"".join(b"chunk %d\n" % i for i in range(5))
    assert response.context.writer.content_length is None
    assert wsgi_apps.EVENTS == [("closed", "stream")]


def test_one_declared_chunk_is_buffered_and_closed() -> None:
    with client(f"{APPS}:one_chunk_generator") as c:
        response = c.get("/")
    assert response.body == b"hello"
    assert response.context.writer.content_length == 5
    assert response.context.writer.chunks == [b"hello"]  # one write
    assert wsgi_apps.EVENTS == [("closed", "one")]


def test_start_response_may_come_during_iteration() -> None:
    with client(f"{APPS}:lazy_start") as c:
        response = c.get("/")
    assert response.status == 202
    assert response.body == b"late"


def test_write_callable_then_iterable() -> None:
    with client(f"{APPS}:writer") as c:
        response = c.get("/")
    assert response.body == b"written twice then returned"


@pytest.mark.parametrize("blocking", [True, False])
def test_a_write_while_the_declared_chunk_is_held_sends_it_first(blocking: bool) -> None:
    # A chunk of the whole declared length is held while the next is asked for;
    # the application's code that runs meanwhile may call write(): the held chunk,
    # yielded first, goes out first (it was dropped: the head went out with the
    # write's bytes, the body it held never).
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        write = start_response("200 OK", [("Content-Length", "5")])

        def body() -> Any:
            yield b"hello"
            write(b"")

        return body()

    response = get_from(app, blocking)
    assert response.status == 200
    assert response.body == b"hello"


def test_file_wrapper_uses_the_file_range() -> None:
    data = os.urandom(50_000)
    import tempfile

    fd, path = tempfile.mkstemp()
    os.write(fd, data)
    os.close(fd)
    try:
        with client(f"{APPS}:file_app") as c:
            response = c.get("/?" + path)
        assert response.body == data[10:]
        assert response.context.response.file is not None
        assert response.context.writer.content_length == len(data) - 10
    finally:
        os.unlink(path)


def test_file_wrapper_around_a_non_file_is_iterated() -> None:
    import io

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 10000), 4096)

    response = get_from(app)
    assert response.body == b"x" * 10000


# -- errors ------------------------------------------------------------------------------


def test_an_exception_is_a_500_with_correlation_id_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with client(f"{APPS}:raises") as c:
        response = c.get("/")
    assert response.status == 500
    cid = response.context.correlation_id
    assert cid in response.text
    assert "SECRET-TRACEBACK-DETAIL" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if cid in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_an_exception_mid_stream_aborts_and_closes() -> None:
    with client(f"{APPS}:raises_in_iteration") as c:
        response = c.get("/")
    assert response.body == b"partial"
    assert response.aborted
    assert wsgi_apps.EVENTS == [("closed", "failing")]


@pytest.mark.parametrize("blocking", [True, False])
def test_start_response_and_write_refuse_wrong_arguments(blocking: bool) -> None:
    # The exchange is both start_response and the write callable it returns, told
    # apart by their arguments: a call of either with the other's arguments is
    # still a TypeError that names the mistake, and write() gives None.
    extra = {"sections": {"wsgi": {"blocking": blocking}}}
    with client(f"{APPS}:misused_callables", **extra) as c:
        response = c.get("/")
    assert response.status == 200
    refused = b"one str given: WSGI write() takes bytes, start_response() the status and"
    assert response.body == (
        b"seen: TypeError: " + refused + b" the response headers; "
        b"TypeError: WSGI status must be a str, not bytes; "
        b"TypeError: " + refused + b" the response headers; write gave None"
    )


@pytest.mark.parametrize("blocking", [True, False])
def test_start_response_takes_its_pep_3333_keywords(blocking: bool) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        write = start_response(
            status="201 Created", response_headers=[("Content-Type", "text/plain")]
        )
        write(b"kw ")
        return [b"args"]

    response = get_from(app, blocking)
    assert response.status == 201
    assert response.body == b"kw args"


def test_exc_info_replaces_an_unsent_response() -> None:
    with client(f"{APPS}:exc_info_app") as c:
        response = c.get("/")
    assert response.status == 503
    assert response.body == b"replaced"


def test_exc_info_after_the_head_reraises() -> None:
    with client(f"{APPS}:exc_info_too_late") as c:
        response = c.get("/")
    assert response.status == 200
    assert response.body == b"head is out"
    assert response.aborted


def test_start_response_twice_is_an_error() -> None:
    with client(f"{APPS}:twice") as c:
        assert c.get("/").status == 500


def test_sys_exit_in_the_app_is_a_500() -> None:
    with client(f"{APPS}:exits") as c:
        assert c.get("/").status == 500
        assert c.get("/").status == 500  # and the server still serves


def test_wsgi_errors_writes_lines_to_the_app_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "colonnade.app")
    with client(f"{APPS}:log_error") as c:
        assert c.get("/").text == "logged"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("colonnade.app")]
    assert lines == ["first line", "second line", "partial"]


# -- loading and the pool ---------------------------------------------------------------------


def test_an_app_that_cannot_be_imported_names_the_module() -> None:
    config = site_config("tests.hosting.apps.no_such_module:app", interface="wsgi")
    with pytest.raises(ConfigError, match="no_such_module"), Client(engine(config)):
        pass


def test_factory() -> None:
    def make() -> Any:
        return wsgi_apps.hello

    wsgi_apps.make = make  # type: ignore[attr-defined]
    try:
        with client(f"{APPS}:make", factory=True) as c:
            assert c.get("/").text == "Hello, world!"
    finally:
        del wsgi_apps.make  # type: ignore[attr-defined]


def test_requests_run_on_the_bounded_pool() -> None:
    import asyncio

    # Each request waits for a second one to run beside it: both threads are busy at
    # once, and never a third.
    wsgi_apps.PAIRS.reset()
    config = site_config(f"{APPS}:thread_name", sections={"wsgi": {"threads": 2}})
    with Client(engine(config)) as c:

        async def many() -> list[str]:
            responses = await asyncio.gather(*(c.arequest("GET", "/") for _ in range(6)))
            return [r.text for r in responses]

        names = c.loop.run_until_complete(many())
    assert len(set(names)) == 2
    assert all(name.startswith("wsgi/") for name in names)


def test_a_request_in_flight_when_the_handler_is_cleaned_up_completes() -> None:
    import asyncio
    import time

    from colonnade.handlers.wsgi.handler import WsgiHandler

    # A reload retires the old generation's modules once its requests finished or
    # its graceful deadline passed: a request still on the pool then goes on to its
    # end ("the pool's threads exit once their current request is done"), its
    # answer delivered on the loop as before.
    built = engine(site_config(f"{APPS}:gated"))
    with Client(built) as c:

        def started() -> None:
            deadline = time.monotonic() + 10
            while "gated" not in wsgi_apps.EVENTS and time.monotonic() < deadline:
                time.sleep(0.01)

        async def run() -> Any:
            pending = asyncio.ensure_future(c.arequest("GET", "/"))
            await asyncio.to_thread(started)
            assert "gated" in wsgi_apps.EVENTS
            handlers = [m for rt in built.runtimes for m in rt.modules]
            for handler in handlers:
                if isinstance(handler, WsgiHandler):
                    handler.cleanup()
            wsgi_apps.GATE.set()
            return await asyncio.wait_for(pending, 10)

        response = c.loop.run_until_complete(run())
    assert response.status == 200
    assert response.body == b"after the gate"


def test_a_request_cancelled_before_its_first_command_is_gone_for_its_thread() -> None:
    import asyncio

    from tests.support.wait import PATIENCE, wait_for

    # The request's task is cancelled (the client went away) while its application
    # runs on the pool, before the thread posted anything: the application's write()
    # then hears that the client went away, instead of waiting for an answer.
    with Client(engine(site_config(f"{APPS}:gated_writer"))) as c:

        async def run() -> None:
            pending = asyncio.ensure_future(c.arequest("GET", "/"))
            started = lambda: "gated writer" in wsgi_apps.EVENTS  # noqa: E731
            await asyncio.to_thread(wait_for, started, PATIENCE, "the application started")
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            wsgi_apps.GATE.set()
            refused = lambda: ("write", "ClientDisconnectedError") in wsgi_apps.EVENTS  # noqa: E731
            await asyncio.to_thread(wait_for, refused, PATIENCE, "write() refused")

        c.loop.run_until_complete(run())


def test_a_command_for_a_request_that_is_gone() -> None:
    import asyncio
    import threading

    from colonnade.errors import ClientDisconnectedError
    from colonnade.handlers.wsgi.bridge import DONE, WRITE, Bridge, Outbox

    # The request's wait was cancelled (the client went away) while its thread
    # was busy: a command that wants an answer gets "the client went away" (and
    # the waiting thread is released); the final one is dropped.
    loop = asyncio.new_event_loop()
    try:
        bridge = Bridge(Outbox(loop))
        assert bridge.cancel()
        outcome: list[BaseException] = []
        finished = asyncio.Event()

        def write() -> None:
            try:
                bridge.call(WRITE, b"late")
            except ClientDisconnectedError as exc:
                outcome.append(exc)
            loop.call_soon_threadsafe(finished.set)

        async def serve() -> None:
            thread = threading.Thread(target=write)
            thread.start()
            await asyncio.wait_for(finished.wait(), 10)
            thread.join()

        loop.run_until_complete(serve())
        assert len(outcome) == 1
        bridge.deliver((DONE, None))  # nobody waits: nothing happens
        assert bridge.cancelled()
    finally:
        loop.close()


def test_a_call_into_a_loop_closed_with_its_wake_up_pending_is_refused() -> None:
    # A final command armed the wake-up and the loop closed before draining it: a
    # thread's later call() must hear that the client went away, not wait forever
    # for an answer (the closed-loop check ran only on the post that armed).
    import asyncio
    import threading

    from colonnade.errors import ClientDisconnectedError
    from colonnade.handlers.wsgi.bridge import DONE, WRITE, Bridge, Outbox

    loop = asyncio.new_event_loop()
    try:
        outbox = Outbox(loop)
        outbox.post(Bridge(outbox), (DONE, None), False)
        assert outbox.armed  # written, never drained
        loop.close()
        outcome: list[BaseException | None] = []

        def write() -> None:
            try:
                Bridge(outbox).call(WRITE, b"late")
            except BaseException as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        thread.join(10)
        assert len(outcome) == 1, "call() waits for an answer from a closed loop"
        assert isinstance(outcome[0], ClientDisconnectedError)
    finally:
        loop.close()


@pytest.mark.parametrize(("use_uvloop", "eventfd"), [(False, True), (True, True), (True, False)])
def test_the_bridge_is_a_future_that_wakes_its_task_on_delivery(
    use_uvloop: bool, eventfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import threading

    from colonnade.errors import ClientDisconnectedError
    from colonnade.handlers.wsgi import bridge as bridge_module
    from colonnade.handlers.wsgi.bridge import DONE, WRITE, Bridge, Outbox

    if not eventfd:  # elsewhere than Linux: call_soon_threadsafe wakes the loop
        monkeypatch.setattr(bridge_module, "_eventfd", None)
    if use_uvloop:
        uvloop = pytest.importorskip("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        outbox = Outbox(loop)
        assert (outbox._fd >= 0) == eventfd
        seen: list[object] = []

        async def wait(bridge: Bridge) -> None:
            seen.append(await bridge)
            seen.append(asyncio.current_task() is task)

        # A thread's command reaches the awaiting task (woken by the drain itself).
        bridge = Bridge(outbox)
        task = loop.create_task(wait(bridge))
        thread = threading.Thread(target=bridge.post, args=((DONE, "whole"),))

        async def run() -> None:
            await asyncio.sleep(0)  # the task waits on the bridge now
            assert not bridge.done()
            thread.start()
            await task

        loop.run_until_complete(run())
        thread.join()
        assert seen == [(DONE, "whole"), True]
        assert not bridge.done()  # taken: the bridge waits for the next command

        # Cancelling the task cancels the wait; a thread waiting for an answer, or
        # posting later, hears that the client went away.
        bridge = Bridge(outbox)
        answers: list[BaseException] = []

        def write() -> None:
            try:
                bridge.call(WRITE, b"late")
            except ClientDisconnectedError as exc:
                answers.append(exc)

        async def cancelled() -> None:
            task = loop.create_task(wait(bridge))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert bridge.cancelled() and bridge.gone
            with pytest.raises(asyncio.CancelledError):
                bridge.result()
            thread = threading.Thread(target=write)
            thread.start()
            await asyncio.to_thread(thread.join, 10)

        loop.run_until_complete(cancelled())
        assert len(answers) == 1

        # A callback added once a command is there runs soon, as asyncio's do.
        bridge = Bridge(outbox)
        bridge.deliver((DONE, None))
        called: list[object] = []
        bridge.add_done_callback(called.append)
        assert called == []
        loop.run_until_complete(asyncio.sleep(0))
        assert called == [bridge]
        assert bridge.remove_done_callback(called.append) == 0

        # Once closed, the outbox no longer watches its descriptor, but a request
        # still in flight is answered; once its loop is closed, posts are refused
        # (the thread hears the client left).
        outbox.close()
        bridge = Bridge(outbox)
        outbox.post(bridge, (DONE, "late"))
        loop.run_until_complete(asyncio.sleep(0))
        assert bridge.done() and bridge.result() == (DONE, "late")
        loop.close()
        with pytest.raises(RuntimeError):
            outbox.post(Bridge(outbox), (DONE, None))
    finally:
        loop.close()


def test_a_pool_job_runs_in_a_copy_of_its_submitters_context() -> None:
    import asyncio
    import contextvars
    import threading

    from colonnade.handlers.wsgi.bridge import Bridge, Outbox, ThreadPool

    # The request's bridge is the queue's item (no tuple per submission): it carries
    # the job and a copy of the submitter's context to the thread, which takes both
    # off it (the job, a request's answer, holds the bridge: no cycle is left). What
    # a job sets in its context reaches neither the submitter nor the next job on
    # that thread.
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[object, str, str]] = []
    done = threading.Semaphore(0)

    def run(job: object) -> None:
        seen.append((job, var.get(), threading.current_thread().name))
        var.set(f"set by {job}")
        done.release()

    loop = asyncio.new_event_loop()
    pool = ThreadPool(1, "probe", run)
    try:
        outbox = Outbox(loop)
        bridges = [Bridge(outbox), Bridge(outbox)]
        token = var.set("first")
        pool.submit(bridges[0], "a")
        var.set("second")
        pool.submit(bridges[1], "b")
        assert done.acquire(timeout=10) and done.acquire(timeout=10)
        assert var.get() == "second"
        var.reset(token)
    finally:
        pool.shutdown()
        loop.close()
    assert seen == [("a", "first", "probe-0"), ("b", "second", "probe-0")]
    assert all(b.job is None and b.job_context is None for b in bridges)


_BATCH = getattr(os, "SCHED_BATCH", None)
_LINUX_ONLY = pytest.mark.skipif(_BATCH is None, reason="SCHED_BATCH is Linux's")


@_LINUX_ONLY
@pytest.mark.parametrize("batch", [True, False])
def test_pool_threads_run_under_sched_batch_unless_told_not_to(batch: bool) -> None:
    # A pool thread woken for a job must not preempt the loop's thread, which holds
    # the GIL it needs (SCHED_BATCH: no preemption on wake-up); [wsgi] batch_threads
    # = false keeps the default policy. The test's own thread is left as it was.
    own = os.sched_getscheduler(0)
    with client(f"{APPS}:sched_policy", sections={"wsgi": {"batch_threads": batch}}) as c:
        policy = int(c.get("/").text)
    assert policy == (_BATCH if batch else own)
    assert os.sched_getscheduler(0) == own


@_LINUX_ONLY
def test_batch_scheduling_reports_a_refusal() -> None:
    import threading
    from unittest import mock

    from colonnade.handlers.wsgi import bridge

    # Refused (a sandbox's filter, an unknown policy), the thread runs on as it was.
    seen: list[bool] = []
    refused = mock.patch.object(bridge.os, "sched_setscheduler", side_effect=PermissionError)

    def probe() -> None:
        with refused:
            seen.append(bridge.batch_scheduling())
        seen.append(os.sched_getscheduler(0) != _BATCH)
        seen.append(bridge.batch_scheduling())
        seen.append(os.sched_getscheduler(0) == _BATCH)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    assert seen == [False, True, True, True]


@_LINUX_ONLY
def test_batch_scheduling_keeps_a_policy_an_operator_chose() -> None:
    import threading

    from colonnade.handlers.wsgi import bridge

    # A thread under another policy than the default (here SCHED_IDLE, which needs
    # no privilege; an operator's chrt -f would be a real-time one) keeps it.
    seen: list[object] = []

    def probe() -> None:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        seen.append(bridge.batch_scheduling())
        seen.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    assert seen == [False, os.SCHED_IDLE]


class AddsHeaders(Module):
    """Adds a response header at every stage from the handler's end on (where
    modules add theirs: session cookies, HSTS, outbound rewrites)."""

    id = "test.adds_headers"

    @hook(Stage.POST_EXECUTE_REQUEST_HANDLER)
    def after_handler(self, ctx: Context) -> None:
        ctx.response.headers.append((b"x-after", b"1"))

    @hook(Stage.SEND_RESPONSE)
    def sending(self, ctx: Context) -> None:
        ctx.response.headers.append((b"x-sending", b"1"))


@pytest.mark.parametrize("blocking", [True, False], ids=["pool", "inline"])
@pytest.mark.parametrize(
    "app", ["hello", "stream", "one_chunk_generator", "writer", "raises", "lazy_start"]
)
def test_headers_added_by_modules_never_reach_the_shared_empty_lists(
    blocking: bool, app: str
) -> None:
    # An exchange starts with shared empty header lists (no list per request),
    # replaced by start_response's and complete()'s: a module appending to a
    # response's headers must never append to those, or every later response
    # would carry its header.
    from colonnade.handlers.wsgi import handler

    config = site_config(
        f"{APPS}:{app}", modules=["test.adds_headers"], sections={"wsgi": {"blocking": blocking}}
    )
    with Client(build_engine(config, modules=[*EXTRA, AddsHeaders])) as c:
        for _ in range(2):
            response = c.get("/")
            names = [name for name, _ in response.headers]
            assert names.count(b"x-after") <= 1
            assert names.count(b"x-sending") == 1
    assert handler._NO_HEADERS == []
    assert handler._NO_OUT_HEADERS == []


@pytest.mark.parametrize("body", [b"", b"abc"])
def test_a_pooled_answer_is_freed_without_the_cycle_collector(body: bytes) -> None:
    import gc

    from colonnade.handlers.wsgi.bridge import Bridge

    # On the pool the exchange the application is given as start_response is also
    # the thread's job, carried to the thread by the request's bridge, which the
    # exchange holds: the pool takes the job off the bridge, or the two would
    # be a cycle (and the environ's wsgi.input holds the bridge too). A cycle per
    # request would leave every request to the cycle collector (wsgi3: under load
    # a young collection every ~100 requests). Slotted, neither takes a weak
    # reference: the collector is asked what it found instead.
    kinds: list[type] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        kinds.append(type(start_response))
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got " + data]

    wsgi_apps.inline = app  # type: ignore[attr-defined]
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with client(f"{APPS}:inline") as c:
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            response = c.request("POST" if body else "GET", "/", body=body)
            gc.collect()
            found = [item for item in gc.garbage if type(item) in kinds or isinstance(item, Bridge)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
        del wsgi_apps.inline  # type: ignore[attr-defined]
    assert response.body == b"got " + body
    assert len(kinds) == 1
    assert found == []
