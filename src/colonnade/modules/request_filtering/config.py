"""``[request_filtering]``: what a request may look like before any module sees it.

The settings mirror IIS ``system.webServer/security/requestFiltering`` with its
defaults (``web.config`` becomes ``web.toml``). They are compiled once per effective
section into :class:`Rules` (see :attr:`RequestFilteringSection.rules`), so the
per-request hook only reads precomputed sets, limits and one regular expression.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, NamedTuple

import msgspec
from msgspec import Meta

from colonnade.config.sections import WEB_TOML, Section

#: An HTTP token (RFC 9110 ``tchar``): verbs and header names.
_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"

Verb = Annotated[
    str, Meta(pattern=_TOKEN, description="an HTTP method such as 'GET' (an HTTP token)")
]
HeaderName = Annotated[
    str,
    Meta(pattern=_TOKEN, description="a header name such as 'Content-Type' (an HTTP token)"),
]
#: ``.exe``, or ``.`` for "no extension" (as IIS spells it).
Extension = Annotated[
    str,
    Meta(
        pattern=r"^\.[^/]*$",
        description="a file extension such as '.exe' ('.' alone: files without one)",
    ),
]
Segment = Annotated[
    str,
    Meta(min_length=1, pattern=r"^[^/]+$", description="one URL path segment (no '/')"),
]
Sequence = Annotated[str, Meta(min_length=1)]
NonNegative = Annotated[int, Meta(ge=0)]

_FRAMING = frozenset({"content-length", "transfer-encoding"})


class FilteringRule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One IIS ``filteringRule``: strings refused in the parts of a request it scans."""

    name: Annotated[str, Meta(min_length=1)]
    """A label; also the key ``remove`` names the rule by."""
    scan_url: bool = False
    """Look in the path: as sent, decoded once, and canonical."""
    scan_query_string: bool = False
    """Look in the query string (and its decoded form with ``unescape_query_string``)."""
    scan_headers: list[HeaderName] = []
    """Request headers whose values are looked in."""
    applies_to: list[Extension] = []
    """File extensions of the URL the rule is for (``.`` no extension); empty: every URL."""
    deny_strings: list[Sequence] = []
    """Substrings refused, without regard to case."""


class RequestFilteringSection(Section, frozen=True, dict=True):
    """Request filtering settings (IIS ``requestFiltering``); defaults are IIS's.

    - ``hidden_segments``: path segments never served, matched case-insensitively
      anywhere in the path → 404.8. ``deny_dotfiles`` (not in IIS) also hides every
      segment starting with ``.`` except ``.well-known`` (RFC 8615) → 404.8.
    - ``allow_double_escaping``: when false, a path that still holds a %-escape
      after one decoding, or a ``+``, is refused → 404.11.
    - ``allow_high_bit_characters``: when false, non-ASCII in the decoded path or
      the query string → 404.12.
    - ``max_url`` (bytes of the raw path) → 404.14; ``max_query_string`` → 404.15.
    - ``max_allowed_content_length``: a larger declared ``Content-Length`` → 413.1;
      a body without one (chunked) that grows past it fails while it is read.
    - ``header_limits``: header name → most bytes of its values; 0 bans the
      header → 431.
    - ``file_extensions`` with ``allow_unlisted_extensions`` → 404.7 (``.``
      stands for "no extension", which includes directory URLs ending in ``/``).
    - ``deny_url_sequences``: substrings refused in the raw and the decoded path,
      case-insensitively → 404.5. ``deny_query_string_sequences`` → 404.18, on
      the raw query and (``unescape_query_string``) its decoded form.
    - ``filtering_rules``: each rule refuses its ``deny_strings`` (any case) in the
      parts it scans (path, query string, named headers) of URLs with the
      extensions it ``applies_to`` (all when empty) → 404.19.
    - ``verbs`` with ``allow_unlisted_verbs`` → 404.6. Any method token can be
      listed; the match ignores case, so a denied ``TRACE`` also refuses ``trace``.

    A NUL byte in the query string (``%00``) is always refused with 400.
    """

    key = "request_filtering"

    allow_double_escaping: bool = False
    allow_high_bit_characters: bool = True
    unescape_query_string: bool = True
    max_allowed_content_length: NonNegative = 30_000_000
    max_url: Annotated[int, Meta(ge=1)] = 4096
    max_query_string: NonNegative = 2048
    header_limits: dict[HeaderName, NonNegative] = {}
    hidden_segments: list[Segment] = msgspec.field(default_factory=lambda: [WEB_TOML])
    deny_dotfiles: bool = True
    allow_unlisted_extensions: bool = True
    file_extensions: dict[Extension, bool] = {}
    deny_url_sequences: list[Sequence] = []
    deny_query_string_sequences: list[Sequence] = []
    allow_unlisted_verbs: bool = True
    verbs: dict[Verb, bool] = {}
    filtering_rules: list[FilteringRule] = []

    def __post_init__(self) -> None:
        for name in self.header_limits:
            if name.lower() in _FRAMING:
                raise ValueError(
                    f"header_limits cannot limit {name!r}: the body size is "
                    "max_allowed_content_length, framing is checked by the protocol layer"
                )

    @cached_property
    def rules(self) -> Rules:
        """The compiled form, built on first use and kept with this section."""
        return Rules(self)


