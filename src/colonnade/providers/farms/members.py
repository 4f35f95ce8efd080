"""One member of a farm in this worker process: where it is, its state, its counters.

A member's state has two independent parts:

- the **administrative** state an operator sets (``colonnade farm drain|enable|
  disable``): ``enabled``, ``draining`` (no new requests but those bound to it by
  affinity), ``disabled`` (no new requests at all);
- its **health**, which this process finds out by itself (passive detection and
  active probes): ``healthy`` or down, with the reason.

:attr:`Member.state` combines them into what ``colonnade farms`` shows:
``available``, ``draining`` or ``unavailable``. Requests in flight always finish:
no state takes a request away from the member that has it.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import deque
from typing import Literal

from colonnade.config.schema import FarmHealth, FarmMember, parse_upstream

log = logging.getLogger("colonnade.farms")

#: What an operator sets.
Admin = Literal["enabled", "draining", "disabled"]
ADMIN_STATES: tuple[Admin, ...] = ("enabled", "draining", "disabled")

#: The seconds over which an unused member's response time fades (least response
#: time): a member once slow is tried again after a while instead of never.
EWMA_FADE = 10.0
#: The weight of the newest response time in the moving average.
EWMA_ALPHA = 0.3


def affinity_id(farm: str, member: str) -> str:
    """The opaque id an affinity cookie carries for ``member`` of ``farm``: a hash
    of the names (the member's address is never shown to clients)."""
    digest = hashlib.blake2b(f"{farm}\0{member}".encode(), digest_size=16)
    return digest.hexdigest()


def name_seed(name: str) -> int:
    """A 64-bit number derived from ``name`` (request hashing mixes it with the key)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


class Member:
    """A farm member and what this process knows of it.

    ``name``, ``host``, ``port`` and ``unix_path`` are what a handler needs to
    connect and to log; the rest is the farm's bookkeeping.
    """

    __slots__ = (
        "_recent",
        "address",
        "admin",
        "cookie",
        "current",
        "down_reason",
        "ewma",
        "failures",
        "farm",
        "healthy",
        "host",
        "in_flight",
        "last_sample",
        "max_connections",
        "name",
        "plain",
        "port",
        "probation",
        "probe_failures",
        "probes",
        "requests",
        "retry_at",
        "seed",
        "unix_path",
        "weight",
    )

    def __init__(self, farm: str, config: FarmMember) -> None:
        self.name = config.key
        self.farm = farm
        self.cookie = affinity_id(farm, self.name)
        self.seed = name_seed(self.name)
        self.admin: Admin = "enabled"
        self.healthy = True
        #: Enabled, healthy and without a limit: takes any new request (the
        #: common case, checked first; kept by :meth:`_settle`).
        self.plain = True
        self.down_reason = ""
        #: Without a probe: when a member marked down gets requests again.
        self.retry_at = 0.0
        #: Back from ``retry_after``: its first failure marks it down again.
        self.probation = False
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.probes = 0
        self.probe_failures = 0
        #: The moving average of response times (seconds; 0: none measured yet).
        self.ewma = 0.0
        self.last_sample = 0.0
        #: Smooth weighted round robin's running score.
        self.current = 0
        self._recent: deque[float] = deque()
        self.address = config.address
        self.configure(config)

    def configure(self, config: FarmMember) -> None:
        """Take the (possibly changed) address, weight and limit of a reload. A
        new address is another server: what was known of the old one's health
        and response time is forgotten."""
        if self.address != config.address:
            self.mark_up(f"address changed to {config.address}")
            self.probation = False
            self.ewma = 0.0
        self.address = config.address
        self.host, self.port, self.unix_path = parse_upstream(config.address)
        self.weight = config.weight
        self.max_connections = config.max_connections
        self._settle()

    def _settle(self) -> None:
        self.plain = self.admin == "enabled" and self.healthy and not self.max_connections

    def set_admin(self, state: Admin) -> None:
        """Take the operator's state."""
        self.admin = state
        self._settle()

    @property
    def state(self) -> Literal["available", "draining", "unavailable"]:
        """``available``, ``draining`` or ``unavailable`` (down or disabled)."""
        if self.admin == "disabled" or not self.healthy:
            return "unavailable"
        return "draining" if self.admin == "draining" else "available"

    def at_limit(self) -> bool:
        """True while ``max_connections`` requests are in flight to it."""
        return 0 < self.max_connections <= self.in_flight

    def serves(self, now: float, *, bound: bool) -> bool:
        """Whether a new request may go to it: healthy (or due for a retry), not
        disabled, not at its limit, and enabled unless the request is ``bound``
        to it by affinity (a draining member keeps its clients)."""
        if self.plain:
            return True
        if self.admin == "disabled" or (self.admin == "draining" and not bound):
            return False
        if not self.healthy and not self._retry_due(now):
            return False
        return not self.at_limit()

    def _retry_due(self, now: float) -> bool:
        if self.retry_at and now >= self.retry_at:
            # Passive recovery (no probe): one request is let through; its outcome
            # decides (a failure marks it down again at once).
            self.mark_up("retry_after passed")
            self.probation = True
            return True
        return False

    # -- outcomes ----------------------------------------------------------------------

    def succeeded(self, elapsed: float, now: float) -> None:
        """A request got an answer from it after ``elapsed`` seconds."""
        self.probation = False
        if elapsed >= 0:
            if self.ewma:
                self.ewma += EWMA_ALPHA * (elapsed - self.ewma)
            else:
                self.ewma = elapsed
            self.last_sample = now
        if self._recent:
            self._recent.clear()

    def failed(self, reason: str, health: FarmHealth, now: float, *, probed: bool) -> None:
        """A request to it failed: ``failures`` of them within ``window`` (or one,
        on probation) mark it down; it comes back by the probe when the farm has
        one (``probed``), else after ``retry_after``."""
        self.failures += 1
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - health.window:
            recent.popleft()
        if not self.healthy:
            return
        if self.probation or len(recent) >= health.failures:
            count = 1 if self.probation else len(recent)
            self.mark_down(f"{count} failed request(s) within {health.window:g}s: {reason}")
            self.retry_at = 0.0 if probed else now + health.retry_after

    def mark_down(self, reason: str) -> None:
        """Take it out of rotation (for this process)."""
        if self.healthy:
            log.warning("farm %s: member %s is down: %s", self.farm, self.name, reason)
        self.healthy = False
        self.down_reason = reason
        self.probation = False
        self._settle()

    def mark_up(self, reason: str) -> None:
        """Put it back into rotation."""
        if not self.healthy:
            log.warning("farm %s: member %s is back: %s", self.farm, self.name, reason)
        self.healthy = True
        self.down_reason = ""
        self.retry_at = 0.0
        self._recent.clear()
        self._settle()

    def response_time(self, now: float) -> float:
        """The moving average response time, faded by the time since the last sample."""
        if not self.ewma:
            return 0.0
        return self.ewma * math.exp(-(now - self.last_sample) / EWMA_FADE)

    def stats(self) -> dict[str, int | float | str]:
        """The counters ``colonnade farms`` shows."""
        return {
            "state": self.state,
            "admin": self.admin,
            "healthy": int(self.healthy),
            "reason": self.down_reason,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "failures": self.failures,
            "response_ms": round(self.ewma * 1000, 3),
            "weight": self.weight,
        }

    def __repr__(self) -> str:
        return f"<Member {self.name} {self.state}>"
