"""Custom response headers (IIS customHeaders, ProtocolSupportModule) at SEND_RESPONSE.

Priority MEDIUM. SEND_RESPONSE runs in reverse priority order, so this runs after
the handler and any LOW/LAST response hooks, and before the HIGH ones (response
compression, which then judges the headers set here, e.g. ``Cache-Control:
no-transform``) and the FIRST one (custom errors, which keeps these headers on
the error pages it renders). A section with nothing to do costs one attribute
read per request; otherwise one pass over the response's headers.
"""

from __future__ import annotations

from colonnade.core.context import Context
from colonnade.core.module import Module, Priority, hook
from colonnade.core.stages import Stage
from colonnade.modules.custom_headers.config import CustomHeadersSection


class CustomHeaders(Module):
    """``http.custom_headers``: set, add, default and remove response headers."""

    id = "http.custom_headers"
    section = CustomHeadersSection

    @hook(Stage.SEND_RESPONSE, priority=Priority.MEDIUM)
    def send_response(self, ctx: Context) -> None:
        """Edit the response head that is about to go out."""
        edits = ctx.section(CustomHeadersSection).edits
        if edits is None:
            return
        response = ctx.response
        # A new list, never the old one edited in place: a handler may have set
        # ``response.headers`` to a list it keeps (a cache's).
        drop = edits.drop
        if drop:
            headers = [pair for pair in response.headers if pair[0] not in drop]
        else:
            headers = list(response.headers)
        headers.extend(edits.append)
        response.headers = headers
        if edits.vary is not None:
            response.add_vary(edits.vary)
            headers = response.headers
        if edits.defaults:
            present = {name for name, _ in headers}
            headers.extend(pair for pair in edits.defaults if pair[0] not in present)
