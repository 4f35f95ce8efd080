"""``[redirection]``: IIS ``httpRedirect``, with wildcard rules that capture.

Destinations are compiled once per effective section (:class:`Template`); the
compiled form also validates them, so a bad destination fails when the
configuration is loaded, naming the key.

Destination syntax (the IIS variables, plus numbered captures):

- ``$1`` … ``$9``: the text the rule's first … ninth ``*`` matched (rules only);
- ``$S``: the rest of the path below the folder where ``destination`` was set
  (the whole-subtree ``destination`` only);
- ``$V``: the request path;
- ``$Q``: the query string with its ``?`` (empty when there is none);
- ``$$``: a literal ``$``.

Whatever a variable inserts is percent-encoded for where it lands (path, or
query and fragment), so a captured ``\\r\\n``, ``\\`` or ``&`` cannot split the
header, change the host or add a query parameter. A relative result always
starts with exactly one ``/``: a capture cannot turn it into ``//other-host``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import Annotated, Literal, NamedTuple
from urllib.parse import quote, quote_from_bytes

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section

RedirectStatus = Literal[301, 302, 307, 308]

#: Characters a variable may insert as they are in the path part of a URL.
PATH_SAFE = "/!$&'()*+,;=:@-._~"
#: ... and in its query or fragment: no ``&``, ``=``, ``+`` or ``#``, which would
#: change the query's meaning.
_QUERY_SAFE = "/?!$'()*,;:@-._~"
#: Literal parts of a destination keep every printable ASCII character (so an
#: already-encoded ``%20`` stays as written); spaces and non-ASCII are encoded.
_LITERAL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
#: The raw query string is re-inserted with only what cannot appear in a URL
#: encoded (existing escapes are kept).
_RAW_QUERY_SAFE = "".join(c for c in _LITERAL_SAFE if c not in '#"<>\\^`{|}')

_ABSOLUTE = re.compile(r"^https?://([^/?#]*)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def clean_query(query: bytes) -> str:
    """The raw query string as URL text: only bytes a URL cannot hold are encoded."""
    return quote_from_bytes(query, safe=_RAW_QUERY_SAFE)


class Template:
    """A destination compiled once: literal text and variables, ready to render.

    ``parts`` are ``(variable, in_query, literal)`` triples: ``variable`` is ``""``
    for literal text, else ``"1"``-``"9"``, ``"S"``, ``"V"`` or ``"Q"``.
    """

    __slots__ = ("absolute", "has_query", "parts", "places_path", "text")

    def __init__(self, text: str, allowed: str, field: str) -> None:
        self.text = text
        if _CONTROL.search(text):
            raise ValueError(f"{field}: control characters (CR, LF, ...) are not allowed")
        if _BAD_ESCAPE.search(text):
            raise ValueError(f"{field}: {text!r}: '%' must start a %XX escape")
        found = _ABSOLUTE.match(text)
        self.absolute = found is not None
        if found is not None:
            host = found.group(1)
            if not host or "$" in host or "\\" in host or " " in host:
                raise ValueError(
                    f"{field}: {text!r}: the host of an absolute destination must be "
                    "written out (no variables)"
                )
        elif not text.startswith(("/", "$")):
            raise ValueError(f"{field}: {text!r} must start with '/', a variable or http(s)://")
        elif text.startswith(("//", "/\\")):
            raise ValueError(f"{field}: {text!r} names another host; write https://host/...")
        parts: list[tuple[str, bool, str]] = []
        in_query = False
        literal: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if char != "$":
                literal.append(char)
                in_query = in_query or char in "?#"
                i += 1
                continue
            name = text[i + 1 : i + 2]
            i += 2
            if name == "$":
                literal.append("$")
                continue
            if not name or name not in allowed:
                shown = f"${name}" if name else "a lone $"
                raise ValueError(
                    f"{field}: {text!r}: {shown} is not a variable here "
                    f"(allowed: {', '.join('$' + v for v in allowed)}; $$ for a literal $)"
                )
            if literal:
                parts.append(("", in_query, quote("".join(literal), safe=_LITERAL_SAFE)))
                literal = []
            parts.append((name, in_query, ""))
        if literal:
            parts.append(("", in_query, quote("".join(literal), safe=_LITERAL_SAFE)))
        self.parts = tuple(parts)
        self.has_query = any(name == "Q" for name, _, _ in parts)
        self.places_path = any(name in ("S", "V") for name, _, _ in parts)

    def render(self, captures: Sequence[str], suffix: str, path: str, query: bytes) -> str:
        """The destination for one request; safe to put in a ``Location`` header."""
        out: list[str] = []
        for name, in_query, literal in self.parts:
            if not name:
                out.append(literal)
                continue
            if name == "Q":
                if query:
                    out.append("?" + clean_query(query))
                continue
            value = path if name == "V" else suffix if name == "S" else captures[int(name) - 1]
            out.append(quote(value, safe=_QUERY_SAFE if in_query else PATH_SAFE))
        location = "".join(out)
        if self.absolute:
            return location
        # Exactly one leading slash: "//host" or "/\\host" would leave the site.
        return "/" + location.lstrip("/\\")


class RedirectRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[redirection.rules]]`` entry: a path pattern and where it goes."""

    path: Annotated[str, Meta(min_length=1)]
    """The request path: exact (``/old.html``) or with ``*`` wildcards (``/old/*``,
    ``*.php``); ``*`` matches any characters, ``/`` included. Must start with ``/``
    or ``*``."""
    destination: Annotated[str, Meta(min_length=1)]
    """Where it goes: ``/path`` or ``https://host/path``, with ``$1``-``$9``, ``$V``,
    ``$Q`` and ``$$`` (see the section)."""
    status: RedirectStatus | None = None
    """The redirect status for this rule; unset: the section's ``status``."""
    keep_query: bool | None = None
    """Append the request's query string; unset: the section's ``keep_query``."""


