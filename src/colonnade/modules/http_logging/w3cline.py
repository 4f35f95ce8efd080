"""The default W3C line (IIS's default fields plus ``x-correlation-id``), compiled.

Most sites log the default field list, so it gets a hand-written capture and
renderer that mypyc compiles (``[tool.colonnade.mypyc]``); the pure install runs
the same code interpreted. The text is byte-identical to what the generated code of
:mod:`.compiler` makes of the same fields (tests/modules/http_logging compares them
over a table of requests, one at a time and all in one batch); every other field
list (and format) keeps that generated code.

*Compiled, render at capture; interpreted, capture per request and render per
batch.* Compiled, :meth:`DefaultW3cLine.write` renders the line at capture (one
finished string per line pending; a batch is one ``join``). Interpreted (the pure
install), :meth:`DefaultW3cLine.defer` reads what the line needs and appends it to
the sink's pending list as one flat tuple of references, and
:meth:`DefaultW3cLine.lines` (the sink's ``render``) makes the text of a whole
batch in one frame and one loop when the sink writes (its buffer size, its flush
interval, a shutdown, a reload: the sink's events, unchanged). There a line's
bytecodes cost about three times more in the middle of a request than in a loop
that runs nothing else (pure17, pure18 in bench/RESULTS.md): the capture runs ~115
of them in the request, the loop the other ~90 (``write`` ran ~180 in the
request). Compiled, the same split cost ~2.3k instructions more per request (the
loop's values are untyped there), so the compiled build keeps ``write``.

Per line, the work is kept to reads, memo hits and one string build:

- one clock read (``monotonic``, for ``time-taken``): the "date time " string is
  rebuilt when its second ends (found on the monotonic clock, so the wall clock
  is read once a second), its time from a table of two-digit strings and its
  date kept for the day (``gmtime`` once a day); the renderer makes the line's
  start ("date time s-ip ") and ``s-port`` again only where a line's second or
  server address differs from the line before's, and ``c-ip`` where its client's
  address does;
- paths, queries, user names and header values go through escape memos that keep
  each value's field *with its separator* (one dict hit for a recurring value; a
  path's field has the space before it too, and a GET's the method: ``GET /path ``
  is one piece of the line);
- the status and time taken are indexes into tables of number strings (a 200's
  whole end of line, from ``sc-status`` on, is one string of a table indexed by
  the milliseconds taken); an unusual end (a substatus, an error, a 5xx and its
  correlation id) is made at capture, so the batch keeps no exception;
- the fields from ``cs-uri-query`` to ``c-ip`` are one piece with no query and no
  user, and so are those to ``cs(Referer)`` without a User-Agent or a Referer
  either; ``cs(User-Agent)`` and ``cs(Referer)`` are one with no Referer (its
  memo keeps the agent's field with "- " after it): each piece fewer is ~85
  instructions fewer in the line's build;
- the request headers are scanned by the name's length before its bytes (a set
  test cost ~90 instructions a header, compiled; interpreted, :meth:`defer`
  keeps the set test, one bytecode);
- the line is one f-string; the batch one ``join``;
- a GET of the same path object as the line before's (the connection layer
  gives equal paths as one str) reuses that line's method and path piece;
- the LOG_REQUEST hook (:mod:`.fast`) calls the compiled ``write`` natively
  (:func:`native_line`), not through its bound method;
- the sink is asked about its buffer only once per batch: it grants the capture a
  number of lines it may append with no look at the sink (:meth:`Sink.lease`), and
  takes the grant back whenever its state changes (a write, another field list, a
  new budget).

A line that cannot be captured (a value of the wrong type: a module's bug) is
appended as ``None``, which fails the batch: the sink then renders it line by line
and loses, counts and reports that line only. The batch holds as many lines as the
sink's budget allows, as the rendered text did, and about what they will print.
"""

from __future__ import annotations

from time import gmtime, monotonic, time
from typing import Any, Final

