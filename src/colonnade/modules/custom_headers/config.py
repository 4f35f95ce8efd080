"""``[custom_headers]``: response headers added, replaced, defaulted or removed.

Names and values are checked when the configuration is decoded (an invalid one
is a ConfigError naming the key and the header), and compiled once per effective
section into :class:`HeaderEdits`, so the per-request work is one pass over the
response's headers at most.
"""

from __future__ import annotations

import re
from functools import cached_property

from colonnade.config.sections import Section

#: An HTTP token (RFC 9110 ``tchar``): header names.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: A field value (RFC 9110 5.5): visible ASCII, spaces and tabs inside, no CR/LF/NUL.
#: Non-ASCII is refused rather than guessed at (encode it, e.g. RFC 8187).
_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")

#: Headers the protocol layer owns: framing and connection management. Setting or
#: removing them here would break the message, so the configuration refuses them.
PROTOCOL_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "date",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

Pairs = tuple[tuple[bytes, bytes], ...]


def _check_name(field: str, name: str) -> str:
    if _TOKEN.fullmatch(name) is None:
        raise ValueError(f"{field}: {name!r} is not a valid header name (an RFC 9110 token)")
    lower = name.lower()
    if lower in PROTOCOL_HEADERS:
        raise ValueError(
            f"{field}: {name!r} is managed by the protocol layer and cannot be changed here"
        )
    return lower


def _check_table(field: str, table: dict[str, str]) -> list[tuple[bytes, bytes]]:
    seen: dict[str, str] = {}
    out: list[tuple[bytes, bytes]] = []
    for name, value in table.items():
        lower = _check_name(field, name)
        if lower in seen:
            raise ValueError(f"{field}: {seen[lower]!r} and {name!r} name the same header")
        seen[lower] = name
        if _VALUE.fullmatch(value) is None:
            raise ValueError(
                f"{field}.{name}: the value must be printable ASCII without CR, LF or "
                "leading/trailing spaces"
            )
        out.append((lower.encode("ascii"), value.encode("ascii")))
    return out


class HeaderEdits:
    """A section compiled for the per-request edit (read-only after construction)."""

    __slots__ = ("append", "defaults", "drop", "vary")

    def __init__(self, section: CustomHeadersSection) -> None:
        replaced = _check_table("set", section.set)
        added = _check_table("add", section.add)
        defaults = _check_table("default", section.default)
        removed: set[bytes] = set()
        for name in section.remove:
            lower = _check_name("remove", name)
            removed.add(lower.encode("ascii"))
        # An added Vary joins the response's one Vary field (Response.add_vary)
        # instead of going out as a second one.
        vary = [value for name, value in added if name == b"vary"]
        added = [pair for pair in added if pair[0] != b"vary"]
        self.vary: bytes | None = vary[0] if vary and b"vary" not in removed else None
        # remove wins over everything: a removed name is never sent, whoever set it
        # (the application, or this section at any level).
        self.drop = frozenset(removed | {name for name, _ in replaced})
        self.append: Pairs = tuple(
            (name, value) for name, value in replaced + added if name not in removed
        )
        if b"server" in removed:
            # The protocol layer adds Server to a response without one; an empty
            # value tells it to send none.
            self.append += ((b"server", b""),)
        self.defaults: Pairs = tuple(
            (name, value) for name, value in defaults if name not in removed
        )


class CustomHeadersSection(Section, frozen=True, dict=True):
    """Custom response headers (IIS ``httpProtocol/customHeaders``), applied to every
    response (errors and redirects included) in SEND_RESPONSE: after the handler,
    before response compression and custom error pages (which keep these
    headers).

    Order: ``set`` replaces, ``add`` appends, ``default`` fills in when absent, and
    ``remove`` is applied last, so a removed name is never sent. Per location and
    per folder (``web.toml``), the tables merge header by header with the parent's.
    To drop an inherited entry (the application's own value, if any, then goes
    out), use the table operations: ``set = { remove = ["X-Frame-Options"], add =
    { ... } }``. A plain ``remove`` list replaces the inherited one (``remove = {
    add = [...] }`` extends it). Names are matched case-insensitively; framing and
    connection headers (``Content-Length``, ``Transfer-Encoding``, ``Connection``,
    ``Date``, ...) cannot be changed. ``Server`` can be replaced (``set``) or
    removed (``remove``: then no Server header is sent at all).
    """

    key = "custom_headers"

    set: dict[str, str] = {}
    """Headers to send with exactly this value, replacing any the response has:
    `{ "X-Frame-Options" = "DENY", "X-Content-Type-Options" = "nosniff" }`. What
    you want for security headers: never duplicated."""
    add: dict[str, str] = {}
    """Headers appended beside any values the response has (IIS `customHeaders`
    `add` semantics: an application setting the same header yields two). `Vary`
    is the exception: its names join the response's one `Vary` field, each
    listed once (`add = { Vary = "Origin" }` on a compressed response sends
    `Vary: Origin, Accept-Encoding`)."""
    default: dict[str, str] = {}
    """Headers sent only when the response has none of that name, so applications
    can override them: `{ "Cache-Control" = "no-cache" }`."""
    remove: list[str] = []
    """Header names never sent, whoever set them (`X-Powered-By`). Applied after
    `set`, `add` and `default`. Removing `Server` sends none."""

    def __post_init__(self) -> None:
        _ = self.edits  # compile now: a bad name or value fails at load, naming its key

    @cached_property
    def edits(self) -> HeaderEdits | None:
        """The compiled form (None when there is nothing to do), kept with this section."""
        edits = HeaderEdits(self)
        if not (edits.drop or edits.append or edits.defaults or edits.vary):
            return None
        return edits
