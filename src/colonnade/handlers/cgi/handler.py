"""The CGI handler (IIS ``CgiModule``): run the script a request names, one
process per request (RFC 3875).

How this works, per request:

1. *Find the script* (:func:`colonnade.core.cgienv.find_script`): the URL prefix
   that is a regular file inside the application, the rest being ``PATH_INFO``;
   none → 404. Its real path must be on ``[cgi] allowed_programs`` (IIS
   ``isapiCgiRestriction``) → else 404.2; and executable → else 403.1.
2. *Start it* with :func:`asyncio.create_subprocess_exec`: in a new session (its
   own process group, so it can be killed whole), in the script's folder, with an
   environment made of the CGI variables (:func:`~colonnade.core.cgienv.cgi_variables`),
   ``PATH`` and ``[cgi] environment``, nothing of the server's. It is a child of
   the pool's worker and runs as the pool's user, in its sandbox.
3. *Three streams at once.* The request body is written to the script's stdin
   as it arrives, each write drained before the next read (a script that reads
   slowly slows the upload). Standard error is read to its end and logged line
   by line, up to ``max_stderr_log`` bytes. Standard output is read until the
   blank line that ends the head (at most ``cgihead.MAX_HEAD`` bytes), which
   :func:`colonnade.core.cgihead.parse_response` reads.
4. *The answer.* A local redirect (``Location: /path`` without ``Status``) is
   served by the server itself (``Context.redirect_locally``: the handler
   mapping picks the handler for that path, the request becomes a ``GET``
   without a body). Otherwise the head is the response's, and the body follows:
   one read from stdout, one write to the client, so a slow client fills the
   pipe and holds the script, and no more than a chunk is in memory. A body
   that is complete by its second read goes out whole, with ``Content-Length``.
5. *The end.* The script's process group gets SIGTERM, then SIGKILL after
   ``kill_grace`` seconds, when ``timeout`` expires (502.1 if nothing was sent,
   else the connection is dropped), when the client goes away, or on any
   error. A script that closed its output ends the response at once; its exit
   is awaited in the background, still bounded by ``timeout``.

Errors the script causes are 502.2 (IIS: the CGI application did not return a
complete set of headers), with a log line naming the script and what was wrong:
no complete head before it exited, a malformed head or ``Status``, a body
shorter or longer than its ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from asyncio.subprocess import Process
from collections.abc import Awaitable

from colonnade import __version__
from colonnade.core import cgihead
from colonnade.core.cgienv import (
    Script,
    as_bytes,
    cgi_variables,
    find_script,
    serve_local_redirect,
)
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.request import EMPTY_BODY, Body
from colonnade.errors import HttpError
from colonnade.handlers.cgi.config import CgiSection

SOFTWARE = f"colonnade/{__version__}"

#: Bytes read from a script's stdout (and the request body) per step.
_CHUNK = 65536

#: Response headers about the connection, not the content: a script's are dropped
#: (the server frames the response itself).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: How long the end of a script's output waits for its exit (to tell a script
#: that was killed from one that ended its response).
_EXIT_WAIT = 1.0

#: The longest line of a script's standard error logged (the rest is cut).
_MAX_LOG_LINE = 2000


class ScriptError(Exception):
    """The script's response cannot be used (a 502.2 or a dropped connection)."""


