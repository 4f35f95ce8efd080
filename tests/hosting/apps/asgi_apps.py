"""Small raw ASGI 3 applications the ASGI handler tests run."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import threading
import weakref
from typing import Any

from tests.support.wait import PATIENCE, wait_for_async

Scope = dict[str, Any]

#: What the applications observed, for the tests to inspect.
EVENTS: list[Any] = []
#: Set by a test to let an application that waits for it go on.
GATE = threading.Event()


async def _respond(send: Any, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]}
    )
    await send({"type": "http.response.body", "body": body})


def _plain(scope: Scope) -> dict[str, Any]:
    ext = scope["extensions"]["colonnade"]
    user = ext["user"]
    return {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope.get("method"),
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "client": list(scope["client"]) if scope["client"] else None,
        "server": list(scope["server"]) if scope["server"] else None,
        "state": dict(scope["state"]),
        "extensions": sorted(scope["extensions"]),
        "user": user.name if user is not None else None,
        "items": sorted(ext["items"]),
        "has_context": ext["context"] is not None,
    }


async def scope_app(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the scope as JSON."""
    if scope["type"] == "lifespan":
        await _lifespan_ok(scope, receive, send)
        return
    await _respond(send, 200, json.dumps(_plain(scope)).encode(), b"application/json")


