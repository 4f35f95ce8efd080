"""The access log (IIS HttpLoggingModule and W3C logging) at LOG_REQUEST.

How this works:

- *Compile once.* :meth:`HttpLogging.provision` compiles each field list the
  application's settings name into a capture function and a renderer
  (:mod:`.compiler`, from the field table in :mod:`.fields` and the writer of the
  format: :mod:`.w3c` or :mod:`.json_lines`), and opens or shares its target
  (:mod:`.sink`). The hook is one lookup by section (a :class:`PerSection`) and
  one call.
- *Cheap per request.* The capture appends the line's raw values to the sink's
  pending list; they are turned into text a batch at a time, when the sink writes.
  The date and time strings are rebuilt once per second, not per line; paths,
  queries, user names and header values are escaped once and memoised; request
  headers are turned into a dict only when a ``cs(...)`` field needs them; the
  correlation id is read only for 5xx answers (which made one).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from colonnade.config.sections import SectionSet
from colonnade.core.app import Application
from colonnade.core.compiled import PerSection
from colonnade.core.context import Context
from colonnade.core.module import Module, hook
from colonnade.core.stages import Stage
from colonnade.errors import ConfigError
from colonnade.modules.http_logging.clf import FORMAT_FIELDS, ClfWriter
from colonnade.modules.http_logging.compiler import Capture, Writer, compiled_line
from colonnade.modules.http_logging.config import HttpLoggingSection
from colonnade.modules.http_logging.fast import log_request_hook
from colonnade.modules.http_logging.json_lines import JsonWriter
from colonnade.modules.http_logging.sink import Sink, acquire_sink, release_sink
from colonnade.modules.http_logging.w3c import W3cWriter
from colonnade.modules.http_logging.w3cline import DEFAULT_FIELDS, default_line

log = logging.getLogger("colonnade.log.http")

#: Sections remembered for the per-request output lookup (a bound, not a target).
_SECTIONS_MAX = 1024
#: The writer of each ``format``.
WRITERS: dict[str, Writer] = {
    "w3c": W3cWriter,
    "json": JsonWriter,
    "common": ClfWriter,
    "combined": ClfWriter,
}


class Output(NamedTuple):
    """Where the lines of one log configuration go, and the function that captures one."""

    sink: Sink
    capture: Capture


def _filtered(settings: HttpLoggingSection, capture: Capture) -> Capture | None:
    # The capture a section's settings call for: none when logging is off, and a
    # status test in front of it for IIS selective logging.
    if not settings.enabled:
        return None
    if settings.selective == "all":
        return capture
    errors = settings.selective == "error"

    def selective(ctx: Context) -> None:
        if (ctx.response.status >= 400) is errors:
            capture(ctx)

    return selective


class HttpLogging(Module):
    """``log.http``: one access log line per request, W3C extended or JSON."""

    id = "log.http"
    section = HttpLoggingSection

    def __init__(self) -> None:
        # (target, format, fields) → output: locations sharing a configuration share it.
        self._outputs: dict[tuple[str, str, tuple[str, ...]], Output] = {}
        # Each effective section's capture (None when it logs nothing): the
        # per-request lookup.
        self._captures: PerSection[HttpLoggingSection, Capture | None] = PerSection(
            self._capture_for, limit=_SECTIONS_MAX
        )
        # The hook as the plan calls it (fast.py, compiled): a section's capture
        # built already is found and called there; a new section comes to the method.
        # It keeps the captures it found by effective settings in ``_known``.
        self._known: dict[SectionSet, Capture] = {}
        self.__dict__["log_request"] = log_request_hook(
            self._captures.key, HttpLogging.log_request.__get__(self), self._known
        )

    def log_capture(self, sections: SectionSet) -> Capture | None:
        """What the LOG_REQUEST hook does for a request whose effective settings are
        ``sections``, as a callable of its own, where the hook met them already (else
        None): the response cache keeps it with a stored answer, whose hits all have
        those settings, and calls it on each hit in place of the hook (one look-up
        per stored entry rather than per hit: ``engine.respcache.stored_hook``)."""
        return self._known.get(sections)

    def provision(self, app: Application) -> None:
        """Compile the field lists and open (or share) every log target.

        Every log configuration the application can see (at its root and at each
        configuration level below it) is opened now, so a bad target fails at
        start-up rather than on some request.
        """
        for path in app.level_paths():
            self._captures.get(app.sections_for(path).get(HttpLoggingSection))

    def _capture_for(self, settings: HttpLoggingSection) -> Capture | None:
        # The target is opened (or shared) even where logging is off here: a
        # location may turn it on below, and a bad target fails at start-up.
        return _filtered(settings, self._open(settings).capture)

    def _open(self, settings: HttpLoggingSection) -> Output:
        key = (settings.target, settings.format, tuple(settings.fields))
        output = self._outputs.get(key)
        if output is None:
            sink = acquire_sink(settings.target, settings)
            fields = FORMAT_FIELDS.get(settings.format) or tuple(settings.fields)
            writer = WRITERS[settings.format]
            # The default W3C line has compiled code of its own; others are generated.
            fast = writer is W3cWriter and fields == DEFAULT_FIELDS
            line = compiled_line(fields, writer, sink, default_line if fast else None)
            # Lines pending under the field list in force are rendered first; the
            # new header follows, and whoever wrote before switches back (with its
            # own header) on its next line.
            sink.start(line)
            output = self._outputs[key] = Output(sink, line.capture)
        return output

    async def shutdown(self) -> None:
        """Flush while the loop that owns the flush timers still runs."""
        self.flush()

    def cleanup(self) -> None:
        """Flush the buffers and release the targets."""
        outputs = list(self._outputs.values())
        self._outputs.clear()
        self._captures.clear()
        self._known.clear()
        for output in outputs:
            release_sink(output.sink)

    def flush(self) -> None:
        """Write buffered lines now (tools, tests, shutdown paths)."""
        for output in self._outputs.values():
            output.sink.flush()

    @hook(Stage.LOG_REQUEST)
    def log_request(self, ctx: Context) -> None:
        """Append this request's line to its log's buffer (unless filtered out)."""
        sections = ctx.sections
        section = sections.decoded.get(HttpLoggingSection) or sections.get(HttpLoggingSection)
        captures = self._captures
        try:
            capture = section.__dict__[captures.key]  # built already: no call
        except KeyError:
            try:
                capture = captures.get(section)
            except ConfigError as exc:  # a section provision did not see, and its target fails
                log.error("access log: %s", exc)
                return
        if capture is not None:
            capture(ctx)
