"""Small PEP 3333 applications the WSGI handler tests run."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

from tests.support.wait import PATIENCE

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

#: What the applications observed, for the tests to inspect.
EVENTS: list[Any] = []
#: Set by tests to let a slow stream go on (or to notice it was closed).
GATE = threading.Event()


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """The benchmark's hello world."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def environ_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers with the environ's plain values as JSON."""
    plain = {
        k: v for k, v in environ.items() if isinstance(v, str | int | bool | tuple) or v is None
    }
    plain["wsgi.input"] = type(environ["wsgi.input"]).__name__
    plain["has_context"] = environ["colonnade.context"] is not None
    plain["items"] = sorted(environ["colonnade.items"])
    plain["file_wrapper"] = environ["wsgi.file_wrapper"].__name__
    body = json.dumps(plain).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def digest(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Reads the body in 64 KiB pieces; answers its length and SHA-256."""
    h = hashlib.sha256()
    stream = environ["wsgi.input"]
    total = 0
    while chunk := stream.read(65536):
        h.update(chunk)
        total += len(chunk)
    return _text(start_response, f"{total} {h.hexdigest()}".encode())


def swallows_input_errors(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Reads the body as a framework does: an exception from wsgi.input becomes the
    application's own 500 page (Django and Flask report it as their own error)."""
    try:
        data = environ["wsgi.input"].read()
    except Exception as exc:
        return _text(start_response, f"app error: {exc!r}".encode(), "500 Internal Server Error")
    return _text(start_response, f"{len(data)}".encode())


def read_all(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """read() without a size, then readline-style access of the same body elsewhere."""
    data = environ["wsgi.input"].read()
    return _text(start_response, f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode())


def lines(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """readline(), readline(size), iteration and readlines() over the body."""
    stream = environ["wsgi.input"]
    first = stream.readline()
    limited = stream.readline(3)
    rest_of_line = stream.readline()
    iterated = []
    for line in stream:
        iterated.append(line)
        if len(iterated) == 2:
            break
    remaining = stream.readlines()
    answer = {
        "first": first.decode(),
        "limited": limited.decode(),
        "rest_of_line": rest_of_line.decode(),
        "iterated": [x.decode() for x in iterated],
        "remaining": len(remaining),
        "last": remaining[-1].decode() if remaining else None,
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]


class Closing:
    """An iterable that records that it was closed."""

    def __init__(self, chunks: Iterable[bytes], name: str) -> None:
        self.chunks = iter(chunks)
        self.name = name

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        EVENTS.append(("closed", self.name))


def stream(environ: Environ, start_response: StartResponse) -> Closing:
    """Five chunks from a generator (no Content-Length): streamed."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing((b"chunk %d\n" % i for i in range(5)), "stream")


def one_chunk_generator(environ: Environ, start_response: StartResponse) -> Closing:
    """A generator of one chunk with Content-Length (as Flask answers): buffered."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return Closing(iter([b"", b"hello", b""]), "one")


def lazy_start(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """Calls start_response only when iterated (allowed by PEP 3333)."""
    yield b""
    start_response("202 Accepted", [("Content-Type", "text/plain")])
    yield b"late"


def custom_reason(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """A non-standard reason phrase."""
    start_response("299 Quite Fine", [("Content-Type", "text/plain")])
    return [b"a", b"b", b"c"]


def writer(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Uses the legacy write() callable, then returns more."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"twice ")
    return [b"then returned"]


def misused_callables(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Calls start_response and write() wrongly (each a TypeError, the request goes
    on), then answers with what it saw; write() gives None."""
    seen = []
    for args in (("200 OK",), (b"200 OK", [])):
        try:
            start_response(*args)
        except TypeError as exc:
            seen.append(f"TypeError: {exc}")
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        write("text")
    except TypeError as exc:
        seen.append(f"TypeError: {exc}")
    seen.append(f"write gave {write(b'seen: ')!r}")
    return ["; ".join(seen).encode()]


def gated(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Says it started (EVENTS), waits for GATE (10 s at most), then answers whole."""
    EVENTS.append("gated")
    GATE.wait(10)
    return _text(start_response, b"after the gate")


def gated_writer(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Says it started (EVENTS), waits for GATE (10 s at most), then writes with the
    write() callable; what that raised goes to EVENTS too."""
    EVENTS.append("gated writer")
    GATE.wait(10)
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        write(b"late")
    except Exception as exc:
        EVENTS.append(("write", type(exc).__name__))
        raise
    return []


def slow_stream(environ: Environ, start_response: StartResponse) -> Closing:
    """A first chunk, then waits for GATE before each next one (forever)."""

    def chunks() -> Iterator[bytes]:
        yield b"first\n"
        i = 0
        while True:
            GATE.wait(5)
            i += 1
            yield b"more %d\n" % i

    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(chunks(), "slow")


def big_stream(environ: Environ, start_response: StartResponse) -> Closing:
    """8 MiB in 64 KiB chunks (back-pressure when the client reads slowly)."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Closing((bytes([i % 256]) * 65536 for i in range(128)), "big")


def raises(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Raises before starting the response."""
    raise RuntimeError("SECRET-TRACEBACK-DETAIL wsgi")


def raises_in_iteration(environ: Environ, start_response: StartResponse) -> Closing:
    """Fails while producing the body, after a first chunk went out."""

    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("SECRET-TRACEBACK-DETAIL in iteration")

    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(chunks(), "failing")


def exc_info_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Starts a response, fails, and replaces it via exc_info (headers not sent yet)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("oops")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


def exc_info_too_late(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """Calls start_response with exc_info after the head went out: it re-raises."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"head is out"
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())
    yield b"never"


def twice(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Calls start_response twice without exc_info."""
    start_response("200 OK", [])
    start_response("200 OK", [])
    return [b""]


def exits(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Calls sys.exit: must not stop the server."""
    sys.exit(3)


def file_app(environ: Environ, start_response: StartResponse) -> Any:
    """Sends the file named by the query string through wsgi.file_wrapper."""
    path = environ["QUERY_STRING"]
    f = open(path, "rb")  # noqa: SIM115 - the server closes it through the wrapper
    f.seek(10)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, 4096)


#: Requests to ``thread_name`` meet here in pairs.
PAIRS = threading.Barrier(2)


def thread_name(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers the name of the thread it runs on, once another request runs beside it:
    two at a time, or a broken barrier (a 500) after a long wait."""
    PAIRS.wait(PATIENCE)
    return _text(start_response, threading.current_thread().name.encode())


def log_error(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Writes to wsgi.errors."""
    errors = environ["wsgi.errors"]
    errors.write("first line\nsecond ")
    errors.write("line\n")
    errors.writelines(["partial"])
    errors.flush()
    return _text(start_response, b"logged")


# -- under the stdlib validator ------------------------------------------------------------


def _validated_core(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/error":
        raise RuntimeError("validated app failure")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part %d\n" % i for i in range(100))
    if environ["REQUEST_METHOD"] == "POST":
        stream = environ["wsgi.input"]
        h = hashlib.sha256()
        total = 0
        while chunk := stream.read(65536):
            h.update(chunk)
            total += len(chunk)
        body = f"{total} {h.hexdigest()}".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"validated ", environ["PATH_INFO"].encode("latin-1")]


validated = validator(_validated_core)


# -- both ways of running an application ([wsgi] blocking) ---------------------------------


def where(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers the thread it runs on and what wsgi.multithread says."""
    name = threading.current_thread().name
    return _text(start_response, f"{name} {environ['wsgi.multithread']}".encode())


def sched_policy(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers the scheduling policy of the thread it runs on (os.sched_getscheduler)."""
    return _text(start_response, str(os.sched_getscheduler(0)).encode())


#: How many chunks ``counted_stream`` produced so far.
PRODUCED: list[int] = [0]


def counted_stream(environ: Environ, start_response: StartResponse) -> Closing:
    """64 KiB chunks (128 of them, or as many as the query string says), counting
    each chunk as it is produced (PRODUCED)."""
    PRODUCED[0] = 0
    count = int(environ["QUERY_STRING"] or "128")

    def chunks() -> Iterator[bytes]:
        for i in range(count):
            PRODUCED[0] += 1
            yield bytes([i % 256]) * 65536

    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Closing(chunks(), "counted")


def sleeps(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Blocks for the seconds in its query string (an application that blocks)."""
    time.sleep(float(environ["QUERY_STRING"] or "0"))
    return _text(start_response, b"slept")


#: The applications ``dispatch`` reaches, by the first segment of the path.
DISPATCHED: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (
        hello,
        environ_app,
        digest,
        read_all,
        lines,
        stream,
        one_chunk_generator,
        lazy_start,
        custom_reason,
        writer,
        big_stream,
        raises,
        raises_in_iteration,
        exc_info_app,
        exc_info_too_late,
        twice,
        exits,
        file_app,
        swallows_input_errors,
    )
}


def dispatch(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The application named by the first path segment (``/stream/x`` runs
    ``stream`` with ``PATH_INFO`` ``/x``): many applications on one server."""
    name, _, rest = environ["PATH_INFO"].lstrip("/").partition("/")
    environ["SCRIPT_NAME"] += "/" + name
    environ["PATH_INFO"] = "/" + rest
    return DISPATCHED[name](environ, start_response)