async def _lifespan_ok(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    """The benchmark's hello world (no lifespan support: raises on other scopes)."""
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']}")
    await _respond(send, 200, b"Hello, world!")


#: Set by ``context_probe`` in each request: a request must never see another's value.
PROBE: contextvars.ContextVar[str] = contextvars.ContextVar("probe")


async def context_probe(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with what its request sees: the context variable ``PROBE`` before it
    sets it (to the request's path), and its task (a real one, not cancelled)."""
    if scope["type"] == "lifespan":
        await _lifespan_ok(scope, receive, send)
        return
    seen = PROBE.get("unset")
    PROBE.set(scope["path"])
    await asyncio.sleep(0)  # a step later, the request's own value is still there
    task = asyncio.current_task()
    report = {
        "seen": seen,
        "after_sleep": PROBE.get("unset"),
        "task": isinstance(task, asyncio.Task) and not task.cancelling(),
    }
    await _respond(send, 200, json.dumps(report).encode(), b"application/json")


def _own_task() -> asyncio.Task[Any]:
    """The running request's task (an app of this module always runs in one)."""
    task = asyncio.current_task()
    assert task is not None
    return task


async def cancel_self(scope: Scope, receive: Any, send: Any) -> None:
    """Cancels its own task and sees the cancellation at its next await."""
    if scope["type"] == "lifespan":
        await _lifespan_ok(scope, receive, send)
        return
    task = _own_task()
    task.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        EVENTS.append("cancelled")
        raise
    EVENTS.append("not cancelled")


async def swallow_cancel(scope: Scope, receive: Any, send: Any) -> None:
    """``/swallow``: cancels its own task and swallows the cancellation without
    ``uncancel()`` (as anyio 3's cancel scopes do), then answers; any other path
    answers with its task's ``cancelling()`` count."""
    if scope["type"] == "lifespan":
        await _lifespan_ok(scope, receive, send)
        return
    task = _own_task()
    if scope["path"] == "/swallow":
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        await _respond(send, 200, b"swallowed")
        return
    await _respond(send, 200, str(task.cancelling()).encode())


#: ``task_scope``'s per-task registries, keyed as libraries that scope state by
#: task key theirs (SQLAlchemy's async_scoped_session with current_task).
BY_TASK: dict[asyncio.Task[Any], str] = {}
WEAK_BY_TASK: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()
CALLBACK_TASKS: dict[str, str] = {}


async def task_scope(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with what a per-task registry already held for its task (a request
    must never find another's) and its task's name (unique per task), then keeps
    an entry of its own: ``/strong`` in a dict keyed by the task, ``/weak`` in a
    weak one, ``/callback`` as a done-callback; any other path keeps nothing."""
    if scope["type"] == "lifespan":
        await _lifespan_ok(scope, receive, send)
        return
    task = _own_task()
    name = task.get_name()
    found = BY_TASK.get(task) or WEAK_BY_TASK.get(task) or CALLBACK_TASKS.get(name)
    path = scope["path"]
    if path == "/strong":
        BY_TASK[task] = path
    elif path == "/weak":
        WEAK_BY_TASK[task] = path
    elif path == "/callback":
        CALLBACK_TASKS[name] = path
        task.add_done_callback(lambda _: None)
    await _respond(send, 200, json.dumps({"found": found, "task": name}).encode())


async def rename_task(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with its task's name as the request found it; ``/rename`` then names
    its task after itself (as a request may, for its log lines: 3.12's logging
    records ``taskName``)."""
    if scope["type"] == "lifespan":
        await _lifespan_ok(scope, receive, send)
        return
    task = _own_task()
    name = task.get_name()
    if scope["path"] == "/rename":
        task.set_name("request /rename")
    await _respond(send, 200, name.encode())


class _FirstStep:
    """Stands in for the loop while ``eager_task_factory`` makes a task on 3.11: it
    keeps the task's first step instead of scheduling it."""

    def __init__(self) -> None:
        self.step: Any = None

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> None:
        self.step = (callback, context)

    def get_debug(self) -> bool:
        return False


def eager_task_factory(loop: Any, coro: Any, *, context: Any = None, **kw: Any) -> Any:
    """Python 3.12's ``asyncio.eager_task_factory`` (where there is one): a task's
    first step runs inside ``create_task``, before the caller gets the task. On
    3.11, the same with the pure-Python task (inside another task, as before)."""
    eager = getattr(asyncio, "eager_task_factory", None)
    if eager is not None:
        return eager(loop, coro, context=context, **kw)
    first = _FirstStep()
    task = asyncio.tasks._PyTask(coro, loop=first, context=context, **kw)  # type: ignore[attr-defined]
    task._loop = loop
    step, step_context = first.step
    if asyncio.current_task(loop) is None:
        step_context.run(step)
    else:
        loop.call_soon(step, context=step_context)
    return task


#: What ``eager`` sets in the context of its request to ``/set``.
EAGER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager")


async def eager(scope: Scope, receive: Any, send: Any) -> None:
    """Runs its server's tasks eagerly (the lifespan's startup sets the loop's task
    factory, as an application may on 3.12); ``/set`` sets a context variable.
    Answers with the variable's value as the request found it."""
    if scope["type"] == "lifespan":
        asyncio.get_running_loop().set_task_factory(eager_task_factory)
        await _lifespan_ok(scope, receive, send)
        return
    found = EAGER_VAR.get("-")
    if scope["path"] == "/set":
        EAGER_VAR.set("set")
    await _respond(send, 200, found.encode())


async def ws_late_accept(scope: Scope, receive: Any, send: Any) -> None:
    """Notes the handshake, accepts once GATE is set, then waits for the disconnect."""
    if scope["type"] != "websocket":
        return
    message = await receive()
    EVENTS.append(message["type"])  # websocket.connect
    await wait_for_async(GATE.is_set, PATIENCE, "the test setting GATE")
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.append(("disconnect", message["code"]))
            return


#: The listeners ``receive_elsewhere`` started (kept: a task is only weakly held).
LISTENERS: set[asyncio.Task[None]] = set()


async def receive_elsewhere(scope: Scope, receive: Any, send: Any) -> None:
    """Listens for the disconnect in a task of its own (not the request's child, as
    some frameworks do), noting each message in ``EVENTS``; the request itself waits
    for GATE before it answers."""
    if scope["type"] != "http":
        return

    async def listen() -> None:
        while True:
            message = await receive()
            EVENTS.append(message["type"])
            if message["type"] == "http.disconnect":
                return

    listener = asyncio.get_running_loop().create_task(listen())
    LISTENERS.add(listener)
    listener.add_done_callback(LISTENERS.discard)
    await wait_for_async(GATE.is_set, PATIENCE, "the test setting GATE")
    await _respond(send, 200, b"answered")


async def body_reader(scope: Scope, receive: Any, send: Any) -> None:
    """Reads the request body until ``http.disconnect``, noting in ``EVENTS`` each
    message's type or what ``receive`` raised: ``/elsewhere`` in a task of its own
    (as ``receive_elsewhere``'s listener), the request waiting for GATE before it
    answers; any other path in the request's task."""
    if scope["type"] != "http":
        return

    async def read() -> None:
        while True:
            try:
                message = await receive()
            except BaseException as exc:
                EVENTS.append(type(exc).__name__)
                raise
            EVENTS.append(message["type"])
            if message["type"] == "http.disconnect":
                return

    if scope["path"] == "/elsewhere":
        reader = asyncio.get_running_loop().create_task(read())
        LISTENERS.add(reader)
        reader.add_done_callback(LISTENERS.discard)
        await wait_for_async(GATE.is_set, PATIENCE, "the test setting GATE")
    else:
        await read()
    await _respond(send, 200, b"answered")


async def gated(scope: Scope, receive: Any, send: Any) -> None:
    """Answers "gated" once GATE is set."""
    if scope["type"] != "http":
        return
    await wait_for_async(GATE.is_set, PATIENCE, "the test setting GATE")
    await _respond(send, 200, b"gated")


#: What ``gated_big`` sends: more than a loopback connection's kernel buffers hold.
BIG = 16 * 1024 * 1024


async def gated_big(scope: Scope, receive: Any, send: Any) -> None:
    """Answers ``BIG`` bytes once GATE is set."""
    if scope["type"] != "http":
        return
    await wait_for_async(GATE.is_set, PATIENCE, "the test setting GATE")
    await _respond(send, 200, bytes(BIG))


async def big_slow(scope: Scope, receive: Any, send: Any) -> None:
    """Declares 100,000 bytes, sends the head with no bytes yet, the body once GATE
    is set."""
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]}
    )
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    await wait_for_async(GATE.is_set, PATIENCE, "the test setting GATE")
    await send({"type": "http.response.body", "body": b"x" * 100_000})


async def head_aware(scope: Scope, receive: Any, send: Any) -> None:
    """Declares the length of its body but sends none to HEAD (as some frameworks do)."""
    if scope["type"] != "http":
        return
    body = b"" if scope["method"] == "HEAD" else b"Hello, world!"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Streams the request body back as it arrives, with the messages' shape in a header."""
    if scope["type"] != "http":
        return
    shapes = []
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        shapes.append([len(message["body"]), message["more_body"]])
        if message["body"]:
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        if not message["more_body"]:
            break
    EVENTS.append(shapes)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def count_body(scope: Scope, receive: Any, send: Any) -> None:
    """Reads the whole body; answers its length and the number of messages."""
    if scope["type"] != "http":
        return
    total = messages = 0
    more = True
    while more:
        message = await receive()
        total += len(message["body"])
        messages += 1
        more = message["more_body"]
    await _respond(send, 200, f"{total} {messages}".encode())


async def stream(scope: Scope, receive: Any, send: Any) -> None:
    """Five chunks, 'chunk 0' .. 'chunk 4'."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(5):
        await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def disconnect_after(scope: Scope, receive: Any, send: Any) -> None:
    """Answers, then waits for http.disconnect (which must come once the response is out)."""
    if scope["type"] != "http":
        return
    await receive()
    await _respond(send, 200, b"done")
    message = await asyncio.wait_for(receive(), 5)
    EVENTS.append(message["type"])


async def raise_before(scope: Scope, receive: Any, send: Any) -> None:
    """Raises before starting the response."""
    if scope["type"] != "http":
        return
    raise RuntimeError("SECRET-TRACEBACK-DETAIL before")


async def raise_after_start(scope: Scope, receive: Any, send: Any) -> None:
    """Starts the response, then raises before the body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("SECRET-TRACEBACK-DETAIL after start")


async def raise_mid_stream(scope: Scope, receive: Any, send: Any) -> None:
    """Streams one chunk, then raises."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("SECRET-TRACEBACK-DETAIL mid-stream")


async def raise_after_complete(scope: Scope, receive: Any, send: Any) -> None:
    """Completes the response, then fails (a background task)."""
    if scope["type"] != "http":
        return
    await _respond(send, 200, b"complete")
    raise RuntimeError("background task failed")


async def no_response(scope: Scope, receive: Any, send: Any) -> None:
    """Returns without sending anything."""
    return


async def pathsend(scope: Scope, receive: Any, send: Any) -> None:
    """Sends the file named by the query string with http.response.pathsend."""
    if scope["type"] != "http":
        return
    assert "http.response.pathsend" in scope["extensions"]
    path = scope["query_string"].decode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    await send({"type": "http.response.pathsend", "path": path})


async def mixed_case_headers(scope: Scope, receive: Any, send: Any) -> None:
    """Header names as Django sends them (not lower case)."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [[b"Content-Type", b"text/plain"], [b"X-Custom", b"yes"]],
        }
    )
    await send({"type": "http.response.body", "body": bytearray(b"made")})


