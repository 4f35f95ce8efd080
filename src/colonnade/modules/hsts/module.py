"""HSTS and the HTTP → HTTPS redirect (IIS 10's site ``hsts`` settings) as a module.

A module, not engine code: the engine does no HTTP work of its own, and a server
that needs neither pays nothing (the module is not even imported). The settings
stay per site as in IIS, through ``[[locations]]`` at a site's root.

- BEGIN_REQUEST, priority FIRST: a plain-HTTP request is redirected at once (after
  ``security.trusted_proxies``, which leads, has set the scheme a TLS-terminating
  proxy reported). Nothing else runs for it: no authentication over clear text.
- SEND_RESPONSE, priority FIRST (it runs last there, SEND_RESPONSE being reversed):
  every HTTPS response gets the header, error pages included. A request whose
  scheme is ``http`` never does (RFC 6797 7.2: a host sends it over secure
  transport only).
"""

from __future__ import annotations

import re
from urllib.parse import quote_from_bytes

from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage
from colonnade.errors import ConfigError
from colonnade.modules.hsts.config import HstsSection

#: A Host a redirect may name: a DNS name or an IPv4 address, or an IPv6 literal in
#: brackets, with an optional port (dropped). Anything else is not redirected.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d+)?$")

_STS = b"strict-transport-security"
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))


class Hsts(Module):
    """``http.hsts``: Strict-Transport-Security, and redirecting HTTP to HTTPS."""

    id = "http.hsts"
    section = HstsSection

    def provision(self, app: Application) -> None:
        """A redirect needs somewhere to go: an https binding or ``https_port``."""
        section = app.section(HstsSection)
        if section.redirect_http_to_https and section.https_port is None and not app.https_port:
            raise ConfigError(
                f"site {app.site!r} has no https:// binding to redirect to; "
                "add one, or set hsts.https_port",
                key="hsts.redirect_http_to_https",
            )

    @hook(Stage.BEGIN_REQUEST, priority=Priority.FIRST)
    def begin_request(self, ctx: Context) -> Outcome:
        """Redirect a plain-HTTP request to HTTPS."""
        request = ctx.request
        if request.scheme != "http":
            return CONTINUE
        section = ctx.section(HstsSection)
        if not section.redirect_http_to_https:
            return CONTINUE
        found = _HOST.match(request.host)
        target = request.target
        if found is None or not target.startswith(b"/"):
            return CONTINUE  # no host to name (HTTP/1.0), or `OPTIONS *`
        port = section.https_port or ctx.app.https_port or 443
        authority = found.group(1) if port == 443 else f"{found.group(1)}:{port}"
        # The target as the client sent it (the parser refuses control characters,
        # spaces and raw non-ASCII; encoding is the safe default should that change).
        path = quote_from_bytes(target, safe=_PRINTABLE)
        ctx.response.redirect(section.redirect_status, f"https://{authority}{path}")
        return FINISH

    @hook(Stage.SEND_RESPONSE, priority=Priority.FIRST)
    def send_response(self, ctx: Context) -> None:
        """Add Strict-Transport-Security to a response over HTTPS."""
        if ctx.request.scheme != "https":
            return
        header = ctx.section(HstsSection).header
        if header is not None:
            response = ctx.response
            response.headers = [p for p in response.headers if p[0] != _STS]
            response.headers.append((_STS, header))
