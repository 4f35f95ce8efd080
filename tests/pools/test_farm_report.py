"""How the master adds the workers' farm counters up, and keeps the operator's states."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from colonnade.config.load import from_dict
from colonnade.management.operations import format_farms
from colonnade.pools.commands import farm_report, known_farm_states

CONFIG = from_dict(
    {
        "farms": {
            "app": {
                "members": [
                    {"address": "http://10.0.0.1:80", "name": "a"},
                    {"address": "http://10.0.0.2:80", "name": "b"},
                    {"address": "http://10.0.0.3:80", "name": "c"},
                ]
            },
            "other": {"members": [{"address": "unix:/run/o.sock"}]},
        }
    },
    source="colonnade.toml",
    base_dir="/",
)


def counters(
    requests: int, response_ms: float, *, healthy: bool = True, in_flight: int = 0
) -> dict[str, Any]:
    return {
        "state": "available" if healthy else "unavailable",
        "admin": "enabled",
        "healthy": int(healthy),
        "reason": "" if healthy else "health probe failed: status 503",
        "in_flight": in_flight,
        "requests": requests,
        "failures": 0 if healthy else 4,
        "response_ms": response_ms,
        "weight": 1,
    }


def master(*workers: dict[str, Any], admin: dict[str, dict[str, str]] | None = None) -> Any:
    procs = [SimpleNamespace(serving=True, farms=farms) for farms in workers]
    procs.append(SimpleNamespace(serving=False, farms={"app": {"a": counters(999, 1.0)}}))
    pool = SimpleNamespace(workers=procs)
    return SimpleNamespace(config=CONFIG, pools={"default": pool}, farm_admin=admin or {})


def test_counters_are_summed_and_times_averaged_by_requests() -> None:
    report = farm_report(
        master(
            {"app": {"a": counters(10, 2.0, in_flight=1), "b": counters(5, 4.0)}},
            {"app": {"a": counters(30, 6.0, in_flight=2), "b": counters(5, 4.0, healthy=False)}},
        )
    )
    app, other = report
    a, b, c = app["members"]
    # The worker that is not serving (starting, draining) is left out.
    assert (a["requests"], a["in_flight"], a["workers"]) == (40, 3, 2)
    assert a["response_ms"] == 5.0  # (10 x 2 + 30 x 6) / 40
    assert (a["state"], a["down_in"]) == ("available", 0)
    # Down in one worker of two: still available (the other sends it requests).
    assert (b["state"], b["down_in"], b["failures"]) == ("available", 1, 4)
    assert b["reason"] == "health probe failed: status 503"
    assert (c["workers"], c["requests"], c["response_ms"]) == (0, 0, None)
    assert other["members"][0]["member"] == "unix:/run/o.sock"
    text = format_farms(report)
    assert "down in 1/2 worker(s): health probe failed: status 503" in text
    assert "not used yet" in text


def test_down_everywhere_or_disabled_is_unavailable_draining_shows() -> None:
    report = farm_report(
        master(
            {"app": {"a": counters(1, 1.0, healthy=False), "b": counters(1, 1.0)}},
            admin={"app": {"b": "disabled", "c": "draining"}},
        )
    )
    states = {m["member"]: (m["state"], m["admin"]) for m in report[0]["members"]}
    assert states == {
        "a": ("unavailable", "enabled"),
        "b": ("unavailable", "disabled"),
        "c": ("draining", "draining"),
    }


def test_a_reload_keeps_the_states_of_members_that_remain() -> None:
    states = {"app": {"a": "disabled", "gone": "draining"}, "removed": {"x": "disabled"}}
    assert known_farm_states(CONFIG, states) == {"app": {"a": "disabled"}}
    assert known_farm_states(CONFIG, {"app": {"gone": "draining"}}) == {}