class CompiledRule(NamedTuple):
    """A rule ready for the per-request match."""

    exact: str | None  # the path of a rule without wildcards (lower case if ignore_case)
    pattern: re.Pattern[str] | None  # the path of a rule with wildcards
    template: Template
    status: int
    keep_query: bool


def compile_pattern(path: str, ignore_case: bool) -> re.Pattern[str] | None:
    """``/old/*`` → a regex with one lazy group per ``*``; None for an exact path."""
    if "*" not in path:
        return None
    regex = "(.*?)".join(re.escape(piece) for piece in path.split("*"))
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


class Redirects:
    """A section compiled for the per-request check (read-only after construction)."""

    __slots__ = (
        "child_only",
        "destination",
        "exact_destination",
        "ignore_case",
        "keep_query",
        "rules",
        "status",
    )

    def __init__(self, section: RedirectionSection) -> None:
        self.status: int = section.status
        self.ignore_case = section.ignore_case
        self.keep_query = section.keep_query
        self.exact_destination = section.exact_destination
        self.child_only = section.child_only
        self.destination = (
            Template(section.destination, "SVQ", "destination") if section.destination else None
        )
        rules: list[CompiledRule] = []
        for i, rule in enumerate(section.rules):
            where = f"rules[{i}]"
            if not rule.path.startswith(("/", "*")):
                raise ValueError(f"{where}.path: {rule.path!r} must start with '/' or '*'")
            stars = rule.path.count("*")
            if stars > 9:
                raise ValueError(f"{where}.path: at most nine '*' (captures $1-$9)")
            template = Template(
                rule.destination, "123456789"[:stars] + "VQ", f"{where}.destination"
            )
            pattern = compile_pattern(rule.path, section.ignore_case)
            exact = None
            if pattern is None:
                exact = rule.path.lower() if section.ignore_case else rule.path
            rules.append(
                CompiledRule(
                    exact,
                    pattern,
                    template,
                    section.status if rule.status is None else rule.status,
                    section.keep_query if rule.keep_query is None else rule.keep_query,
                )
            )
        self.rules = tuple(rules)


class RedirectionSection(Section, frozen=True, dict=True):
    """HTTP redirection (IIS ``httpRedirect``): wildcard rules and a whole-subtree
    redirect, both checked in MAP_REQUEST_HANDLER (as IIS), before the handler
    mapping.

    ``rules`` are tried in order, the first match wins; then ``destination``
    applies to everything left. Destinations use ``$1``-``$9`` (what each ``*``
    matched), ``$S`` (the rest of the path below the folder where ``destination``
    was set), ``$V`` (the request path), ``$Q`` (``?`` and the query string) and
    ``$$``; inserted text is percent-encoded, and a relative destination can never
    become ``//other-host``. A redirect whose relative destination is the request
    path itself is not made, nor one by ``destination`` for a request already
    inside the destination's folder (so ``destination = "/new/"`` at the site
    root does not loop); for other loops, set ``enabled = false`` in the
    destination's folder, as with IIS.
    """

    key = "redirection"

    enabled: bool = True
    """Redirect in this URL subtree at all. IIS's default is false; here the module
    is loaded only when listed in `[server] modules`, so rules apply as soon as they
    are written. Set false in a subtree (its `web.toml` or a `[[locations]]` entry)
    to exempt it, e.g. the folder a site-wide redirect points at."""
    destination: str = ""
    """Redirect every request of this subtree here (IIS `destination`):
    `https://example.com/` or `/new/`; empty: no subtree redirect. Unless
    `exact_destination`, the rest of the path below the folder where it is set is
    appended (`/old/a/b.html` → `/new/a/b.html` when set for `/old`). Variables:
    `$S`, `$V`, `$Q`, `$$`."""
    exact_destination: bool = False
    """Send every request to `destination` as written (its variables substituted),
    without appending the rest of the path (IIS `exactDestination`)."""
    child_only: bool = False
    """`destination` only redirects requests for content directly in the folder
    where it is set, not in its subfolders (IIS `childOnly`)."""
    status: RedirectStatus = 302
    """The status of a redirect: 302 Found (IIS's default), 301 Moved Permanently,
    307 Temporary Redirect or 308 Permanent Redirect (307/308 keep the method and
    body). 302 is the default because browsers cache 301 and 308 with no expiry: a
    mistaken permanent redirect cannot be taken back."""
    keep_query: bool = True
    """Append the request's query string to the destination (after `&` if it has a
    query already). Ignored for a destination that places `$Q` itself."""
    ignore_case: bool = False
    """Match rule paths case-insensitively (as IIS does). Off by default: paths on
    Linux are case-sensitive, like the handler mapping's."""
    rules: list[RedirectRule] = msgspec.field(default_factory=list)
    """Wildcard rules, tried in order, first match wins: tables with `path`
    (exact, or with `*` wildcards: `/old/*`, `*.php`), `destination` (with `$1`-`$9`
    for what each `*` matched, `$V`, `$Q`, `$$`), and optional `status` and
    `keep_query` overriding the section's. In a `web.toml`, `rules = { add = [...] }`
    adds to the inherited rules (a plain list replaces them); entries are keyed by
    `path`."""

    def __post_init__(self) -> None:
        _ = self.redirects  # compile now: a bad destination fails at load, naming its key

    @cached_property
    def redirects(self) -> Redirects | None:
        """The compiled form (None when nothing can redirect), kept with this section."""
        compiled = Redirects(self)
        if not self.enabled or (compiled.destination is None and not compiled.rules):
            return None
        return compiled
