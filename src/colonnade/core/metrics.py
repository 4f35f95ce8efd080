"""The request counters of this process, by site: what ``GET /metrics`` adds up.

How this works
--------------
Each site has one :class:`SiteCounters` for the life of the process (a reload
builds new applications, which find the same object by name, so counters never
go back). An :class:`~colonnade.core.app.Application` holds its site's object,
and the engine calls :meth:`SiteCounters.done` once per request, where the
request ends: a few integer additions and a bisect on a small tuple, no lock
(a worker is one thread) and no system call. The module is compiled with mypyc
(``[tool.colonnade.mypyc]``): the compiled engine then calls ``done`` as a C
function on a native object (callgrind, asgi-hello: about 3,000 instructions a
request where the interpreted class cost 8,000). The worker sends
:func:`snapshot` with its periodic statistics and when the master asks; the
master sums the workers (``pools/metrics.py``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from time import monotonic
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colonnade.core.context import Context

#: The upper bounds, in seconds, of the request duration histogram's buckets
#: (a last bucket, +Inf, takes the rest). Fixed: every worker counts into the
#: same buckets, so the master adds them up index by index.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: ``SiteCounters.requests`` index of a status: its class (1 to 5), 0 for any other.
STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")

#: IIS substatuses of a 403 that refuse the client's address: ``ip_security``'s
#: address and host name denials (503, 504) and ``dynamic_ip``'s (501, 502).
DENIED_SUBSTATUSES = frozenset({501, 502, 503, 504})


class SiteCounters:
    """One site's request counters in this process."""

    __slots__ = (
        "auth_failures",
        "bytes_out",
        "denied",
        "duration",
        "duration_sum",
        "requests",
    )

    def __init__(self) -> None:
        #: Requests answered, by status class (:data:`STATUS_CLASSES`).
        self.requests = [0] * len(STATUS_CLASSES)
        #: Requests per duration bucket (not cumulative; the last is +Inf).
        self.duration = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        #: The response bytes sent (head and body, before TLS).
        self.bytes_out = 0
        #: 401 answers (no or wrong credentials), and 403s refusing the client's address.
        self.auth_failures = 0
        self.denied = 0

    def done(self, ctx: Context) -> None:
        """Count the request of ``ctx``, which has ended."""
        elapsed = monotonic() - ctx.started
        self.duration[bisect_left(BUCKETS, elapsed)] += 1
        self.duration_sum += elapsed
        response = ctx.response
        status = response.status
        kind = status // 100
        if 0 < kind < 6:
            self.requests[kind] += 1
            if kind == 4:
                if status == 401:
                    self.auth_failures += 1
                elif status == 403 and response.substatus in DENIED_SUBSTATUSES:
                    self.denied += 1
        else:
            self.requests[0] += 1
        self.bytes_out += ctx.writer.bytes_sent

    def snapshot(self, executing: int = 0) -> list[float]:
        """The counters as one flat list (its layout: :data:`STARTED` and the
        slices and indexes after it); ``executing``: the site's requests under way
        now (begun = answered + executing)."""
        return [
            sum(self.requests) + executing,
            *self.requests,
            *self.duration,
            self.duration_sum,
            self.bytes_out,
            self.auth_failures,
            self.denied,
        ]


#: Where each counter lies in a :meth:`SiteCounters.snapshot`.
STARTED = 0
REQUESTS = slice(1, 1 + len(STATUS_CLASSES))
DURATION = slice(REQUESTS.stop, REQUESTS.stop + len(BUCKETS) + 1)
DURATION_SUM = DURATION.stop
BYTES_OUT = DURATION_SUM + 1
AUTH_FAILURES = DURATION_SUM + 2
DENIED = DURATION_SUM + 3
SNAPSHOT_SIZE = DURATION_SUM + 4

_SITES: dict[str, SiteCounters] = {}


def for_site(site: str) -> SiteCounters:
    """The counters of ``site`` in this process (made at first use, kept)."""
    found = _SITES.get(site)
    if found is None:
        found = _SITES[site] = SiteCounters()
    return found


def snapshot(executing: Mapping[str, int]) -> dict[str, list[float]]:
    """Every site's counters that counted something, by site name; ``executing``:
    the requests under way now by site (the engine's ``executing`` map, counted
    when asked, so a request pays no counter of its own for it)."""
    return {
        name: counters.snapshot(executing.get(name, 0))
        for name, counters in _SITES.items()
        if name in executing or any(counters.requests)
    }
