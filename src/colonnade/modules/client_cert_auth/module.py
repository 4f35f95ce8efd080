"""Client certificate mapping authentication (``auth.client_certificate``).

IIS's IISCertificateMappingAuthenticationModule: at AUTHENTICATE_REQUEST, a
request whose connection carries a client certificate is mapped to a user by
the section's mappings (``config.Mapper``). The certificate chained to the
site's client CA in the handshake; its dates are checked here too (the handshake
does not), so an expired certificate never logs anyone on, whether or not
``security.ssl`` is there to answer it 403.17.

A deny mapping answers 403.12 (IIS: "access denied by the certificate mapper").
An unmapped certificate is no credential of this scheme: the request goes on
unauthenticated, to the other schemes and anonymous authentication (401.2 where
that is off). The scheme has no challenge: a certificate is asked for in the
handshake, not by a 401.

The user's ``auth_type`` is ``SSL/PCT``: what IIS reports in ``AUTH_TYPE`` for a
certificate-mapped logon, so that applications ported from IIS that test it
keep working.
"""

from __future__ import annotations

from colonnade.core.auth import AUTH_FAILURE
from colonnade.core.context import Context
from colonnade.core.module import FINISH, Module, Outcome, hook
from colonnade.core.principal import Principal
from colonnade.core.stages import Stage
from colonnade.modules.client_cert_auth.config import ClientCertificateMappingSection

#: ``Principal.auth_type`` (``AUTH_TYPE``) of a certificate-mapped user, as IIS names it.
AUTH_TYPE = "SSL/PCT"


class ClientCertificateMapping(Module):
    """``auth.client_certificate``: a valid client certificate logs on as a mapped user."""

    id = "auth.client_certificate"
    section = ClientCertificateMappingSection

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate_request(self, ctx: Context) -> Outcome | None:
        """Map the connection's client certificate to a user, or refuse it (403.12)."""
        settings = ctx.section(ClientCertificateMappingSection)
        if not settings.enabled or ctx.user is not None:
            return None
        tls = ctx.request.tls
        if tls is None or tls.client_der is None:
            return None
        cert = tls.client
        if cert is None or cert.problem() is not None:
            return None
        mapped = settings.mapper.map(cert)
        if mapped is None:
            return None
        if mapped.deny is not None:
            reason = f"the certificate mapping {mapped.deny!r} denies it"
            ctx.items[AUTH_FAILURE] = reason
            ctx.error_response(
                403,
                12,
                "Forbidden: access denied by the client certificate mapping",
                f"client_certificate_mapping_authentication.many_to_one: {reason}",
            )
            return FINISH
        ctx.user = Principal(mapped.user, AUTH_TYPE, mapped.roles)
        return None
