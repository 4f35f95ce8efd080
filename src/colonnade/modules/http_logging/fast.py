"""The LOG_REQUEST hook as the plan calls it, compiled by mypyc.

:func:`log_request_hook` makes the callable the module puts in place of its method
(see ``core.module.Module``): the capture of the request's effective settings
(``ctx.sections``, one object per path shared by its requests), remembered here
once the module built it, is called with no interpreted frame: a dict hit, or an
identity test where the request has the settings of the one before. Settings seen
for the first time go to the module's method, which builds the capture (and
reports a log target that fails).

Where the capture is the compiled default W3C line's (``DefaultW3cLine.write``,
most sites' field list), the hook calls that method natively: no bound method's
call, argument parsing or wrapper (~130 instructions a request).
"""

from __future__ import annotations

from collections.abc import Callable

from colonnade.config.sections import SectionSet
from colonnade.core.context import Context
from colonnade.modules.http_logging.config import HttpLoggingSection
from colonnade.modules.http_logging.w3cline import DefaultW3cLine, native_line

Hook = Callable[[Context], None]

#: Effective settings remembered, at most (then it starts over): a bound, not a target.
KNOWN_MAX = 1024


def _off(ctx: Context) -> None:
    """The capture where logging is off."""


def log_request_hook(key: str, full: Hook, captures: dict[SectionSet, Hook]) -> Hook:
    """The hook: ``key`` is the module's ``PerSection`` key of the captures, which
    ``full`` (the module's method) builds; ``captures``: where the hook keeps each
    effective settings' capture it found (empty at first; the module reads it, see
    ``HttpLogging.log_capture``)."""
    # The settings of the last request and their capture: the requests of an
    # application share one settings object unless a folder has settings of its
    # own, so most find theirs with an identity test, not a hash and a probe.
    last: SectionSet | None = None
    last_capture: Hook = _off
    # ... and the default line whose write that capture is, if it is one.
    last_line: DefaultW3cLine | None = None

    def log_request(ctx: Context) -> None:
        nonlocal last, last_capture, last_line
        sections = ctx.sections
        if sections is last:
            if last_line is not None:
                last_line.write(ctx)
            else:
                last_capture(ctx)
            return
        capture = captures.get(sections)
        if capture is None:
            full(ctx)  # builds the section's capture (or reports why it cannot)
            built = ctx.section(HttpLoggingSection).__dict__
            if key in built:
                if len(captures) >= KNOWN_MAX:
                    captures.clear()
                captures[sections] = built[key] or _off
            return
        last = sections
        last_capture = capture
        last_line = native_line(capture)
        capture(ctx)

    return log_request