class Rules:
    """A section compiled for the per-request check (read-only after construction,
    but for ``clean_paths``: raw paths that passed the path rules, a bounded memo)."""

    __slots__ = (
        "check_double_escaping",
        "check_high_bit",
        "clean_paths",
        "extensions",
        "filtering",
        "header_watch",
        "limits_headers",
        "max_content_length",
        "max_query_string",
        "max_url",
        "plain",
        "query_scan",
        "reject_listed_verbs",
        "segment_scan",
        "sequence_scans",
        "unescape_query",
        "unlisted_extension_allowed",
        "verbs",
    )

    def __init__(self, section: RequestFilteringSection) -> None:
        self.max_url = section.max_url
        self.clean_paths: set[bytes] = set()
        self.max_query_string = section.max_query_string
        self.max_content_length = section.max_allowed_content_length
        self.check_high_bit = not section.allow_high_bit_characters
        self.check_double_escaping = not section.allow_double_escaping
        self.unescape_query = section.unescape_query_string

        # With unlisted verbs allowed only the denied ones are kept and a listed
        # verb is refused; otherwise only the allowed ones and an unlisted verb is
        # refused. Either way the hook does one set lookup and one identity test.
        allow_unlisted = section.allow_unlisted_verbs
        self.verbs = frozenset(
            verb.upper() for verb, allowed in section.verbs.items() if allowed is not allow_unlisted
        )
        self.reject_listed_verbs = allow_unlisted

        # None: no extension rule can refuse anything, skip the work entirely.
        extensions = {ext.lower(): allowed for ext, allowed in section.file_extensions.items()}
        self.unlisted_extension_allowed = section.allow_unlisted_extensions
        if section.allow_unlisted_extensions and all(extensions.values()):
            self.extensions: dict[str, bool] | None = None
        else:
            self.extensions = extensions

        # One case-insensitive scan of the decoded path finds hidden and dot
        # segments (both 404.8). Named groups would tell them apart but cost the
        # regex engine its literal-prefix search (3x slower), so there are none.
        alternatives = [f"{re.escape(s)}(?=/|$)" for s in section.hidden_segments]
        if section.deny_dotfiles:
            alternatives.append(r"\.(?!well-known(?:/|$))")
        self.segment_scan = (
            re.compile(f"/(?:{'|'.join(alternatives)})", re.IGNORECASE) if alternatives else None
        )
        # Denied sequences are looked for in the canonical path, the raw path and
        # the raw path decoded once (what IIS scans).
        sequences = "|".join(re.escape(s) for s in section.deny_url_sequences)
        self.sequence_scans: tuple[re.Pattern[str], re.Pattern[bytes]] | None = None
        if sequences:
            self.sequence_scans = (
                re.compile(sequences, re.IGNORECASE),
                re.compile(sequences.encode("utf-8"), re.IGNORECASE),
            )
        query = "|".join(re.escape(s) for s in section.deny_query_string_sequences)
        self.query_scan = re.compile(query.encode("utf-8"), re.IGNORECASE) if query else None

        self.filtering = tuple(
            compile_filtering_rule(rule) for rule in section.filtering_rules if rule.deny_strings
        )

        # Header name → limit. Content-Length and Transfer-Encoding join the same
        # table (negative markers) so one pass over the headers serves every rule.
        watch = {
            name.lower().encode("latin-1"): limit for name, limit in section.header_limits.items()
        }
        self.limits_headers = bool(watch)
        #: No verb, filtering or header rule: a request without query and body
        #: breaks no rule if its raw path is in ``clean_paths`` (one test per
        #: request in the hook's common case).
        self.plain = (
            not self.verbs
            and self.reject_listed_verbs
            and not self.filtering
            and not self.limits_headers
        )
        watch[b"content-length"] = CONTENT_LENGTH
        watch[b"transfer-encoding"] = TRANSFER_ENCODING
        self.header_watch = watch


#: Markers in :attr:`Rules.header_watch` for the two framing headers.
CONTENT_LENGTH = -1
TRANSFER_ENCODING = -2


class CompiledFilteringRule(NamedTuple):
    """A :class:`FilteringRule` made ready for the per-request check."""

    scan_url: bool
    scan_query: bool
    headers: frozenset[bytes]
    """Lower-cased header names, as the request holds them."""
    extensions: frozenset[str] | None
    """Lower-cased; None: every URL."""
    text: re.Pattern[str]
    raw: re.Pattern[bytes]


def compile_filtering_rule(rule: FilteringRule) -> CompiledFilteringRule:
    """One alternation of the rule's deny strings, for text and for raw bytes."""
    strings = "|".join(re.escape(s) for s in rule.deny_strings)
    return CompiledFilteringRule(
        scan_url=rule.scan_url,
        scan_query=rule.scan_query_string,
        headers=frozenset(h.lower().encode("latin-1") for h in rule.scan_headers),
        extensions=frozenset(e.lower() for e in rule.applies_to) if rule.applies_to else None,
        text=re.compile(strings, re.IGNORECASE),
        raw=re.compile(strings.encode("utf-8"), re.IGNORECASE),
    )