# -- lifespan -------------------------------------------------------------------------


async def lifespan_state(scope: Scope, receive: Any, send: Any) -> None:
    """Puts a value into the lifespan state at startup; answers it per request."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        scope["state"]["greeting"] = "hello from startup"
        EVENTS.append("startup")
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        EVENTS.append("shutdown")
        await send({"type": "lifespan.shutdown.complete"})
        return
    # Each request sees a copy: changing it does not leak into the next request.
    greeting = scope["state"]["greeting"]
    scope["state"]["greeting"] = "changed by a request"
    await _respond(send, 200, greeting.encode())


async def lifespan_failed(scope: Scope, receive: Any, send: Any) -> None:
    """Reports lifespan.startup.failed with a message."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await _respond(send, 200, b"never")


async def lifespan_raises(scope: Scope, receive: Any, send: Any) -> None:
    """Raises during startup (after receiving lifespan.startup)."""
    if scope["type"] == "lifespan":
        await receive()
        raise OSError("cannot open the cache directory")
    await _respond(send, 200, b"never")


async def lifespan_unsupported(scope: Scope, receive: Any, send: Any) -> None:
    """Rejects the lifespan scope at once, as Django does."""
    if scope["type"] != "http":
        raise ValueError("only http")
    await _respond(send, 200, b"served anyway")


