"""The request counters of this process, by site: what ``GET /metrics`` adds up.

How this works
--------------
Each site has one :class:`SiteCounters` for the life of the process (a reload
builds new applications, which find the same object by name, so counters never
go back). An :class:`~colonnade.core.app.Application` holds its site's object,
and the engine calls :meth:`SiteCounters.done` once per request, where the
request ends: the clock reading of its end (its access log line's, kept on the
context: ``core.context.end_clock``; read here where nothing logged), five
attribute reads of the request's objects, then comparisons on constants and
three or four additions to C integers (no list item, no dict, no allocation), no
lock (a worker is one thread). The module
is compiled with mypyc (``[tool.colonnade.mypyc]``): the compiled engine then
calls ``done`` as a C function on a native object (callgrind, asgi-hello: about
1,300 instructions a request, two thirds of them the five attribute reads of
interpreted objects; 3,000 with list items and a bisect, 8,000 interpreted). The
worker sends :func:`snapshot` with its periodic statistics and when the master
asks; the master sums the workers (``pools/metrics.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from colonnade.core.context import COMPILED, TransportWriter

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

# Final: compiled, a C static, where a name imported from a module is looked up
# in the module's dict at every call.
_monotonic: Final[Callable[[], float]] = time.monotonic


class SiteCounters:
    """One site's request counters in this process.

    Every counter is an attribute of its own, not an item of a list: compiled, an
    ``int`` attribute is a C integer that ``+= 1`` adds to in place, where a list
    item is a Python object that each increment past 256 replaces with a new one.
    The request's status class and duration bucket are found by comparisons on
    constants (the ladder in :meth:`count` follows :data:`BUCKETS`; a test holds
    them together), then one attribute is added to; the lists the master adds up
    are built only when asked (:meth:`snapshot`).
    """

    __slots__ = (
        "auth_failures",
        "bytes_out",
        "d0",
        "d1",
        "d2",
        "d3",
        "d4",
        "d5",
        "d6",
        "d7",
        "d8",
        "d9",
        "d10",
        "d11",
        "d12",
        "d13",
        "denied",
        "duration_sum",
        "s1xx",
        "s2xx",
        "s3xx",
        "s4xx",
        "s5xx",
        "s_other",
    )

    def __init__(self) -> None:
        #: Requests answered, by status class (:data:`STATUS_CLASSES`).
        self.s_other = 0
        self.s1xx = 0
        self.s2xx = 0
        self.s3xx = 0
        self.s4xx = 0
        self.s5xx = 0
        #: Requests per duration bucket ``d0`` … ``d13`` (not cumulative: ``d{i}``
        #: counts durations in (BUCKETS[i - 1], BUCKETS[i]]; ``d13`` is +Inf).
        self.d0 = 0
        self.d1 = 0
        self.d2 = 0
        self.d3 = 0
        self.d4 = 0
        self.d5 = 0
        self.d6 = 0
        self.d7 = 0
        self.d8 = 0
        self.d9 = 0
        self.d10 = 0
        self.d11 = 0
        self.d12 = 0
        self.d13 = 0
        self.duration_sum = 0.0
        #: The response bytes sent (head and body, before TLS).
        self.bytes_out = 0
        #: 401 answers (no or wrong credentials), and 403s refusing the client's address.
        self.auth_failures = 0
        self.denied = 0

    def done(self, ctx: Context) -> None:
        """Count the request of ``ctx``, which has ended."""
        # The request's end as its access log line read it (which comes first, in
        # the walk and on a response cache hit): one clock read for both.
        ended = ctx.ended_at
        if not ended:
            ended = ctx.ended_at = _monotonic()
        elapsed = ended - ctx.started
        response = ctx.response
        status = response.status
        writer = ctx.writer
        if COMPILED and isinstance(writer, TransportWriter):
            native: TransportWriter = writer  # the transport's: a native read
            sent = native.bytes_sent
        else:
            sent = writer.bytes_sent
        if elapsed <= 0.001 and 200 <= status < 300:
            # Most requests: count's first bucket and class, inline (interpreted,
            # its call costs more than these four additions).
            self.duration_sum += elapsed
            self.bytes_out += sent
            self.d0 += 1
            self.s2xx += 1
            return
        # The substatus matters for a 403 only: other requests do not read it.
        self.count(elapsed, status, response.substatus if status == 403 else 0, sent)

    def count(self, elapsed: float, status: int, substatus: int, sent: int) -> None:
        """Count one request that took ``elapsed`` seconds, answered ``status``
        (``substatus``) and sent ``sent`` bytes."""
        self.duration_sum += elapsed
        self.bytes_out += sent
        # Prometheus buckets are "less or equal" (bisect_left on BUCKETS); the
        # shortest first: most requests stop at the first comparison.
        if elapsed <= 0.001:
            self.d0 += 1
        elif elapsed <= 0.0025:
            self.d1 += 1
        elif elapsed <= 0.005:
            self.d2 += 1
        elif elapsed <= 0.01:
            self.d3 += 1
        elif elapsed <= 0.025:
            self.d4 += 1
        elif elapsed <= 0.05:
            self.d5 += 1
        elif elapsed <= 0.1:
            self.d6 += 1
        elif elapsed <= 0.25:
            self.d7 += 1
        elif elapsed <= 0.5:
            self.d8 += 1
        elif elapsed <= 1.0:
            self.d9 += 1
        elif elapsed <= 2.5:
            self.d10 += 1
        elif elapsed <= 5.0:
            self.d11 += 1
        elif elapsed <= 10.0:
            self.d12 += 1
        else:
            self.d13 += 1
        if 200 <= status < 300:
            self.s2xx += 1
        elif 300 <= status < 400:
            self.s3xx += 1
        elif 400 <= status < 500:
            self.s4xx += 1
            if status == 401:
                self.auth_failures += 1
            elif status == 403 and 501 <= substatus <= 504:  # DENIED_SUBSTATUSES
                self.denied += 1
        elif 500 <= status < 600:
            self.s5xx += 1
        elif 100 <= status < 200:
            self.s1xx += 1
        else:
            self.s_other += 1

    @property
    def requests(self) -> list[int]:
        """Requests answered, by status class (index: :data:`STATUS_CLASSES`)."""
        return [self.s_other, self.s1xx, self.s2xx, self.s3xx, self.s4xx, self.s5xx]

    @property
    def duration(self) -> list[int]:
        """Requests per duration bucket (not cumulative; the last is +Inf)."""
        return [
            self.d0,
            self.d1,
            self.d2,
            self.d3,
            self.d4,
            self.d5,
            self.d6,
            self.d7,
            self.d8,
            self.d9,
            self.d10,
            self.d11,
            self.d12,
            self.d13,
        ]

    def snapshot(self, executing: int = 0) -> list[float]:
        """The counters as one flat list (its layout: :data:`STARTED` and the
        slices and indexes after it); ``executing``: the site's requests under way
        now (begun = answered + executing)."""
        requests = self.requests
        return [
            sum(requests) + executing,
            *requests,
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
