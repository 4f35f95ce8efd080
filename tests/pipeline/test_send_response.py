"""The SEND_RESPONSE point: the generated hook chain and how the flush sends.

Plain-function hooks get a plain-function chain, so a buffered response is sent
without a coroutine; a coroutine hook, a file body or a stream make the flush
return an awaitable. Either way the hooks run once, in reverse order, before the
head, and a hook that raises ends in the 500 page without a second run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable
from pathlib import Path

import pytest

from colonnade import FINISH, Context, Handler, Module, Stage, hook
from colonnade.core.request import BytesBody, Headers, Request
from colonnade.core.response import FileBody
from colonnade.engine import Engine
from colonnade.testing import Client, RecordingWriter, build_engine


def _file_body(path: bytes) -> FileBody:
    return FileBody(path.decode(), 0, Path(path.decode()).stat().st_size)


def _seen(ctx: Context, who: str) -> None:
    # Each call, with whether the head was still unsent: hooks must run before it.
    ctx.items.setdefault("send", []).append((who, ctx.response.headers_sent))
    if ctx.request.header(b"x-fail-in") == who.encode():
        raise RuntimeError(f"boom in {who}")
    if ctx.request.header(b"x-file-from") == who.encode():
        # What compression does for a precompressed sibling: a file replaces the body.
        path = ctx.request.header(b"x-file")
        assert path is not None
        ctx.response.body = b""
        ctx.response.file = _file_body(path)


class SyncA(Module):
    id = "t.sync_a"

    @hook(Stage.SEND_RESPONSE)
    def send(self, ctx: Context) -> object:
        _seen(ctx, self.id)
        return FINISH  # a SEND_RESPONSE hook's answer is ignored, whatever it is


class SyncB(Module):
    id = "t.sync_b"

    @hook(Stage.SEND_RESPONSE)
    def send(self, ctx: Context) -> None:
        _seen(ctx, self.id)


class AsyncC(Module):
    id = "t.async_c"

    @hook(Stage.SEND_RESPONSE)
    async def send(self, ctx: Context) -> None:
        _seen(ctx, self.id)


class FinishEarly(Module):
    id = "t.finish"

    @hook(Stage.BEGIN_REQUEST)
    def begin(self, ctx: Context) -> object:
        if ctx.request.header(b"x-finish") is None:
            return None
        ctx.error_response(403)
        return FINISH


class Serve(Handler):
    """A body in memory, a stream (``x-stream``) or a file (``x-file``)."""

    id = "t.serve"

    async def execute(self, ctx: Context) -> None:
        ctx.items["handler"] = True
        if ctx.request.header(b"x-stream") is not None:
            await ctx.write(b"one,")
            await ctx.write(b"two")
            return
        path = ctx.request.header(b"x-file")
        if path is not None and ctx.request.header(b"x-file-from") is None:
            ctx.response.file = _file_body(path)
            return
        ctx.response.body = b"hello"


class FileWriter(RecordingWriter):
    """Records which way the body went out."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def send_all(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> None:
        self.calls.append("send_all")
        super().send_all(status, reason, headers, body)

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        if self.calls[-1:] != ["send_all"]:  # RecordingWriter.send_all records through here
            self.calls.append("start")
        super().start(status, reason, headers, content_length)

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        self.calls.append("sendfile")
        await super().sendfile(path, offset, count)


MODULES: list[type[Module]] = [SyncA, SyncB, AsyncC, FinishEarly, Serve]


def engine(*ids: str) -> Engine:
    config = {
        "server": {"modules": [*ids, "t.serve"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "t.serve"}],
    }
    return build_engine(config, modules=MODULES)


def request(headers: dict[str, str] | None = None, method: str = "GET") -> Request:
    hdrs = [(b"host", b"localhost")]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request(
        method,
        "/x",
        raw_path=b"/x",
        query=b"",
        headers=hdrs,
        host="localhost",
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 8080),
        body=BytesBody(b""),
    )


