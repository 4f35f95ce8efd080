"""The compiled default W3C line writes what the generated code writes for the same fields."""

from __future__ import annotations

import random
import re
import time
from typing import Any

import pytest

from colonnade import Principal
from colonnade.core.context import Context
from colonnade.core.metrics import SiteCounters
from colonnade.core.request import Request
from colonnade.errors import ClientDisconnectedError
from colonnade.modules.http_logging import w3cline
from colonnade.modules.http_logging.compiler import generated_line
from colonnade.modules.http_logging.config import HttpLoggingSection
from colonnade.modules.http_logging.fast import log_request_hook
from colonnade.modules.http_logging.fields import Clock
from colonnade.modules.http_logging.module import HttpLogging
from colonnade.modules.http_logging.sink import Sink
from colonnade.modules.http_logging.w3c import W3cWriter
from colonnade.modules.http_logging.w3cline import (
    DEFAULT_FIELDS,
    DefaultW3cLine,
    default_line,
    native_line,
    render,
)
from colonnade.testing import make_context

UA = b'Mozilla/5.0 (X11; Linux) "quoted" \xc3\xa9t\xc3\xa9'  # non-ASCII as sent (UTF-8 bytes)


def _request(
    method: str = "GET",
    path: str = "/",
    query: bytes = b"",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    version: str = "1.1",
    client: tuple[str, int] | None = ("203.0.113.9", 50123),
    server: tuple[str, int] | None = ("192.0.2.1", 8080),
) -> Request:
    return Request(
        method,
        path,
        query=query,
        version=version,
        headers=headers or [],
        host="example.test",
        client=client,
        server=server,
    )


def _remapped() -> Request:
    request = _request("GET", "/old path", b"a=1", headers=[(b"user-agent", b"curl/8")])
    request.target = b"/old%20path?a=1"
    request.path = "/new"  # a rewrite: the log keeps the URL the client sent
    request.query = b"rewritten=1"
    return request


# (request, status, substatus, user name, error)
ROWS: list[tuple[Request, int, int, str | None, BaseException | None]] = [
    (_request(), 200, 0, None, None),
    (_request("POST", "/form", b"x=1&y=2"), 201, 0, None, None),
    (_request("HEAD", "/a b/c.txt", b"q=a b"), 304, 0, None, None),
    (_request("DELETE", "/x", b"", headers=[(b"user-agent", UA)]), 204, 0, None, None),
    (
        _request(
            "GET",
            "/page",
            b"",
            headers=[(b"referer", b"https://example.test/a?b=c d"), (b"user-agent", b"a b")],
        ),
        200,
        0,
        None,
        None,
    ),
    # Fields the line does not log around the two it does (a browser's request).
    (
        _request(
            "GET",
            "/page",
            b"",
            headers=[
                (b"host", b"example.test"),
                (b"user-agent", b"Mozilla/5.0 (X11)"),
                (b"accept", b"text/html"),
                (b"referer", b"https://example.test/"),
                (b"cookie", b"a=b"),
            ],
        ),
        200,
        0,
        None,
        None,
    ),
    # Repeated headers: the last one is logged (as dict(headers) keeps it).
    (_request(headers=[(b"user-agent", b"first"), (b"user-agent", b"second")]), 200, 0, None, None),
    (_request(headers=[(b"user-agent", b""), (b"referer", b"")]), 200, 0, None, None),
    (_request("GET", "/secret"), 401, 2, None, None),
    (_request("GET", "/me"), 200, 0, "DOMAIN\\jane doe", None),
    (_request("GET", "/me"), 200, 0, "", None),
    (_request("GET", "/me"), 200, 0, "zoë\r\nforged", None),
    (_request("GET", "/line\nbreak", b"q=1\r\n2"), 404, 0, None, None),
    (_request("GET", "/fail"), 500, 0, None, RuntimeError("boom")),
    (_request("GET", "/busy"), 503, 0, None, None),
    (_request("GET", "/gone"), 200, 0, None, ClientDisconnectedError("went away")),
    # A 200 with a substatus: not the table's end of a plain 200.
    (_request("GET", "/sub"), 200, 7, None, None),
    (_request("GET", "/old", version="1.0"), 200, 0, None, None),
    (_request(client=("2001:db8::1", 443), server=("2001:db8::2", 443)), 200, 0, None, None),
    (_request(client=None, server=None), 200, 0, None, None),
    (_remapped(), 200, 0, None, None),
    (_request("GET", "/é/ü", b"\xc3\xa9=1"), 200, 0, None, None),
]


