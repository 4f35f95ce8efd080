"""``[custom_errors]``: IIS ``httpErrors``: custom, detailed and terse error pages.

The entries are checked when the configuration is decoded and compiled once per
effective section into a ``(status, substatus) → ErrorPage`` table
(:attr:`CustomErrorsSection.pages`).
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section

ErrorMode = Literal["detailed_local_only", "custom", "detailed"]
ExistingResponse = Literal["auto", "replace", "pass_through"]

#: Where an entry's page is written into a file or inline page (and a redirect URL).
CORRELATION_TOKEN = "{{correlation_id}}"

_ABSOLUTE_URL = re.compile(r"^https?://[^/?#\\]+", re.IGNORECASE)
_URL_TEXT = re.compile(r"(?:[\x21-\x24\x26-\x7e]|%[0-9A-Fa-f]{2})+")


class ErrorPage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[custom_errors.errors]]`` entry: the page for a status (and substatus)."""

    status: Annotated[int, Meta(ge=400, le=999)]
    """The status it answers (400-999)."""
    substatus: Annotated[int, Meta(ge=-1)] = -1
    """The substatus it answers (404.3 → 3); -1: any substatus without an entry of its own."""
    page: str = ""
    """Inline HTML sent as the page."""
    file: str = ""
    """An HTML file, relative to the application's root folder (read once, re-read when it
    changes)."""
    redirect: str = ""
    """Answer 302 with this `Location` (`/sorry.html` or `https://host/...`)."""

    def __post_init__(self) -> None:
        chosen = [name for name in ("page", "file", "redirect") if getattr(self, name)]
        code = f"{self.status}" + (f".{self.substatus}" if self.substatus >= 0 else "")
        if len(chosen) > 1:
            raise ValueError(f"the entry for {code} sets {' and '.join(chosen)}: choose one")
        if self.file:
            parts = self.file.replace("\\", "/").split("/")
            if self.file.startswith(("/", "\\")) or ".." in parts or "\x00" in self.file:
                raise ValueError(
                    f"file {self.file!r} (for {code}) must be relative to the application's "
                    "root folder, without '..'"
                )
        if self.redirect:
            url = self.redirect
            relative = url.startswith("/") and not url.startswith(("//", "/\\"))
            if _URL_TEXT.fullmatch(url) is None or not (
                relative or _ABSOLUTE_URL.match(url) is not None
            ):
                raise ValueError(
                    f"redirect {url!r} (for {code}) must be a path starting with one '/' or "
                    "an http(s):// URL, printable ASCII without spaces"
                )


class CustomErrorsSection(Section, frozen=True, dict=True):
    """Error pages (IIS ``httpErrors``) for every response with status 400 or more,
    rendered in SEND_RESPONSE after every other module (priority FIRST).

    Which page a response gets:

    - `error_mode` picks between *detailed* pages (status, substatus, the module
      and stage that failed, handler, physical path, URL, user and logon method,
      correlation id, the failed request trace's id when one is kept, and for an
      exception its type and where it was raised: never its message or a
      traceback, which are in the error log) and *custom* ones (the `errors` entry for the status,
      else the built-in terse page). With `detailed_local_only`, detailed pages go
      only to requests from a loopback address (127.0.0.0/8, ::1) that carry no
      proxy header (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`): behind a reverse
      proxy on the same machine that sends none of them, every client would look
      local, so set `error_mode = "custom"` there.
    - `existing_response` decides whether a body a module wrote is kept. The
      built-in error page the pipeline writes for an error (for example after an
      exception) always counts as no body.
    - Every 5xx page shows the request's correlation id, the one in the error log:
      a file or inline page gets it where it writes `{{correlation_id}}`, else in a
      paragraph before `</body>`.
    """

    key = "custom_errors"

    error_mode: ErrorMode = "detailed_local_only"
    """`detailed_local_only` (IIS's default): detailed pages for local requests,
    custom pages for others; `custom`: custom pages for all; `detailed`: detailed
    pages for all (never in production: it shows the server's file paths and
    module names to everyone)."""
    existing_response: ExistingResponse = "auto"
    """What happens to an error body a module wrote: `auto` (IIS's default) keeps it
    only if the module set `response.skip_custom_errors` (and never draws a detailed
    page over it); `replace` always replaces it; `pass_through` always keeps it.
    A response with no body, or only the pipeline's built-in page, always gets the
    page `error_mode` chooses."""
    errors: list[ErrorPage] = msgspec.field(default_factory=list)
    """Custom pages, one table per status or status.substatus: `status`, optional
    `substatus` (-1: any), and one of `page` (inline HTML), `file` (an HTML file
    relative to the application's root folder, read once and re-read when it
    changes) or `redirect` (a 302 to that URL). An entry with none of the three means
    the built-in page. A later entry for the same status and substatus wins, so in a
    `web.toml`, `errors = { add = [...] }` overrides inherited entries (a plain list
    replaces them all). Pages are sent as `text/html; charset=utf-8`."""

    def __post_init__(self) -> None:
        _ = self.pages  # the entries were checked one by one; build the table now

    @cached_property
    def pages(self) -> dict[tuple[int, int], ErrorPage]:
        """``(status, substatus) → entry`` (substatus -1: any); later entries win."""
        return {(entry.status, entry.substatus): entry for entry in self.errors}