class CgiHandler(Handler):
    """Runs CGI scripts: each request its own process."""

    id = "handler.cgi"
    section = CgiSection

    def __init__(self) -> None:
        # Processes being reaped after their response: kept here so that the
        # tasks are not collected before they finish.
        self._reaping: set[asyncio.Task[None]] = set()

    def execute(self, ctx: Context) -> Awaitable[None]:
        """Run the script ``ctx``'s URL names and answer with what it writes."""
        settings = ctx.section(CgiSection)
        script = find_script(ctx)
        if script is None:
            raise HttpError(404, 0, "not found")
        program = os.path.realpath(script.filename)
        if not settings.allows(program):
            raise HttpError(
                404,
                2,
                "not found",
                detail=f"the CGI program {program} is not listed in cgi.allowed_programs "
                "(the server's restriction list)",
            )
        if not os.access(program, os.X_OK):
            raise HttpError(
                403,
                1,
                "execute access is forbidden",
                detail=f"the CGI program {program} is not executable by the pool's user",
            )
        return self._serve(ctx, settings, script, program)

    async def _serve(
        self, ctx: Context, settings: CgiSection, script: Script, program: str
    ) -> None:
        target = await self._run(ctx, settings, script, program)
        if target is not None:
            await serve_local_redirect(ctx, target, f"CGI script {program}")

    async def _run(
        self, ctx: Context, settings: CgiSection, script: Script, program: str
    ) -> bytes | None:
        # Run the script and answer; a local redirect's target is returned instead.
        request = ctx.request
        env = {b"PATH": settings.path.encode()}
        env.update((k.encode(), v.encode()) for k, v in settings.environment.items())
        env.update(as_bytes(cgi_variables(ctx, script, software=SOFTWARE)))
        body = request.body
        has_body = body is not EMPTY_BODY and (
            b"CONTENT_LENGTH" in env or b"HTTP_TRANSFER_ENCODING" in env
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.timeout
        try:
            proc = await asyncio.create_subprocess_exec(
                program,
                stdin=asyncio.subprocess.PIPE if has_body else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=os.path.dirname(program),
                start_new_session=True,
                limit=_CHUNK,
            )
        except OSError as exc:
            raise HttpError(
                502, 2, "bad gateway", detail=f"CGI script {program} cannot be started: {exc}"
            ) from None
        log = ctx.app.log
        child = _Child(proc, program, log, deadline, settings)
        feeding = _Feeder(proc, body) if has_body else None
        finished = False
        try:
            async with asyncio.timeout_at(deadline):
                result = await self._respond(ctx, proc, program, feeding)
            finished = True
            return result
        except TimeoutError:
            log.error("CGI script %s timed out after %g s: killed", program, settings.timeout)
            if ctx.response.headers_sent:
                raise ScriptError(f"CGI script {program} timed out mid-response") from None
            raise HttpError(
                502,
                1,
                "the CGI application timed out",
                detail=f"CGI script {program} ran longer than cgi.timeout = {settings.timeout:g}",
            ) from None
        finally:
            if feeding is not None:
                feeding.task.cancel()
            # From a finally clause, possibly while cancelled: the group gets its
            # SIGTERM now; the rest (SIGKILL, the exit, stderr's end) in a task.
            if not finished:
                _signal_group(proc, signal.SIGTERM)
            task = loop.create_task(child.reap(killed=not finished))
            self._reaping.add(task)
            task.add_done_callback(self._reaping.discard)

    async def _respond(
        self, ctx: Context, proc: Process, program: str, feeding: _Feeder | None
    ) -> bytes | None:
        stdout = proc.stdout
        assert stdout is not None
        data = b""
        while True:
            chunk = await stdout.read(_CHUNK)
            if not chunk:
                if feeding is not None and feeding.error is not None:
                    raise feeding.error  # the request body failed: its answer
                raise _bad(program, "it exited without a complete response head")
            data += chunk
            try:
                found = cgihead.split_head(data)
                if found is None:
                    continue
                block, rest = found
                parsed = cgihead.parse_response(block)
            except ValueError as exc:
                raise _bad(program, str(exc)) from None
            break
        if parsed.local_redirect is not None:
            return parsed.local_redirect
        head = parsed.head
        if not 200 <= head.status <= 599:
            raise _bad(program, f"Status {head.status}: a final status is 200 to 599")
        headers = [(n, v) for n, v in head.headers if n not in _HOP_BY_HOP]
        declared = _declared_length(headers, program)
        response = ctx.response
        response.status = head.status
        response.reason = head.reason
        response.headers = headers
        # The script's own error pages are kept, as an application's are.
        response.skip_custom_errors = True
        first = rest or await stdout.read(_CHUNK)
        second = await stdout.read(_CHUNK) if first else b""
        if not second:
            # The whole body is here: sent in one piece with its length.
            died = await _died(proc, feeding)
            if died is not None:
                raise _bad(program, died)
            if declared is None or declared == len(first):
                response.body = first
                return None
            if not (ctx.request.method == "HEAD" and not first):
                raise _bad(program, f"Content-Length {declared} for a body of {len(first)} bytes")
            await ctx.start_response()  # a HEAD answer with the GET's length
            return None
        sent = len(first) + len(second)
        if declared is not None and sent > declared:
            raise _bad(program, f"more body than its Content-Length {declared}")
        await ctx.write(first)
        await ctx.write(second)
        while chunk := await stdout.read(_CHUNK):
            sent += len(chunk)
            if declared is not None and sent > declared:
                raise ScriptError(f"CGI script {program}: more body than its Content-Length")
            await ctx.write(chunk)
        # Dropping the connection tells the client that the body is incomplete.
        died = await _died(proc, feeding)
        if died is not None:
            raise ScriptError(f"CGI script {program}: {died} in the middle of its response")
        if declared is not None and sent < declared:
            raise ScriptError(f"CGI script {program}: its body ended before its Content-Length")
        return None

    def cleanup(self) -> None:
        """Nothing to release: each script's process ends with its request."""


class _Feeder:
    """Writes the request body to the script's stdin, as it arrives.

    A body that fails (413 over the size limit, 400 bad chunking, the client
    gone) kills the script and is kept in ``error`` for the response. A script
    that stops reading its stdin just stops the copy.
    """

    __slots__ = ("error", "task")

    def __init__(self, proc: Process, body: Body) -> None:
        self.error: Exception | None = None
        self.task = asyncio.get_running_loop().create_task(self._feed(proc, body))

    async def _feed(self, proc: Process, body: Body) -> None:
        stdin = proc.stdin
        assert stdin is not None
        try:
            while True:
                try:
                    chunk = await body.read(_CHUNK)
                except Exception as exc:  # kept for the response
                    self.error = exc
                    _signal_group(proc, signal.SIGKILL)
                    return
                if not chunk:
                    break
                try:
                    stdin.write(chunk)
                    await stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the script does not want the rest
        finally:
            stdin.close()


async def _died(proc: Process, feeding: _Feeder | None) -> str | None:
    """Why the output that just ended cannot be trusted, or None.

    The request body failed (its error is raised: the answer for it), or the
    script was killed by a signal. Its exit comes with the end of its output,
    so the wait is short; a script that goes on running after closing stdout
    is not waited for here (the reaper waits).
    """
    if feeding is not None and feeding.error is not None:
        raise feeding.error
    try:
        async with asyncio.timeout(_EXIT_WAIT):
            code = await proc.wait()
    except TimeoutError:
        return None
    if code < 0:
        return f"it was killed by signal {-code}"
    return None


def _bad(program: str, why: str) -> HttpError:
    # A response the script got wrong, before anything was sent: 502.2.
    return HttpError(502, 2, "bad gateway", detail=f"CGI script {program}: {why}")


def _declared_length(headers: list[tuple[bytes, bytes]], program: str) -> int | None:
    found = None
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit() or (found is not None and int(value) != found):
                raise _bad(program, f"an invalid Content-Length {value.decode('latin-1')!r}")
            found = int(value)
    return found


def _signal_group(proc: Process, sig: int) -> None:
    # The script leads its own process group (a new session): its pid is the
    # group's id. Once the group is gone there is no one to signal.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class _Child:
    """A running script: its process, and the task logging its stderr."""

    __slots__ = ("deadline", "grace", "log", "proc", "program", "stderr")

    def __init__(
        self,
        proc: Process,
        program: str,
        log: logging.Logger,
        deadline: float,
        settings: CgiSection,
    ) -> None:
        self.proc = proc
        self.program = program
        self.log = log
        self.deadline = deadline
        self.grace = settings.kill_grace
        self.stderr = asyncio.get_running_loop().create_task(
            _log_stderr(proc, log, program, settings.max_stderr_log)
        )

    async def reap(self, *, killed: bool) -> None:
        """Wait for the script's exit, reading (and dropping) what it still
        writes, and kill its group at the deadline (at once if ``killed``: it
        had its SIGTERM); then wait for the end of its stderr, and log a failed
        exit."""
        proc, log, program, stderr = self.proc, self.log, self.program, self.stderr
        loop = asyncio.get_running_loop()
        if not killed:
            try:
                async with asyncio.timeout_at(self.deadline):
                    await _discard(proc)
                    await proc.wait()
            except TimeoutError:
                log.error("CGI script %s ran past its timeout: killed", program)
                _signal_group(proc, signal.SIGTERM)
                killed = True
        if killed:
            try:
                async with asyncio.timeout_at(loop.time() + self.grace):
                    await proc.wait()
            except TimeoutError:
                pass
            # Also the group's other members, which a SIGTERM may have left behind.
            _signal_group(proc, signal.SIGKILL)
            await proc.wait()
            # The output pipe ends when its last holder is gone: read it to its end
            # (a paused pipe sees no end), unless a process outside the group holds it.
            try:
                async with asyncio.timeout_at(loop.time() + self.grace + 1):
                    await _discard(proc)
                    await stderr
            except TimeoutError:
                stderr.cancel()
                transport = getattr(proc, "_transport", None)  # no public close
                if transport is not None:
                    transport.close()
        elif proc.returncode:
            log.warning("CGI script %s exited with status %d", program, proc.returncode)
        with contextlib.suppress(asyncio.CancelledError):
            await stderr


async def _discard(proc: Process) -> None:
    """Read what is left of a script's output, dropping it."""
    stdout = proc.stdout
    if stdout is not None:
        while await stdout.read(_CHUNK):
            pass


async def _log_stderr(proc: Process, log: logging.Logger, program: str, limit: int) -> None:
    """Log a script's standard error line by line, up to ``limit`` bytes; read
    (and drop) the rest so that the script never blocks on a full pipe."""
    stream = proc.stderr
    assert stream is not None
    logged = 0
    dropped = 0
    pending = b""
    while chunk := await stream.read(_CHUNK):
        room = limit - logged
        if room <= 0:
            dropped += len(chunk)
            continue
        if len(chunk) > room:
            dropped += len(chunk) - room
            chunk = chunk[:room]
        logged += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            _log_line(log, program, line)
        if len(pending) > _MAX_LOG_LINE:
            _log_line(log, program, pending)
            pending = b""
    if pending:
        _log_line(log, program, pending)
    if dropped:
        log.warning("CGI script %s: %d more bytes of standard error not logged", program, dropped)


def _log_line(log: logging.Logger, program: str, line: bytes) -> None:
    text = line[:_MAX_LOG_LINE].rstrip(b"\r").decode("utf-8", "backslashreplace")
    log.warning("CGI script %s: %s", program, text)
