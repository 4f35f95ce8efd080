"""The built-in terse error page (custom error modules replace it in SEND_RESPONSE)."""

from __future__ import annotations

from colonnade.core.markup import escape
from colonnade.http.phrases import PHRASES


def reason(status: int) -> str:
    """The standard reason phrase for ``status``."""
    return PHRASES.get(status, "Error")


#: ``Context.items`` key of an error's detail for the administrator (what to change):
#: set by ``Context.error_response``, read by error-page modules.
ERROR_DETAIL = "colonnade.error_detail"

#: ``Context.items`` key of where an exception escaped: ``(stage name, module id or
#: None)``, set by the runner (the module is known on a traced request, where
#: every hook is timed); read by the detailed error page.
FAILED_AT = "colonnade.failed_at"


def render(
    status: int, substatus: int, message: str, correlation_id: str | None, detail: str = ""
) -> bytes:
    """A small HTML page; never a traceback, only the correlation id for 5xx.

    ``detail`` (what an administrator should change) goes in only when given:
    the caller gives it to local clients alone.
    """
    code = f"{status}.{substatus}" if substatus else str(status)
    title = f"{status} {escape(reason(status))}"
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>',
        title,
        "</title></head><body><h1>",
        title,
        "</h1>",
    ]
    if message:
        parts.append(f"<p>{escape(message)}</p>")
    parts.append(f"<p>Error code: {code}</p>")
    if detail:
        parts.append(
            f"<p>For the administrator (shown to local clients only): {escape(detail)}</p>"
        )
    if correlation_id:
        parts.append(f"<p>Correlation id: <code>{correlation_id}</code></p>")
    parts.append("</body></html>\n")
    return "".join(parts).encode()
