"""The farm API the proxy handler uses: farm_for, choose, leases, retry, limits."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from colonnade.config.load import from_dict
from colonnade.errors import ConfigError
from colonnade.providers.farms import Lease, farm_for
from colonnade.testing import build_engine
from colonnade.testing.harness import make_context
from tests.providers.farms.conftest import settings


def names(leases: list[Lease | None]) -> list[str]:
    return [lease.member.name if lease is not None else "-" for lease in leases]


def take(farm: Any, count: int) -> list[str]:
    """Names of ``count`` choices, each lease finished at once (nothing in flight)."""
    out = []
    for _ in range(count):
        lease = farm.choose(make_context())
        assert lease is not None
        out.append(lease.member.name)
        lease.finished("ok", 0.001)
    return out


# -- configuration ---------------------------------------------------------------------


def test_farm_tables_decode_with_defaults_and_member_names() -> None:
    config = from_dict(
        {
            "farms": {
                "app": {
                    "members": [
                        {"address": "http://10.0.0.5:8080", "weight": 2},
                        {"address": "http://backend"},
                        {"address": "http://[::1]:9000"},
                        {"address": "unix:/run/app.sock", "name": "local", "max_connections": 8},
                    ],
                    "health": {"url": "/health", "statuses": "200-299,404"},
                }
            }
        },
        source="colonnade.toml",
        base_dir="/",
    )
    farm = config.farms["app"]
    assert [m.key for m in farm.members] == ["10.0.0.5:8080", "backend:80", "[::1]:9000", "local"]
    assert farm.algorithm == "weighted_round_robin" and farm.affinity is False
    assert farm.affinity_cookie == "ARRAffinity"
    assert farm.health.status_ranges() == [(200, 299), (404, 404)]
    assert farm.health.interval == 30.0 and farm.health.timeout == 30.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"members": []}, "farms.app.members"),
        ({"members": [{"address": "https://a"}]}, "give http://host[:port] or unix:/path"),
        ({"members": [{"address": "http://a:0"}]}, "the port is a number"),
        ({"members": [{"address": "http://a/path"}]}, "only a host and port"),
        ({"members": [{"address": "unix:run.sock"}]}, "absolute socket path"),
        ({"members": [{"address": "http://a"}, {"address": "http://a:80"}]}, "two are named"),
        ({"members": [{"address": "http://a", "weight": 0}]}, "farms.app.members[0].weight"),
        ({"members": [{"address": "http://a"}], "algorithm": "random"}, "farms.app.algorithm"),
        ({"members": [{"address": "http://a"}], "hash_by": "body"}, "farms.app.hash_by"),
        ({"members": [{"address": "http://a"}], "health": {"statuses": "200-99"}}, "statuses"),
        ({"members": [{"address": "http://a"}], "health": {"url": "health"}}, "health.url"),
        ({"members": [{"address": "http://a"}], "colour": "red"}, "farms.app.colour"),
    ],
)
def test_bad_farm_tables_are_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"farms\.app") as caught:
        from_dict({"farms": {"app": table}}, source="colonnade.toml", base_dir="/")
    assert message in str(caught.value)


def test_application_farms_carries_the_tables_to_handlers() -> None:
    engine = build_engine(
        {
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"]}],
            "farms": {"app": {"members": [{"address": "http://127.0.0.1:9000"}]}},
        }
    )
    (runtime,) = engine.runtimes
    assert list(runtime.app.farms) == ["app"]
    assert runtime.app.farms["app"].members[0].key == "127.0.0.1:9000"


# -- farm_for and reloads --------------------------------------------------------------


def test_farm_for_keeps_one_live_farm_per_name_across_reloads() -> None:
    farm = farm_for(settings(2), name="app")
    lease = farm.choose(None)
    assert lease is not None
    member = lease.member
    # A reload with a third member and another weight: the same farm and the
    # same member object (its in-flight count survives), the new member added.
    reloaded = settings(
        [
            {"address": "http://10.0.0.1:8080", "weight": 3},
            {"address": "http://10.0.0.2:8080"},
            {"address": "http://10.0.0.3:8080"},
        ]
    )
    assert farm_for(reloaded, name="app") is farm
    assert [m.name for m in farm.members] == ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
    assert farm.member(member.name) is member and member.in_flight == 1
    assert farm.member("10.0.0.1:8080") is not None
    assert farm.member("10.0.0.1:8080").weight == 3  # type: ignore[union-attr]
    lease.finished("ok", 0.01)
    assert member.in_flight == 0
    assert farm_for(settings(1), name="other") is not farm


def test_farm_for_per_request_with_an_equal_table_changes_nothing() -> None:
    # A handler may call farm_for on every request, with the table of its own
    # generation: an equal table (another object) is no reload (a reload would
    # take the new table and make a new member list).
    first = settings(2)
    farm = farm_for(first, name="app")
    members = farm.members
    again = settings(2)
    for _ in range(3):
        assert farm_for(again, name="app") is farm
        assert farm.settings is first and farm.members is members
    assert farm.takes(again) and not farm.takes(settings(3))


def test_member_address_parts_for_the_handler() -> None:
    farm = farm_for(
        settings([{"address": "http://10.0.0.5:8080"}, {"address": "unix:/run/app.sock"}]),
        name="app",
    )
    tcp, unix = farm.members
    assert (tcp.name, tcp.host, tcp.port, tcp.unix_path) == (
        "10.0.0.5:8080",
        "10.0.0.5",
        8080,
        None,
    )
    assert (unix.name, unix.host, unix.port, unix.unix_path) == (
        "unix:/run/app.sock",
        "",
        0,
        "/run/app.sock",
    )


# -- weighted round robin -----------------------------------------------------------------


def test_weighted_round_robin_is_smooth() -> None:
    farm = farm_for(
        settings(
            [
                {"address": "http://a", "weight": 5},
                {"address": "http://b"},
                {"address": "http://c"},
            ]
        ),
        name="app",
    )
    # nginx's smooth order: the heavy member's turns are spread out.
    assert take(farm, 7) == ["a:80", "a:80", "b:80", "a:80", "c:80", "a:80", "a:80"]
    assert Counter(take(farm, 700)) == {"a:80": 500, "b:80": 100, "c:80": 100}


def test_equal_weights_take_turns() -> None:
    farm = farm_for(settings(3), name="app")
    assert take(farm, 6) == ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"] * 2


# -- leases, limits, retry -----------------------------------------------------------------


def test_a_lease_counts_in_flight_and_finishes_once() -> None:
    farm = farm_for(settings(1), name="app")
    lease = farm.choose(None)
    assert lease is not None and lease.set_cookie is None
    member = lease.member
    assert (member.in_flight, member.requests) == (1, 1)
    lease.finished("failed", 0.5)
    lease.finished("failed", 0.5)  # a second report changes nothing
    assert (member.in_flight, member.failures) == (0, 1)


def test_a_farm_of_one_goes_to_its_member_only_while_it_takes_requests() -> None:
    # A farm of one without affinity skips the choice while its member is plain;
    # each state that keeps new requests away still does.
    farm = farm_for(settings(1, health={"retry_after": 3600}), name="app")
    (member,) = farm.members
    assert take(farm, 3) == [member.name] * 3 and member.requests == 3
    for state in ("draining", "disabled"):
        member.set_admin(state)  # type: ignore[arg-type]
        assert farm.choose(None) is None
    member.set_admin("enabled")
    member.mark_down("test")
    assert farm.choose(None) is None
    member.mark_up("test")
    limited = farm_for(settings([{"address": "http://a", "max_connections": 1}]), name="one")
    held = limited.choose(None)
    assert held is not None and limited.choose(None) is None
    held.finished("ok", 0.001)
    assert limited.choose(None) is not None
    # With affinity it is chosen as before: the lease carries the cookie.
    sticky = farm_for(settings(1, affinity=True), name="sticky")
    lease = sticky.choose(make_context())
    assert lease is not None and lease.set_cookie is not None


def test_a_member_at_its_limit_is_passed_over_and_none_when_all_are() -> None:
    farm = farm_for(
        settings(
            [
                {"address": "http://a", "max_connections": 1},
                {"address": "http://b", "max_connections": 2},
            ]
        ),
        name="app",
    )
    held = [farm.choose(None) for _ in range(3)]
    assert sorted(names(held)) == ["a:80", "b:80", "b:80"]
    assert farm.choose(None) is None  # every member at its limit: the handler's 502.4
    first_a = next(lease for lease in held if lease is not None and lease.member.name == "a:80")
    first_a.finished("ok", 0.01)
    again = farm.choose(None)
    assert again is not None and again.member.name == "a:80"


def test_retry_picks_another_member_or_none() -> None:
    farm = farm_for(settings(2), name="app")
    lease = farm.choose(None)
    assert lease is not None
    other = farm.retry(None, lease)
    assert other is not None and other.member is not lease.member
    lease.finished("connect_failed", 0.001)
    assert farm.retry(None, other) is not None  # the first one is still healthy
    single = farm_for(settings(1), name="single")
    only = single.choose(None)
    assert only is not None and single.retry(None, only) is None