def _context(
    row: tuple[Request, int, int, str | None, BaseException | None], ago: float = 2.5
) -> Context:
    request, status, substatus, user, error = row
    ctx = make_context()
    ctx.request = request
    ctx.response.status = status
    ctx.response.substatus = substatus
    if user is not None:
        ctx.user = Principal(name=user)
    ctx.error = error
    ctx.started = time.monotonic() - ago
    return ctx


def _captured(build: Any, ctx: Context) -> str:
    # The line as the sink would write it, without a flush or a timer.
    sink = Sink("test", None)
    line = build(DEFAULT_FIELDS, W3cWriter, sink)
    sink.render = line.render
    sink.width = line.width
    sink.timer = object()  # type: ignore[assignment]
    line.capture(ctx)
    text = line.render(list(sink.pending))
    sink.pending.clear()
    sink.timer = None
    assert isinstance(text, str)
    return text


@pytest.mark.parametrize("ago", [2.5, 0.0], ids=["slow", "fast"])
@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0].method} {r[0].path!r}" for r in ROWS])
def test_the_compiled_default_line_is_the_generated_one(row: Any, ago: float) -> None:
    # Started 2.5 s ago, every line's end is made for it; started now, under a
    # second, the usual ends come from the tables (a 200's whole end, a GET's
    # method and path, no query and no user in one piece).
    ctx = _context(row, ago)
    generated = _captured(generated_line, ctx)
    compiled = _captured(default_line, ctx)
    assert compiled.endswith("\n") and compiled.count("\n") == 1
    ours, theirs = compiled[:-1].split(" "), generated[:-1].split(" ")
    assert len(ours) == len(DEFAULT_FIELDS)
    # date, time and time-taken are read from the clocks at capture: the same
    # second and millisecond count is not guaranteed between two captures.
    clocked = {0, 1, 14}
    assert [v for i, v in enumerate(ours) if i not in clocked] == [
        v for i, v in enumerate(theirs) if i not in clocked
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", ours[0]) and re.fullmatch(r"\d\d:\d\d:\d\d", ours[1])
    # the compiled line was captured second
    assert ago * 1000 <= int(theirs[14]) <= int(ours[14]) < 600_000


def _pending(build: Any) -> tuple[Sink, Any]:
    # A sink whose lines stay pending (no timer, no write) and ``build``'s line in it.
    sink = Sink("test", None)
    line = build(DEFAULT_FIELDS, W3cWriter, sink)
    sink.render = line.render
    sink.width = line.width
    sink.timer = object()  # type: ignore[assignment]
    sink.set_limit(1 << 40)
    return sink, line


def _batch(sink: Sink, capture: Any, render: Any, contexts: list[Context]) -> list[str]:
    # The lines of ``contexts`` captured into ``sink`` and rendered as one batch.
    try:
        for ctx in contexts:
            capture(ctx)
        text = render(list(sink.pending))
    finally:
        sink.pending.clear()
        sink.timer = None
    assert isinstance(text, str) and text.endswith("\n")
    return text[:-1].split("\n")


@pytest.mark.parametrize("mode", ["defer", "write"])
def test_a_batch_of_every_row_is_the_generated_lines(mode: str) -> None:
    # The default line's two ways (the installed build uses one: ``write`` renders
    # at capture, compiled; ``defer`` captures values and ``lines`` renders a batch,
    # carrying what one line made, the server's and client's fields, to the next
    # where they share it): every row in one batch, and again in other orders (each
    # line's neighbours differ), is what the generated code writes line by line.
    rows = ROWS + ROWS[::-1] + ROWS[::2]
    contexts = [_context(row) for row in rows]
    sink, line = _pending(default_line)
    ours_capture = line.capture.__self__
    assert isinstance(ours_capture, DefaultW3cLine)
    if mode == "defer":
        ours = _batch(sink, ours_capture.defer, ours_capture.lines, contexts)
    else:
        sink.render = render
        ours_capture.render = render
        ours = _batch(sink, ours_capture.write, render, contexts)
    sink, line = _pending(generated_line)
    theirs = _batch(sink, line.capture, line.render, contexts)
    assert len(ours) == len(theirs) == len(rows)
    clocked = {0, 1, 14}
    for mine, generated in zip(ours, theirs, strict=True):
        a, b = mine.split(" "), generated.split(" ")
        assert len(a) == len(DEFAULT_FIELDS)
        assert [v for i, v in enumerate(a) if i not in clocked] == [
            v for i, v in enumerate(b) if i not in clocked
        ]


def test_a_deferred_line_keeps_no_exception_nor_request() -> None:
    # Deferred lines wait for their batch as values: a failed request's exception
    # (its traceback, its frames) and the request itself are not among them, so a
    # batch holds about what its text will.
    sink, line = _pending(default_line)
    capture = line.capture.__self__
    fail = next(row for row in ROWS if isinstance(row[4], RuntimeError))
    try:
        capture.defer(_context(fail))
        (values,) = sink.pending
        assert isinstance(values, tuple)
        assert not [v for v in values if isinstance(v, (BaseException, Request, Context))]
        assert capture.lines(list(sink.pending)).split(" ")[11:14] == ["500", "0", "0"]
    finally:
        sink.pending.clear()
        sink.timer = None


def test_the_default_fields_get_the_compiled_line_and_others_the_generated_one() -> None:
    module = HttpLogging()
    try:
        default = module._open(HttpLoggingSection())
        iis = module._open(HttpLoggingSection(fields=list(DEFAULT_FIELDS[:-1])))
        json = module._open(HttpLoggingSection(format="json"))
    finally:
        module.cleanup()
    # The default line's capture is its bound ``write``.
    assert isinstance(getattr(default.capture, "__self__", None), DefaultW3cLine)
    assert not isinstance(getattr(iis.capture, "__self__", None), DefaultW3cLine)
    assert not isinstance(getattr(json.capture, "__self__", None), DefaultW3cLine)


def test_the_compiled_lines_path_memo_is_bounded_and_keeps_each_paths_field() -> None:
    # Paths are memoised with the space on each side of their field: hostile unique
    # paths start the memo over rather than grow it, and a path met again (a hit)
    # gets the same field as when it was escaped (a miss).
    from colonnade.modules.http_logging.w3c import MEMO_MAX

    sink = Sink("test", None)
    line = default_line(DEFAULT_FIELDS, W3cWriter, sink)
    capture = line.capture.__self__  # type: ignore[attr-defined]
    assert isinstance(capture, DefaultW3cLine)
    sink.render = line.render
    sink.width = line.width
    sink.timer = object()  # type: ignore[assignment]
    sink.set_limit(1 << 40)  # no write: the lines stay pending
    try:
        for n in range(MEMO_MAX + 10):
            line.capture(_context((_request("GET", f"/u{n}"), 200, 0, None, None)))
        text = line.render(list(sink.pending))
        assert 0 < len(capture.paths) <= MEMO_MAX and 0 < len(capture.gets) <= MEMO_MAX
        assert text.split("\n")[MEMO_MAX + 9].split(" ")[3:5] == ["GET", f"/u{MEMO_MAX + 9}"]
        sink.pending.clear()
        for _ in range(2):
            line.capture(_context((_request("GET", "/a b\r\nc"), 200, 0, None, None)))
        first, second = (text.split(" ")[3:5] for text in line.render(sink.pending).splitlines())
    finally:
        sink.pending.clear()
        sink.timer = None
    assert first == second == ["GET", "/a+b%0D%0Ac"]


def test_the_compiled_line_follows_the_client_address_across_connections() -> None:
    # Each request's client tuple is a connection's own: the c-ip field is made
    # again only where the address changes, and is right for every one.
    sink = Sink("test", None)
    line = default_line(DEFAULT_FIELDS, W3cWriter, sink)
    sink.render = line.render
    sink.width = line.width
    sink.timer = object()  # type: ignore[assignment]
    sink.set_limit(1 << 40)  # no write: the lines stay pending
    clients = [
        ("10.0.0.1", 1000),
        ("10.0.0.1", 1001),
        ("10.0.0.2", 1000),
        ("10.0.0.1", 1002),
        None,
        None,
        ("10.0.0.1", 1003),
        ("2001:db8::1", 1003),
    ]
    at = DEFAULT_FIELDS.index("c-ip")
    try:
        for client in clients:
            line.capture(_context((_request(client=client), 200, 0, None, None)))
        got = [text.split(" ")[at] for text in line.render(sink.pending).splitlines()]
    finally:
        sink.pending.clear()
        sink.timer = None
    assert got == [c[0] if c is not None else "-" for c in clients]


@pytest.mark.parametrize("build", [default_line, generated_line], ids=["default", "generated"])
def test_the_site_counters_reuse_the_log_lines_clock_reading(build: Any) -> None:
    # One clock reading at a request's end: the line reads it (time-taken) and keeps
    # it on the context; the site's counters, which come after, take the same instant.
    ctx = _context(ROWS[0])
    assert ctx.ended_at == 0.0
    text = _captured(build, ctx)
    ended = ctx.ended_at
    assert ended > ctx.started
    assert text.split()[-2] == str(int((ended - ctx.started) * 1000))
    counters = SiteCounters()
    counters.done(ctx)
    assert ctx.ended_at == ended
    assert counters.duration_sum == ended - ctx.started


def test_the_site_counters_read_the_clock_when_nothing_logged() -> None:
    ctx = _context(ROWS[0])
    counters = SiteCounters()
    counters.done(ctx)
    assert ctx.ended_at > ctx.started
    assert counters.duration_sum == ctx.ended_at - ctx.started


# --- Random requests: every path of the default line against the generated code ------

_PATHS = ["/", "/index.html", "/a b/c.txt", "/x\r\ny", "/é/ü", "/tab\there", "/\u2028", "/+%"]
_BYTES = [b"", b"a=1", b"q=a b", b"x\r\nforged 1 2", b"\xc3\xa9=1", b"\x00\x7f\xff", b"-"]
# Header names around the two the line logs, and names of the same lengths (10, 7).
_NAMES = [
    b"host",
    b"accept",
    b"cookie",
    b"user-agent",
    b"referer",
    b"user-agenx",
    b"referex",
    b"x-user-agent",
    b"referrer",
]
_VALUES = [b"", b"curl/8", UA, b"a b", b"https://example.test/?a=b c", b"x\r\ny", b"\x1b[31m"]
_USERS = [None, None, None, "jane", "DOMAIN\\jane doe", "", "zoë\r\nforged"]
_STATUSES = [200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 404, 500, 503, 999]


def _random_rows(seed: int, n: int) -> list[Context]:
    # Requests of a few connections taking turns: the client and server tuples are
    # the connections' own (one object per connection), some sharing an address.
    rnd = random.Random(seed)
    clients: list[tuple[str, int] | None] = [
        ("203.0.113.9", 50123),
        ("203.0.113.9", 50124),
        ("198.51.100.7", 40000),
        ("2001:db8::1", 443),
        None,
    ]
    servers: list[tuple[str, int] | None] = [("192.0.2.1", 8080), ("192.0.2.2", 443), None]
    contexts = []
    for _ in range(n):
        headers = [
            (rnd.choice(_NAMES), rnd.choice(_VALUES)) for _ in range(rnd.choice([0, 0, 1, 2, 5]))
        ]
        request = _request(
            rnd.choice(["GET", "GET", "GET", "POST", "HEAD", "PROPFIND"]),
            rnd.choice(_PATHS),
            rnd.choice([b"", b"", *_BYTES]),
            headers=headers,
            client=rnd.choice(clients),
            server=rnd.choice(servers),
        )
        if rnd.random() < 0.1:  # a rewrite: the URL the client sent is logged
            request.target = b"/sent%20path?" + rnd.choice(_BYTES)
            request.path = "/rewritten"
            request.query = b"rewritten=1"
        error = rnd.choice([None] * 8 + [RuntimeError("boom"), ClientDisconnectedError("gone")])
        row = (request, rnd.choice(_STATUSES), rnd.choice([0] * 6 + [3]), rnd.choice(_USERS), error)
        contexts.append(_context(row, rnd.choice([0.0, 0.0, 0.0, 2.5])))
    return contexts


def _same_lines(ours: list[str], theirs: list[str]) -> None:
    assert len(ours) == len(theirs)
    clocked = {0, 1, 14}  # date, time, time-taken: read from the clocks at capture
    for mine, generated in zip(ours, theirs, strict=True):
        a, b = mine.split(" "), generated.split(" ")
        assert len(a) == len(b) == len(DEFAULT_FIELDS), (mine, generated)
        assert [v for i, v in enumerate(a) if i not in clocked] == [
            v for i, v in enumerate(b) if i not in clocked
        ], (mine, generated)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["hook", "hook-write", "write", "defer"])
