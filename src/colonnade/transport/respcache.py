"""The response cache: Colonnade's analog of HTTP.sys's kernel cache.

IIS answers a hot static (or output-cached) response from HTTP.sys's kernel cache
without the worker process ever seeing the request, and still logs it. Here the
HTTP/1.1 connection plays HTTP.sys, for static files on the engine's own rule and
for the output cache's hits where that module grants it (``ctx.cache_grant``,
:mod:`colonnade.core.cachegrant`): a request whose answer is in this cache is
answered in ``HttpConnection._on_head`` itself, with no task, no pipeline walk and
no handler, and the access log line is still written and the request counted.

How this works:

1. *Candidates.* A GET or HEAD with no body and none of the headers that make the
   answer depend on the client's state (``Range``, ``If-*``, ``Authorization``) or
   ask for another protocol (``Upgrade``) gets a key: ``(method, scheme, port,
   Host, request target, Accept-Encoding, HTTP version)``. Accept-Encoding
   is in the key verbatim, so every compression variant is its own entry (a client
   that words the header differently makes an entry of its own: never a wrong one).
   A request that is not a candidate, or a cache miss, takes the pipeline as ever.
2. *Capture.* A miss records what the pipeline hands the connection's writer (the
   status, the headers, the body up to ``max_entry_size``; a response sent with
   ``sendfile`` is never recorded). When the walk has ended, the engine's rule
   (:func:`colonnade.engine.respcache.eligible`) decides from the application's
   compiled plan and the path's effective configuration whether the request could
   have been answered without any module seeing it; only then is the entry stored.
3. *Hits.* The stored headers go through the same ``h1.start_response`` as the
   pipeline's (Date, Server and Connection are added there per response), so a
   hit is byte for byte the pipeline's answer but for Date. The access log hooks of
   the plan run on a small :class:`~colonnade.core.context.Context` carrying the
   fields the log reads (status, bytes, time taken, user, site); the site's
   metrics count it. The request monitor never lists it (it lasts microseconds).
4. *Staying correct.* An entry lives for the static handler's
   ``cache_check_interval`` (the interval that handler trusts its own file cache);
   then the next request takes the pipeline again, whose lookup notices a changed
   file, and stores a fresh entry. A granted entry lives until the grant's deadline
   and goes at its next hit once the grant is revoked (the output cache's entry was
   purged, expired, evicted or saw its file change); its ``Age`` header is computed
   per response from the grant's ``age_since``, as the output cache's hit does. A
   reload (a new engine) starts an empty cache, so a module enabled for a path takes
   effect with the reload.

Bounds: ``max_entries`` and ``max_bytes`` (bodies, headers and a fixed overhead per
entry); the oldest stored entry goes first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

from colonnade.http import RequestHead
from colonnade.http.h1 import PARTICULAR_FIELDS, Framed, PreparedHead

if TYPE_CHECKING:
    from colonnade.core.context import Context
    from colonnade.core.request import Headers
    from colonnade.engine import Engine
    from colonnade.engine.engine import Route

log = logging.getLogger("colonnade.transport")

# A Final name: compiled, a C static, not a look-up in the time module per call.
_monotonic: Final = time.monotonic
_time: Final = time.time

#: Request headers whose presence sends the request to the pipeline: the answer
#: depends on them (a 304, 412, 206) and is not worth keeping per client;
#: credentials: the answer may be the user's alone (IIS's kernel cache never answers
#: a request with them); a protocol switch (WebSocket) is no document. The HTTP/1.1
#: layer notes them as it parses the head (``RequestHead.particular``), so a request
#: is not scanned for them again here.
BYPASS: Final = PARTICULAR_FIELDS

#: The handler whose answers the engine's rule may keep (``engine.respcache.eligible``).
STATIC: Final = "handler.static"

#: Bookkeeping bytes charged per entry besides its body and headers.
ENTRY_OVERHEAD: Final = 256

#: The largest body a hit sends joined with its head in one write (a larger one
#: goes out by writev, head and body apart): the entry then keeps that joined
#: answer too, for the second its Date line names (``Entry.framed``).
FRAMED_MAX: Final = 16 * 1024

#: What a framed answer holds besides the body and the stored head's lines (the
#: Content-Length, Date and Server lines and the blank line), about.
FRAMING: Final = 160

#: ``(method, scheme, port, Host, target, Accept-Encoding, version)``: the version,
#: since an answer may differ for HTTP/1.0 (compression leaves those clients alone by
#: default). A plain tuple type: a fixed-shape one is, compiled, a C struct, unboxed
#: (each item type-checked) at every narrowing and boxed again for every dict use or
#: field store.
Key = tuple[object, ...]
#: ``engine.respcache.eligible``: (engine, ctx, headers, memo) -> (log hooks, lifetime)
#: or None; ``memo``: the cache's own, for the rule to keep what it found per runtime.
Rule = Callable[
    ["Engine", "Context", list[tuple[bytes, bytes]], dict[tuple[Any, Any], frozenset[str]]],
    tuple[tuple[Any, ...], float] | None,
]


def request_encoding(head: RequestHead) -> bytes | None:
    """The Accept-Encoding of a request the cache may answer (b"": none; several
    fields joined by commas), or None when it must take the pipeline."""
    method = head.method
    if (
        (method != b"GET" and method != b"HEAD")
        or head.chunked
        or head.content_length
        or head.particular  # a field of BYPASS
    ):
        return None
    encoding = b""
    for name, value in head.headers:
        if name == b"accept-encoding":
            encoding = value if not encoding else encoding + b"," + value
    return encoding


def request_key(
    head: RequestHead, scheme: str, server: tuple[str, int] | None, encoding: bytes
) -> Key:
    """The cache key of a request on a connection to ``server`` (its address), whose
    :func:`request_encoding` is ``encoding``."""
    port = server[1] if server else 0
    return (head.method, scheme, port, head.host, head.target, encoding, head.version)


class Record:
    """What the pipeline handed the writer for one candidate request."""

    __slots__ = (
        "cache",
        "headers",
        "key",
        "length",
        "limit",
        "parts",
        "reason",
        "size",
        "status",
    )

    def __init__(self, cache: ResponseCache, key: Key) -> None:
        self.cache = cache
        self.key = key
        self.limit = cache.max_entry_size
        self.status = 0
        self.reason: bytes | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.size = 0
        #: The Content-Length the response declared (None: none).
        self.length: int | None = None

    @property
    def complete(self) -> bool:
        """A 200 whose whole body is here (a HEAD's: none)."""
        if self.status != 200:
            return False
        return self.key[0] == b"HEAD" or self.size == self.length

    def whole(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> bool:
        """A response sent in one piece; False if it cannot be kept."""
        if len(body) > self.limit:
            return False
        self.status = status
        self.reason = reason
        self.headers = list(headers)
        self.parts = [body]
        self.size = len(body)
        self.length = None if status == 304 else len(body)
        return True

    def begin(
        self, status: int, reason: bytes | None, headers: Headers, length: int | None
    ) -> bool:
        """The head of a streamed response; False if it cannot be kept."""
        if length is None or length > self.limit:
            return False
        self.status = status
        self.reason = reason
        self.headers = list(headers)
        self.length = length
        return True

    def add(self, data: bytes) -> bool:
        """Body bytes of a streamed response; False once over the limit."""
        if self.key[0] == b"HEAD":
            return True  # the writer sends none of them
        self.size += len(data)
        if self.size > self.limit:
            return False
        self.parts.append(data)
        return True


class Entry:
    """One stored response and what a hit needs to log and count it."""

    __slots__ = (
        "age",
        "app",
        "body",
        "cost",
        "encoding",
        "expires",
        "framed",
        "grant",
        "headers",
        "host",
        "key",
        "length",
        "live",
        "log",
        "method",
        "metrics",
        "prepared",
        "reason",
        "sections",
        "target",
        "user",
        "version",
    )

    def __init__(self, record: Record, ctx: Context, log: tuple[Any, ...], lifetime: float) -> None:
        key = self.key = record.key
        #: The key's request fields, typed: what :meth:`answers` compares.
        self.method = cast(bytes, key[0])
        self.host = cast(bytes, key[3])
        self.target = cast(bytes, key[4])
        self.encoding = cast(bytes, key[5])
        self.version = cast(bytes, key[6])
        grant = ctx.cache_grant
        #: A module's leave (None: the engine's own rule): revoked, the entry goes.
        self.grant = grant
        headers = record.headers
        #: The Age the prepared head says (-1: none; see :meth:`aged`).
        self.age = -1
        if grant is not None and grant.age_since is not None:
            headers = [(n, v) for n, v in headers if n.lower() != b"age"]
        self.headers = headers
        self.reason = record.reason
        self.body = b"".join(record.parts)
        self.length = record.length
        #: The status line and header lines, checked and formatted once: a hit adds
        #: only Date, Server, Connection and the framing (``h1.start_prepared``);
        #: with an Age, made again when it changes (:meth:`aged`).
        if grant is not None and grant.age_since is not None:
            self.aged(grant.age_since)
        else:
            self.prepared = PreparedHead(record.status, headers, record.reason, record.length)
        self.app = ctx.app
        self.user = ctx.user
        #: The path's effective configuration, the same for every hit of the key.
        self.sections = ctx.sections
        self.log = log
        #: The site's counters (an application's for its life; None: not counting).
        self.metrics = ctx.app.metrics if record.cache.engine.counting else None
        self.expires = _monotonic() + lifetime
        #: Stored in the cache and not dropped since (a connection's memo checks it).
        self.live = False
        #: The whole answer to a GET, framed, for the current Date second
        #: (``h1.start_again``): a body up to ``FRAMED_MAX`` is sent joined with its
        #: head, and that copy is charged here too.
        self.framed = Framed()
        framed = 0
        if record.key[0] == b"GET" and len(self.body) <= FRAMED_MAX:
            framed = len(self.body) + len(self.prepared.lines) + FRAMING
        self.cost = (
            len(self.body) + framed + sum(len(n) + len(v) for n, v in self.headers) + ENTRY_OVERHEAD
        )

    def answers(self, head: RequestHead, encoding: bytes) -> bool:
        """Whether ``head``, whose :func:`request_encoding` is ``encoding``, has this
        entry's key on the connection this entry last answered (whose scheme and
        port the key holds): the fields that vary, compared as bytes (the target
        first, the likeliest to differ), with no key made."""
        return (
            head.target == self.target
            and head.host == self.host
            and head.method == self.method
            and encoding == self.encoding
            and head.version == self.version
        )

    def aged(self, since: float) -> None:
        """Keep the prepared head's last header, ``Age``, the seconds since ``since``
        (``time.time()``), as the output cache's hit computes it: the head is made
        again when the second changes, not per response."""
        age = max(0, int(_time() - since))
        if age != self.age:
            # Every stored answer is a 200 (Record.complete).
            headers = [*self.headers, (b"age", b"%d" % age)]
            self.prepared = PreparedHead(200, headers, self.reason, self.length)
            self.age = age


class ResponseCache:
    """The entries of one engine generation (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        settings = engine.settings.response_cache
        self.engine = engine
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self.max_entry_size = settings.max_entry_size
        self.entries: dict[Key, Entry] = {}
        #: The engine's rule (``engine.respcache.eligible``), once the first offer came.
        self.rule: Rule | None = None
        #: The rule's memo (engine.respcache.eligible): the modules that keep an answer
        #: out, per (runtime, section set) of this generation (``engine.respcache``'s
        #: ``blocked_by``; at most its ``MAX_VERDICTS``).
        self.blocking: dict[tuple[Any, Any], frozenset[str]] = {}
        #: Per (runtime, section set) of this generation: True where the rule refuses
        #: every answer (``engine.respcache.refusing``), read by :meth:`judge` before a
        #: candidate request takes the pipeline (at most ``MAX_VERDICTS`` pairs).
        self.refused: dict[tuple[Any, Any], bool] = {}
        #: Whether :meth:`judge` hands the route it found on: only where the engine
        #: would route the request again (a server of one application at "/" does not
        #: route: a route made for it would only cost a tuple per request).
        self.hand_on = engine.router.only is None
        self.bytes = 0
        #: Requests answered from the cache, and entries stored (for tests and tools).
        self.hits = 0
        self.stored = 0

    def hit(self, key: Key, entry: Entry, now: float) -> bool:
        """Whether ``entry``, found for ``key`` (in ``entries``, or remembered by a
        connection for the same key: then it must still be ``live``), answers the
        request: not expired at ``now`` (``time.monotonic()``: the hit's
        ``Context.started``, one clock read for both) nor revoked. An entry that
        does not is dropped."""
        if now >= entry.expires:
            self.drop(key)
            return False
        grant = entry.grant
        if grant is not None:
            if grant.revoked:
                self.drop(key)
                return False
            grant.hits += 1
            since = grant.age_since
            if since is not None:
                entry.aged(since)
        self.hits += 1
        return True

    def judge(self, port: int, host: str, path: str) -> tuple[bool, Route | None]:
        """``(refused, route)`` for a request for ``path`` on ``port`` with ``Host:
        host``. ``refused``: whether the engine's rule refuses every answer to it;
        then it takes the pipeline with no record made and none offered (the request
        is not answered here either way). ``route``: the request's route as
        ``Engine.handle`` would find it (``engine.engine.Route``: this generation's
        engine, the application's runtime, the path's section set), for the
        connection to hand on to ``Engine.handle``, which then does not route the
        request again; None where none was found here.

        What the rule's refusal depends on is the application the request is routed
        to and the path's effective configuration (the section set an application
        shares among the paths that match the same levels); the verdict is kept per
        (runtime, section set) pair for this generation (a reload, a changed
        ``web.toml``, starts a new cache), so a refused request costs the route and
        two look-ups, where the record, the offer and the rule's interpreted refusal
        after the walk cost ~5,800 instructions of a rewrite-enabled static request
        (bench row rewrite-0). A changed file does not move it: it reads only the plan and the
        settings.

        Never a refusal for a folder's path ("/", "/docs/"), which is not routed
        here: the default document remaps it to a file under that file's settings,
        which the rule reads after the walk (a path's own settings may block what
        its document's do not). The default document is the one module transparent
        to the rule that remaps; a CGI script's local redirect may move a request
        to settings that would keep it too, and is refused here by its script's (a
        lost entry, never a module skipped). A fault while routing is a refusal
        with no route: the pipeline meets the same fault where it is answered."""
        if path.endswith("/"):
            return False, None
        engine = self.engine
        try:
            runtime = engine.route(port, host, path)
            sections = runtime.path_sections.get(path)
            if sections is None:
                # A path not seen lately: what Engine.handle would do (and then find).
                sections = runtime.app.sections_for(path)
        except Exception:
            # The pipeline meets the same fault where it is answered (a 500 for
            # this request alone): no record for it.
            log.exception("response cache: routing %r failed", path)
            return True, None
        pair = (runtime, sections)
        verdict = self.refused.get(pair)
        if verdict is None:
            verdict = self._verdict(runtime, sections, pair)
        return verdict, ((engine, runtime, sections) if self.hand_on else None)

    def _verdict(self, runtime: Any, sections: Any, pair: tuple[Any, Any]) -> bool:
        """:meth:`judge`'s verdict on a pair it has not kept (once per pair)."""
        from colonnade.engine.respcache import blocked_by, refusing, remember

        try:
            verdict = refusing(runtime, blocked_by(self.blocking, runtime, sections))
        except Exception:
            # A fault of the rule costs the path its entries, never the connection.
            log.exception("response cache: judging %s failed", runtime.app.id)
            verdict = True
        remember(self.refused, pair, verdict)
        return verdict

    def drop(self, key: Key) -> None:
        """Forget the entry of ``key`` (if any)."""
        entry = self.entries.pop(key, None)
        if entry is not None:
            entry.live = False
            self.bytes -= entry.cost

    def offer(self, record: Record, ctx: Context) -> None:
        """The pipeline answered a candidate: keep the answer if the engine's rule allows."""
        if not record.complete:
            return
        rule = self.rule
        if rule is None:
            # Imported on the first offer, then held: every complete 200 of a
            # candidate request is offered (an ASGI answer too), and an import
            # statement run per request cost ~7,700 instructions of ~130,000.
            from colonnade.engine.respcache import eligible

            rule = self.rule = eligible
        try:
            verdict = rule(self.engine, ctx, record.headers, self.blocking)
        except Exception:
            # The answer is out already: a fault of the rule costs the entry, never
            # the connection.
            log.exception("response cache: deciding on %s failed", ctx.request.path)
            return
        if verdict is None:
            return
        hooks, lifetime = verdict
        entry = Entry(record, ctx, hooks, lifetime)
        if entry.cost > self.max_bytes:
            return
        key = record.key
        self.drop(key)
        entries = self.entries
        while entries and (
            len(entries) >= self.max_entries or self.bytes + entry.cost > self.max_bytes
        ):
            self.drop(next(iter(entries)))  # the oldest stored
        entries[key] = entry
        entry.live = True
        self.bytes += entry.cost
        self.stored += 1


def for_engine(engine: Engine) -> ResponseCache | None:
    """The response cache of ``engine``'s generation, or None where it is switched off,
    or where it could never store an answer: the engine's rule keeps only answers of
    the static file handler and those a module grants, and no handler mapping of the
    generation names the handler nor does any application enable a module that may
    grant (``Module.grants_response_cache``: the output cache). (The rule's
    transparent modules reach a handler only through the mapping; a module that sets
    one itself makes its application's answers ineligible anyway.) Then no request
    pays for a key and a record (~5,500 instructions of an ASGI hello request's
    ~116,000)."""
    settings = engine.settings.response_cache
    if not settings.enabled or not settings.max_bytes or not settings.max_entry_size:
        return None
    if not any(
        rule.handler.id == STATIC for rt in engine.runtimes for rule in rt.handler_map.rules
    ) and not any(
        getattr(module, "grants_response_cache", False)
        for rt in engine.runtimes
        for module in rt.modules
    ):
        return None
    return ResponseCache(engine)