from colonnade.core.context import Context
from colonnade.modules.http_logging.compiler import CompiledLine, Writer
from colonnade.modules.http_logging.config import IIS_DEFAULT_FIELDS
from colonnade.modules.http_logging.fields import win32_status
from colonnade.modules.http_logging.sink import Sink
from colonnade.modules.http_logging.w3c import MEMO_MAX, escape_bytes, w3c_escape

#: The field list this module renders: the section's default ``fields``.
DEFAULT_FIELDS: Final = (*IIS_DEFAULT_FIELDS, "x-correlation-id")

#: The clocks, read through module constants (a static in the compiled module, not a
#: lookup in its globals per call).
_MONOTONIC: Final = monotonic
_WALL: Final = time
#: Statuses and milliseconds taken whose line ends are kept in a table (per capture).
_TABLE: Final = 1000
#: The request header fields of the line (cs(User-Agent), cs(Referer)).
_LOGGED_FIELDS: Final = frozenset((b"user-agent", b"referer"))
#: Whether this module runs compiled (mypyc).
_COMPILED: Final = not __file__.endswith(".py")
#: "00" to "99": the hours, minutes and seconds of ``time`` (and the date's month and
#: day), made once rather than formatted each second.
_TWO: Final = tuple(f"{n:02d}" for n in range(100))
#: Seconds in a UTC day (the POSIX clock has no leap seconds, as ``gmtime``).
_DAY: Final = 86400


def render(batch: list[Any]) -> str:
    """The pending lines (finished strings, each ending in a newline) as one text."""
    return "".join(batch)