def test_random_requests_get_the_generated_lines(mode: str, seed: int) -> None:
    # Many random requests (methods, paths and values to escape, repeated, empty and
    # look-alike headers, users, statuses, substatuses, errors, rewrites, connections
    # taking turns) through each way of the default line: the LOG_REQUEST hook as the
    # plan calls it, with the line's capture (compiled: ``write``, which the hook
    # calls natively; interpreted: ``defer``) and with ``write`` in either build;
    # ``write`` itself; ``defer`` with its batch renderer. Each line is the
    # generated code's.
    contexts = _random_rows(seed, 300)
    sink, line = _pending(default_line)
    ours_capture = line.capture.__self__
    assert isinstance(ours_capture, DefaultW3cLine)
    if mode in ("hook-write", "write"):
        sink.render = render
        ours_capture.render = render
    if mode.startswith("hook"):
        sections = contexts[0].sections
        for ctx in contexts:
            ctx.sections = sections  # one application's settings, as on a site

        def unbuilt(ctx: Context) -> None:
            raise AssertionError("the capture was built already")

        capture = ours_capture.write if mode == "hook-write" else line.capture
        hook = log_request_hook("unused", unbuilt, {sections: capture})
        # The hook calls write natively where the capture is write.
        native = mode == "hook-write" or w3cline._COMPILED
        assert native_line(capture) is (ours_capture if native else None)
        ours = _batch(sink, hook, sink.render, contexts)
    elif mode == "write":
        ours = _batch(sink, ours_capture.write, render, contexts)
    else:
        ours = _batch(sink, ours_capture.defer, ours_capture.lines, contexts)
    sink, generated = _pending(generated_line)
    _same_lines(ours, _batch(sink, generated.capture, generated.render, contexts))


