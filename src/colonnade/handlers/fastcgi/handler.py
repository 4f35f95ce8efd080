"""The FastCGI handler: a FastCGI application (php-cgi, php-fpm, any other)
answers the requests mapped to it.

How this works, per request: the script is found (``core.cgienv.find_script``:
the URL's file, or the first file along the path with the rest as
``PATH_INFO``, and only one ending in one of ``script_extensions``); its CGI/1.1
variables become the
PARAMS stream; an instance of the application is borrowed from the worker's
:class:`~colonnade.handlers.fastcgi.pool.Pool`; the request body is pumped into
STDIN by a task of its own while this coroutine reads the response, so that an
application that answers before it has read the whole body cannot deadlock us.
Both directions keep back-pressure: the pump waits for the socket to drain
before it reads more of the body, and the response is read only as fast as the
client takes it (``ctx.write``), so neither a large upload nor a large download
is ever held in memory.

The response's head is read with ``core.cgihead`` (``Status``, headers; bounded
at 64 KiB). A local redirect (``Location: /path`` without ``Status``) is served
by the server once the instance went back to its pool
(``core.cgienv.serve_local_redirect``). A response whose end arrives within the
first 64 KiB is handed to the pipeline whole (``Content-Length``, compression and
the other SEND_RESPONSE modules apply as to any response in memory); a longer
one is streamed.

What goes wrong is answered with IIS's numbers and logged naming the
application, its program and the pool; the instance is killed and replaced,
the worker and the client's connection go on:

- cannot start the program or reach the server: 502.3; its queue is full:
  503.4; too many failures in the last minute: 503.0;
- no progress for ``activity_timeout`` or the whole request over
  ``request_timeout``: 504.1 (IIS says 502.1 for a CGI timeout; 504 is what
  HTTP names a gateway timeout);
- the program closed the connection before its response was complete, sent a
  malformed record, an invalid head or ``Status``, a wrong ``Content-Length``,
  or refused the request (END_REQUEST CANT_MPX_CONN or UNKNOWN_ROLE): 502.2
  (IIS's "bad gateway: incomplete or invalid response"); OVERLOADED: 503.0;
- STDERR output with ``stderr_mode = "fail"``: 500.0.

Once the response has begun, a failure can only cut the connection (a
truncated body must not look complete).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

from colonnade import __version__
from colonnade.core import cgihead
from colonnade.core.app import Application
from colonnade.core.cgienv import (
    CGI_HEADERS,
    Script,
    cgi_variables,
    connection_pairs,
    script_pairs,
    script_parts,
    serve_local_redirect,
)
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.request import EMPTY_BODY
from colonnade.core.taskwait import running_task_getter
from colonnade.errors import ConfigError, HttpError
from colonnade.handlers.fastcgi import records
from colonnade.handlers.fastcgi.config import FastCgiApplication, FastCgiSection
from colonnade.handlers.fastcgi.pool import POOLS, Instance, Pool, hung_up

log = logging.getLogger("colonnade.fastcgi")

#: The one request id we use: we never multiplex a connection (php-cgi and
#: php-fpm cannot), as IIS never does.
REQUEST_ID: Final = 1
#: Bytes of the response kept to send it whole (with Content-Length) when its
#: end comes within them; past them it is streamed.
BUFFER: Final = 64 * 1024
#: How much of the request body is read at once.
CHUNK: Final = 64 * 1024
#: The records every request starts and (without a body) ends with.
_BEGIN: Final = records.begin_request(REQUEST_ID)
_STDIN_END: Final = records.stdin_end(REQUEST_ID)
#: Response headers the application may not set: we frame the response.
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)


class FastCgiError(Exception):
    """A failure once the response has begun: the pipeline cuts the connection."""


class _AppFailedError(Exception):
    """A failure of the application, before the response began: its HTTP error."""

    def __init__(self, error: HttpError) -> None:
        super().__init__(error.detail or error.message)
        self.error = error


class _StaleError(Exception):
    """A reused connection was closed before any of the request was taken."""


class FastCgiHandler(Handler):
    """Runs scripts in a FastCGI application (see the module docstring)."""

    id = "handler.fastcgi"
    section = FastCgiSection
    uses_session = False

    def __init__(self) -> None:
        self.pools: dict[str, Pool] = {}
        #: Per application, what a request of it needs (its pool, its script
        #: test, its PARAMS tail), found with one lookup.
        self.apps: dict[str, _App] = {}
        self.pool_name = "default"
        self.applications: dict[str, FastCgiApplication] = {}
        #: The name of the one application, where only one is defined.
        self.only = ""
        self.software = f"colonnade/{__version__}"
        #: PARAMS' first two parts, encoded, made once (bounded): per script and
        #: root, the pairs from GATEWAY_INTERFACE to PATH_TRANSLATED; per
        #: connection's values (protocol, scheme, host, server, client), those
        #: from SERVER_PROTOCOL to HTTPS (``cgienv.cgi_variables``' order).
        #: (by the script's file: its name, path info and root, then the bytes;
        #: by the client: the protocol, scheme, host and server, then the bytes).
        self.script_texts: dict[str, tuple[str, str, str, bytes]] = {}
        self.connection_texts: dict[tuple[str, int] | None, _ConnectionText] = {}
        #: By request header name: its variable (``CGI_HEADERS``' rule), or
        #: ``_DROPPED``; bounded.
        self.variables: dict[bytes, _Variable] = {}
        #: Counts the requests whose PARAMS were made: a header whose variable
        #: was last seen in this one is a repeated header.
        self.serial = 0

    def provision(self, app: Application) -> None:
        """Check that every level names a defined application; start nothing yet."""
        settings = app.section(FastCgiSection)
        self.applications = dict(settings.applications)
        self.pool_name = app.pool
        self.only = next(iter(self.applications)) if len(self.applications) == 1 else ""
        if not self.applications:
            raise ConfigError(
                "handler.fastcgi is enabled but no FastCGI application is defined "
                "([fastcgi.applications.NAME] with program or address)",
                key="fastcgi.applications",
            )

    async def startup(self) -> None:
        """Take this worker's pools (no process starts before the first request)."""
        for name, settings in self.applications.items():
            pool = self.pools[name] = POOLS.acquire(name, settings, self.pool_name)
            tail, replaced = _tail(settings)
            self.apps[name] = _App(pool, _accepting(settings.script_extensions), tail, replaced)

    async def shutdown(self) -> None:
        """Give the pools back; the last user ends their processes."""
        pools, self.pools = self.pools, {}
        self.apps = {}
        for pool in pools.values():
            await POOLS.release(pool)

    # -- one request -------------------------------------------------------------------

    async def execute(self, ctx: Context) -> None:
        """Run the request's script in the application chosen for its URL."""
        # The one application, where only one is defined (the common case):
        # no settings looked up for it.
        chosen = self.only or ctx.section(FastCgiSection).chosen
        app = self.apps.get(chosen)
        if app is None:
            raise HttpError(503, 0, "the FastCGI application is not running")
        pool = app.pool
        script = script_parts(ctx, app.accept)
        if script is None:
            raise HttpError(404, 0, "the script does not exist")
        head = self._request_head(ctx, script, app)
        # An idle instance at hand (the common case), else wait for one.
        inst = pool.take()
        if inst is None:
            inst = await pool.acquire()
        reusable = False
        exchange = _Exchange(ctx, pool, inst, head)
        try:
            while True:
                # The exchange (``_Exchange.begin``, ``_head``, ``_settle``,
                # ``end``) in this coroutine, its plain methods called from here:
                # two coroutines less per request than a method of the exchange
                # awaiting another that reads the answer (each costs its frame
                # on every suspension and resumption).
                try:
                    rest = exchange.begin()
                    if rest is not None:
                        await exchange.send_rest(rest)
                    # The answer's head (and nearly always all of it), waited
                    # for here: no coroutine made for the common case.
                    while (waiter := exchange._head()) is not None:
                        try:
                            await waiter
                        finally:
                            exchange.inst.waited()
                    settled = exchange._settle()
                    keeps = settled == 1 if settled >= 0 else await exchange._finish()
                    pump = exchange.pump
                    if pump is not None:
                        if not pump.done():
                            # The application answered without reading the whole
                            # body: the connection holds our unsent STDIN; it
                            # cannot serve again.
                            keeps = False
                        await exchange._end(pump)
                except BaseException as exc:
                    error = await exchange.abandon(exc)
                    if not isinstance(error, _StaleError):
                        if error is exc:
                            raise
                        raise error from None
                    # An idle connection that had gone away: nothing of the
                    # request was taken, so it goes again on a new one (as nginx
                    # retries the next upstream). Ends: an instance is renewed
                    # once, then replaced by a new one, which is never stale.
                    inst = await pool.renew(inst)
                    exchange = _Exchange(ctx, pool, inst, head)
                    continue
                exchange.end()
                reusable = keeps
                break
        except _AppFailedError as failed:
            # Logged by the pipeline with the page's correlation id: the detail
            # names the application, its program and the pool.
            if failed.error.status in (502, 504):
                pool.count_failure()
            raise failed.error from None
        except FastCgiError:
            pool.count_failure()
            raise
        finally:
            pool.release(inst, reusable=reusable)
        if exchange.redirect is not None:
            # After the instance went back: the target may be a script of ours too.
            await serve_local_redirect(ctx, exchange.redirect, pool.label)

    def _request_head(self, ctx: Context, script: tuple[str, str, str], app: _App) -> bytes:
        # BEGIN_REQUEST, PARAMS and (without a body) the end of STDIN, in one join.
        request = ctx.request
        replaced = app.replaced
        no_body = request.body is EMPTY_BODY
        if replaced:
            # The configured params replace some variables: made as a dict.
            variables = cgi_variables(ctx, Script(*script), software=self.software)
            for name in replaced:
                variables.pop(name, None)
            encoded = records.encode_text_pairs(variables.items()) + app.tail
            return records.params_stream(
                REQUEST_ID, encoded, _BEGIN, _STDIN_END if no_body else b""
            )
        # Each kept part looked up by one string or tuple that the request
        # already holds, then compared on the rest (no key tuple made and hashed).
        root = ctx.app.root
        name, filename, path_info = script
        kept = self.script_texts.get(filename)
        if kept is not None and kept[0] == name and kept[1] == path_info and kept[2] == root:
            script_text = kept[3]
        else:
            script_text = records.encode_text_pairs(
                script_pairs(self.software, name, filename, path_info, root)
            )
            _keep(self.script_texts, filename, (name, path_info, root, script_text))
        version = request.version
        scheme = request.scheme
        host = request.host
        server = request.server
        client = request.client
        by_client = self.connection_texts.get(client)
        if (
            by_client is not None
            and by_client[0] == version
            and by_client[1] == scheme
            and by_client[2] == host
            and by_client[3] == server
        ):
            connection_text = by_client[4]
        else:
            connection_text = records.encode_text_pairs(connection_pairs(request))
            _keep(self.connection_texts, client, (version, scheme, host, server, connection_text))
        # The first piece is BEGIN_REQUEST and PARAMS' record header (put in
        # once the length is known); the last the application's tail, the
        # padding, the empty PARAMS record and (without a body) the end of STDIN.
        # Fewer pieces, a cheaper join: each costs about a hundred instructions.
        out = [b"", script_text, connection_text]
        method = _METHODS.get(request.method)
        if method is None:
            value = request.method.encode("latin-1")
            method = _METHOD.head(len(value)) + value
        out.append(method)
        query = request.query
        if query:
            out.append(_QUERY.head(len(query)))
            out.append(query)
        else:
            out.append(_NO_QUERY)
        target = request.target
        out.append(_URI.head(len(target)))
        out.append(target)
        user = ctx.user
        if user is not None and user.name:
            value = user.name.encode("utf-8")
            out.append(_REMOTE_USER.head(len(value)))
            out.append(value)
            value = user.auth_type.encode("latin-1")
            out.append(_AUTH_TYPE.head(len(value)))
            out.append(value)
        self._header_pairs(out, request.headers)
        length = len(app.tail)  # the PARAMS text's
        for piece in out:
            length += len(piece)
        if length > records.CHUNK:
            # More than one PARAMS record: cut by the records module.
            out.append(app.tail)
            return records.params_stream(
                REQUEST_ID, b"".join(out), _BEGIN, _STDIN_END if no_body else b""
            )
        padding = -length % 8
        start = _STARTS.get(length)
        if start is None:
            start = _PARAMS_START + bytes((length >> 8, length & 0xFF, padding, 0))
            _keep(_STARTS, length, start)
        out[0] = start
        out.append(app.ends_with_stdin[padding] if no_body else app.ends[padding])
        return b"".join(out)

    def _header_pairs(self, out: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        # The headers' pairs (``CGI_HEADERS.add``'s variables, in its order) onto
        # ``out``, made without a dict: each header name's variable is kept, and
        # marks the request it was last seen in; a repeated header is joined to
        # the first (RFC 9110 5.3; ``Cookie`` with ``; ``) in place.
        variables = self.variables
        if len(variables) >= _KEPT:
            variables.clear()
        self.serial += 1
        serial = self.serial
        for name, value in headers:
            variable = variables.get(name)
            if variable is None:
                key = CGI_HEADERS.key(name)
                variable = _DROPPED if key is None else _Variable(key.encode("latin-1"))
                variables[name] = variable
            if variable is _DROPPED:
                continue
            if variable.seen == serial:
                at = variable.at
                value = out[at] + variable.separator + value
                out[at - 1] = variable.head(len(value))
                out[at] = value
                continue
            variable.seen = serial
            out.append(variable.head(len(value)))
            variable.at = len(out)
            out.append(value)


class _App:
    """One FastCGI application as the handler's requests use it."""

    __slots__ = ("accept", "ends", "ends_with_stdin", "pool", "replaced", "tail")

    def __init__(
        self,
        pool: Pool,
        accept: Callable[[str], bool] | None,
        tail: bytes,
        replaced: list[str],
    ) -> None:
        self.pool = pool
        #: The test a script's URL path passes (its extensions), if any.
        self.accept = accept
        #: What follows the CGI variables in PARAMS (REDIRECT_STATUS, the
        #: configured params), and the names of the variables the configured
        #: params replace.
        self.tail = tail
        self.replaced = replaced
        #: By padding: what follows the request's own PARAMS pairs: the tail,
        #: the padding, the empty PARAMS record, then (or not) the end of STDIN.
        self.ends = [tail + bytes(p) + _PARAMS_END for p in range(8)]
        self.ends_with_stdin = [end + _STDIN_END for end in self.ends]


class _Variable:
    """One CGI variable as PARAMS writes it: its pair's head (both lengths and
    the name) for each value length, made when first needed; for a request
    header's, where its value is among the pieces of the request last seen with it."""

    __slots__ = ("at", "heads", "name", "seen", "separator")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.heads: list[bytes | None] = [None] * 0x80
        #: The ``FastCgiHandler.serial`` of the request that last had this
        #: header, and the index of its value in that request's pieces.
        self.seen = 0
        self.at = 0
        #: How a repeated header's values are joined (``CGI_HEADERS``' rule).
        self.separator = b"; " if name == b"HTTP_COOKIE" else CGI_HEADERS.separator.encode()

    def head(self, length: int) -> bytes:
        """What comes before a value of ``length`` bytes (``records.pair_head``)."""
        if length >= 0x80:
            return records.pair_head(self.name, length)
        head = self.heads[length]
        if head is None:
            head = self.heads[length] = records.pair_head(self.name, length)
        return head


#: The variable of the request headers that are not passed.
_DROPPED: Final = _Variable(b"")

_ConnectionText = tuple[str, str, str, "tuple[str, int] | None", bytes]
#: Entries of each of the handler's PARAMS caches; past it, one is emptied.
_KEPT: Final = 1024


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _KEPT:
        cache.clear()
    cache[key] = value


#: BEGIN_REQUEST and the start of PARAMS' record header, up to its length.
_PARAMS_START: Final = _BEGIN + bytes(
    (records.VERSION, records.PARAMS, REQUEST_ID >> 8, REQUEST_ID & 0xFF)
)
#: By PARAMS' length: BEGIN_REQUEST and PARAMS' whole record header (bounded).
_STARTS: Final[dict[int, bytes]] = {}
#: The empty PARAMS record that ends the stream.
_PARAMS_END: Final = records.record(records.PARAMS, REQUEST_ID)

#: The variables whose values vary by request.
_METHOD: Final = _Variable(b"REQUEST_METHOD")
_QUERY: Final = _Variable(b"QUERY_STRING")
_URI: Final = _Variable(b"REQUEST_URI")
_REMOTE_USER: Final = _Variable(b"REMOTE_USER")
_AUTH_TYPE: Final = _Variable(b"AUTH_TYPE")
#: QUERY_STRING's pair without a query.
_NO_QUERY: Final = _QUERY.head(0)
#: REQUEST_METHOD's whole pair for the common methods.
_METHODS: Final = {
    m: _METHOD.head(len(m)) + m.encode()
    for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
}


def _tail(settings: FastCgiApplication) -> tuple[bytes, list[str]]:
    # What _request_head adds after the CGI variables, made once per application.
    tail: dict[str, str] = {}
    # php-cgi (cgi.force_redirect, on by default) refuses a request without it.
    tail["REDIRECT_STATUS"] = "200"
    for name, value in settings.params.items():
        # Replaced, and last. The configuration's own text is sent as UTF-8:
        # as latin-1 text here, as the variables hold bytes.
        tail.pop(name, None)
        tail[_utf8_text(name)] = _utf8_text(value)
    return records.encode_text_pairs(tail.items()), list(settings.params)


def _utf8_text(text: str) -> str:
    return text if text.isascii() else text.encode().decode("latin-1")


class _Extensions:
    """The test a script's URL path passes: it ends with one of the extensions,
    in any case."""

    __slots__ = ("endings",)

    def __init__(self, extensions: list[str]) -> None:
        self.endings = tuple(e.lower() for e in extensions)

    def __call__(self, path: str) -> bool:
        # The ending as configured (lower case), nearly always, found without
        # the lower-case copy of the path.
        for ending in self.endings:
            if path.endswith(ending):
                return True
        return path.lower().endswith(self.endings)


def _accepting(extensions: list[str]) -> Callable[[str], bool] | None:
    return _Extensions(extensions) if extensions else None


def _target(ctx: Context) -> str:
    return ctx.request.target.decode("latin-1")[:200]


#: The task running on a loop (``asyncio.current_task(loop)``).
_current_task: Final = running_task_getter()


async def stop_pump(pump: asyncio.Task[None]) -> None:
    """Cancel a request body's pump and wait until it has stopped. Its own
    cancellation ends here; a cancellation of the waiting task (the request's) that
    arrives meanwhile goes on (one that came before, such as a timeout's being
    answered, is not new). The pump reports its errors itself (``pump_error``)."""
    current = asyncio.current_task()
    before = 0 if current is None else current.cancelling()
    pump.cancel()
    try:
        await pump
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise
    except Exception:
        pass


class _Exchange:
    """One request on one instance: the pump, the reader, the timeouts."""

    def __init__(self, ctx: Context, pool: Pool, inst: Instance, head: bytes) -> None:
        self.ctx = ctx
        self.pool = pool
        self.settings = pool.settings
        self.inst = inst
        self.head = head
        reader = inst.reader
        if reader is None:
            reader = inst.reader = records.ResponseReader(REQUEST_ID)
        else:
            reader.reset()
        self.reader = reader
        #: Progress (a byte read from the application, a piece of the body taken
        #: by it, a piece of the response taken by the client): the pool's
        #: ticker restarts the activity timeout when it changed.
        self.moves = 0
        #: The pool's ticker's notes (``pool.Watched``).
        self.started = -1.0
        self.moved = 0.0
        self.moves_then = 0
        #: Which timeout passed (``"request"``, ``"activity"``), once one did.
        self.expired: str | None = None
        self.task: asyncio.Task[object] | None = None
        self.cancelling = 0
        #: The task that pumps the request body into STDIN (with a body only).
        self.pump: asyncio.Task[None] | None = None
        #: What came of STDERR (bounded): bytes, not a bytearray, as nearly no
        #: request has any (no object made for them).
        self.stderr = b""
        self.stderr_dropped = 0
        self.pump_error: BaseException | None = None
        self.received = 0  # bytes read from the application
        #: A read may find something: the loop turned since the request went out.
        self.ready = False
        #: The response's head once parsed, the bytes of its body read so far
        #: (until it is streamed), the Content-Length it declared.
        self.parsed: _Head | None = None
        self.size = 0
        self.declared: int | None = None
        #: A local redirect's target (``Location: /path`` without ``Status``).
        self.redirect: bytes | None = None
        self.body_started = False  # the pump read from the request body

    def expire(self, which: str) -> None:
        """A timeout passed (the pool's ticker says which): the request's task is
        cancelled, and :meth:`abandon` answers 504.1 (as ``asyncio.timeout`` does,
        a cancellation of the task by anyone else stays one)."""
        self.expired = which
        if self.task is not None:
            self.task.cancel()

    def begin(self) -> memoryview | None:
        """Start the exchange: the request goes out (what the socket did not
        take at once is returned, for :meth:`send_rest`), a pump task sends the
        body (if any) once it did, and the pool's ticker watches the timeouts
        until :meth:`end` or :meth:`abandon`. The handler then reads the answer
        (:meth:`_head`, :meth:`_settle`, :meth:`_finish`)."""
        task = _current_task(self.pool.loop)
        assert task is not None
        self.task = task
        self.cancelling = task.cancelling()
        self.pool.watch(self.inst, self)
        inst = self.inst
        head = self.head  # with the end of STDIN when there is no body
        try:
            # Nearly always taken whole at once: no coroutine made for the rest.
            sent = inst.send_some(head)
        except OSError as exc:
            raise self._not_sent(exc) from None
        if sent < len(head):
            return memoryview(head)[sent:]
        self._start_pump()
        return None

    async def send_rest(self, rest: memoryview) -> None:
        """The rest of the request that :meth:`begin` could not send at once."""
        try:
            await self.inst.send(rest)
        except OSError as exc:
            raise self._not_sent(exc) from None
        self._start_pump()

    def _not_sent(self, exc: OSError) -> Exception:
        if self.inst.reused:
            return _StaleError()  # closed while idle: nothing was taken
        return self._fail(f"the request could not be sent: {exc}")

    def _start_pump(self) -> None:
        if self.ctx.request.body is not EMPTY_BODY:
            sock = self.inst.sock
            assert sock is not None
            self.pump = self.pool.loop.create_task(self._pump(sock))

    def end(self) -> None:
        """The exchange ended well (its pump, if any, ended with :meth:`_end`)."""
        if self.pump is None:
            self._log_stderr()
        self.pool.unwatch(self.inst)
        if self.expired is not None:
            task = self.task
            assert task is not None
            task.uncancel()  # it expired, but the exchange ended anyway

    async def abandon(self, exc: BaseException) -> BaseException:
        """The exchange failed with ``exc``: its pump stopped, its timeouts no
        longer watched; returns what to raise: ``exc``, or the 504.1 of a
        timeout that passed (as ``asyncio.timeout`` does, a cancellation of the
        task by anyone else stays one)."""
        await self._end(self.pump)
        self.pool.unwatch(self.inst)
        task = self.task
        if (
            self.expired is None
            or task is None
            or task.uncancel() > self.cancelling
            or not isinstance(exc, asyncio.CancelledError)
        ):
            return exc
        settings = self.settings
        which = (
            f"request timeout ({settings.request_timeout:g}s)"
            if self.expired == "request"
            else f"activity timeout ({settings.activity_timeout:g}s)"
        )
        return self._fail(
            f"the application exceeded its {which}",
            504,
            1,
            "the application did not answer in time",
        )

    async def _end(self, pump: asyncio.Task[None] | None) -> None:
        # The exchange is over: its pump stopped, what it wrote to STDERR logged.
        if pump is not None and not pump.done():
            await stop_pump(pump)
        self._log_stderr()

    async def _pump(self, sock: socket.socket) -> None:
        # The request body into STDIN; each piece is sent whole before the next
        # one is read from the client.
        inst = self.inst
        body = self.ctx.request.body
        while True:
            self.body_started = True
            try:
                chunk = await body.read(CHUNK)
            except Exception as exc:
                # The client's body failed (413, 400, gone): wake the reader,
                # which reports it.
                self.pump_error = exc
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return
            try:
                if not chunk:
                    await inst.send(_STDIN_END)
                    return
                await inst.send(records.stdin(REQUEST_ID, chunk))
            except OSError:
                # The application closed its end: it may have answered already
                # (the reader reads what it sent), or it failed (the reader says so).
                return
            self.moves += 1

    async def _read(self) -> None:
        # The next records (into the reader's ``out``, ``err``, ``done``); a
        # closed connection before END_REQUEST is a failure. (_head's first
        # reads do the same in line: no coroutine made for them.)
        while (waiter := self._receive()) is not None:
            try:
                await waiter
            finally:
                self.inst.waited()

    def _receive(self) -> asyncio.Future[None] | None:
        # What is there now into the reader: None once records came (``out``,
        # ``err``, ``done``), else the future to wait for before the next call
        # (``Instance.recv`` in pieces, so that no coroutine is made per read).
        reader = self.reader
        inst = self.inst
        while True:
            if not self.ready:
                # Nothing waited for yet: the answer to what was just sent is
                # not there before the loop's next turn (a read would find
                # nothing, at the price of an exception).
                self.ready = True
                return inst.readable()
            try:
                data = inst.read_now(BUFFER)
            except OSError:
                data = b""  # reset: as good as closed
            if data is None:
                return inst.readable()
            if not data:
                error = self.pump_error
                if error is not None:
                    raise error  # the client's body failed, not the application
                if not self.received and not self.body_started and self.inst.reused:
                    raise _StaleError
                raise self._fail("the application closed the connection before its response ended")
            self.received += len(data)
            self.moves += 1
            try:
                reader.take(data)
            except records.FastCgiProtocolError as exc:
                raise self._fail(f"the application sent a malformed record: {exc}") from None
            if reader.out or reader.err or reader.done:
                return None

    def _take_stderr(self) -> None:
        # What came of STDERR, kept for the log (bounded).
        err = self.reader.err
        for data in err:
            self._stderr(data)
        err.clear()

    def _fail(
        self,
        what: str,
        status: int = 502,
        substatus: int = 2,
        message: str = "the application sent an invalid response",
        shown: str = "",
    ) -> Exception:
        # ``what`` went wrong: the error page (502.2 unless said otherwise) before
        # the response began, else a cut connection. ``shown``: for the page's
        # detail only (the application's own words), not the cut's log line.
        if self.ctx.response.headers_sent:
            return FastCgiError(f"{self.pool.label}: {what}")
        detail = f"{self.pool.label}: {what}{shown}"
        return _AppFailedError(HttpError(status, substatus, message, detail=detail))

    def _head(self) -> asyncio.Future[None] | None:
        # One step of reading the answer until its head is parsed and it either
        # ended or passed BUFFER bytes (then None: ``_settle``); else the future
        # to wait for before the next step. Plain, not a coroutine: the handler
        # waits itself (one coroutine less on every request).
        reader = self.reader
        # STDOUT as received, in pieces (the reader's list): most responses come
        # in one, which is then used as it is, never copied.
        pieces = reader.out
        while True:
            waiter = self._receive()
            if waiter is not None:
                return waiter
            if reader.err:
                self._take_stderr()
            parsed = self.parsed
            if parsed is None:
                data = _joined(pieces)
                recent = _RECENT
                if recent and data.startswith(recent[0][0]):
                    # The head the last response began with: found, not parsed.
                    parsed = recent[0][1]
                    body = data[len(recent[0][0]) :]
                else:
                    try:
                        split = cgihead.split_head(data)
                        if split is None:
                            if reader.done:
                                raise ValueError("the response ended before its head did")
                            pieces.clear()
                            pieces.append(data)
                            continue
                        parsed = _parsed(split[0])
                        status = parsed.response.head.status
                        if not 200 <= status <= 599:
                            raise ValueError(f"Status {status}: a final status is 200 to 599")
                    except ValueError as exc:
                        self._refused()
                        raise self._fail(str(exc)) from None
                    body = split[1]
                    if len(data) - len(body) <= _PARSED_HEAD:
                        _RECENT[:] = [(data[: len(data) - len(body)], parsed)]
                self.parsed = parsed
                pieces.clear()
                pieces.append(body)
                size = len(body)
            else:
                size = 0
                for piece in pieces:
                    size += len(piece)
            self.size = size
            if reader.done or size > BUFFER:
                return None

    def _settle(self) -> int:
        # Once _head is done: the response, whole, where it ended (1: the
        # instance may serve again, 0: not); -1 where _finish carries on (a
        # local redirect, a HEAD's head, a streamed body).
        self._refused()
        parsed = self.parsed
        assert parsed is not None
        self._stderr_fails()
        if parsed.response.local_redirect is not None:
            return -1
        declared = self.declared = self._set_head(parsed)
        reader = self.reader
        if not reader.done:
            return -1
        method = self.ctx.request.method
        if declared is not None and method != "HEAD" and declared != self.size:
            raise self._fail(
                f"the response declared Content-Length {declared}, sent {self.size} bytes"
            )
        if declared is not None and method == "HEAD":
            return -1
        pieces = reader.out
        self.ctx.response.body = _joined(pieces)
        pieces.clear()
        return 1 if self._keeps() else 0

    async def _finish(self) -> bool:
        # What _settle left: returns whether the connection may serve again.
        ctx = self.ctx
        reader = self.reader
        pieces = reader.out
        parsed = self.parsed
        assert parsed is not None
        head = parsed.response
        if head.local_redirect is not None:
            # RFC 3875 6.2.2: nothing else of this response counts; its end is
            # awaited so that the instance can serve again.
            self.redirect = head.local_redirect
            while not reader.done:
                pieces.clear()
                await self._read()
                if reader.err:
                    self._take_stderr()
            pieces.clear()
            self._refused()
            return self._keeps()
        declared = self.declared
        if reader.done:
            # A HEAD whose head declared its length: that length, no body.
            pieces.clear()
            await ctx.start_response()
            return self._keeps()
        # Streamed: the head goes out with the first bytes.
        sent = self.size
        first = _joined(pieces)
        pieces.clear()
        await ctx.write(first)
        self.moves += 1
        del first
        while True:
            await self._read()
            while pieces:
                data = pieces.pop(0)
                sent += len(data)
                if declared is not None and sent > declared:
                    raise self._fail(f"the response is longer than its Content-Length {declared}")
                await ctx.write(data)
                self.moves += 1
            if reader.err:
                self._take_stderr()
                self._stderr_fails()
            if reader.done:
                self._refused()
                if declared is not None and sent != declared and ctx.request.method != "HEAD":
                    raise self._fail(f"the response ended after {sent} of its {declared} bytes")
                return self._keeps()

    def _set_head(self, parsed: _Head) -> int | None:
        # The response's status and headers from the CGI head (RFC 3875 6.2);
        # returns its Content-Length, if it declared one.
        response = self.ctx.response
        head = parsed.response.head
        kept = parsed.headers
        if kept is not None:
            headers = list(kept)  # the response's own: modules may change it
            declared = parsed.declared
        else:
            headers = [(n, v) for n, v in head.headers if n not in _HOP_BY_HOP]
            try:
                declared = cgihead.content_length(headers)
            except ValueError as exc:
                raise self._fail(str(exc)) from None
            parsed.headers = tuple(headers)
            parsed.declared = declared
        response.status = head.status
        response.reason = head.reason
        response.headers = headers
        # The application's own error pages are kept (custom errors replace them
        # only with existing_response = "replace").
        response.skip_custom_errors = True
        return declared

    def _refused(self) -> None:
        # END_REQUEST came with another protocol status than REQUEST_COMPLETE.
        reader = self.reader
        protocol_status = reader.protocol_status
        if not reader.done or protocol_status == records.REQUEST_COMPLETE:
            return
        status = records.PROTOCOL_STATUS_NAMES.get(protocol_status, str(protocol_status))
        if protocol_status == records.OVERLOADED:
            raise self._fail("OVERLOADED", 503, 0, "the service is unavailable")
        raise self._fail(f"the application refused the request: {status}")

    def _keeps(self) -> bool:
        # Whether the instance may serve another request: the request completed
        # and nothing followed END_REQUEST. A program that closes the connection
        # anyway (it ignores FCGI_KEEP_CONN) is connected to anew next time.
        if self.reader.protocol_status != records.REQUEST_COMPLETE:
            return False
        inst = self.inst
        if inst.sock is not None and not inst.quiet and hung_up(inst.sock):
            # Closed by the program (or bytes after END_REQUEST): it does not
            # keep connections; a process gets a new one per request from now on.
            # Not looked at while the loop watches the connection (quiet): then a
            # close comes to its reader, and the next acquire sees it (the peek
            # that finds nothing raises BlockingIOError, dear in every request).
            inst.disconnect()
            inst.one_shot = inst.process is not None
        return True

    # -- stderr ----------------------------------------------------------------------

    def _stderr(self, data: bytes) -> None:
        room = self.settings.max_stderr - len(self.stderr)
        if room > 0:
            self.stderr += data[:room]
        self.stderr_dropped += max(len(data) - max(room, 0), 0)

    def _stderr_fails(self) -> None:
        if not (self.stderr or self.stderr_dropped) or self.settings.stderr_mode != "fail":
            return
        raise self._fail(
            "the application wrote to STDERR (stderr_mode = fail)",
            500,
            0,
            "the application failed",
            f": {_shown(self.stderr)}",
        )

    def _log_stderr(self) -> None:
        if not self.stderr and not self.stderr_dropped:
            return
        ctx = self.ctx
        more = f" (and {self.stderr_dropped} bytes more)" if self.stderr_dropped else ""
        log.warning(
            "%s: STDERR of %s %s: %s%s",
            self.pool.label,
            ctx.request.method,
            _target(ctx),
            _shown(self.stderr),
            more,
        )
        self.stderr = b""
        self.stderr_dropped = 0


class _Head:
    """A response head as parsed, and once it framed a response, the headers left
    after the hop-by-hop ones and the Content-Length they declare."""

    __slots__ = ("declared", "headers", "response")

    def __init__(self, response: cgihead.CgiResponse) -> None:
        self.response = response
        self.headers: tuple[tuple[bytes, bytes], ...] | None = None
        self.declared: int | None = None


#: Response heads already parsed, by their bytes: an application sends much the
#: same head again and again (PHP: ``Content-type: text/html; charset=UTF-8``).
#: Short heads only, emptied when full (heads that vary, with cookies or dates,
#: cannot crowd out for good the ones that repeat). Nothing in them is changed:
#: a response gets a copy of the headers (``_set_head``).
_PARSED: Final[dict[bytes, _Head]] = {}
_PARSED_MAX: Final = 256
_PARSED_HEAD: Final = 1024
#: The head block the last response began with, blank line included, and its
#: parse (at most one entry): a response that begins with the same bytes has
#: that head (its first blank line is the same), found without split_head's scans.
_RECENT: Final[list[tuple[bytes, _Head]]] = []


def _parsed(block: bytes) -> _Head:
    # cgihead.parse_response of a head block (ValueError as it raises), kept
    # when it is short.
    found = _PARSED.get(block)
    if found is not None:
        return found
    found = _Head(cgihead.parse_response(block))
    if len(block) <= _PARSED_HEAD:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[block] = found
    return found


def _joined(pieces: list[bytes]) -> bytes:
    # The pieces as one: the one piece itself, if there is only one.
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _shown(data: bytes | bytearray) -> str:
    # An application's bytes for a log line: one line, control characters escaped.
    text = bytes(data).decode("utf-8", "replace").strip()
    return text.encode("unicode_escape").decode("ascii")
