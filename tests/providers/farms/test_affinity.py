"""Member states (draining, disabled, down) and ARR's client-affinity cookie."""

from __future__ import annotations

from typing import Any

from colonnade.core import farms as farm_states
from colonnade.providers.farms import Farm, Lease, farm_for
from colonnade.testing.harness import make_context
from tests.providers.farms.conftest import settings


def affine(count: int = 3, **extra: Any) -> Farm:
    return farm_for(settings(count, affinity=True, **extra), name="app")


def request(cookie: bytes | None = None, target: str = "/") -> Any:
    headers = {"Cookie": cookie.decode()} if cookie is not None else {}
    return make_context(target=target, headers=headers)


def cookie_pair(lease: Lease) -> bytes:
    """``name=value`` of the lease's Set-Cookie (what the client sends back)."""
    assert lease.set_cookie is not None
    return lease.set_cookie.partition(b";")[0]


def served(farm: Farm, ctx: Any) -> Lease:
    lease = farm.choose(ctx)
    assert lease is not None
    lease.finished("ok", 0.01)
    return lease


def test_the_first_answer_sets_an_opaque_http_only_cookie() -> None:
    farm = affine()
    lease = served(farm, request())
    assert lease.set_cookie is not None
    name, _, rest = lease.set_cookie.partition(b"=")
    value, _, attributes = rest.partition(b";")
    assert name == b"ARRAffinity"
    assert len(value) == 32 and all(c in b"0123456789abcdef" for c in value)
    # Opaque: no address or name of the member in it.
    assert b"10.0.0" not in lease.set_cookie and b"8080" not in lease.set_cookie
    assert b"HttpOnly" in attributes and b"Path=/" in attributes
    assert b"Secure" not in attributes
    https = request()
    https.request.scheme = "https"
    assert b"; Secure" in (served(farm, https).set_cookie or b"")


def test_a_client_with_the_cookie_sticks_to_its_member() -> None:
    farm = affine()
    first = served(farm, request())
    cookie = cookie_pair(first)
    for i in range(10):
        again = served(farm, request(cookie, f"/page/{i}"))
        assert again.member is first.member
        assert again.set_cookie is None  # the client has it already
    # Other clients are still spread.
    others = {served(farm, request()).member for _ in range(6)}
    assert len(others) == 3


def test_the_cookie_is_found_among_others_and_a_forged_one_is_ignored() -> None:
    farm = affine(affinity_cookie="STICKY")
    first = served(farm, request())
    pair = cookie_pair(first)
    assert pair.startswith(b"STICKY=")
    mixed = b"a=1; STICKY=ffffffffffffffffffffffffffffffff; " + pair + b"; b=2"
    assert served(farm, request(mixed)).member is first.member
    forged = served(farm, request(b"STICKY=10.0.0.1:8080"))
    assert forged.set_cookie is not None  # a new, real cookie


def test_draining_keeps_affine_clients_and_takes_no_new_ones() -> None:
    farm = affine()
    first = served(farm, request())
    cookie = cookie_pair(first)
    member = first.member
    in_flight = farm.choose(request(cookie))
    assert in_flight is not None and in_flight.member is member
    farm_states.set_admin({"app": {member.name: "draining"}})
    assert member.state == "draining"
    # Its client stays; a request in flight finishes normally.
    assert served(farm, request(cookie)).member is member
    in_flight.finished("ok", 0.01)
    assert member.in_flight == 0
    # New clients never reach it.
    assert member not in {served(farm, request()).member for _ in range(20)}
    # Enabled again: new clients reach it again.
    farm_states.set_admin({})
    assert member in {served(farm, request()).member for _ in range(6)}


def test_a_disabled_or_down_member_loses_its_clients_with_a_new_cookie() -> None:
    farm = affine(health={"failures": 1})
    first = served(farm, request())
    cookie = cookie_pair(first)
    member = first.member
    farm_states.set_admin({"app": {member.name: "disabled"}})
    moved = served(farm, request(cookie))
    assert moved.member is not member and moved.set_cookie is not None
    assert cookie_pair(moved) != cookie
    # The new cookie sticks to the new member.
    assert served(farm, request(cookie_pair(moved))).member is moved.member
    # The new member goes down (one failure is the limit here): over again.
    broken = farm.choose(request(cookie_pair(moved)))
    assert broken is not None
    broken.finished("connect_failed", 0.001)
    assert moved.member.state == "unavailable"
    third = served(farm, request(cookie_pair(moved)))
    assert third.member not in (member, moved.member) and third.set_cookie is not None


def test_retry_gives_a_cookie_for_the_new_member() -> None:
    farm = affine(2)
    first = farm.choose(request())
    assert first is not None
    retried = farm.retry(request(), first)
    assert retried is not None and retried.member is not first.member
    assert retried.set_cookie is not None and cookie_pair(retried) != cookie_pair(first)


def test_all_members_draining_or_disabled_means_none() -> None:
    farm = farm_for(settings(2), name="app")
    a, b = farm.members
    farm_states.set_admin({"app": {a.name: "draining", b.name: "disabled"}})
    assert farm.choose(request()) is None
    assert [state for _, state in farm.states()] == ["draining", "unavailable"]


def test_the_operators_states_reach_farms_made_later_and_survive_a_reload() -> None:
    farm_states.set_admin({"app": {"10.0.0.2:8080": "disabled"}})
    farm = farm_for(settings(2), name="app")
    assert [state for _, state in farm.states()] == ["available", "unavailable"]
    farm_for(settings(3), name="app")  # a reload adding a member
    assert [state for _, state in farm.states()] == ["available", "unavailable", "available"]