def test_only_the_default_lines_own_write_is_called_natively() -> None:
    sink = Sink("test", None)
    line = default_line(DEFAULT_FIELDS, W3cWriter, sink)
    capture = line.capture.__self__  # type: ignore[attr-defined]
    assert native_line(capture.write) is capture
    assert native_line(line.capture) is (capture if w3cline._COMPILED else None)
    # Another bound method of the line, another line's write, a selective filter
    # around the capture, a generated capture: called as they are.
    other = DefaultW3cLine(sink)
    assert native_line(capture.defer) is None
    assert native_line(capture.lines) is None
    assert native_line(other.write) is other
    assert native_line(lambda ctx: line.capture(ctx)) is None
    assert native_line(generated_line(DEFAULT_FIELDS, W3cWriter, Sink("t", None)).capture) is None


def test_the_stamp_is_the_clocks_date_and_time_for_any_second() -> None:
    # The line's "date time " string, made from a table and a date kept per day, is
    # what the generated code's Clock formats with gmtime, for random instants and
    # day, month, leap-day and year ends, in order (the day's date kept) and not.
    rnd = random.Random(7)
    edges = [0, 86399, 86400, 951782399, 951782400, 1709251199, 1709251200, 4107542399]
    edges += [4107542400, 1735689599, 1735689600, 2147483647, 4102444799]
    walls = [float(e) for e in edges] + [e + 0.999 for e in edges]
    walls += [rnd.uniform(0, 4_200_000_000) for _ in range(2000)]
    start = rnd.randrange(0, 4_000_000_000)
    walls += [start + i * 0.37 for i in range(400)]  # a day's seconds in order
    line = DefaultW3cLine(Sink("test", None))
    clock = Clock()
    for wall in walls + sorted(walls):
        line.at(10.0, wall)
        clock.refresh(wall)
        assert line.stamp == f"{clock.date} {clock.time} ", wall
        assert line.until == 10.0 + (clock.next - wall)
        assert line.head == line.stamp + "- "  # no server met yet