def through_walk(
    client: Client, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[Context, FileWriter]:
    """One request through the engine's walk, with a writer that tells the ways apart."""
    writer = FileWriter()
    ctx = client.loop.run_until_complete(client.engine.handle(request(headers, method), writer))
    return ctx, writer


def context(eng: Engine, headers: dict[str, str] | None = None) -> tuple[Context, FileWriter]:
    """A context as the engine makes one, for calling ``flush`` by hand."""
    runtime = eng.runtimes[0]
    writer = FileWriter()
    return Context(request(headers), runtime.app, writer, runtime.plan.run_send_response), writer


async def _wait(pending: Awaitable[None]) -> None:
    await pending


# -- the chain ------------------------------------------------------------------


def test_plain_hooks_get_a_plain_function_chain_that_runs_them_in_reverse_once() -> None:
    eng = engine("t.sync_a", "t.sync_b")
    chain = eng.runtimes[0].plan.run_send_response
    assert chain is not None and not inspect.iscoroutinefunction(chain)
    ctx, writer = context(eng)
    ctx.response.body = b"hi"
    # Sent here and now: no awaitable, so no coroutine was made for it.
    assert ctx.flush() is None
    assert ctx.items["send"] == [("t.sync_b", False), ("t.sync_a", False)]
    assert writer.calls == ["send_all"] and writer.chunks == [b"hi"] and writer.ended
    assert ctx.response.headers_sent


def test_a_coroutine_hook_makes_the_chain_a_coroutine_function() -> None:
    eng = engine("t.sync_a", "t.async_c", "t.sync_b")
    chain = eng.runtimes[0].plan.run_send_response
    assert inspect.iscoroutinefunction(chain)
    ctx, writer = context(eng)
    ctx.response.body = b"hi"
    pending = ctx.flush()
    assert isinstance(pending, Awaitable)
    assert writer.calls == []  # nothing goes out before the hooks are done
    asyncio.run(_wait(pending))
    assert ctx.items["send"] == [
        ("t.sync_b", False),
        ("t.async_c", False),
        ("t.sync_a", False),
    ]
    assert writer.calls == ["send_all"] and writer.chunks == [b"hi"]


@pytest.mark.parametrize(("module_id", "alone"), [("t.sync_b", True), ("t.sync_a", False)])
def test_one_plain_hook_declared_to_answer_none_is_the_chain_itself(
    module_id: str, alone: bool
) -> None:
    # t.sync_b says "-> None": called as it is. t.sync_a answers FINISH (declared
    # "-> object"): wrapped, so the flush never takes its answer for an awaitable.
    eng = engine(module_id)
    chain = eng.runtimes[0].plan.run_send_response
    module = next(m for m in eng.runtimes[0].modules if m.id == module_id)
    assert (chain == module.send) is alone  # type: ignore[attr-defined]
    ctx, writer = context(eng)
    ctx.response.body = b"hi"
    assert ctx.flush() is None
    assert ctx.items["send"] == [(module_id, False)]
    assert writer.calls == ["send_all"] and writer.chunks == [b"hi"] and writer.ended


def test_without_hooks_there_is_no_chain_and_the_flush_sends_at_once() -> None:
    eng = engine()
    assert eng.runtimes[0].plan.run_send_response is None
    ctx, writer = context(eng)
    ctx.response.body = b"hi"
    assert ctx.flush() is None
    assert writer.calls == ["send_all"]


# -- through the walk -------------------------------------------------------------

KINDS = {
    "plain": ("t.sync_a", "t.sync_b"),
    "coroutine": ("t.sync_a", "t.async_c", "t.sync_b"),
}


def order(ids: tuple[str, ...]) -> list[tuple[str, bool]]:
    return [(i, False) for i in reversed(ids)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_buffered_response_runs_the_hooks_once_then_goes_out_whole(kind: str) -> None:
    ids = KINDS[kind]
    with Client(engine(*ids)) as client:
        ctx, writer = through_walk(client)
    assert ctx.items["send"] == order(ids)
    assert writer.status == 200 and writer.chunks == [b"hello"]
    assert writer.calls == ["send_all"]


@pytest.mark.parametrize("kind", KINDS)
def test_after_finish_the_hooks_still_run_once(kind: str) -> None:
    ids = KINDS[kind]
    with Client(engine("t.finish", *ids)) as client:
        ctx, writer = through_walk(client, {"x-finish": "1"})
    assert "handler" not in ctx.items
    assert ctx.items["send"] == order(ids)
    assert writer.status == 403 and writer.calls == ["send_all"]


@pytest.mark.parametrize(
    ("kind", "failing"), [(kind, failing) for kind, ids in KINDS.items() for failing in ids]
)
@pytest.mark.parametrize("how", ["walked", "after-finish", "streamed"])
def test_a_hook_that_raises_gives_the_500_page_once_without_a_second_run(
    kind: str, failing: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Through the walk's SEND_RESPONSE step, or (after FINISH) its always-run
    # branch: a plain chain raises from flush() itself, a coroutine one from the
    # awaitable; both must end alike. Streamed, the hooks raise in the handler's
    # first write, and the failure is still reported once, at SEND_RESPONSE (where
    # the walk's flush raises it again), not also as the handler's.
    ids = KINDS[kind]
    finished = how == "after-finish"
    headers = {"x-fail-in": failing} | (
        {"x-finish": "1"} if finished else {"x-stream": "1"} if how == "streamed" else {}
    )
    with (
        caplog.at_level(logging.ERROR, logger="colonnade.error"),
        Client(engine("t.finish", *ids)) as client,
    ):
        ctx, writer = through_walk(client, headers)
    assert ("handler" in ctx.items) is not finished
    # The hooks ran up to the failing one, once each; the page went out once.
    expected = order(ids)
    assert ctx.items["send"] == expected[: expected.index((failing, False)) + 1]
    assert writer.status == 500 and writer.calls == ["send_all"] and writer.ended
    page = b"".join(writer.chunks).decode()
    match = re.search(r"Correlation id: <code>([0-9a-f]{12})</code>", page)
    assert match and "boom" not in page
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert len(logged) == 1 and "stage=SEND_RESPONSE" in logged[0].getMessage()


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_runs_the_hooks_once_before_the_head(kind: str) -> None:
    ids = KINDS[kind]
    with Client(engine(*ids)) as client:
        ctx, writer = through_walk(client, {"x-stream": "1"})
    # Once, at the first write, with the head still unsent (the start_response
    # path); not again at the SEND_RESPONSE point, which only ends the stream.
    assert ctx.items["send"] == order(ids)
    assert writer.calls == ["start"] and writer.chunks == [b"one,", b"two"] and writer.ended
    assert writer.content_length is None


@pytest.mark.parametrize("kind", [*KINDS, "none"])
def test_a_file_body_goes_out_with_sendfile(kind: str, tmp_path: Path) -> None:
    ids = KINDS.get(kind, ())
    path = tmp_path / "f.txt"
    path.write_bytes(b"file bytes")
    with Client(engine(*ids)) as client:
        ctx, writer = through_walk(client, {"x-file": str(path)})
        head_ctx, head = through_walk(client, {"x-file": str(path)}, method="HEAD")
    assert ctx.items.get("send", []) == order(ids)
    assert writer.calls == ["start", "sendfile"] and writer.chunks == [b"file bytes"]
    assert writer.content_length == len(b"file bytes") and writer.ended
    # HEAD: the head with the file's length, no bytes.
    assert head.calls == ["start"] and head.content_length == len(b"file bytes")
    assert head_ctx.items.get("send", []) == order(ids)


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_a_hook_swaps_in_goes_out_with_sendfile(kind: str, tmp_path: Path) -> None:
    # A hook that replaces the body in memory with a file (compression's
    # precompressed sibling): the plain chain has already run, the file still
    # needs sendfile, and the hooks do not run again.
    ids = KINDS[kind]
    path = tmp_path / "f.txt.gz"
    path.write_bytes(b"sibling")
    with Client(engine(*ids)) as client:
        ctx, writer = through_walk(client, {"x-file": str(path), "x-file-from": "t.sync_b"})
    assert ctx.items["send"] == order(ids)
    assert writer.calls == ["start", "sendfile"] and writer.chunks == [b"sibling"]
