"""``[ssl_settings]``: IIS's SSL Settings page (``system.webServer/security/access``)."""

from __future__ import annotations

from typing import Literal

from colonnade.config.sections import Section


class SslSettingsSection(Section, frozen=True):
    """SSL Settings (IIS `access@sslFlags`: `Ssl`, `SslNegotiateCert`, `SslRequireCert`)
    per site, application, folder or file.

    `client_certificates` unset: what the site's handshake asks for
    (`[sites.tls] client_certificates`). Set here it overrides that for a path:
    `require` answers a request without a client certificate 403.7; `accept`
    lets it through; `ignore` does not look at the certificate at all. Where a
    certificate is looked at, one that has expired or is not yet valid is
    answered 403.17 and one that does not parse 403.16 (one that does not chain
    to the site's `client_ca` never gets past the handshake). A path can require a
    certificate only where the site's handshake asks for one (`accept` or
    `require` in `[sites.tls]`): browsers cannot be asked later (no renegotiation
    in TLS 1.3 and HTTP/2).

    Locked by default, as IIS locks `access` (a folder's owner must not be able
    to lift a requirement): set it in the server file, globally or in
    `[[locations]]`, or unlock it with `[lock] ssl_settings = "allow"`.
    """

    key = "ssl_settings"
    locked = True

    require_ssl: bool = False
    """Answer a request over plain HTTP 403.4 (IIS `Ssl`). A request a trusted
    proxy says came over HTTPS counts as HTTPS."""
    client_certificates: Literal["ignore", "accept", "require"] | None = None
    """`ignore`, `accept` or `require` (IIS `SslNegotiateCert`, `SslRequireCert`);
    unset: the site's `[sites.tls] client_certificates`."""
