"""``[hsts]``: HTTP Strict Transport Security and the redirect to HTTPS (IIS 10's
``site/hsts``: ``enabled``, ``max-age``, ``includeSubDomains``, ``preload``,
``redirectHttpToHttps``).

Set it at the server level (IIS ``siteDefaults/hsts``) or for a site or an
application in a ``[[locations]]`` entry at its root (the deeper one wins, as
IIS's site element does); not below an application's root: both are decisions
about a host, not about a folder. The header value is built once per effective
section.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from msgspec import Meta

from colonnade.config.sections import Section, Where


class HstsSection(Section, frozen=True):
    """Strict-Transport-Security on HTTPS responses, and HTTP → HTTPS redirects.

    - ``enabled``: send ``Strict-Transport-Security`` on every response to a request
      that came over HTTPS (never over plain HTTP, RFC 6797 7.2), error pages and
      redirects included.
    - ``max_age``: seconds the browser remembers to use HTTPS only (IIS's default,
      0, tells it to forget; a year, 31536000, is what preload lists ask for).
    - ``include_subdomains``: the rule covers every subdomain too.
    - ``preload``: the ``preload`` token (asks to be put in browsers' built-in
      lists: only with ``include_subdomains`` and a max-age of a year or more).
    - ``redirect_http_to_https``: answer every plain-HTTP request with a redirect to
      the same host and target over HTTPS, before any other module looks at it
      (authentication never asks for credentials in clear text).
    - ``redirect_status``: 301 (IIS's, a browser may turn a POST into a GET) or 308
      (keeps the method and body).
    - ``https_port``: the port of the redirect's target; by default the site's first
      ``https://`` binding's. Port 443 is left out of the URL.
    """

    key = "hsts"
    allowed = Where.SERVER | Where.APPLICATION

    enabled: bool = False
    max_age: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 0
    include_subdomains: bool = False
    preload: bool = False
    redirect_http_to_https: bool = False
    redirect_status: Literal[301, 308] = 301
    https_port: Annotated[int, Meta(ge=1, le=65535)] | None = None

    def __post_init__(self) -> None:
        if self.preload and not (self.include_subdomains and self.max_age >= 31_536_000):
            raise ValueError(
                "preload: browsers' preload lists take only include_subdomains = true "
                "and max_age of a year (31536000) or more"
            )

    @cached_property
    def header(self) -> bytes | None:
        """The ``Strict-Transport-Security`` value (None: not sent)."""
        if not self.enabled:
            return None
        value = f"max-age={self.max_age}"
        if self.include_subdomains:
            value += "; includeSubDomains"
        if self.preload:
            value += "; preload"
        return value.encode("ascii")