class DefaultW3cLine:
    """Captures :data:`DEFAULT_FIELDS`: :meth:`write` appends the finished line to the sink."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pending: list[Any] = sink.pending
        self.line: Any = None  # its CompiledLine, set once built (it holds this capture)
        #: The batch renderer (the sink tells field lists apart by it): the finished
        #: lines' join where :meth:`write` renders at capture (compiled), else
        #: :meth:`lines`, bound once.
        self.render: Any = render if _COMPILED else self.lines
        #: The capture the line uses: :meth:`write` compiled, :meth:`defer` interpreted.
        self.capture: Any = self.write if _COMPILED else self.defer
        #: Lines :meth:`write` may append before it looks at the sink again (its lease).
        self.room = 0
        self.until = 0.0  # when the second of ``stamp`` ends, on the monotonic clock
        self.day = -1  # the UTC day (days since the epoch) ``date`` is of
        self.date = ""  # "date " of that day
        self.stamp = ""  # "date time " of the current second
        self.server: tuple[str, int] | None = None  # the address ``head`` and ``port`` are of
        self.head = ""  # "date time s-ip " (the line's start)
        self.port = "- "  # "s-port "
        self.client: tuple[str, int] | None = None  # the address ``cip`` is of
        self.cip = "- "  # "c-ip "
        self.anonymous = "- - "  # "cs-username c-ip " with no user
        #: "s-port cs-username c-ip " with no user: one piece of the line, not two;
        #: and "cs-uri-query s-port cs-username c-ip " with no query and no user
        #: (most requests for files): one, not three.
        self.port_anonymous = self.port + self.anonymous
        self.plain = "- " + self.port_anonymous
        #: ... and with no User-Agent and no Referer either, "cs-uri-query" to
        #: "cs(Referer) " in one piece (:meth:`write`).
        self.bare = self.plain + "- - "
        # Memos of each value's field and the space after it (escaped: paths, user
        # names, queries and header values), emptied at MEMO_MAX entries...
        self.strs: dict[str, str] = {}
        # ... paths with the space before them too (the one after the method: one
        # piece of the line fewer), and a GET's with the method before that (one
        # more: most requests are GETs) ...
        self.paths: dict[str, str] = {}
        self.gets: dict[str, str] = {}
        # ... the last GET's path and its field, for the next line of that path.
        self.last_get: str | None = None
        self.last_start = ""
        self.bytes: dict[bytes, str] = {}
        # ... a User-Agent's with the Referer's "- " after it (most requests that
        # send no Referer send an agent) ...
        self.agents: dict[bytes, str] = {}
        # ... and tables, filled as met, of the usual ends of a line: "sc-status 0 0 "
        # with no substatus and no error, "time-taken -\n" below status 500.
        self.codes: list[str | None] = [None] * _TABLE
        self.ends: list[str | None] = [None] * _TABLE
        # ... and a 200's whole end, "200 0 0 time-taken -\n", by the time taken.
        self.oks: list[str | None] = [None] * _TABLE

    def __call__(self, ctx: Context) -> None:
        """The same as :attr:`capture` (the line's capture is that bound method,
        which an interpreted caller calls with no extra frame)."""
        self.capture(ctx)

    def write(self, ctx: Context) -> None:
        """Append the request's line to the sink (and write or schedule a batch when due)."""
        try:
            # The request's end (core.context.end_clock, inline): read here, the
            # site's counters reuse it.
            now = ctx.ended_at
            if not now:
                now = ctx.ended_at = _MONOTONIC()
            if now >= self.until:
                self.tick(now)
            r = ctx.request
            if r.server is not self.server:
                self.serve(r.server)
            client = r.client
            if client is not self.client:
                self.meet(client)  # a native call, dearer inline (its tuple unboxed)
            # dict(headers) semantics: the last of repeated headers wins.
            agent: bytes | None = None
            referer: bytes | None = None
            for name, value in r.headers:
                # Most fields are neither: a length test each (the name's size, read
                # inline), where a set test cost ~90 instructions a field, compiled.
                size = len(name)
                if size == 10:
                    if name == b"user-agent":
                        agent = value
                elif size == 7 and name == b"referer":
                    referer = value
            # The query the client sent, as cs-uri-stem is its path (IIS logs the URL
            # before a rewrite); the target holds it once a remap happened.
            path = r.original_path
            query = r.query if r.path is path else r.target.partition(b"?")[2]
            resp = ctx.response
            status = resp.status
            taken = int((now - ctx.started) * 1000)
            # A 200 first, with its own test: most lines (a status test fewer, and
            # no range test of it, interpreted).
            end: str | None
            if status == 200 and resp.substatus == 0 and ctx.error is None and 0 <= taken < _TABLE:
                end = self.oks[taken]
                if end is None:
                    end = self.ok(taken)
            elif (
                0 <= status < 500
                and 0 <= taken < _TABLE
                and resp.substatus == 0
                and ctx.error is None
            ):
                end = (self.codes[status] or self.fill(self.codes, status, " 0 0 ")) + (
                    self.ends[taken] or self.fill(self.ends, taken, " -\n")
                )
            else:
                end = self.unusual(ctx, status, taken)
            method = r.method
            if method == "GET":
                # The path of the GET before, as the same object (the connection
                # layer hands equal paths over as one str): no memo probe.
                if path is self.last_get:
                    start = self.last_start
                else:
                    found = self.gets.get(path)
                    start = found if found is not None else self.escape_get(path)
                    self.last_get = path
                    self.last_start = start
            else:
                start = method + (self.paths.get(path) or self.escape_path(path))
            user = ctx.user
            # The fields from cs-uri-query to cs(Referer) in as few pieces as the
            # request allows (a piece of the line's build costs ~85 instructions):
            # one with no query, no user and neither header (a load balancer's
            # probe, a benchmark's client); the two headers' fields in one with no
            # Referer (an API client, a script); else the agent's and the referrer's.
            if user is None and len(query) == 0 and not agent and not referer:
                text: str | None = f"{self.head}{start}{self.bare}{end}"
            else:
                if user is None and len(query) == 0:
                    middle = self.plain
                else:
                    q = (
                        "- "
                        if len(query) == 0
                        else self.bytes.get(query) or self.escape_bytes(query)
                    )
                    who = (
                        self.port_anonymous
                        if user is None
                        else self.port
                        + (self.strs.get(user.name) or self.escape(user.name))
                        + self.cip
                    )
                    middle = q + who
                if not referer:
                    tail = (
                        "- - " if not agent else self.agents.get(agent) or self.escape_agent(agent)
                    )
                    text = f"{self.head}{start}{middle}{tail}{end}"
                else:
                    ua = "- " if not agent else self.bytes.get(agent) or self.escape_bytes(agent)
                    ref = self.bytes.get(referer) or self.escape_bytes(referer)
                    text = f"{self.head}{start}{middle}{ua}{ref}{end}"
        except Exception:
            # A value of the wrong type (a module's bug): None fails the batch's
            # join, and the sink then loses, counts and reports this line only, as
            # it does for the generated formats.
            text = None
        room = self.room  # never below 0
        if room:  # the sink's budget, render and timer as when it granted this
            self.room = room - 1
            self.pending.append(text)
        else:
            self.settle(text)

    def defer(self, ctx: Context) -> None:
        """The interpreted capture: append the request's values to the sink (and write
        or schedule a batch when due); :meth:`lines` renders them a batch at a time.

        Only what the line needs, as references in one flat tuple (see
        :meth:`lines` for its order): the text is made a batch at a time."""
        try:
            # The request's end (core.context.end_clock, inline): read here, the
            # site's counters reuse it.
            now = ctx.ended_at
            if not now:
                now = ctx.ended_at = _MONOTONIC()
            if now >= self.until:
                self.tick(now)
            r = ctx.request
            # The same reads as write's (inline: a shared function's frame cost
            # ~50 ns a line here, interpreted). dict(headers) semantics: the last
            # of repeated headers wins. Scanned here, so that the batch holds two
            # values of a request's fields, not all of them.
            agent: bytes | None = None
            referer: bytes | None = None
            for name, value in r.headers:
                if name in _LOGGED_FIELDS:
                    if name == b"user-agent":
                        agent = value
                    else:
                        referer = value
            path = r.original_path
            query = r.query if r.path is path else r.target.partition(b"?")[2]
            user = ctx.user
            resp = ctx.response
            status = resp.status
            taken = now - ctx.started
            # The end of an unusual line (a substatus, an error, a 5xx's correlation
            # id) is made now: the batch keeps no exception (nor its traceback).
            end = None
            if resp.substatus or ctx.error is not None or status >= 500:
                end = self.unusual(ctx, status, int(taken * 1000))
            values: tuple[Any, ...] | None = (
                self.stamp,
                r.server,
                r.client,
                r.method,
                path,
                query,
                None if user is None else user.name,
                agent,
                referer,
                status,
                taken,
                end,
            )
        except Exception:
            # A value of the wrong type (a module's bug): None fails the batch's
            # rendering, and the sink then loses, counts and reports this line
            # only, as it does for the generated formats.
            values = None
        room = self.room  # never below 0
        if room:  # the sink's budget, render and timer as when it granted this
            self.room = room - 1
            self.pending.append(values)
        else:
            self.settle(values)

    def lines(self, batch: list[Any]) -> str:
        """The text of a batch of captured lines (each ending in a newline).

        One frame for the batch, the memos and tables in locals; the pieces that
        depend on the connection (``s-ip``, ``s-port``, ``c-ip``) are made again
        only where a line's server or client address differs from the line
        before's (by identity first: one tuple per connection; then, for the
        client, by address: connections of one client take turns)."""
        out: list[str] = []
        append = out.append
        gets = self.gets
        paths = self.paths
        memo = self.bytes
        strs = self.strs
        oks = self.oks
        codes = self.codes
        ends = self.ends
        last_stamp: str | None = None
        last_server: tuple[str, int] | None = None
        last_client: tuple[str, int] | None = None
        head = port = port_anonymous = plain = ""
        cip = "- "
        anonymous = "- - "
        for (
            stamp,
            server,
            client,
            method,
            path,
            query,
            user,
            agent,
            referer,
            status,
            taken,
            end,
        ) in batch:
            if stamp is not last_stamp or server is not last_server:
                last_stamp = stamp
                last_server = server
                if server is not None:
                    head = stamp + server[0] + " "
                    port = str(server[1]) + " "
                else:
                    head = stamp + "- "
                    port = "- "
                port_anonymous = port + anonymous
                plain = "- " + port_anonymous
            if client is not last_client:
                if client is None or last_client is None or client[0] != last_client[0]:
                    cip = "- " if client is None else client[0] + " "
                    anonymous = "- " + cip
                    port_anonymous = port + anonymous
                    plain = "- " + port_anonymous
                last_client = client
            if end is None:
                ms = int(taken * 1000)
                if status == 200 and 0 <= ms < _TABLE:
                    end = oks[ms] or self.ok(ms)
                elif status >= 0 and 0 <= ms < _TABLE:
                    end = (codes[status] or self.fill(codes, status, " 0 0 ")) + (
                        ends[ms] or self.fill(ends, ms, " -\n")
                    )
                else:
                    end = f"{status} 0 0 {ms} -\n"
            if method == "GET":
                start = gets.get(path) or self.escape_get(path)
            else:
                start = method + (paths.get(path) or self.escape_path(path))
            if user is None and not query:
                middle = plain
            else:
                q = "- " if not query else memo.get(query) or self.escape_bytes(query)
                who = (
                    port_anonymous
                    if user is None
                    else port + (strs.get(user) or self.escape(user)) + cip
                )
                middle = q + who
            ua = "- " if not agent else memo.get(agent) or self.escape_bytes(agent)
            ref = "- " if not referer else memo.get(referer) or self.escape_bytes(referer)
            append(f"{head}{start}{middle}{ua}{ref}{end}")
        return "".join(out)

    def escape(self, value: str) -> str:
        """A memo miss: ``value`` as a W3C field and its space, remembered."""
        strs = self.strs
        if len(strs) >= MEMO_MAX:
            strs.clear()
        field = strs[value] = w3c_escape(value) + " "
        return field

    def escape_path(self, path: str) -> str:
        """A memo miss: ``path`` as the cs-uri-stem field with a space on each side,
        remembered."""
        paths = self.paths
        if len(paths) >= MEMO_MAX:
            paths.clear()
        field = paths[path] = " " + w3c_escape(path) + " "
        return field

    def escape_get(self, path: str) -> str:
        """A memo miss: a GET of ``path`` as the cs-method and cs-uri-stem fields
        and the space after each, remembered."""
        gets = self.gets
        if len(gets) >= MEMO_MAX:
            gets.clear()
        field = gets[path] = "GET" + (self.paths.get(path) or self.escape_path(path))
        return field

    def escape_bytes(self, value: bytes) -> str:
        """A memo miss: ``value`` (a query or header value) as a W3C field and its
        space, remembered."""
        memo = self.bytes
        if len(memo) >= MEMO_MAX:
            memo.clear()
        field = memo[value] = escape_bytes(value) + " "
        return field

    def escape_agent(self, value: bytes) -> str:
        """A memo miss: a User-Agent ``value`` as its W3C field, its space and the
        ``cs(Referer)`` field of a request with none, remembered."""
        memo = self.agents
        if len(memo) >= MEMO_MAX:
            memo.clear()
        field = memo[value] = escape_bytes(value) + " - "
        return field

    @staticmethod
    def fill(table: list[str | None], n: int, suffix: str) -> str:
        """A table miss: ``n`` and ``suffix``, kept at ``table[n]``."""
        text = table[n] = str(n) + suffix
        return text

    def ok(self, taken: int) -> str:
        """A table miss: the end of a 200's line that took ``taken`` ms, kept."""
        text = self.oks[taken] = (self.codes[200] or self.fill(self.codes, 200, " 0 0 ")) + (
            self.ends[taken] or self.fill(self.ends, taken, " -\n")
        )
        return text

    def unusual(self, ctx: Context, status: int, taken: int) -> str:
        """The line's end from ``sc-status`` on, when it is not the usual one."""
        error = ctx.error
        win32 = "0" if error is None else str(win32_status(error))
        correlation = ctx.correlation_id if status >= 500 else "-"
        return f"{status} {ctx.response.substatus} {win32} {taken} {correlation}\n"

    def settle(self, line: str | tuple[Any, ...] | None) -> None:
        """Append ``line`` (its text, or its values for :meth:`lines`) under the
        sink's rules, then take a new lease."""
        sink = self.sink
        if sink.render is not self.render:
            sink.switch(self.line)  # another field list wrote here meanwhile
        pending = self.pending
        pending.append(line)
        if len(pending) >= sink.max_pending:
            sink.flush()
        elif sink.timer is None:
            sink.schedule()
        self.room = sink.lease(self)

    def tick(self, now: float) -> None:
        """Start the second ``now`` (monotonic) falls in: the date and time strings."""
        self.at(now, _WALL())

    def at(self, now: float, wall: float) -> None:
        """Start the second of the wall clock's ``wall``, which is ``now`` on the
        monotonic clock: the "date time " string (the date formatted once a day, the
        time from a table: ~1k instructions a second, not the ~23k of formatting
        both with ``gmtime`` and format specifications, interpreted) and the line's
        start."""
        second = int(wall)
        self.until = now + (second + 1.0 - wall)
        day = second // _DAY
        if day != self.day:
            t = gmtime(second)
            self.date = f"{t.tm_year:04d}-{_TWO[t.tm_mon]}-{_TWO[t.tm_mday]} "
            self.day = day
        of_day = second - day * _DAY
        minutes = of_day // 60
        self.stamp = f"{self.date}{_TWO[minutes // 60]}:{_TWO[minutes % 60]}:{_TWO[of_day % 60]} "
        self.serve(self.server)

    def serve(self, server: tuple[str, int] | None) -> None:
        """The line's start for requests to ``server``."""
        self.server = server
        if server is not None:
            self.head = self.stamp + server[0] + " "
            self.port = str(server[1]) + " "
        else:
            self.head = self.stamp + "- "
            self.port = "- "
        self.port_anonymous = self.port + self.anonymous
        self.plain = "- " + self.port_anonymous
        self.bare = self.plain + "- - "

    def meet(self, client: tuple[str, int] | None) -> None:
        """The ``c-ip`` field (and its space) for requests from ``client``: made
        again only for another address than the last one's (which the pure
        install's :meth:`write` tests before it calls). Connections take turns
        (64 at once, each request's client differs from the last's), but most share
        an address with the one before: a browser's several, or every connection
        from a front proxy or load balancer. (Comparing strings costs less than the
        four that would be made: ~1.3-1.9k instructions a request at 64 connections,
        proxy16, session 24.)"""
        last = self.client
        self.client = client
        if client is not None and last is not None and client[0] == last[0]:
            return
        self.cip = "- " if client is None else client[0] + " "
        self.anonymous = "- " + self.cip
        self.port_anonymous = self.port + self.anonymous
        self.plain = "- " + self.port_anonymous
        self.bare = self.plain + "- - "


def native_line(capture: object) -> DefaultW3cLine | None:
    """The default line whose :meth:`DefaultW3cLine.write` ``capture`` is, if it is
    that (the compiled build's capture, not the interpreted one's ``defer``): a
    compiled caller then calls ``write`` on it natively, not through the bound
    method (the same code, without a wrapper and its argument parsing)."""
    line = getattr(capture, "__self__", None)
    if isinstance(line, DefaultW3cLine) and capture == line.write:
        return line
    return None


def default_line(fields: tuple[str, ...], writer: Writer, sink: Sink) -> CompiledLine:
    """The compiled line of :data:`DEFAULT_FIELDS` in W3C writing into ``sink``
    (a ``build`` for :func:`.compiler.compiled_line`)."""
    capture = DefaultW3cLine(sink)
    line = CompiledLine(capture.capture, capture.render, 1, writer.directive(fields), writer)
    capture.line = line
    return line
