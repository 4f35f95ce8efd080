"""The built-in modules: id → where the class lives (imported only when enabled).

Removing a module's folder and its line here removes the feature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colonnade.core.registry import Builtin

BUILTIN: tuple[Builtin, ...] = (
    ("security.request_filtering", "colonnade.modules.request_filtering.module:RequestFiltering"),
    ("security.trusted_proxies", "colonnade.modules.trusted_proxies.module:TrustedProxies"),
    ("security.ip", "colonnade.modules.ip_security.module:IpSecurity"),
    ("security.dynamic_ip", "colonnade.modules.dynamic_ip.module:DynamicIpRestrictions"),
    ("auth.anonymous", "colonnade.modules.anonymous_auth.module:AnonymousAuthentication"),
    ("auth.roles", "colonnade.modules.roles.module:GroupFileRoles"),
    ("authz.url", "colonnade.modules.url_authorization.module:UrlAuthorization"),
    ("auth.basic", "colonnade.modules.basic_auth.module:BasicAuthentication"),
    ("static.default_document", "colonnade.modules.default_document.module:DefaultDocument"),
    ("static.directory_listing", "colonnade.modules.directory_listing.module:DirectoryListing"),
    ("handler.static", "colonnade.handlers.static.handler:StaticFile"),
    # The Python handlers join every application that hosts one, so their sections
    # must be known where the other interface's handler is never imported.
    (
        "handler.asgi",
        "colonnade.handlers.asgi.handler:AsgiHandler",
        "colonnade.handlers.asgi.config:AsgiSection",
    ),
    (
        "handler.wsgi",
        "colonnade.handlers.wsgi.handler:WsgiHandler",
        "colonnade.handlers.wsgi.config:WsgiSection",
    ),
    ("log.http", "colonnade.modules.http_logging.module:HttpLogging"),
    ("http.compression", "colonnade.modules.compression.module:Compression"),
    ("http.redirection", "colonnade.modules.redirection.module:HttpRedirection"),
    ("http.hsts", "colonnade.modules.hsts.module:Hsts"),
    ("http.health", "colonnade.modules.health.module:Health"),
    ("http.custom_headers", "colonnade.modules.custom_headers.module:CustomHeaders"),
    ("http.custom_errors", "colonnade.modules.custom_errors.module:CustomErrors"),
    ("auth.negotiate", "colonnade.modules.negotiate_auth.module:NegotiateAuthentication"),
    ("auth.jwt", "colonnade.modules.jwt_auth.module:JwtAuthentication"),
    ("auth.forms", "colonnade.modules.forms_auth.module:FormsAuthentication"),
    ("asgi.middleware", "colonnade.handlers.asgi.middleware:AsgiMiddleware"),
    ("security.ssl", "colonnade.modules.ssl_settings.module:SslSettings"),
    (
        "auth.client_certificate",
        "colonnade.modules.client_cert_auth.module:ClientCertificateMapping",
    ),
    ("handler.fastcgi", "colonnade.handlers.fastcgi.handler:FastCgiHandler"),
    ("handler.cgi", "colonnade.handlers.cgi.handler:CgiHandler"),
    ("handler.proxy", "colonnade.handlers.proxy.handler:ProxyHandler"),
    ("rewrite", "colonnade.modules.rewrite.module:UrlRewrite"),
    ("cache.output", "colonnade.modules.output_cache.module:OutputCache"),
    ("state.session", "colonnade.modules.session_state.module:SessionState"),
    (
        "tracing.failed_requests",
        "colonnade.modules.failed_request_tracing.module:FailedRequestTracing",
    ),
)
