"""``[dynamic_ip_security]``: deny clients that send too much (IIS ``dynamicIpSecurity``).

The counting settings of an effective section become one
:class:`~colonnade.providers.client_counters.Policy`; every URL whose settings
are the same shares one set of counters per client.
"""

from __future__ import annotations

import zlib
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta

from colonnade.config.sections import Section, Where
from colonnade.providers.redis import safe_url

#: IIS's ``denyAction`` values, spelt as IIS (and ``security.ip``) spell them.
DenyAction = Literal["Unauthorized", "Forbidden", "NotFound", "AbortRequest"]

#: The status of each deny action; the substatus says why.
DENY_STATUS = {"Unauthorized": 401, "Forbidden": 403, "NotFound": 404, "AbortRequest": 0}


class DynamicIpSection(Section, frozen=True, dict=True):
    """Dynamic IP restrictions (IIS ``dynamicIpSecurity``): refuse a client that
    has too many requests in flight (IIS 403.501) or sends them too fast
    (403.502), counted per client address across every worker of the server (a
    shared-memory table) or, with ``redis_url``, across every node of a farm.

    The client is ``request.client``: behind a reverse proxy enable
    ``security.trusted_proxies`` so that it is the real client. Only requests
    let through count towards the rate, so a client that keeps asking is served
    at the configured rate and refused beyond it. Requests from a Unix socket
    (no IP address) are never counted. Every URL whose counting settings (and
    site) are the same shares the counters of a client; a location with other
    limits (a login page) has its own.
    """

    key = "dynamic_ip_security"
    locked = True
    allowed_keys: ClassVar[dict[str, Where]] = {
        "max_clients": Where.SERVER,
        "store": Where.SERVER,
        "redis_url": Where.SERVER,
        "redis_failure": Where.SERVER,
        "redis_timeout": Where.SERVER,
        "redis_prefix": Where.SERVER,
    }

    deny_by_concurrent_requests: bool = False
    """Refuse a request while the client has `max_concurrent_requests` requests
    in flight (IIS `denyByConcurrentRequests enabled`)."""
    max_concurrent_requests: Annotated[int, Meta(ge=1, le=1_000_000)] = 5
    """Requests one client may have in flight at once."""
    deny_by_request_rate: bool = False
    """Refuse requests beyond `max_requests` per `interval` (IIS
    `denyByRequestRate enabled`)."""
    max_requests: Annotated[int, Meta(ge=1, le=100_000_000)] = 20
    """Requests one client may make in any sliding window of `interval`."""
    interval: Annotated[float, Meta(ge=0.001, le=86_400)] = 0.2
    """The sliding window, in seconds (IIS `requestIntervalInMilliseconds` 200)."""
    deny_by_auth_failures: bool = False
    """Refuse every request of a client that failed to log on (a 401.1 from an
    authentication module) `max_auth_failures` times in `auth_failure_interval`
    (not in IIS: brute-force protection for Basic, forms and bearer logons)."""
    max_auth_failures: Annotated[int, Meta(ge=1, le=1_000_000)] = 10
    """Failed logons allowed per client in `auth_failure_interval`."""
    auth_failure_interval: Annotated[float, Meta(ge=0.001, le=86_400)] = 300.0
    """The sliding window of `max_auth_failures`, in seconds."""
    ipv6_prefix_length: Annotated[int, Meta(ge=32, le=128)] = 64
    """IPv6 clients are counted by this prefix of their address (IPv4 clients by
    their address). Not in IIS, which counts each address: one IPv6 host or
    subscriber usually holds a whole /64 (SLAAC privacy addresses), so counting
    each /128 would give it every limit once per address it picks, and let it
    flush the table. 128 counts each address, as IIS does."""
    logging_only: bool = False
    """Refuse nothing; log each client that would be refused (IIS
    `enableLoggingOnlyMode`). The requests it would refuse are not counted, so
    the log shows exactly what enforcing would refuse."""
    deny_action: DenyAction = "Forbidden"
    """The answer to a refused request (IIS `denyAction`, as `security.ip`
    spells it): `"Unauthorized"` (401.501 / 401.502), `"Forbidden"` (403.501 /
    403.502), `"NotFound"` (404.501 / 404.502), `"AbortRequest"` (the connection
    is dropped, no answer)."""
    deny_status: Annotated[int, Meta(ge=0, le=599)] = 0
    """A status that replaces the deny action's (not for `"AbortRequest"`), such
    as 429 (Too Many Requests); 0 keeps the deny action's. A 429 or 503 carries
    `Retry-After`: the seconds until the client's window has room again."""
    max_clients: Annotated[int, Meta(ge=8, le=262_144)] = 65_536
    """Clients the shared table keeps (64 bytes each, in the server's 32 MiB of
    shared memory; rounded up to a power of two): when it is full, a client
    seen least recently is forgotten (of the 8 that share a slot set). A
    changed value takes a new table (the old one's memory comes back when the
    master restarts)."""
    store: Literal["shared_memory", "redis"] = "shared_memory"
    """Where the counters are: `"shared_memory"`, the server's (every worker of
    this server counts together), or `"redis"`, the server's `[redis]` (every
    node of a farm sharing that Redis counts together; keys under its
    `key_prefix` + `"dynip:"`)."""
    redis_url: str = ""
    """Deprecated: set `store = "redis"` and the server's `[redis]` table. Count
    in this Redis (with its own connection pool, `redis_timeout` and
    `redis_prefix`): `"redis://host:6379/0"` (`rediss://` for TLS,
    `unix:///path` for a socket; a password in it is redacted by `colonnade
    config show`). Empty: as `store` says."""
    redis_failure: Literal["open", "closed"] = "open"
    """While Redis cannot be reached: `"open"` lets every request through
    uncounted, `"closed"` refuses every request (503 with `Retry-After`). Said
    once in the log when it happens and once when Redis is back."""
    redis_timeout: Annotated[float, Meta(gt=0, le=10)] = 0.25
    """With `redis_url` (deprecated): seconds to wait for Redis (connecting and
    each answer) before treating it as unreachable. With `store = "redis"`,
    `[redis]`'s timeouts apply."""
    redis_prefix: Annotated[str, Meta(min_length=1, max_length=100)] = "colonnade:dynip:"
    """With `redis_url` (deprecated): prefix of the Redis keys (one hash per
    client and policy)."""

    def __post_init__(self) -> None:
        if self.redis_url and self.store == "redis":
            raise ValueError(
                'redis_url: not with store = "redis" (which uses the server\'s [redis])'
            )
        if self.deny_status and not 400 <= self.deny_status <= 599:
            raise ValueError(
                f"deny_status: {self.deny_status} is not an error status (400 to 599, or 0)"
            )

    def redis_key(self) -> str | None:
        """``store`` when it is ``"redis"`` (the server's ``[redis]`` table)."""
        return "store" if self.store == "redis" else None

    def shown(self, key: str, value: Any) -> Any:
        """The Redis URL without its password (``colonnade config show``)."""
        if key == "redis_url" and isinstance(value, str):
            return safe_url(value)
        return value

    @cached_property
    def active(self) -> bool:
        """Whether anything is checked or counted here (read per request: kept)."""
        return (
            self.deny_by_concurrent_requests
            or self.deny_by_request_rate
            or self.deny_by_auth_failures
        )

    def counting(self) -> tuple[int, int, int, int, int, int]:
        """The counting settings: (max concurrent, max requests, interval ms, max
        failures, failure interval ms, IPv6 prefix length), 0 where a limit is off."""
        return (
            self.max_concurrent_requests if self.deny_by_concurrent_requests else 0,
            self.max_requests if self.deny_by_request_rate else 0,
            max(1, round(self.interval * 1000)),
            self.max_auth_failures if self.deny_by_auth_failures else 0,
            max(1, round(self.auth_failure_interval * 1000)),
            self.ipv6_prefix_length,
        )

    @cached_property
    def deny(self) -> tuple[int, bool]:
        """(status of a refusal, whether it carries ``Retry-After``); status 0: abort."""
        status = DENY_STATUS[self.deny_action]
        if status and self.deny_status:
            status = self.deny_status
        return status, status in (429, 503)


def scope_of(site: str, counting: tuple[int, int, int, int, int, int]) -> int:
    """The nonzero 32-bit scope of a policy: the same for the same site and
    counting settings on every worker and every node."""
    return zlib.crc32(repr((site, counting)).encode()) | 1