def factory() -> Any:
    """An application factory (``factory = true``)."""
    EVENTS.append("factory called")

    async def made(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await _respond(send, 200, b"made by the factory")

    return made


# -- websocket ------------------------------------------------------------------------


async def ws_echo(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts (with the first offered subprotocol) and echoes until the client closes."""
    if scope["type"] == "http":
        await _respond(send, 200, b"plain http")
        return
    if scope["type"] != "websocket":
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    protocols = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": protocols[0] if protocols else None,
            "headers": [(b"x-ws", b"accepted")],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.append(("disconnect", message["code"]))
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4000, "reason": "asked to"})
            continue
        if message.get("text") == "boom":
            raise RuntimeError("websocket handler failed")
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def ws_push(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts, then only sends (never receives): ten messages, 30 ms apart."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    for i in range(10):
        await send({"type": "websocket.send", "text": f"push {i}"})
        await asyncio.sleep(0.03)  # the behaviour: an application sending over time


async def ws_count(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts and says "ready", then receives nothing until GATE is set; then
    counts the bytes of the binary messages until a text message, which it
    answers with the count."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "ready"})
    await wait_for_async(GATE.is_set, PATIENCE, "the test setting GATE")
    total = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            total += len(message["bytes"])
        else:
            await send({"type": "websocket.send", "text": str(total)})


async def ws_deny(scope: Scope, receive: Any, send: Any) -> None:
    """Closes before accepting: the handshake is answered 403."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.close"})


async def ws_reader_first(scope: Scope, receive: Any, send: Any) -> None:
    """As Quart does: a reader task calls receive() at once, before the handler has
    answered the handshake; the handler then accepts and echoes (or, on ``/deny``,
    closes, and the reader's waiting receive() gets the disconnect)."""
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def reader() -> None:
        while True:
            message = await receive()
            await inbox.put(message)
            if message["type"] == "websocket.disconnect":
                return

    task = asyncio.get_running_loop().create_task(reader())
    await asyncio.sleep(0)  # the reader is waiting in receive() now
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        EVENTS.append(("reader got", (await inbox.get())["code"]))
        await task
        return
    await send({"type": "websocket.accept"})
    while (message := await inbox.get())["type"] != "websocket.disconnect":
        await send({"type": "websocket.send", "text": message["text"]})
    await task


