"""Where access log lines go: one buffered output per target, shared and refcounted.

- *Buffered.* Captured values wait in a :class:`Sink`'s ``pending`` list; rendered
  text (directive blocks, batches) in its ``lines``, joined and encoded once per
  write. It is written in one syscall when it passes ``buffer_size``,
  ``flush_interval`` seconds after its first line (a ``call_later`` on the running
  loop: no thread, no per-request syscall), and on ``shutdown`` and ``cleanup``.
- *One file per target.* Sinks live in a module-level registry keyed by target and
  are reference-counted, so every application and module instance writing to the
  same file shares one descriptor and one buffer; the last ``cleanup`` closes it.
- *Directives once per file.* Every worker of a pool, and every worker that
  replaces one, appends to the same file. At start-up a worker writes a W3C field
  list's directive block only when the file is new (or empty) or its last
  ``#Fields`` line is another one, as IIS writes them when it creates a file or
  changes fields. It checks and writes under an exclusive ``flock`` on the file,
  so two workers starting at once cannot both find it empty.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from fcntl import LOCK_EX, LOCK_UN, flock
from typing import Any

from colonnade.core import counters
from colonnade.errors import ConfigError
from colonnade.modules.http_logging.compiler import CompiledLine, Render, Writer
from colonnade.modules.http_logging.config import HttpLoggingSection

log = logging.getLogger("colonnade.log.http")

#: Lines lost, by log (its file, or stdout/stderr): not written (a full disk, a
#: closed stream) or not formatted. Counted for ``GET /metrics`` as well as logged.
LOST = counters.declare(
    "access_log_lines_lost",
    "Access-log lines lost (not written: a full disk, a closed stream; or a value "
    "that could not be formatted), by log.",
    "log",
)

#: How far back from its end a log file is searched for its last ``#Fields`` line.
#: A file whose last one lies further back gets the directives again at a start
#: (as IIS writes them at each start of the service): searching further would
#: slow every start (64 MiB, as it was, cost ~100M instructions per start once a
#: log had grown past it under one block: bench9, session 24).
_SCAN_MAX = 1024 * 1024
#: Bytes read at a time, from the end backwards.
_CHUNK = 256 * 1024
_FIELDS = b"#Fields: "
_MARKER = b"\n" + _FIELDS
#: Bytes of a ``#Fields`` line read: far more than any field list needs.
_LINE_MAX = 65536
#: Targets that name the process's standard streams rather than a file.
_STREAMS = ("stdout", "stderr")


class Sink:
    """One log target: an output, a buffer, a flush timer, a reference count."""

    __slots__ = (
        "compiled",
        "directive",
        "fd",
        "holder",
        "interval",
        "key",
        "limit",
        "line_size",
        "lines",
        "lost",
        "max_pending",
        "pending",
        "refs",
        "render",
        "size",
        "timer",
        "width",
    )

    def __init__(self, key: str, fd: int | None) -> None:
        self.key = key
        self.fd = fd  # None: the process's stdout/stderr, looked up at each write
        # Text (header blocks, rendered batches), joined and encoded once per write.
        self.lines: list[str] = []
        self.size = 0  # characters in ``lines``
        # Captured values not yet rendered, and the renderer they belong to. The
        # list object is never replaced (generated capture functions hold it).
        self.pending: list[Any] = []
        self.render: Render | None = None
        self.width = 1  # values per line in ``pending``, for ``render``
        # Compiled field lists writing here, by writer and fields (see compiler).
        self.compiled: dict[tuple[Writer, tuple[str, ...]], CompiledLine] = {}
        self.line_size = 128  # characters per rendered line, as last measured
        self.directive: str | None = None  # the #Fields line in force, if known
        self.limit = 65536
        self.max_pending = self.limit // self.line_size  # in values: lines x width
        self.interval = 1.0
        self.refs = 0
        self.timer: asyncio.TimerHandle | None = None
        # The capture holding a lease (see ``lease``), if one does.
        self.holder: Any = None
        #: Lines that could not be written (disk full, a closed stream), so far.
        self.lost = 0

    def set_limit(self, limit: int) -> None:
        """Write once about ``limit`` characters are buffered."""
        self.limit = limit
        self._budget()

    def _budget(self) -> None:
        # How many more captured lines fit, at the line length last measured.
        self.max_pending = max(1, (self.limit - self.size) // self.line_size) * self.width
        self._revoke()

    def lease(self, holder: Any) -> int:
        """How many lines ``holder`` (a capture that just appended one, under the
        render in force) may append to ``pending`` before it looks at the sink again:
        those that keep the batch under ``max_pending`` while a flush timer is set.

        The sink takes the lease back (``holder.room = 0``) as soon as anything that
        answer rests on changes: a write, a switch to another field list, a new
        budget. So a capture with room left may append with no look at the sink's
        render, budget or timer.
        """
        if self.timer is None:  # no timer: the next line schedules one (or writes)
            return 0
        self._revoke()
        self.holder = holder
        return max(0, self.max_pending - len(self.pending) - 1)

    def _revoke(self) -> None:
        holder = self.holder
        if holder is not None:
            self.holder = None
            holder.room = 0

    def settle(self) -> None:
        """Render the pending captured values into text."""
        pending = self.pending
        if not pending or self.render is None:
            return
        try:
            text = self.render(pending)
        except Exception:  # a value the renderer cannot format: lose that line only
            text = self._render_each(self.render, pending)
        self.line_size = max(16, len(text) * self.width // len(pending))
        pending.clear()
        self.lines.append(text)
        self.size += len(text)
        self._budget()

    def _render_each(self, render: Render, pending: list[Any]) -> str:
        width = self.width
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
            LOST[self.key] += lost
            log.error("access log: %d of %d lines could not be formatted", lost, lines)
        return "".join(parts)

    def switch(self, line: CompiledLine) -> None:
        """``line``'s field list writes here from now on: its directives (when they
        are not the ones in force), then its lines."""
        self.settle()
        if line.directive is not None and line.directive != self.directive:
            header = line.writer.header(line.directive)
            self.lines.append(header)
            self.size += len(header)
            self.directive = line.directive
        self.render = line.render
        self.width = line.width
        self._budget()

    def start(self, line: CompiledLine) -> None:
        """Switch to ``line`` and write its directives now (at start-up, not with
        line one), unless the file already ends under them."""
        self.flush()  # lines pending under the field list in force go out first
        if self.fd is not None and line.directive is not None:
            try:
                with _locked(self.fd):
                    # Other processes append here too: what is in force is what the
                    # file says now, not what this one wrote last.
                    self.directive = _last_directive(self.fd)
                    self.switch(line)
                    self.flush()
                return
            except OSError as exc:  # no lock or no reading: the directives, to be safe
                log.error("access log %s: cannot read its directives: %s", self.key, exc)
        self.switch(line)
        self.flush()

    def schedule(self) -> None:
        """Flush ``interval`` seconds from now (at once without a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on (a synchronous caller): write now
            self.flush()
            return
        self.timer = loop.call_later(self.interval, self._timed_flush)

    def _timed_flush(self) -> None:
        self.timer = None
        self.flush()

    def flush(self) -> None:
        """Write what is buffered now (one syscall for a file)."""
        self._revoke()
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
        unwritten: str | memoryview = text
        try:
            if self.fd is not None:
                view = unwritten = memoryview(text.encode("utf-8", "replace"))
                while view:
                    view = unwritten = view[os.write(self.fd, view) :]
            elif self.key in _STREAMS:
                # Looked up now, not at open: tests and daemons swap sys.stdout.
                stream = sys.stderr if self.key == "stderr" else sys.stdout
                if stream is not None:  # no console at all (pythonw, some daemons)
                    stream.write(text)
                    stream.flush()
        except (OSError, ValueError) as exc:  # disk full, closed stream: report, go on
            # A line cut by a short write counts as lost: its newline was not written.
            lost = _count_lines(unwritten)
            self.lost += lost
            LOST[self.key] += lost
            log.error(
                "access log %s: %d line(s) lost (%d since it was opened): %s",
                self.key,
                lost,
                self.lost,
                exc,
            )

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _count_lines(unwritten: str | memoryview) -> int:
    """Lines in what a failed write left unwritten (every line ends with a newline)."""
    if isinstance(unwritten, str):
        return unwritten.count("\n")
    return bytes(unwritten).count(b"\n")


#: Open sinks by target key (``stdout``, ``stderr`` or a real file path).
_SINKS: dict[str, Sink] = {}


@contextmanager
def _locked(fd: int) -> Iterator[None]:
    # Held for one directive check and write: other workers wait a few syscalls.
    flock(fd, LOCK_EX)
    try:
        yield
    finally:
        flock(fd, LOCK_UN)


def _last_directive(fd: int) -> str | None:
    """The last ``#Fields`` line of the open file ``fd`` (within ``_SCAN_MAX`` of its end)."""
    end = os.fstat(fd).st_size
    floor = max(0, end - _SCAN_MAX)
    pos = end
    while pos > floor:
        start = max(floor, pos - _CHUNK)
        # A few bytes past ``pos`` too: a marker cut by the chunk boundary.
        buf = os.pread(fd, min(end, pos + len(_MARKER) - 1) - start, start)
        at = buf.rfind(_MARKER)
        if at >= 0:
            at += start + 1
        elif start == 0 and buf.startswith(_FIELDS):
            at = 0
        else:
            pos = start
            continue
        # Longer lines are cut: then they match no field list, and directives follow.
        line = os.pread(fd, _LINE_MAX, at).split(b"\n", 1)[0]
        return line.decode("utf-8", "replace")
    return None


def acquire_sink(target: str, settings: HttpLoggingSection) -> Sink:
    """The shared sink for ``target``, opened on first use (refcounted)."""
    if target in _STREAMS:
        key = target
    else:
        key = os.path.realpath(target)
    sink = _SINKS.get(key)
    if sink is None:
        if key in _STREAMS:
            sink = Sink(key, None)
        else:
            try:
                # Read as well: the directives in force are read back (Sink.start).
                fd = os.open(key, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise ConfigError(
                    f"cannot open the log file {target!r}: {exc.strerror}",
                    key="http_logging.target",
                ) from None
            sink = Sink(key, fd)
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
