"""The NCSA Common and Combined log formats (Apache's ``common``/``combined``).

``host ident user [05/Dec/2026:16:11:27 +0000] "GET /path?q HTTP/1.1" 200 1234``
and, for Combined, ``"referer" "user-agent"`` after it: the lines goaccess,
awstats and most log tools read without configuration. The fields are fixed (the
section's ``fields`` do not apply); ``ident`` is always ``-``, a response without
bytes logs ``-`` as Apache does, and quoted values escape ``"``, ``\\`` and
control bytes as ``\\xHH`` (Apache's escaping), so a client cannot forge a line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from colonnade.modules.http_logging.fields import Field
from colonnade.modules.http_logging.json_lines import JsonWriter

#: The fields a Common line is made of, in the order ``render`` takes them.
COMMON_FIELDS = (
    "c-ip",
    "cs-username",
    "date",
    "time",
    "cs-method",
    "x-request-target",
    "cs-version",
    "sc-status",
    "sc-bytes",
)
#: A Combined line adds the referer and the user agent.
COMBINED_FIELDS = (*COMMON_FIELDS, "cs(Referer)", "cs(User-Agent)")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\xff]')


def _escape(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _quoted(value: str | None) -> str:
    return "-" if value is None else _escape(value)


def _timestamp(date: str, time: str) -> str:
    # date "2026-12-05", time "16:11:27" (UTC) → "05/Dec/2026:16:11:27 +0000"
    return f"{date[8:10]}/{_MONTHS[int(date[5:7]) - 1]}/{date[:4]}:{time} +0000"


def _bare(value: str | None) -> str:
    # Unquoted fields (host, user) must hold no space either.
    return "-" if not value else _escape(value).replace(" ", "\\x20")


class ClfWriter(JsonWriter):
    """Common or Combined, by the field list it is compiled with (:data:`FORMAT_FIELDS`).

    It takes the fields' typed values and has no directives, as the JSON writer.
    """

    @staticmethod
    def names() -> dict[str, Any]:
        """The helper the render function calls."""
        return {"clf_line": _line}

    @staticmethod
    def render_source(lines: str, values: Sequence[str], fields: Sequence[Field]) -> str:
        """``render(batch)``: one line per request."""
        return f"def render(batch):\n    return ''.join([clf_line({', '.join(values)}) {lines}])\n"


def _line(
    host: str | None,
    user: str | None,
    date: str,
    time: str,
    method: str,
    target: str,
    version: str,
    status: int,
    sent: int,
    *more: str | None,
) -> str:
    text = (
        f"{_bare(host)} - {_bare(user)} [{_timestamp(date, time)}] "
        f'"{_escape(method)} {_bare(target)} {version}" {status} {sent or "-"}'
    )
    if more:
        text += f' "{_quoted(more[0])}" "{_quoted(more[1])}"'
    return text + "\n"


#: The fixed field list of each NCSA format.
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "common": COMMON_FIELDS,
    "combined": COMBINED_FIELDS,
}
