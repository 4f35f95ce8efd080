"""``colonnade farms`` and ``colonnade farm drain|enable|disable`` against a real master.

The workers run ``acme.farm`` (tests/thirdparty), a handler that answers with the
member the farm ``app`` chose for the request: what a proxy would connect to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from colonnade.management import cli, operations
from tests.e2e.wire import Conn
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

from .conftest import Master, get

pytestmark = pytest.mark.e2e

MEMBERS = ("one", "two", "three")


def config(port: int, members: tuple[str, ...] = MEMBERS, workers: int = 2) -> str:
    lines = [
        "[server]",
        'modules = ["acme.farm"]',
        'control_socket = "run/control.sock"',
        "[server.timeouts]",
        "graceful = 5",
        "[pools.default]",
        f"workers = {workers}",
        'start = "always"',
        "[[sites]]",
        'name = "main"',
        f'bindings = ["http://127.0.0.1:{port}"]',
        'root = "www"',
        "[[handlers]]",
        'path = "*"',
        'handler = "acme.farm"',
        "[farms.app]",
        "affinity = true",
    ]
    for i, name in enumerate(members):
        lines += ["[[farms.app.members]]", f'address = "http://192.0.2.{i + 1}:8080"']
        lines.append(f'name = "{name}"')
    return "\n".join(lines) + "\n"


@pytest.fixture
def master(tmp_path: Path) -> Any:
    port = free_port()
    started = Master(tmp_path, config(port), workers=2, port=port)
    try:
        wait_for(lambda: len(started.pids("default")) == 2, PATIENCE, "two workers")
        yield started
    finally:
        started.stop()


def pick(master: Master, cookie: str | None = None) -> tuple[str | None, str | None, int]:
    """(member, the Set-Cookie pair or None, worker pid) of one request on a new
    connection (so that both workers answer in turn)."""
    with Conn(master.port) as conn:
        conn.send(get("/", *([f"Cookie: {cookie}"] if cookie else [])))
        response = conn.response()
    data = json.loads(response.body)
    set_cookie = response.headers.get("set-cookie")
    return data["member"], set_cookie.split(";")[0] if set_cookie else None, data.get("pid", 0)


def members_of(master: Master, count: int = 24) -> set[str | None]:
    return {pick(master)[0] for _ in range(count)}


def report(master: Master) -> dict[str, dict[str, Any]]:
    (farm,) = operations.farms(master.control)
    return {m["member"]: m for m in farm["members"]}


def cookie_for(master: Master, member: str) -> str:
    def found() -> str | None:
        name, cookie, _ = pick(master)
        return cookie if name == member else None

    return wait_for(found, PATIENCE, f"a cookie for {member}")


def test_farms_reports_the_workers_counters(master: Master) -> None:
    before = report(master)
    assert list(before) == list(MEMBERS)
    assert all(m["requests"] == 0 and m["state"] == "available" for m in before.values())
    # Both workers must take requests (the counters are added up). The workers share
    # the listening socket and the first one awake accepts: on a loaded machine one
    # worker may take many connections in a row, so ask until both have answered
    # (30 at least, a bounded number at most), not a fixed 30 that may all go to one.
    pids = set()
    asked = 0
    while asked < 30 or (len(pids) < 2 and asked < 600):
        _, _, pid = pick(master)
        pids.add(pid)
        asked += 1
    assert len(pids) == 2, f"one worker took all {asked} connections"

    def counted() -> dict[str, dict[str, Any]] | None:
        now = report(master)
        total = sum(m["requests"] for m in now.values())
        return now if total == asked and all(m["workers"] == 2 for m in now.values()) else None

    after = wait_for(counted, PATIENCE, f"{asked} requests in the report")
    # Each worker takes turns by itself: within one of even, per worker.
    even = asked / len(MEMBERS)
    assert all(
        even - 2 <= m["requests"] <= even + 2 and m["in_flight"] == 0 for m in after.values()
    )
    assert all(m["failures"] == 0 and m["response_ms"] is not None for m in after.values())
    # The table the command prints.
    text = operations.format_farms(operations.farms(master.control))
    assert "farm app (weighted_round_robin)" in text
    row = text.splitlines()[2].split()
    assert row[:3] == ["one", "available", "0"] and row[3] == str(after["one"]["requests"])
    assert row[4] == "0" and row[5].endswith("ms") and row[6] == "up"


def test_drain_disable_enable_reach_every_worker_and_survive_reload_and_recycle(
    master: Master, capsys: pytest.CaptureFixture[str]
) -> None:
    one = cookie_for(master, "one")
    two = cookie_for(master, "two")
    assert cli.main(["farm", "drain", "--control", master.control, "app", "one"]) == 0
    assert "farm app: member one is now draining" in capsys.readouterr().out
    # At once, in both workers: no new client reaches one; its own client stays.
    assert members_of(master) == {"two", "three"}
    assert all(pick(master, one)[0] == "one" for _ in range(6))
    # Disabled: even its clients move, with a new cookie.
    operations.farm_action(master.control, "disable", "app", "http://192.0.2.2:8080")
    moved, cookie, _ = pick(master, two)
    assert moved == "three" and cookie is not None and cookie != two
    assert members_of(master) == {"three"}
    states = report(master)
    assert (states["one"]["state"], states["one"]["admin"]) == ("draining", "draining")
    assert (states["two"]["state"], states["two"]["admin"]) == ("unavailable", "disabled")
    assert states["three"]["state"] == "available"

    # A reload with a member more: the states stay; the new member takes requests.
    master.config.write_text(config(master.port, (*MEMBERS, "four")))
    # The command answers once both workers serve the new configuration.
    assert "served by every worker" in operations.reload(master.control)
    assert members_of(master) == {"three", "four"}
    # New workers (a recycle) start with the states too.
    old = set(master.pids("default"))
    master.command("recycle", "default")
    wait_for(lambda: master.replaced(old, 2), PATIENCE, "two new workers")
    assert members_of(master) == {"three", "four"}
    assert pick(master, one)[0] == "one"
    assert report(master)["two"]["admin"] == "disabled"

    operations.farm_action(master.control, "enable", "app", "one")
    operations.farm_action(master.control, "enable", "app", "two")
    assert members_of(master) == {"one", "two", "three", "four"}
    assert all(m["admin"] == "enabled" for m in report(master).values())


def test_a_member_removed_by_a_reload_forgets_its_state(master: Master) -> None:
    operations.farm_action(master.control, "disable", "app", "three")
    master.config.write_text(config(master.port, ("one", "two")))
    operations.reload(master.control)
    master.config.write_text(config(master.port))
    operations.reload(master.control)
    wait_for(lambda: "three" in members_of(master, 9), PATIENCE, "three back, enabled")


@pytest.mark.parametrize(
    ("farm", "member", "error"),
    [
        ("nope", "one", "no farm named 'nope' (farms: app)"),
        ("app", "five", "farm app has no member 'five' (members: one, two, three)"),
    ],
)
def test_unknown_farms_and_members_are_refused(
    master: Master, capsys: pytest.CaptureFixture[str], farm: str, member: str, error: str
) -> None:
    assert cli.main(["farm", "disable", "--control", master.control, farm, member]) == 1
    assert error in capsys.readouterr().err
    assert report(master)["one"]["admin"] == "enabled"


def test_the_farms_command_prints_json(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["farms", "--control", master.control, "--json"]) == 0
    (farm,) = json.loads(capsys.readouterr().out)
    assert farm["farm"] == "app" and [m["member"] for m in farm["members"]] == list(MEMBERS)


def test_the_admin_api_lists_farms_and_drains_a_member(master: Master) -> None:
    from tests.pools.test_admin_api import UnixConnection, call

    conn = UnixConnection(master.control)
    try:
        status, body, _ = call(conn, "GET", "/api/farms")
        assert status == 200 and [m["member"] for m in body["farms"][0]["members"]] == list(MEMBERS)
        status, body, _ = call(conn, "POST", "/api/farms/app/members/two/drain")
        assert status == 200 and "member two is now draining" in body["message"]
        assert report(master)["two"]["admin"] == "draining"
        status, body, _ = call(conn, "POST", "/api/farms/app/members/two/explode")
        assert status >= 400 and report(master)["two"]["admin"] == "draining"
        status, body, _ = call(conn, "POST", "/api/farms/app/members/two/enable")
        assert status == 200 and report(master)["two"]["admin"] == "enabled"
    finally:
        conn.close()
