"""SSL settings (``security.ssl``): the request-time half of client certificates.

The handshake asks a client for a certificate where the site's ``[sites.tls]``
says so, and lets through only one that chains to the site's ``client_ca``
(``transport/tls.py``). What that leaves to a request is IIS's
``access@sslFlags``, judged here first in AUTHENTICATE_REQUEST, before any
scheme:

- ``require_ssl`` and a plain HTTP request: 403.4;
- ``require`` and no certificate: 403.7;
- a certificate that has expired or is not yet valid (dates are not checked in
  the handshake, so that the client gets this page, not a bare alert): 403.17;
- a certificate OpenSSL accepted that does not parse: 403.16.

Each answer's detail is logged once per application (``Context.error_response``);
the access log has a line for every request (``x-tls-client-subject``).
"""

from __future__ import annotations

from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage
from colonnade.modules.ssl_settings.config import SslSettingsSection

_NOT_ASKED = (
    "this path requires a client certificate (ssl_settings.client_certificates = "
    "'require'), but the handshake of its site does not ask for one: set "
    "client_certificates = 'accept' or 'require' in the site's [sites.tls]"
)


class SslSettings(Module):
    """``security.ssl``: 403.4, 403.7, 403.16 and 403.17 as IIS's sslFlags."""

    id = "security.ssl"
    section = SslSettingsSection

    @hook(Stage.AUTHENTICATE_REQUEST, priority=Priority.FIRST)
    def authenticate_request(self, ctx: Context) -> Outcome:
        """Judge the request's TLS and client certificate against the path's settings."""
        settings = ctx.section(SslSettingsSection)
        request = ctx.request
        if settings.require_ssl and request.scheme != "https":
            ctx.error_response(
                403,
                4,
                "Forbidden: SSL is required to view this resource",
                "ssl_settings.require_ssl",
            )
            return FINISH
        tls = request.tls
        mode: str | None = settings.client_certificates
        if tls is None:
            if mode == "require":
                ctx.error_response(
                    403,
                    7,
                    "Forbidden: client certificate required",
                    "ssl_settings.client_certificates = 'require', and the request did "
                    "not come over TLS",
                )
                return FINISH
            return CONTINUE
        if mode is None:
            mode = tls.client_certificates
        if mode == "ignore":
            return CONTINUE
        if tls.client_der is None:
            if mode == "require":
                detail = (
                    _NOT_ASKED
                    if tls.client_certificates == "ignore"
                    else "client_certificates = 'require', and the client sent no certificate"
                )
                ctx.error_response(403, 7, "Forbidden: client certificate required", detail)
                return FINISH
            return CONTINUE
        cert = tls.client
        if cert is None:
            ctx.error_response(
                403,
                16,
                "Forbidden: client certificate untrusted or invalid",
                "the client certificate does not parse",
            )
            return FINISH
        problem = cert.problem()
        if problem is not None:
            ctx.error_response(
                403,
                17,
                "Forbidden: client certificate has expired or is not yet valid",
                f"the client certificate's validity: {problem}",
            )
            return FINISH
        return CONTINUE
