"""A farm in this worker process: its members, its policy, leases and affinity."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

# The function itself, not time's attribute: compiled code reads a module global
# cheaper than it looks up an attribute of another module (twice per request).
from time import monotonic
from typing import TYPE_CHECKING, Literal

from colonnade.config.schema import FarmSettings
from colonnade.core import farms as farm_states
from colonnade.core.httputil import cookie_attributes, cookie_values
from colonnade.providers.farms.health import Prober
from colonnade.providers.farms.members import ADMIN_STATES, Admin, Member
from colonnade.providers.farms.policies import Policy, make_policy

if TYPE_CHECKING:
    from colonnade.core.context import Context

log = logging.getLogger("colonnade.farms")

#: What a handler says of a request a lease was taken for.
Outcome = Literal["ok", "connect_failed", "failed"]

#: Affinity cookies of one name a request may carry that are looked at (a client
#: may send several: for other paths, or forged).
MAX_AFFINITY_COOKIES = 4


def _admin(state: str) -> Admin:
    for known in ADMIN_STATES:
        if state == known:
            return known
    log.warning("unknown farm member state %r taken as enabled", state)
    return "enabled"


class Lease:
    """One request's use of a member, from :meth:`Farm.choose` (or
    :meth:`Farm.retry`) to :meth:`finished`.

    ``member`` is where to send the request (``member.name`` for logs;
    ``member.host``/``member.port`` or ``member.unix_path`` to connect);
    ``set_cookie`` is a ``Set-Cookie`` value the handler adds to the response
    (client affinity), or None.
    """

    __slots__ = ("_done", "_farm", "member", "set_cookie", "started")

    def __init__(self, farm: Farm, member: Member, set_cookie: bytes | None) -> None:
        self._farm = farm
        self._done = False
        self.member = member
        self.set_cookie = set_cookie
        self.started = monotonic()

    def finished(self, outcome: Outcome, elapsed: float) -> None:
        """Report how the request went (exactly once; a second call is ignored):
        ``"ok"`` for any answer from the member, ``"connect_failed"`` when no
        connection could be made, ``"failed"`` for a reset, a timeout or a broken
        answer after connecting. ``elapsed``: seconds (least response time)."""
        if self._done:
            return
        self._done = True
        self._farm._finished(self.member, outcome, elapsed)

    def __repr__(self) -> str:
        return f"<Lease {self.member.name}{' done' if self._done else ''}>"


class Farm:
    """The live state of one ``[farms.NAME]`` in this process (see
    :func:`colonnade.providers.farms.farm_for`)."""

    def __init__(self, name: str, settings: FarmSettings) -> None:
        self.name = name
        self.settings = settings
        self.members: list[Member] = []
        self._by_name: dict[str, Member] = {}
        self._by_cookie: dict[bytes, Member] = {}
        self.policy: Policy = make_policy(settings.algorithm, settings.hash_by)
        self._cookie_eq = b""
        self._cookie_tail = b""
        self._cookie_tail_secure = b""
        self._prober: Prober | None = None
        self._equal: list[FarmSettings] = []
        self._probe_url = False
        self._affinity = False
        # The one member of a farm of one, without affinity (None: otherwise):
        # choose() goes straight to it while it takes any request (Member.plain).
        self._single: Member | None = None
        self.update(settings)

    # -- configuration -------------------------------------------------------------------

    def update(self, settings: FarmSettings) -> None:
        """Take a reloaded configuration: members that keep their name keep their
        state and counters; new ones start healthy and enabled."""
        old = self._by_name
        before = [(m.name, m.address) for m in self.members]
        members = []
        for config in settings.members:
            member = old.get(config.key)
            if member is None:
                member = Member(self.name, config)
            else:
                member.configure(config)
            members.append(member)
        changed_policy = (settings.algorithm, settings.hash_by) != (
            self.settings.algorithm,
            self.settings.hash_by,
        )
        if self._prober is not None and (
            settings.health != self.settings.health
            or [(m.name, m.address) for m in members] != before
        ):
            # Probes of the old members or settings: new ones start at the next choose.
            self._prober.stop()
            self._prober = None
        self.settings = settings
        self._probe_url = settings.health.url is not None
        self._affinity = settings.affinity
        self._equal = []
        self.members = members
        self._single = members[0] if len(members) == 1 and not settings.affinity else None
        self._by_name = {m.name: m for m in members}
        self._by_cookie = {m.cookie.encode(): m for m in members}
        if changed_policy:
            self.policy = make_policy(settings.algorithm, settings.hash_by)
        # New members take the operator's states too (kept by the master).
        self.set_admin(farm_states.admin_of(self.name))
        name = settings.affinity_cookie.encode()
        self._cookie_eq = name + b"="
        self._cookie_tail = cookie_attributes("/", "", False, "Lax")
        self._cookie_tail_secure = cookie_attributes("/", "", True, "Lax")

    def takes(self, settings: FarmSettings) -> bool:
        """Whether ``settings`` are the farm's (the same object, or an equal one:
        another generation's decoding of the same table). Cheap when called per
        request: an object once found equal is remembered until the next update."""
        if settings is self.settings or any(settings is s for s in self._equal):
            return True
        if settings != self.settings:
            return False
        if len(self._equal) < 8:
            self._equal.append(settings)
        return True

    def member(self, name: str) -> Member | None:
        """The member called ``name`` (None: no such member)."""
        return self._by_name.get(name)

    def set_admin(self, states: Mapping[str, str]) -> None:
        """The administrative states the operator set (``colonnade farm drain|
        enable|disable``), by member name; a member not named is enabled."""
        for member in self.members:
            state = _admin(states.get(member.name, "enabled"))
            if state != member.admin:
                log.info("farm %s: member %s is %s", self.name, member.name, state)
                member.set_admin(state)

    # -- choosing ------------------------------------------------------------------------

    def choose(self, ctx: Context | None) -> Lease | None:
        """A lease on the member for this request, or None when no member may take
        it (every one down, disabled, draining or at its limit: the handler
        answers 502.4).

        With affinity, a request whose cookie names a member that is available or
        draining (and below its limit) goes there; otherwise the farm's algorithm
        picks among the available members, and the lease carries a new cookie.
        """
        if self._probe_url:
            self._probing()
        single = self._single
        if single is not None and single.plain:
            return self._lease(single, None)  # what _pick would answer, sooner
        now = monotonic()
        bound = self._bound(ctx) if self._affinity else None
        if bound is not None and bound.serves(now, bound=True):
            return self._lease(bound, None)
        member = self._pick(ctx, now, None)
        if member is None:
            return None
        return self._lease(member, self._cookie_for(member, ctx))

    def retry(self, ctx: Context | None, failed: Lease) -> Lease | None:
        """A lease on another member than ``failed``'s, for the one retry a handler
        makes when connecting failed (an idempotent request whose body was not
        sent); None when there is none. ``failed`` is still to be finished by the
        handler if it was not yet. With affinity, the new lease carries a cookie
        for the new member."""
        member = self._pick(ctx, monotonic(), failed.member)
        if member is None:
            return None
        return self._lease(member, self._cookie_for(member, ctx))

    def _probing(self) -> None:
        """Start the active probes on the running loop (once per loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside a loop (a test): no probes
        prober = self._prober
        if prober is not None and prober.loop is loop:
            return
        if prober is not None:
            prober.stop()
        self._prober = Prober(self.members, self.settings.health)

    async def close(self) -> None:
        """Stop the active probes (a handler's shutdown); the next :meth:`choose`
        starts them again, so a farm still in use after a reload keeps probing."""
        prober, self._prober = self._prober, None
        if prober is not None:
            await prober.close()

    def _pick(self, ctx: Context | None, now: float, exclude: Member | None) -> Member | None:
        candidates = [
            m for m in self.members if (m.plain or m.serves(now, bound=False)) and m is not exclude
        ]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return self.policy.pick(candidates, ctx)

    def _lease(self, member: Member, set_cookie: bytes | None) -> Lease:
        member.in_flight += 1
        member.requests += 1
        return Lease(self, member, set_cookie)

    # -- affinity ------------------------------------------------------------------------

    def _bound(self, ctx: Context | None) -> Member | None:
        """The member the request's affinity cookie names (None: no cookie, or one
        naming no member of this farm)."""
        if ctx is None:
            return None
        for value in cookie_values(ctx.request.headers, self._cookie_eq, MAX_AFFINITY_COOKIES):
            member = self._by_cookie.get(value)
            if member is not None:
                return member
        return None

    def _cookie_for(self, member: Member, ctx: Context | None) -> bytes | None:
        if not self.settings.affinity:
            return None
        secure = ctx is not None and ctx.request.scheme == "https"
        tail = self._cookie_tail_secure if secure else self._cookie_tail
        return self._cookie_eq + member.cookie.encode() + tail

    # -- outcomes ------------------------------------------------------------------------

    def _finished(self, member: Member, outcome: Outcome, elapsed: float) -> None:
        member.in_flight -= 1
        now = monotonic()
        if outcome == "ok":
            member.succeeded(elapsed, now)
        else:
            reason = "connection failed" if outcome == "connect_failed" else "request failed"
            member.failed(reason, self.settings.health, now, probed=self.probed)

    @property
    def probed(self) -> bool:
        """Whether an active probe brings members back (``health.url`` is set)."""
        return self.settings.health.url is not None

    # -- reporting -----------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int | float | str]]:
        """Every member's counters and state, by name."""
        return {m.name: m.stats() for m in self.members}

    def states(self) -> Sequence[tuple[str, str]]:
        """``(member, state)`` pairs, in configuration order."""
        return [(m.name, m.state) for m in self.members]

    def __repr__(self) -> str:
        return f"<Farm {self.name}: {', '.join(f'{n} {s}' for n, s in self.states())}>"
