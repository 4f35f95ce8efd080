"""The algorithms: least requests, least response time, request hash (consistent)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from colonnade.config.schema import FarmSettings
from colonnade.providers.farms import Lease, farm_for
from colonnade.providers.farms.members import Member
from colonnade.providers.farms.policies import RequestHash, key_hash, rendezvous
from colonnade.testing.harness import make_context
from tests.providers.farms.conftest import settings


def chosen(farm: Any, ctx: Any = None) -> Lease:
    lease = farm.choose(ctx)
    assert lease is not None
    return lease


# -- least requests ---------------------------------------------------------------------


def test_least_requests_picks_the_fewest_in_flight_per_weight() -> None:
    farm = farm_for(
        settings(
            [{"address": "http://a", "weight": 2}, {"address": "http://b"}],
            algorithm="least_requests",
        ),
        name="app",
    )
    held = [chosen(farm) for _ in range(6)]
    # a (weight 2) carries twice what b carries, whatever the order of ties.
    assert Counter(lease.member.name for lease in held) == {"a:80": 4, "b:80": 2}
    # Requests on a end: the next ones go to a until it is level with b again.
    for lease in [h for h in held if h.member.name == "a:80"][:3]:
        lease.finished("ok", 0.01)
    assert [chosen(farm).member.name for _ in range(3)] == ["a:80"] * 3


def test_least_requests_spreads_a_cold_farm() -> None:
    farm = farm_for(settings(3, algorithm="least_requests"), name="app")
    names = []
    for _ in range(6):
        lease = chosen(farm)
        names.append(lease.member.name)
        lease.finished("ok", 0.01)
    # Nothing in flight each time: ties are broken in turn, not always the first.
    assert Counter(names) == {m.name: 2 for m in farm.members}


# -- least response time ----------------------------------------------------------------


def test_least_response_time_prefers_the_fast_member() -> None:
    farm = farm_for(settings(2, algorithm="least_response_time"), name="app")
    fast, slow = farm.members
    # Each gets measured once (unmeasured members go first).
    first, second = chosen(farm), chosen(farm)
    assert {first.member, second.member} == {fast, slow}
    for lease in (first, second):
        lease.finished("ok", 0.005 if lease.member is fast else 0.5)
    picks = []
    for _ in range(20):
        lease = chosen(farm)
        picks.append(lease.member)
        lease.finished("ok", 0.005 if lease.member is fast else 0.5)
    assert picks.count(fast) == 20


def test_least_response_time_counts_requests_in_flight() -> None:
    farm = farm_for(settings(2, algorithm="least_response_time"), name="app")
    fast, slow = farm.members
    for member, elapsed in ((fast, 0.01), (slow, 0.035)):
        member.succeeded(elapsed, time.monotonic())
    held = [chosen(farm) for _ in range(5)]
    # fast: 0.01 * (n+1) stays below slow's 0.035 while n <= 2; then slow gets
    # one, and with it in flight (0.07) fast is ahead again.
    assert [lease.member for lease in held] == [fast, fast, fast, slow, fast]


def test_an_unused_members_response_time_fades() -> None:
    farm = farm_for(settings(1, algorithm="least_response_time"), name="app")
    member = farm.members[0]
    now = time.monotonic()
    member.succeeded(1.0, now - 30)
    assert member.ewma == 1.0
    assert member.response_time(now) < 0.06  # three fade periods later


def test_failures_do_not_make_a_member_look_fast() -> None:
    farm = farm_for(settings(1, algorithm="least_response_time"), name="app")
    lease = chosen(farm)
    lease.finished("ok", 0.2)
    chosen(farm).finished("connect_failed", 0.0001)
    assert farm.members[0].ewma == pytest.approx(0.2)


# -- request hash -----------------------------------------------------------------------


def hashed_farm(count: int, **extra: Any) -> FarmSettings:
    return settings(count, algorithm="request_hash", **extra)


def test_request_hash_sends_a_url_to_the_same_member() -> None:
    farm = farm_for(hashed_farm(3), name="app")
    first = {
        f"/item/{i}": chosen(farm, make_context(target=f"/item/{i}")).member for i in range(60)
    }
    again = {
        f"/item/{i}": chosen(farm, make_context(target=f"/item/{i}")).member for i in range(60)
    }
    assert first == again
    assert len(set(first.values())) == 3
    # The query is part of the url key, not of the path key.
    with_query = {chosen(farm, make_context(target=f"/item/1?v={i}")).member for i in range(40)}
    assert len(with_query) > 1
    by_path = farm_for(hashed_farm(3, hash_by="path"), name="by-path")
    same = {chosen(by_path, make_context(target=f"/item/1?v={i}")).member for i in range(40)}
    assert len(same) == 1


@pytest.mark.parametrize(
    ("hash_by", "headers"),
    [
        ("header:X-Tenant", {"X-Tenant": "acme"}),
        ("cookie:tenant", {"Cookie": "a=1; tenant=acme; b=2"}),
    ],
)
def test_request_hash_by_header_or_cookie(hash_by: str, headers: dict[str, str]) -> None:
    farm = farm_for(hashed_farm(4, hash_by=hash_by), name="app")
    picked = {chosen(farm, make_context(target=f"/{i}", headers=headers)).member for i in range(30)}
    assert len(picked) == 1
    # Without the header or cookie: weighted round robin.
    spread = [chosen(farm, make_context(target="/same")).member for _ in range(8)]
    assert len(set(spread)) == 4


def test_request_hash_by_client_address() -> None:
    farm = farm_for(hashed_farm(4, hash_by="client"), name="app")
    homes = {}
    for i in range(40):
        ctx = make_context(target=f"/page/{i}")
        ctx.request.client = (f"192.0.2.{i % 8}", 40000 + i)
        homes.setdefault(ctx.request.client[0], set()).add(chosen(farm, ctx).member)
    assert all(len(members) == 1 for members in homes.values())
    assert len({next(iter(m)) for m in homes.values()}) > 1


def members(count: int, **weights: int) -> list[Member]:
    out = []
    for i in range(count):
        name = f"node{i}"
        config = settings(
            [{"address": f"http://{name}", "name": name, "weight": weights.get(name, 1)}]
        )
        out.append(Member("app", config.members[0]))
    return out


def test_adding_a_fourth_member_moves_about_a_quarter_of_the_keys() -> None:
    keys = [key_hash(f"/objects/{i}".encode()) for i in range(20_000)]
    three, four = members(3), members(4)
    before = [rendezvous(three, k).name for k in keys]
    after = [rendezvous(four, k).name for k in keys]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert 0.23 < len(moved) / len(keys) < 0.27
    # Every key that moved went to the new member: none moved between old ones.
    assert {a for _, a in moved} == {"node3"}
    # The new member took its share from each old member evenly.
    shares = Counter(b for b, _ in moved)
    assert all(0.28 < shares[f"node{i}"] / len(moved) < 0.39 for i in range(3))


def test_a_member_down_moves_only_its_own_keys() -> None:
    keys = [key_hash(f"/k/{i}".encode()) for i in range(5000)]
    four = members(4)
    before = [rendezvous(four, k).name for k in keys]
    after = [rendezvous([m for m in four if m.name != "node1"], k).name for k in keys]
    for b, a in zip(before, after, strict=True):
        assert b == a or b == "node1"


def test_weights_give_their_share_of_the_keys() -> None:
    keys = [key_hash(f"/w/{i}".encode()) for i in range(20_000)]
    weighted = members(3, node0=2)
    share = Counter(rendezvous(weighted, k).name for k in keys)
    assert 0.47 < share["node0"] / len(keys) < 0.53


def test_request_hash_passes_over_a_member_at_its_limit() -> None:
    farm = farm_for(
        settings(
            [{"address": "http://a", "max_connections": 1}, {"address": "http://b"}],
            algorithm="request_hash",
        ),
        name="app",
    )
    policy = farm.policy
    assert isinstance(policy, RequestHash)
    # A URL whose home is a: the first request takes a, the second (a full) b.
    url = next(
        f"/u/{i}"
        for i in range(100)
        if rendezvous(farm.members, key_hash(f"/u/{i}".encode())).name == "a:80"
    )
    first = chosen(farm, make_context(target=url))
    second = chosen(farm, make_context(target=url))
    assert (first.member.name, second.member.name) == ("a:80", "b:80")
