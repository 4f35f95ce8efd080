"""``[proxy]``: where ``handler.proxy`` forwards the requests mapped to it, and how
(IIS ARR's ``system.webServer/proxy`` settings, per URL here)."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

from msgspec import Meta

from colonnade.config.sections import Section
from colonnade.handlers.proxy.client import PoolSettings, Upstream, parse_upstream

#: Seconds (at least a millisecond, at most a day).
Seconds = Annotated[float, Meta(ge=0.001, le=86400)]


class ProxySection(Section, frozen=True, dict=True):
    """Reverse proxy settings: the upstream (or farm) and the forwarder's limits.

    A location may send its subtree elsewhere: ``upstream`` and ``farm`` are read
    per URL, as the handler mapping is. The section is locked: a ``web.toml``
    could otherwise point the server at any address it can reach (open it with
    ``[lock] proxy = "allow"``), as ARR's settings live in applicationHost.config.
    """

    key = "proxy"
    locked = True

    upstream: str = ""
    """The one server requests go to: ``http://HOST:PORT`` (port 80 if left out;
    an IPv6 address in brackets) or ``unix:/path/to/socket``."""
    farm: str = ""
    """The server farm requests go to (``[farms.NAME]`` in the server file),
    instead of ``upstream``."""
    preserve_host: bool = False
    """Send the client's ``Host`` to the upstream (ARR ``preserveHostHeader``);
    false: the upstream's own ``HOST:PORT`` (for a unix socket upstream the
    client's ``Host`` is always sent)."""
    reverse_rewrite_host: bool = True
    """Where ``Host`` was rewritten, rewrite the upstream's host in the response's
    ``Location`` and ``Content-Location`` URLs and ``Set-Cookie`` ``Domain`` back
    to the public host (ARR ``reverseRewriteHostInResponseHeaders``)."""
    forwarded_headers: bool = True
    """Add ``X-Forwarded-For``, ``X-Forwarded-Proto`` and, where the ``Host``
    sent is not the public host (the upstream's own ``HOST:PORT``),
    ``X-Forwarded-Host``. What the client sent of them is passed on only when
    the connection came from a trusted proxy (``[trusted_proxies]``); from
    anyone else they are replaced."""
    forwarded_rfc7239: bool = False
    """With ``forwarded_headers``, add the RFC 7239 ``Forwarded`` header too
    (``for``, ``proto`` and ``host`` of each hop). Off by default, as in nginx
    and most proxies: it repeats ``X-Forwarded-*``, and the upstream parses each
    field it gets."""
    connect_timeout: Seconds = 10.0
    """Seconds to connect to the upstream (or to wait for a free connection when
    ``max_connections`` are busy); then 502.3."""
    timeout: Seconds = 30.0
    """Seconds the upstream may go without sending a byte of its response, or
    without taking a byte of the request (ARR's proxy ``timeout``): 504.0 before
    the response began, a cut connection after."""
    continue_timeout: Seconds = 1.0
    """For a request with ``Expect: 100-continue``: seconds to wait for the
    upstream's ``100 Continue`` before sending the body anyway."""
    buffer_size: Annotated[int, Meta(ge=4096, le=64 * 1024 * 1024)] = 32 * 1024
    """Bytes of a response held to send it whole (with ``Content-Length``, so
    compression and caching apply) when it ends within them; a longer one is
    streamed. Also the most read from the upstream, or from the client's
    request body, before the other side has taken it: neither body is ever
    held whole."""
    max_response_head: Annotated[int, Meta(ge=1024, le=1024 * 1024)] = 64 * 1024
    """Bytes of the upstream's status line and headers; longer: 502.3."""
    max_connections: Annotated[int, Meta(ge=0, le=100000)] = 0
    """Connections of each worker to one upstream address; 0: no limit."""
    max_idle: Annotated[int, Meta(ge=0, le=100000)] = 32
    """Idle keep-alive connections kept per upstream address and worker (0: none).
    More that a burst of requests leaves idle close once they stayed idle a
    second (the oldest first), so the next burst reuses them."""
    idle_timeout: Seconds = 60.0
    """Seconds an idle keep-alive connection is kept."""

    def __post_init__(self) -> None:
        if self.upstream and self.farm:
            raise ValueError("set upstream or farm, not both")
        if self.upstream:
            _ = self.target  # a malformed address fails when the configuration loads

    @cached_property
    def target(self) -> Upstream | None:
        """``upstream`` parsed (None when it is not set)."""
        return parse_upstream(self.upstream) if self.upstream else None

    @cached_property
    def pool_settings(self) -> PoolSettings:
        """What the connection pools take of these settings."""
        return PoolSettings(
            connect_timeout=self.connect_timeout,
            idle_timeout=self.idle_timeout,
            max_connections=self.max_connections,
            max_idle=self.max_idle,
            max_head=self.max_response_head,
            high_water=self.buffer_size,
        )
