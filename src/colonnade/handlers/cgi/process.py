"""A CGI script's process on the event loop: started, fed, watched, killed, reaped.

Why not ``asyncio.create_subprocess_exec``: under uvloop (the workers' loop) the
child inherits duplicates of its standard streams' descriptors, so a script
that closes its output (or passes it to a background child) still holds it,
and the end of its output is seen only when every holder has exited. Here the
process is started by :class:`subprocess.Popen` (``close_fds``: the script gets
its three streams and nothing else), its pipes are the loop's (``connect_read_pipe``,
``connect_write_pipe``, with flow control both ways), and its exit is watched with
a pidfd (Linux 5.3+; a short poll elsewhere).

Each script leads a new session, so its process group is its own:
:meth:`Child.signal` reaches its children too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Mapping

#: Bytes read from a script's output per step (and the reader's buffer limit).
CHUNK = 65536

#: The longest line of a script's standard error logged (the rest is cut).
_MAX_LOG_LINE = 2000

#: How often a process without a pidfd is polled for its exit (seconds).
_POLL = 0.05


class _PipeWriter(asyncio.Protocol):
    """The write end of the script's stdin, with the transport's flow control."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._ready.set()
        self.lost = False

    def pause_writing(self) -> None:
        self._ready.clear()

    def resume_writing(self) -> None:
        self._ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._ready.set()

    async def drained(self) -> None:
        """Return once the pipe takes more; ``BrokenPipeError`` once the script
        closed its end."""
        await self._ready.wait()
        if self.lost:
            raise BrokenPipeError("the script closed its standard input")


class Child:
    """A running script: its process, its pipes, its exit."""

    def __init__(self, popen: subprocess.Popen[bytes], program: str) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.program = program
        loop = asyncio.get_running_loop()
        self.stdout = asyncio.StreamReader(limit=CHUNK, loop=loop)
        self.stderr = asyncio.StreamReader(limit=CHUNK, loop=loop)
        self._transports: list[asyncio.BaseTransport] = []
        self._stdin: tuple[asyncio.WriteTransport, _PipeWriter] | None = None
        self.exited: asyncio.Future[int] = loop.create_future()
        self._pidfd = -1
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, program: str, env: Mapping[bytes, bytes], cwd: str, *, stdin: bool
    ) -> Child:
        """Start ``program`` with only ``env``; ``stdin``: give it a pipe to read
        the request body from (else ``/dev/null``). ``OSError`` if it cannot run."""
        popen, out_r, err_r, in_w = _spawn(program, env, cwd, stdin)
        child = cls(popen, program)
        await child._connect(out_r, err_r, in_w)
        return child

    async def _connect(self, out_r: int, err_r: int, in_w: int) -> None:
        loop = asyncio.get_running_loop()
        for fd, reader in ((out_r, self.stdout), (err_r, self.stderr)):
            transport, _ = await loop.connect_read_pipe(
                lambda r=reader: asyncio.StreamReaderProtocol(r),  # type: ignore[misc]
                os.fdopen(fd, "rb", buffering=0),  # the transport closes it
            )
            self._transports.append(transport)
        if in_w >= 0:
            wtransport, protocol = await loop.connect_write_pipe(
                _PipeWriter,
                os.fdopen(in_w, "wb", buffering=0),  # the transport closes it
            )
            self._transports.append(wtransport)
            self._stdin = (wtransport, protocol)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._poller = loop.create_task(self._poll())
        else:
            loop.add_reader(self._pidfd, self._check_exit)
        self._check_exit()  # it may have exited already

    def _check_exit(self) -> None:
        code = self.popen.poll()
        if code is None or self.exited.done():
            return
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        self.exited.set_result(code)

    async def _poll(self) -> None:
        while not self.exited.done():
            await asyncio.sleep(_POLL)
            self._check_exit()

    async def write(self, data: bytes) -> None:
        """Write ``data`` to the script's stdin, waiting while the pipe is full;
        ``BrokenPipeError`` once the script closed it."""
        assert self._stdin is not None
        transport, protocol = self._stdin
        if protocol.lost or transport.is_closing():
            raise BrokenPipeError("the script closed its standard input")
        transport.write(data)
        await protocol.drained()

    def close_stdin(self) -> None:
        """The request body is complete (or given up): end of input for the script."""
        if self._stdin is not None:
            self._stdin[0].close()

    async def wait(self) -> int:
        """The exit status (negative: killed by that signal), once it exited."""
        return await asyncio.shield(self.exited)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the script's process group (nothing if it is gone)."""
        # The script leads its own session: its pid is its group's id. While the
        # group has a member, the id cannot be reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def close(self) -> None:
        """Close the pipes (the process is gone or given up on)."""
        for transport in self._transports:
            transport.close()
        if self._poller is not None:
            self._poller.cancel()
        if self._pidfd >= 0:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    async def discard_output(self) -> None:
        """Read what is left of the script's output, dropping it."""
        while await self.stdout.read(CHUNK):
            pass


def _spawn(
    program: str, env: Mapping[bytes, bytes], cwd: str, stdin: bool
) -> tuple[subprocess.Popen[bytes], int, int, int]:
    """Start the process; our ends of its stdout, stderr and stdin pipes (-1: none).

    On the loop's thread, deliberately: ``Popen`` forks with vfork and waits
    only for the exec (a millisecond), far less than a thread hop would cost.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin else (-1, -1)
    try:
        popen = subprocess.Popen(
            [program],
            executable=program,
            stdin=in_r if stdin else subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            env=env,
            cwd=cwd,
            close_fds=True,
            start_new_session=True,
        )
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, in_r):  # the child's ends: its own now
            if fd >= 0:
                os.close(fd)
    return popen, out_r, err_r, in_w


async def log_stderr(child: Child, log: logging.Logger, limit: int) -> None:
    """Log a script's standard error line by line, up to ``limit`` bytes; read
    (and drop) the rest, so that the script never blocks on a full pipe."""
    program = child.program
    stream = child.stderr
    logged = 0
    dropped = 0
    pending = b""
    while chunk := await stream.read(CHUNK):
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
