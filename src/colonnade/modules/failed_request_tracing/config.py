"""``[failed_request_tracing]``: IIS's ``traceFailedRequests`` rules and the
site's ``traceFailedRequestsLogging`` folder and file-count limit."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section, SettingError, Where
from colonnade.core.tracestore import DEFAULT_DIRECTORY, DEFAULT_MAX_FILES, SECTION_KEY
from colonnade.core.tracing import CRITICAL, ERROR, WARNING

Verbosity = Literal["ignore", "critical_error", "error", "warning"]

#: A rule's ``verbosity`` → the event level at or below which the trace is kept.
VERBOSITY_LEVEL: dict[str, int] = {
    "ignore": 0,
    "critical_error": CRITICAL,
    "error": ERROR,
    "warning": WARNING,
}

_CODE = re.compile(r"^(\d{3})(?:\.(\d{1,3}))?$")
_RANGE = re.compile(r"^(\d{3})-(\d{3})$")

#: ``(low, high, substatus)``: statuses low..high, substatus -1 = any.
StatusSpan = tuple[int, int, int]


def parse_status_codes(text: str) -> tuple[StatusSpan, ...]:
    """``"404.2,500,400-499"`` → spans; ``ValueError`` naming what is wrong."""
    spans: list[StatusSpan] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if (found := _RANGE.match(item)) is not None:
            low, high = int(found[1]), int(found[2])
            if not 100 <= low <= high <= 999:
                raise ValueError(f"{item!r}: a range of statuses from 100 to 999, low-high")
            spans.append((low, high, -1))
        elif (found := _CODE.match(item)) is not None:
            status = int(found[1])
            if not 100 <= status <= 999:
                raise ValueError(f"{item!r}: a status from 100 to 999")
            spans.append((status, status, int(found[2]) if found[2] else -1))
        else:
            raise ValueError(
                f"{item!r}: give a status (500), a status and substatus (500.12) or a "
                "range (400-599)"
            )
    return tuple(spans)


def _path_regex(pattern: str) -> str:
    # A pattern without "/" (IIS's "*.php") matches the last segment of the URL
    # path, one with "/" the whole path; "*" and "?" are the only wildcards.
    translated = fnmatch.translate(pattern).removeprefix("(?s:").removesuffix(")\\Z")
    return translated if "/" in pattern else f"(?:.*/)?{translated}"


class TraceRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, dict=True):
    """One ``[[failed_request_tracing.rules]]`` entry: which requests are traced
    (``path``) and when a trace is kept (its failure definitions, any of which
    suffices)."""

    path: Annotated[str, Meta(min_length=1, max_length=1024)] = "*"
    """Wildcard pattern (`*`, `?`) of the URL paths traced: without a `/` it matches
    the last segment (`*.php`), with one the whole path (`/api/*`)."""
    status_codes: str = ""
    """Keep the trace for these statuses: a comma list of statuses (`404`), statuses
    with a substatus (`500.12`) and ranges (`400-599`)."""
    time_taken: Annotated[float, Meta(ge=0)] = 0
    """Keep the trace when the request took this many seconds or more (0: off)."""
    verbosity: Verbosity = "ignore"
    """Keep the trace when an event this bad or worse was recorded: `critical_error`,
    `error` (an exception in a module, a 5xx), `warning` (a 4xx), or `ignore`
    (events do not decide)."""

    def check(self, key: str) -> None:
        """Refuse a rule that cannot work; ``key``: its place in the section."""
        try:
            _ = self.statuses
        except ValueError as exc:
            raise SettingError(f"{key}.status_codes", str(exc)) from None
        if not self.statuses and not self.time_taken and self.verbosity == "ignore":
            raise SettingError(
                f"{key}.status_codes",
                f"the rule for {self.path!r} keeps no trace: set status_codes, time_taken "
                "or verbosity",
            )

    @cached_property
    def statuses(self) -> tuple[StatusSpan, ...]:
        """The parsed ``status_codes``."""
        return parse_status_codes(self.status_codes)

    @cached_property
    def matches_path(self) -> Callable[[str], re.Match[str] | None]:
        """Whether a URL path is traced by this rule (a compiled full match)."""
        return re.compile(_path_regex(self.path), re.DOTALL).fullmatch

    def keeps(self, status: int, substatus: int, seconds: float, worst: int) -> str | None:
        """Why a request with this outcome keeps its trace under this rule, or None."""
        for low, high, sub in self.statuses:
            if low <= status <= high and (sub == -1 or sub == substatus):
                return f"status {status}.{substatus} matches {self.status_codes!r}"
        if self.time_taken and seconds >= self.time_taken:
            return f"time taken {seconds:.3f} s >= {self.time_taken:g} s"
        if worst <= VERBOSITY_LEVEL[self.verbosity]:
            return f"an event of verbosity {self.verbosity} or worse"
        return None


class FailedRequestTracingSection(Section, frozen=True, dict=True):
    """Failed request tracing (IIS FREB): requests matching a rule's `path` are
    traced (every stage and hook with entry and exit times, and the events modules
    emit); the trace is kept as one JSON file when one of the rule's failure
    definitions matches, else dropped. Requests no rule's path matches pay one
    set lookup (the paths are remembered). Rules may be set per site,
    application or location; the folder and the file-count limit only in the
    server file.
    """

    key = SECTION_KEY
    allowed_keys: ClassVar[dict[str, Where]] = {
        "directory": Where.SERVER,
        "max_files": Where.SERVER,
    }

    rules: list[TraceRule] = msgspec.field(default_factory=list)
    """The rules: `path`, and `status_codes`, `time_taken` and/or `verbosity`
    (`rules = [{ path = "*", status_codes = "500-599" }]`)."""
    directory: Annotated[str, Meta(min_length=1)] = DEFAULT_DIRECTORY
    """The folder of the trace files, one subfolder per site (relative: to the
    server's working directory). Created when the first trace is kept."""
    max_files: Annotated[int, Meta(ge=1, le=100_000)] = DEFAULT_MAX_FILES
    """The most trace files kept per site; the oldest go first (IIS `maxLogFiles`)."""

    def __post_init__(self) -> None:
        for i, rule in enumerate(self.rules):
            rule.check(f"rules[{i}]")
        _ = self.path_match

    @cached_property
    def path_match(self) -> Callable[[str], re.Match[str] | None] | None:
        """One compiled test of every rule's path (None without rules): the one
        cost of a request no rule traces."""
        if not self.rules:
            return None
        union = "|".join(f"(?:{_path_regex(rule.path)})" for rule in self.rules)
        return re.compile(union, re.DOTALL).fullmatch

    def written_paths(self) -> tuple[str, ...]:
        """The traces' folder (the pool preflight checks it may be written)."""
        return (self.directory,) if self.rules else ()
