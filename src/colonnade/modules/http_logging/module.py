"""The access log (IIS HttpLoggingModule and W3C logging) at LOG_REQUEST.

How this works:

- *Compile once.* :meth:`HttpLogging.provision` turns the field list into a
  :class:`LineFormat` and, per target, one generated function (W3C: a single
  f-string over inline field expressions, appended to the sink's list) or a dict
  of getters encoded by ``msgspec`` (JSON). The hook is one dict lookup by section
  and one call.
- *Cheap per request.* The date and time strings are rebuilt once per second, not
  per line; paths, queries, user names and header values are escaped once and
  memoised; request headers are turned into a dict only when a ``cs(...)`` field
  needs them; the correlation id is read only for 5xx answers (which made one).
- *Buffered.* Lines go to a :class:`Sink`'s in-memory list as text, joined and
  encoded once per write. It is written in one
  syscall when it passes ``buffer_size``, ``flush_interval`` seconds after its first
  line (a ``call_later`` on the running loop: no thread, no per-request syscall),
  and on ``shutdown`` and ``cleanup``.
- *One file per target.* Sinks live in a module-level registry keyed by target and
  are reference-counted, so every application and module instance writing to the
  same file shares one descriptor and one buffer; the last ``cleanup`` closes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from colonnade import __version__
from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.module import Module, hook
from colonnade.core.stages import Stage
from colonnade.errors import ClientDisconnectedError, ConfigError
from colonnade.modules.http_logging.config import HEADER_FIELD, HttpLoggingSection

log = logging.getLogger("colonnade.log.http")

#: How far back into an existing log file to look for its last ``#Fields`` line.
_TAIL = 65536
#: Targets that name the process's standard streams rather than a file.
_STREAMS = ("stdout", "stderr")
#: Sections remembered for the per-request output lookup (a bound, not a target).
_SECTIONS_MAX = 1024


class LineState:
    """Per-line values shared by the getters: the clock strings and header dict.

    Formatting is synchronous, so one instance serves every line in the process.
    """

    __slots__ = ("date", "headers", "next", "second", "time")

    def __init__(self) -> None:
        self.second = -1
        self.next = 0.0  # when ``second`` ends: one float compare per line
        self.date = ""
        self.time = ""
        self.headers: dict[bytes, bytes] = {}

    def tick(self) -> None:
        """Bring ``date``/``time`` to the current UTC second (formats once a second)."""
        now = time.time()
        if now >= self.next:
            self.refresh(now)

    def refresh(self, now: float) -> None:
        """Format the clock strings for the second ``now`` falls in."""
        second = int(now)
        t = time.gmtime(second)
        self.date = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        self.time = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        self.second = second
        self.next = second + 1.0


_STATE = LineState()

W3cGetter = Callable[[Context, LineState], str]
#: Writes the line of one request into its sink.
Emit = Callable[[Context], None]
#: Turns a batch of captured W3C values (a flat list, a fixed number per line) into text.
Render = Callable[[list[Any]], str]
JsonGetter = Callable[[Context, LineState], "str | int | None"]


def _escape_unprintable(char: str) -> str:
    if char.isprintable():
        return char
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def w3c_escape(value: str) -> str:
    """A W3C field value: ``-`` when empty, spaces as ``+``, control characters %XX."""
    if not value:
        return "-"
    if " " in value:
        value = value.replace(" ", "+")
    if not value.isprintable():
        # A CR, LF (or U+2028...) from a decoded URL or header must not start a
        # forged line; this loop runs only for such rare values.
        value = "".join([_escape_unprintable(char) for char in value])
    return value


class _Memo(dict[Any, str]):
    """Escaped forms of recurring values (paths, user agents): one dict hit per line.

    A miss escapes the value and keeps it; the memo is emptied when it reaches
    ``_MEMO_MAX`` entries, so hostile unique values cannot grow it without bound.
    """

    def __init__(self, escape: Callable[[Any], str]) -> None:
        super().__init__()
        self.escape = escape

    def __missing__(self, value: Any) -> str:
        if len(self) >= _MEMO_MAX:
            self.clear()
        escaped = self[value] = self.escape(value)
        return escaped


def _escape_bytes(value: bytes | None) -> str:
    return w3c_escape(value.decode("latin-1")) if value else "-"


#: Entries a memo holds before it starts over.
_MEMO_MAX = 4096


# -- field getters -----------------------------------------------------------------
# Each field has a W3C getter (a ready, escaped string) and a JSON getter (the raw
# value: str, int or None). They are small on purpose: the hot path calls one per
# field per request.


def _date(ctx: Context, state: LineState) -> str:
    return state.date


def _time(ctx: Context, state: LineState) -> str:
    return state.time


def _s_ip(ctx: Context, state: LineState) -> str:
    server = ctx.request.server
    return server[0] if server else "-"


def _s_ip_json(ctx: Context, state: LineState) -> str | None:
    server = ctx.request.server
    return server[0] if server else None


def _s_port(ctx: Context, state: LineState) -> str:
    server = ctx.request.server
    return str(server[1]) if server else "-"


def _s_port_json(ctx: Context, state: LineState) -> int | None:
    server = ctx.request.server
    return server[1] if server else None


def _c_ip(ctx: Context, state: LineState) -> str:
    client = ctx.request.client
    return client[0] if client else "-"


def _c_ip_json(ctx: Context, state: LineState) -> str | None:
    client = ctx.request.client
    return client[0] if client else None


def _method(ctx: Context, state: LineState) -> str:
    return ctx.request.method


def _uri_stem(ctx: Context, state: LineState) -> str:
    return w3c_escape(ctx.request.original_path)


def _uri_stem_json(ctx: Context, state: LineState) -> str:
    return ctx.request.original_path


def _uri_query(ctx: Context, state: LineState) -> str:
    query = ctx.request.query
    return w3c_escape(query.decode("latin-1")) if query else "-"


def _uri_query_json(ctx: Context, state: LineState) -> str | None:
    query = ctx.request.query
    return query.decode("latin-1") if query else None


def _username(ctx: Context, state: LineState) -> str:
    user = ctx.user
    return w3c_escape(user.name) if user is not None else "-"


def _username_json(ctx: Context, state: LineState) -> str | None:
    user = ctx.user
    return (user.name or None) if user is not None else None


def _status(ctx: Context, state: LineState) -> str:
    return str(ctx.response.status)


def _status_json(ctx: Context, state: LineState) -> int:
    return ctx.response.status


def _substatus(ctx: Context, state: LineState) -> str:
    return str(ctx.response.substatus)


def _substatus_json(ctx: Context, state: LineState) -> int:
    return ctx.response.substatus


def _win32_code(error: BaseException | None) -> int:
    # The one IIS Win32 status that means something off Windows: 64, the client
    # went away before its response was complete.
    return ClientDisconnectedError.WIN32_STATUS if isinstance(error, ClientDisconnectedError) else 0


def _win32_status(ctx: Context, state: LineState) -> str:
    return str(_win32_code(ctx.error))


def _win32_status_json(ctx: Context, state: LineState) -> int:
    return _win32_code(ctx.error)


def _time_taken_json(ctx: Context, state: LineState) -> int:
    return int((time.monotonic() - ctx.started) * 1000)


def _time_taken(ctx: Context, state: LineState) -> str:
    return str(int((time.monotonic() - ctx.started) * 1000))


def _sc_bytes_json(ctx: Context, state: LineState) -> int:
    return ctx.writer.bytes_sent


def _sc_bytes(ctx: Context, state: LineState) -> str:
    return str(ctx.writer.bytes_sent)


def _cs_bytes_json(ctx: Context, state: LineState) -> int:
    # The request as received: request line, headers, declared body length.
    request = ctx.request
    size = len(request.method) + len(request.target) + len(request.version) + 13
    body = 0
    for name, value in request.headers:
        size += len(name) + len(value) + 4
        if name == b"content-length" and value.isdigit():
            body = int(value)
    return size + body


def _cs_bytes(ctx: Context, state: LineState) -> str:
    return str(_cs_bytes_json(ctx, state))


def _host(ctx: Context, state: LineState) -> str:
    return w3c_escape(ctx.request.host)


def _host_json(ctx: Context, state: LineState) -> str | None:
    return ctx.request.host or None


def _version(ctx: Context, state: LineState) -> str:
    return "HTTP/" + ctx.request.version


def _sitename(ctx: Context, state: LineState) -> str:
    return w3c_escape(ctx.app.site)


def _sitename_json(ctx: Context, state: LineState) -> str:
    return ctx.app.site


def _correlation_id_json(ctx: Context, state: LineState) -> str | None:
    # 5xx answers made one for their error page; asking for it on other requests
    # would generate an id per request for nothing.
    return ctx.correlation_id if ctx.response.status >= 500 else None


def _correlation_id(ctx: Context, state: LineState) -> str:
    return ctx.correlation_id if ctx.response.status >= 500 else "-"


_COMPUTER_NAME = socket.gethostname()


def _computer_name(ctx: Context, state: LineState) -> str:
    return w3c_escape(_COMPUTER_NAME)


def _computer_name_json(ctx: Context, state: LineState) -> str:
    return _COMPUTER_NAME


#: field name → (W3C getter, JSON getter).
FIELDS: dict[str, tuple[W3cGetter, JsonGetter]] = {
    "date": (_date, _date),
    "time": (_time, _time),
    "s-ip": (_s_ip, _s_ip_json),
    "cs-method": (_method, _method),
    "cs-uri-stem": (_uri_stem, _uri_stem_json),
    "cs-uri-query": (_uri_query, _uri_query_json),
    "s-port": (_s_port, _s_port_json),
    "cs-username": (_username, _username_json),
    "c-ip": (_c_ip, _c_ip_json),
    "sc-status": (_status, _status_json),
    "sc-substatus": (_substatus, _substatus_json),
    "sc-win32-status": (_win32_status, _win32_status_json),
    "time-taken": (_time_taken, _time_taken_json),
    "sc-bytes": (_sc_bytes, _sc_bytes_json),
    "cs-bytes": (_cs_bytes, _cs_bytes_json),
    "cs-host": (_host, _host_json),
    "cs-version": (_version, _version),
    "s-sitename": (_sitename, _sitename_json),
    "s-computername": (_computer_name, _computer_name_json),
    "x-correlation-id": (_correlation_id, _correlation_id_json),
}


def _request_header(name: bytes) -> tuple[W3cGetter, JsonGetter]:
    def w3c(ctx: Context, state: LineState) -> str:
        value = state.headers.get(name)
        return w3c_escape(value.decode("latin-1")) if value else "-"

    def json(ctx: Context, state: LineState) -> str | None:
        value = state.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    return w3c, json


def _response_header(name: bytes) -> tuple[W3cGetter, JsonGetter]:
    def w3c(ctx: Context, state: LineState) -> str:
        value = ctx.response.header(name)
        return w3c_escape(value.decode("latin-1")) if value else "-"

    def json(ctx: Context, state: LineState) -> str | None:
        value = ctx.response.header(name)
        return value.decode("latin-1") if value is not None else None

    return w3c, json


# W3C fields formatted by generated code (see _compile_w3c): per field, what is
# captured when the request is logged (expressions over ``ctx``, ``st`` the
# LineState, ``r`` the request, ``resp`` the response) and how the captured
# values ({0}, {1}, ...) become text (a str: the line is one join) when the batch
# is rendered. ``nums`` memoises the text of integers (cheaper than formatting).
_INLINE: dict[str, tuple[tuple[str, ...], str]] = {
    "date": (("st.date",), "{0}"),
    "time": (("st.time",), "{0}"),
    "s-ip": (("r.server",), "({0}[0] if {0} else '-')"),
    "cs-method": (("r.method",), "{0}"),
    "cs-uri-stem": (("r.original_path",), "escs[{0}]"),
    "cs-uri-query": (("r.query",), "escb[{0}]"),
    "s-port": (("r.server",), "(nums[{0}[1]] if {0} else '-')"),
    "cs-username": (("ctx.user",), "('-' if {0} is None else escs[{0}.name])"),
    "c-ip": (("r.client",), "({0}[0] if {0} else '-')"),
    "sc-status": (("resp.status",), "nums[{0}]"),
    "sc-substatus": (("resp.substatus",), "nums[{0}]"),
    "sc-win32-status": (("ctx.error",), "('0' if {0} is None else nums[win32({0})])"),
    "time-taken": (("monotonic() - ctx.started",), "nums[int({0} * 1000)]"),
    "x-correlation-id": (("(ctx.correlation_id if resp.status >= 500 else '-')",), "{0}"),
}


class W3cLine(NamedTuple):
    """A W3C field list compiled in two halves (see :func:`_compile_w3c`)."""

    capture: Emit  # per request: the raw values, appended to the sink's pending list
    render: Render  # per batch: the pending values as text
    width: int  # values per line in the pending list


def _compile_w3c(
    fmt: LineFormat, fields: list[str], getters: list[W3cGetter], sink: Sink
) -> W3cLine:
    """Generate the two halves of a W3C line, like nginx's compiled log formats.

    ``capture`` runs for every request: it appends its raw values (the request's
    path object, the header values asked for, the status, the elapsed time...) to
    ``sink.pending`` and does nothing else. The list is flat, ``width`` values a
    line: no object per request stays alive until the write, so the garbage
    collector, which runs after every few hundred surviving allocations and then
    walks all of them, has nothing of the log's to count or walk (a tuple per
    line doubled its work). ``render`` turns a whole batch into text when the sink
    writes: one tight loop over ``width``-sized slices, so the formatting, the
    memoised escapes and the header lookups run hot in the caches instead of cold
    between two requests. Only fixed expressions from ``_INLINE`` and generated
    names go into the source; header names and other fields' getters are bound
    as names.
    """
    namespace: dict[str, Any] = {
        "monotonic": time.monotonic,
        "clock": time.time,
        "st": _STATE,
        "sink": sink,
        "pending": sink.pending,
        "escs": _Memo(w3c_escape),
        "escb": _Memo(_escape_bytes),
        "nums": _Memo(str),
        "win32": _win32_code,
        "fmt": fmt,
    }
    captures: list[str] = []  # capture expressions, deduplicated; slot k is "c{k}"

    def slot(expr: str) -> str:
        if expr not in captures:
            captures.append(expr)
        return f"c{captures.index(expr)}"

    parts = []
    headers: str | None = None
    for i, (field, getter) in enumerate(zip(fields, getters, strict=True)):
        inline = _INLINE.get(field)
        header = HEADER_FIELD.match(field)
        if inline is not None:
            exprs, text = inline
            for k, expr in enumerate(exprs):
                text = text.replace("{" + str(k) + "}", slot(expr))
        elif header is not None and header.group(1) == "cs":
            # The header's value (bytes or None), not the request's header list:
            # a tuple of such atoms leaves the garbage collector's tracking, a
            # tuple holding a list would be traversed by every collection until
            # the batch is written.
            headers = "hd = dict(r.headers)"
            namespace[f"n{i}"] = header.group(2).lower().encode("latin-1")
            text = f"escb[{slot(f'hd.get(n{i})')}]"
        else:
            namespace[f"g{i}"] = getter
            text = slot(f"g{i}(ctx, st)")
        parts.append(text)
    if not captures:
        slot("None")  # a line of constants still takes one value: the count of lines
    namespace["width"] = width = len(captures)
    # Tuples written "(a, b, )": valid for any count.
    captured = "(" + "".join(f"{expr}, " for expr in captures) + ")"
    names = "(" + "".join(f"c{k}, " for k in range(len(captures))) + ")"
    source = (
        "def capture(ctx):\n"
        "    if sink.render is not render:\n"
        "        sink.switch(fmt, render, width)  # another field list wrote here meanwhile\n"
        "    if clock() >= st.next:\n"
        "        st.refresh(clock())\n"
        "    r = ctx.request\n"
        "    resp = ctx.response\n"
        + (f"    {headers}\n" if headers is not None else "")
        + f"    pending.extend({captured})\n"
        "    if len(pending) >= sink.max_pending:\n"
        "        sink.flush()\n"
        "    elif sink.timer is None:\n"
        "        sink.schedule()\n"
        "\n"
        "def render(batch):\n"
        "    out = []\n"
        "    append = out.append\n"
        f"    for {names} in zip(*[iter(batch)] * width):\n"
        f'        append(" ".join(({", ".join(parts)},)))\n'
        '    append("")\n'
        '    return "\\n".join(out)\n'
    )
    exec(compile(source, "<colonnade access log format>", "exec"), namespace)
    return W3cLine(namespace["capture"], namespace["render"], width)


def json_key(field: str) -> str:
    """The JSON key of a W3C field name: ``cs(User-Agent)`` → ``cs_user_agent``."""
    return field.lower().replace("(", "_").replace(")", "").replace("-", "_")


class LineFormat:
    """A field list resolved into getters; :meth:`emitter` makes the per-line writer."""

    __slots__ = ("directive", "fields", "json", "needs_headers", "w3c")

    def __init__(self, fields: list[str], fmt: str) -> None:
        self.fields = tuple(fields)
        w3c: list[W3cGetter] = []
        json: list[tuple[str, JsonGetter]] = []
        self.needs_headers = False
        for field in fields:
            header = HEADER_FIELD.match(field)
            if header is None:
                w3c_get, json_get = FIELDS[field]
            elif header.group(1) == "cs":
                w3c_get, json_get = _request_header(header.group(2).lower().encode("latin-1"))
                self.needs_headers = True
            else:
                w3c_get, json_get = _response_header(header.group(2).lower().encode("latin-1"))
            w3c.append(w3c_get)
            json.append((json_key(field), json_get))
        self.w3c = tuple(w3c) if fmt == "w3c" else None
        self.json = tuple(json) if fmt == "json" else None
        self.directive = "#Fields: " + " ".join(fields)

    def header(self) -> str:
        """The W3C header block for a log that starts (or changes fields) here."""
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        return (
            f"#Software: Colonnade {__version__}\n#Version: 1.0\n#Date: {now}\n{self.directive}\n"
        )

    def emitter(self, sink: Sink) -> Emit:
        """The function that writes one request's line into ``sink``."""
        if self.w3c is not None:
            # One compiled pair per field list and target, shared by every module
            # instance writing there: their lines form one batch.
            line = sink.compiled.get(self.fields)
            if line is None:
                line = sink.compiled[self.fields] = _compile_w3c(
                    self, list(self.fields), list(self.w3c), sink
                )
            return line.capture
        getters = self.json or ()
        needs_headers = self.needs_headers
        encode = msgspec.json.Encoder().encode

        def emit_json(ctx: Context) -> None:
            state = _STATE
            state.tick()
            if needs_headers:
                # One C-level pass instead of a Python scan per header field.
                state.headers = dict(ctx.request.headers)
            record = {key: get(ctx, state) for key, get in getters}
            sink.add(encode(record).decode() + "\n")

        return emit_json


