"""The default W3C line (IIS's default fields plus ``x-correlation-id``), compiled.

Most sites log the default field list, so it gets a hand-written line builder that
mypyc compiles (``[tool.colonnade.mypyc]``): it reads the request context's native
attributes directly and renders the whole line at capture time, so the sink's
pending list holds one finished string per line and a batch is one ``join``. Every
other field list (and format) keeps the generated code of :mod:`.compiler`; the
text is byte-identical to what that code makes of the same fields
(tests/modules/http_logging compares them over a table of requests).

Per line: the date and time strings are rebuilt once a second; ``s-ip``/``s-port``
are formatted once per server address object (one per connection); paths, queries,
user names and header values go through escape memos (one dict hit for a
recurring value).
"""

from __future__ import annotations

from time import monotonic, time
from typing import Any, Final

from colonnade.core.context import Context
from colonnade.modules.http_logging.compiler import CompiledLine, Writer
from colonnade.modules.http_logging.config import IIS_DEFAULT_FIELDS
from colonnade.modules.http_logging.fields import Clock, win32_status
from colonnade.modules.http_logging.sink import Sink
from colonnade.modules.http_logging.w3c import MEMO_MAX, escape_bytes, w3c_escape

#: The field list this module renders: the section's default ``fields``.
DEFAULT_FIELDS: Final = (*IIS_DEFAULT_FIELDS, "x-correlation-id")


#: ``str(n)`` of the numbers a line usually holds (status, substatus, milliseconds
#: taken): an index instead of a conversion.
_NUMBERS: Final = tuple(str(n) for n in range(1000))


def _number(n: int) -> str:
    return _NUMBERS[n] if 0 <= n < 1000 else str(n)


def render(batch: list[Any]) -> str:
    """The pending lines (finished strings, each ending in a newline) as one text."""
    return "".join(batch)


def _remember(memo: dict[Any, str], value: Any, escaped: str) -> str:
    # A memo miss: keep the escaped form, starting over at MEMO_MAX entries.
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[value] = escaped
    return escaped


class DefaultW3cLine:
    """``capture(ctx)`` for :data:`DEFAULT_FIELDS`: the finished line, appended to the sink."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pending: list[Any] = sink.pending
        self.line: Any = None  # its CompiledLine, set once built (it holds this capture)
        self.render: Any = render
        self.clock = Clock()
        self.next = 0.0  # when the second of ``stamp`` ends
        self.stamp = ""  # "date time" of the current second
        self.server: tuple[str, int] | None = None  # the address ``local`` was made for
        self.local = ("-", "-")  # s-ip and s-port of ``server``
        self.strs: dict[str, str] = {}  # escape memos, emptied at MEMO_MAX entries
        self.bytes: dict[bytes, str] = {}

    def esc_str(self, value: str) -> str:
        """``value`` as a W3C field (memoised)."""
        found = self.strs.get(value)
        return found if found is not None else _remember(self.strs, value, w3c_escape(value))

    def esc_bytes(self, value: bytes | None) -> str:
        """A header value or query (bytes, None when absent) as a W3C field (memoised)."""
        if not value:
            return "-"
        found = self.bytes.get(value)
        return found if found is not None else _remember(self.bytes, value, escape_bytes(value))

    def __call__(self, ctx: Context) -> None:
        sink = self.sink
        if sink.render is not self.render:
            sink.switch(self.line)  # another field list wrote here meanwhile
        try:
            text: str | None = self.text(ctx)
        except Exception:
            # A value of the wrong type (a module's bug): None fails the batch's
            # join, and the sink then loses, counts and reports this line only, as
            # it does for the generated formats.
            text = None
        pending = self.pending
        pending.append(text)
        if len(pending) >= sink.max_pending:
            sink.flush()
        elif sink.timer is None:
            sink.schedule()

    def text(self, ctx: Context) -> str:
        """The request's line, newline included."""
        now = time()
        if now >= self.next:
            clock = self.clock
            clock.refresh(now)
            self.stamp = clock.date + " " + clock.time
            self.next = clock.next
        r = ctx.request
        resp = ctx.response
        server = r.server
        if server is not self.server:
            self.local = (server[0], str(server[1])) if server else ("-", "-")
            self.server = server
        local = self.local
        # dict(headers) semantics: the last of repeated headers wins.
        agent: bytes | None = None
        referer: bytes | None = None
        for name, value in r.headers:
            if name == b"user-agent":
                agent = value
            elif name == b"referer":
                referer = value
        # The query the client sent, as cs-uri-stem is its path (IIS logs the URL
        # before a rewrite); the target holds it once a remap happened.
        query = r.query if r.path is r.original_path else r.target.partition(b"?")[2]
        user = ctx.user
        client = r.client
        error = ctx.error
        status = resp.status
        taken = int((monotonic() - ctx.started) * 1000)
        return (
            " ".join(
                [
                    self.stamp,
                    local[0],
                    r.method,
                    self.esc_str(r.original_path),
                    self.esc_bytes(query),
                    local[1],
                    "-" if user is None else self.esc_str(user.name),
                    client[0] if client else "-",
                    self.esc_bytes(agent),
                    self.esc_bytes(referer),
                    _number(status),
                    _number(resp.substatus),
                    "0" if error is None else str(win32_status(error)),
                    _number(taken),
                    ctx.correlation_id if status >= 500 else "-",
                ]
            )
            + "\n"
        )


def default_line(fields: tuple[str, ...], writer: Writer, sink: Sink) -> CompiledLine:
    """The compiled line of :data:`DEFAULT_FIELDS` in W3C writing into ``sink``
    (a ``build`` for :func:`.compiler.compiled_line`)."""
    capture = DefaultW3cLine(sink)
    line = CompiledLine(capture, render, 1, writer.directive(fields), writer)
    capture.line = line
    return line