async def ws_deny_custom(scope: Scope, receive: Any, send: Any) -> None:
    """Denies with its own response (websocket.http.response extension)."""
    if scope["type"] != "websocket":
        return
    assert "websocket.http.response" in scope["extensions"]
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"token ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"required"})


def tmp_file(size: int) -> str:
    """A file of ``size`` bytes for the pathsend test (the caller removes it)."""
    import tempfile

    fd, path = tempfile.mkstemp()
    os.write(fd, bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    os.close(fd)
    return path


async def endless(scope: Scope, receive: Any, send: Any) -> None:
    """Streams 64 KiB chunks until it is stopped; records how it was stopped."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while True:
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    except BaseException as exc:
        EVENTS.append(("stopped by", type(exc).__name__))
        raise


#: Opened by a test once its client has reset the connection ``stream_after_reset`` serves.
RESET_GATE = threading.Event()


#: Set by ``stream_after_reset`` as it begins to hold the loop at ``RESET_GATE``.
AT_RESET_GATE = threading.Event()


async def stream_after_reset(scope: Scope, receive: Any, send: Any) -> None:
    """Answers its head, then holds the loop (a blocking wait, on purpose: the loop
    cannot notice the client's reset) until ``RESET_GATE``, then streams small
    chunks with no wait of its own: the first write finds the reset. Records what
    stopped it, or ``("spun", n)`` after 100,000 sends that all seemed to go out.
    ``/early`` holds the loop before its head instead. ``/probe`` just answers."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/probe":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    early = scope["path"] == "/early"
    if early:
        AT_RESET_GATE.set()
        RESET_GATE.wait(PATIENCE)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    if not early:
        AT_RESET_GATE.set()
        RESET_GATE.wait(PATIENCE)
    sent = 0
    try:
        while sent < 100_000:
            await send({"type": "http.response.body", "body": b"x" * 512, "more_body": True})
            sent += 1
    except BaseException as exc:
        EVENTS.append(("stopped by", type(exc).__name__))
        raise
    EVENTS.append(("spun", sent))


#: Opened by a test: the work after ``after_response``'s answers may finish.
AFTER_GATE = threading.Event()
#: The paths whose work after their answer has finished, in order.
AFTER_DONE: list[str] = []
#: Called by ``after_response`` right after the whole answer of ``/buf``, in the
#: same step of its task (a test puts a stop's deadline there).
AT_ANSWER: list[Any] = []


async def after_response(scope: Scope, receive: Any, send: Any) -> None:
    """Work after the response, as Starlette's background tasks do: ``/buf`` answers
    whole (then makes ``AT_ANSWER``'s calls), ``/stream`` in two body messages, a
    HEAD with the length of a body it does not send; then each waits for
    ``AFTER_GATE`` and adds its path (a HEAD's as ``HEAD /path``) to ``AFTER_DONE``
    (or notes in ``EVENTS`` what stopped the wait of a GET). ``/probe`` just answers."""
    if scope["type"] == "lifespan":
        await _lifespan_ok(scope, receive, send)
        return
    path = scope["path"]
    if path == "/probe":
        await _respond(send, 200, b"probe")
        return
    if scope["method"] == "HEAD":
        # A HEAD's answer: the length the GET's body would have, no body.
        headers = [(b"content-length", b"8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        await wait_for_async(AFTER_GATE.is_set, PATIENCE, "the test opening AFTER_GATE")
        AFTER_DONE.append("HEAD " + path)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if path == "/stream":
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2", "more_body": False})
    else:
        await send({"type": "http.response.body", "body": b"buffered"})
        for call in AT_ANSWER:
            call()
    try:
        await wait_for_async(AFTER_GATE.is_set, PATIENCE, "the test opening AFTER_GATE")
    except BaseException as exc:
        EVENTS.append(("after " + path + " stopped by", type(exc).__name__))
        raise
    AFTER_DONE.append(path)