class Sink:
    """One log target: an output, a buffer, a flush timer, a reference count."""

    __slots__ = (
        "compiled",
        "directive",
        "fd",
        "interval",
        "key",
        "limit",
        "line_size",
        "lines",
        "max_pending",
        "pending",
        "refs",
        "render",
        "size",
        "timer",
        "width",
    )

    def __init__(self, key: str, fd: int | None, directive: str | None) -> None:
        self.key = key
        self.fd = fd  # None: the process's stdout/stderr, looked up at each write
        # Text (header blocks, rendered batches, JSON lines), joined and encoded
        # once per write.
        self.lines: list[str] = []
        self.size = 0  # characters in ``lines``
        # Captured W3C values not yet rendered, and the renderer they belong to.
        # The list object is never replaced (generated capture functions hold it).
        self.pending: list[Any] = []
        self.render: Render | None = None
        self.width = 1  # values per line in ``pending``, for ``render``
        self.compiled: dict[tuple[str, ...], W3cLine] = {}
        self.line_size = 128  # characters per rendered line, as last measured
        self.directive = directive  # the #Fields line currently in force, if known
        self.limit = 65536
        self.max_pending = self.limit // self.line_size  # in values: lines x width
        self.interval = 1.0
        self.refs = 0
        self.timer: asyncio.TimerHandle | None = None

    def set_limit(self, limit: int) -> None:
        """Write once about ``limit`` characters are buffered."""
        self.limit = limit
        self._budget()

    def _budget(self) -> None:
        # How many more captured lines fit, at the line length last measured.
        self.max_pending = max(1, (self.limit - self.size) // self.line_size) * self.width

    def add(self, text: str) -> None:
        """Append ``text``; flush if the buffer is full, else make sure a flush is due."""
        if self.pending:
            self.settle()
        self.lines.append(text)
        self.size += len(text)
        if self.size >= self.limit:
            self.flush()
        elif self.timer is None:
            self.schedule()

    def settle(self) -> None:
        """Render the pending captured values into text."""
        pending = self.pending
        if not pending or self.render is None:
            return
        try:
            text = self.render(pending)
        except Exception:  # a value the renderer cannot format: lose that line only
            text = self._render_each(self.render, pending, self.width)
        self.line_size = max(16, len(text) * self.width // len(pending))
        pending.clear()
        self.lines.append(text)
        self.size += len(text)
        self._budget()

    @staticmethod
    def _render_each(render: Render, pending: list[Any], width: int) -> str:
        parts: list[str] = []
        lost = 0
        lines = len(pending) // width
        for start in range(0, len(pending), width):
            try:
                parts.append(render(pending[start : start + width]))
            except Exception:
                lost += 1
                if lost == 1:
                    log.exception("access log: a line could not be formatted")
        if lost:
            log.error("access log: %d of %d lines could not be formatted", lost, lines)
        return "".join(parts)

    def switch(self, fmt: LineFormat, render: Render, width: int) -> None:
        """Another W3C field list writes here from now on: its header, its renderer
        (``width`` values a line)."""
        self.settle()
        self.ensure_header(fmt)
        self.render = render
        self.width = width
        self._budget()

    def schedule(self) -> None:
        """Flush ``interval`` seconds from now (at once without a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on (a synchronous caller): write now
            self.flush()
            return
        self.timer = loop.call_later(self.interval, self._timed_flush)

    def ensure_header(self, fmt: LineFormat) -> None:
        """Start a W3C header block unless ``fmt``'s fields are the ones in force."""
        if self.directive != fmt.directive:
            header = fmt.header()
            self.lines.append(header)
            self.size += len(header)
        # Keep fmt's own string so the per-line identity test passes from now on.
        self.directive = fmt.directive

    def _timed_flush(self) -> None:
        self.timer = None
        self.flush()

    def flush(self) -> None:
        """Write what is buffered now (one syscall for a file)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.settle()
        if not self.lines:
            return
        text = "".join(self.lines)
        self.lines.clear()
        self.size = 0
        self._budget()
        try:
            if self.fd is not None:
                view = memoryview(text.encode("utf-8", "replace"))
                while view:
                    view = view[os.write(self.fd, view) :]
            elif self.key in _STREAMS:
                # Looked up now, not at open: tests and daemons swap sys.stdout.
                stream = sys.stderr if self.key == "stderr" else sys.stdout
                if stream is not None:  # no console at all (pythonw, some daemons)
                    stream.write(text)
                    stream.flush()
        except (OSError, ValueError) as exc:  # disk full, closed stream: report, go on
            log.error("access log %s: %d characters lost: %s", self.key, len(text), exc)

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


#: Open sinks by target key (``stdout``, ``stderr`` or a real file path).
_SINKS: dict[str, Sink] = {}


def _last_directive(path: str) -> str | None:
    # The #Fields line in force at the end of an existing file, if it is near the end.
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    start = tail.rfind(b"\n#Fields: ")
    if start < 0:
        if not tail.startswith(b"#Fields: "):
            return None
    else:
        start += 1
    end = tail.find(b"\n", start)
    line = tail[start:] if end < 0 else tail[start:end]
    return line.decode("utf-8", "replace")


def acquire_sink(target: str, settings: HttpLoggingSection) -> Sink:
    """The shared sink for ``target``, opened on first use (refcounted)."""
    if target in _STREAMS:
        key = target
    else:
        key = os.path.realpath(target)
    sink = _SINKS.get(key)
    if sink is None:
        if key in _STREAMS:
            sink = Sink(key, None, None)
        else:
            try:
                fd = os.open(key, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    directive = _last_directive(key)
                except OSError:
                    os.close(fd)
                    raise
            except OSError as exc:
                raise ConfigError(
                    f"cannot open the log file {target!r}: {exc.strerror}",
                    key="http_logging.target",
                ) from None
            sink = Sink(key, fd, directive)
        sink.set_limit(settings.buffer_size)
        sink.interval = settings.flush_interval
        _SINKS[key] = sink
    else:
        # Sharers get the strictest batching any of them asked for.
        sink.set_limit(min(sink.limit, settings.buffer_size))
        sink.interval = min(sink.interval, settings.flush_interval)
    sink.refs += 1
    return sink


def release_sink(sink: Sink) -> None:
    """Flush; close the sink when its last user lets go."""
    sink.flush()
    sink.refs -= 1
    if sink.refs <= 0:
        sink.close()
        if _SINKS.get(sink.key) is sink:
            del _SINKS[sink.key]


class Output(NamedTuple):
    """Where the lines of one log configuration go, how they look, and the writer."""

    fmt: LineFormat
    sink: Sink
    emit: Emit


def _filtered(settings: HttpLoggingSection, emit: Emit) -> Emit | None:
    # The writer a section's settings call for: none when logging is off, and a
    # status test in front of it for IIS selective logging.
    if not settings.enabled:
        return None
    if settings.selective == "all":
        return emit
    errors = settings.selective == "error"

    def selective(ctx: Context) -> None:
        if (ctx.response.status >= 400) is errors:
            emit(ctx)

    return selective


def _below(path: str, app_path: str) -> bool:
    return path != app_path and (app_path == "/" or path.startswith(app_path + "/"))


class HttpLogging(Module):
    """``log.http``: one access log line per request, W3C extended or JSON."""

    id = "log.http"
    section = HttpLoggingSection

    def __init__(self) -> None:
        # (target, format, fields) → output: locations sharing a configuration share it.
        self._outputs: dict[tuple[str, str, tuple[str, ...]], Output] = {}
        # id(section) → (section, its line writer or None when it logs nothing), the
        # per-request lookup. Holding the
        # section keeps its id from being reused by another object, so a hit on the
        # id is a hit on the very same section.
        self._by_section: dict[int, tuple[HttpLoggingSection, Emit | None]] = {}

    def provision(self, app: Application) -> None:
        """Compile the field lists and open (or share) every log target.

        Every log configuration the application can see (at its root and at each
        configuration level below it) is opened now, so a bad target fails at
        start-up rather than on some request.
        """
        paths = [app.path, *(lvl.path for lvl in app.levels if _below(lvl.path, app.path))]
        for path in paths:
            self._open(app.sections_for(path).get(HttpLoggingSection))

    def _open(self, settings: HttpLoggingSection) -> Output:
        key = (settings.target, settings.format, tuple(settings.fields))
        output = self._outputs.get(key)
        if output is None:
            fmt = LineFormat(settings.fields, settings.format)
            sink = acquire_sink(settings.target, settings)
            output = self._outputs[key] = Output(fmt, sink, fmt.emitter(sink))
            if fmt.w3c is not None:
                # Lines pending under the field list in force are rendered first; the
                # new header follows, and whoever wrote before switches back (with
                # its own header) on its next line.
                line = sink.compiled[fmt.fields]
                sink.switch(fmt, line.render, line.width)
                sink.flush()  # the header goes out at start-up, not with line one
        if len(self._by_section) >= _SECTIONS_MAX:
            self._by_section.clear()
        self._by_section[id(settings)] = (settings, _filtered(settings, output.emit))
        return output

    def _output_for(self, settings: HttpLoggingSection) -> Output | None:
        # A section provision did not see (settings added later, e.g. per folder).
        try:
            return self._open(settings)
        except ConfigError as exc:
            log.error("access log: %s", exc)
            return None

    async def shutdown(self) -> None:
        """Flush while the loop that owns the flush timers still runs."""
        self.flush()

    def cleanup(self) -> None:
        """Flush the buffers and release the targets."""
        outputs = list(self._outputs.values())
        self._outputs.clear()
        self._by_section.clear()
        for output in outputs:
            release_sink(output.sink)

    def flush(self) -> None:
        """Write buffered lines now (tools, tests, shutdown paths)."""
        for output in self._outputs.values():
            output.sink.flush()

    @hook(Stage.LOG_REQUEST)
    def log_request(self, ctx: Context) -> None:
        """Append this request's line to its log's buffer (unless filtered out)."""
        settings = ctx.sections.get(HttpLoggingSection)
        entry = self._by_section.get(id(settings))
        if entry is None:
            if not settings.enabled or self._output_for(settings) is None:
                return
            entry = self._by_section[id(settings)]
        emit = entry[1]
        if emit is not None:
            emit(ctx)
