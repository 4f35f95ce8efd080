"""The CGI handler (IIS ``CgiModule``): run the script a request names, one
process per request (RFC 3875).

How this works, per request:

1. *Find the script* (:func:`colonnade.core.cgienv.find_script`): the URL prefix
   that is a regular file inside the application, the rest being ``PATH_INFO``;
   none → 404. Its real path must be on ``[cgi] allowed_programs`` (IIS
   ``isapiCgiRestriction``) → else 404.2; and executable → else 403.1.
2. *Start it* (:class:`~colonnade.handlers.cgi.process.Child`): in a new session
   (its own process group, so it can be killed whole), in the script's folder,
   with its three standard streams and no other descriptor, with an
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
   error. When its output ends, its exit is awaited a moment (up to a second)
   to tell a script killed by a signal (the response is not trusted) from one
   that finished; a script that goes on running after closing its output is
   awaited in the background, still bounded by ``timeout``.

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
from colonnade.handlers.cgi.process import CHUNK, Child, log_stderr

SOFTWARE = f"colonnade/{__version__}"

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


class ScriptError(Exception):
    """The script's response cannot be used (a 502.2 or a dropped connection)."""


class CgiHandler(Handler):
    """Runs CGI scripts: each request its own process."""

    id = "handler.cgi"
    section = CgiSection
    uses_session = False

    def __init__(self) -> None:
        # Scripts being reaped after their response, by their reaping task (kept
        # here so that the tasks are not collected before they finish).
        self._reaping: dict[asyncio.Task[None], _Reaper] = {}

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
            child = await Child.start(program, env, os.path.dirname(program), stdin=has_body)
        except OSError as exc:
            raise HttpError(
                502, 2, "bad gateway", detail=f"CGI script {program} cannot be started: {exc}"
            ) from None
        except ValueError:  # a NUL byte, which no environment can hold
            raise HttpError(400, 0, "the request cannot be passed to a CGI script") from None
        log = ctx.app.log
        stderr = loop.create_task(log_stderr(child, log, settings.max_stderr_log))
        feeding = _Feeder(child, body) if has_body else None
        finished = False
        try:
            async with asyncio.timeout_at(deadline):
                result = await self._respond(ctx, child, feeding)
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
                child.signal(signal.SIGTERM)
            reaper = _Reaper(child, stderr, log, deadline, settings.kill_grace)
            task = loop.create_task(reaper.reap(killed=not finished))
            self._reaping[task] = reaper
            task.add_done_callback(self._reaped)

    async def _respond(self, ctx: Context, child: Child, feeding: _Feeder | None) -> bytes | None:
        stdout = child.stdout
        program = child.program
        data = b""
        while True:
            chunk = await stdout.read(CHUNK)
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
        try:
            declared = cgihead.content_length(headers)
        except ValueError as exc:
            raise _bad(program, str(exc)) from None
        response = ctx.response
        response.status = head.status
        response.reason = head.reason
        response.headers = headers
        # The script's own error pages are kept, as an application's are.
        response.skip_custom_errors = True
        first = rest or await stdout.read(CHUNK)
        second = await stdout.read(CHUNK) if first else b""
        if not second:
            # The whole body is here: sent in one piece with its length.
            died = await _died(child, feeding)
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
        while chunk := await stdout.read(CHUNK):
            sent += len(chunk)
            if declared is not None and sent > declared:
                raise ScriptError(f"CGI script {program}: more body than its Content-Length")
            await ctx.write(chunk)
        # Dropping the connection tells the client that the body is incomplete.
        died = await _died(child, feeding)
        if died is not None:
            raise ScriptError(f"CGI script {program}: {died} in the middle of its response")
        if declared is not None and sent < declared:
            raise ScriptError(f"CGI script {program}: its body ended before its Content-Length")
        return None

    def _reaped(self, task: asyncio.Task[None]) -> None:
        self._reaping.pop(task, None)

    async def shutdown(self) -> None:
        """Stop the scripts still running after their response (IIS ends them
        with the worker process): SIGTERM to their groups, then SIGKILL to
        those still there after ``kill_grace``."""
        if not self._reaping:
            return
        reapers = list(self._reaping.values())
        for reaper in reapers:
            reaper.child.signal(signal.SIGTERM)
        grace = max(reaper.grace for reaper in reapers)
        await asyncio.wait(list(self._reaping), timeout=grace + 1)
        for reaper in self._reaping.values():
            reaper.child.signal(signal.SIGKILL)
        if self._reaping:
            await asyncio.wait(list(self._reaping), timeout=grace + 2)


class _Feeder:
    """Writes the request body to the script's stdin, as it arrives.

    A body that fails (413 over the size limit, 400 bad chunking, the client
    gone) kills the script and is kept in ``error`` for the response. A script
    that stops reading its stdin just stops the copy.
    """

    __slots__ = ("error", "task")

    def __init__(self, child: Child, body: Body) -> None:
        self.error: Exception | None = None
        self.task = asyncio.get_running_loop().create_task(self._feed(child, body))

    async def _feed(self, child: Child, body: Body) -> None:
        try:
            while True:
                try:
                    chunk = await body.read(CHUNK)
                except Exception as exc:  # kept for the response
                    self.error = exc
                    child.signal(signal.SIGKILL)
                    return
                if not chunk:
                    break
                try:
                    await child.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the script does not want the rest
        finally:
            child.close_stdin()


async def _died(child: Child, feeding: _Feeder | None) -> str | None:
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
            code = await child.wait()
    except TimeoutError:
        return None
    if code < 0:
        return f"it was killed by signal {-code}"
    return None


def _bad(program: str, why: str) -> HttpError:
    # A response the script got wrong, before anything was sent: 502.2.
    return HttpError(502, 2, "bad gateway", detail=f"CGI script {program}: {why}")


class _Reaper:
    """Waits for a script's end after its request, and kills it if need be."""

    __slots__ = ("child", "deadline", "grace", "log", "stderr")

    def __init__(
        self,
        child: Child,
        stderr: asyncio.Task[None],
        log: logging.Logger,
        deadline: float,
        grace: float,
    ) -> None:
        self.child = child
        self.stderr = stderr
        self.log = log
        self.deadline = deadline
        self.grace = grace

    async def reap(self, *, killed: bool) -> None:
        """Wait for the script's exit, reading (and dropping) what it still
        writes, and kill its group at the deadline (at once if ``killed``: it
        had its SIGTERM); then let its stderr be read to the end, log a failed
        exit, and close its pipes."""
        child, log, stderr = self.child, self.log, self.stderr
        loop = asyncio.get_running_loop()
        try:
            if not killed:
                try:
                    async with asyncio.timeout_at(self.deadline):
                        await child.discard_output()
                        await child.wait()
                except TimeoutError:
                    log.error("CGI script %s ran past its timeout: killed", child.program)
                    child.signal(signal.SIGTERM)
                    killed = True
            if killed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(loop.time() + self.grace):
                        await child.wait()
                # Also the group's other members, which a SIGTERM may have left behind.
                child.signal(signal.SIGKILL)
                await child.wait()
            elif child.exited.result() > 0:
                log.warning(
                    "CGI script %s exited with status %d", child.program, child.exited.result()
                )
            # Its stderr ends when the group is gone (a process that left the
            # group may hold it: not waited for long).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(loop.time() + self.grace + 1):
                    await asyncio.shield(stderr)
        finally:
            stderr.cancel()
            child.close()
