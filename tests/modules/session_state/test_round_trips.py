"""Round trips to Redis per request with ``provider = "redis"``, counted at the
real client's socket writes (every command or pipeline is one write, answered
before the request goes on) and cross-checked with the real redis-server's own
``INFO commandstats``: a read-modify-write request locks and loads in one round
trip and saves, slides and unlocks in one."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from colonnade.testing import Client
from tests.modules.session_state.test_module import engine_for, session_cookie, with_id
from tests.support.redis import RedisServer


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The packed commands the redis-py client writes, one entry per write."""
    sent: list[bytes] = []
    real = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        packed = command if isinstance(command, bytes) else b"".join(map(bytes, command))
        sent.append(packed)
        await real(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    found = RedisServer(tmp_path)
    yield found
    found.kill()


def commandstats(server: RedisServer) -> dict[str, int]:
    """Calls per command so far, from the server's ``INFO commandstats``."""
    out = subprocess.run(
        ["redis-cli", "-p", str(server.port), "info", "commandstats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    calls: dict[str, int] = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.removeprefix("cmdstat_").partition(":")
            calls[name] = int(fields.split(",")[0].removeprefix("calls="))
    return calls


def sent_commands(sent: list[bytes]) -> list[list[str]]:
    """The command names of each write (a pipeline: several)."""
    names: list[list[str]] = []
    for packed in sent:
        parts = packed.split(b"\r\n")
        # RESP: *<argc>, then $<len> and the argument; the name follows the count.
        names.append(
            [parts[i + 2].decode().upper() for i, p in enumerate(parts) if p.startswith(b"*")]
        )
    return names


def test_a_read_modify_write_is_one_round_trip_each_side(
    server: RedisServer, writes: list[bytes]
) -> None:
    extra = {"redis": {"url": server.url}, "session_state": {"provider": "redis"}}
    with Client(engine_for(extra)) as c:
        sid = session_cookie(c.get("/inc"))  # connects; saves the new session
        assert sid is not None
        writes.clear()
        before = commandstats(server)
        for n in range(2, 7):
            resp = c.get("/inc", headers=with_id(sid))
            assert resp.text == f'{{"n": {n}}}'
            # Lock + load + slide: one pipeline; save + unlock: one script.
            assert sent_commands(writes) == [["SET", "GET", "PEXPIRE"], ["EVALSHA"]]
            writes.clear()
        # Unchanged: unlocked (and the expiry slid) in one script all the same.
        c.get("/read", headers=with_id(sid))
        assert sent_commands(writes) == [["SET", "GET", "PEXPIRE"], ["EVALSHA"]]
        after = commandstats(server)
    used = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    del used["info"]  # the first INFO itself
    # The server counts the script's own commands too: per request a lock check
    # (GET) and unlock (DEL); a save (SET) in five, the expiry slid in the last.
    assert used == {"set": 6 + 5, "get": 6 + 6, "pexpire": 6 + 1, "evalsha": 6, "del": 6}


def test_a_lost_script_cache_costs_one_more_round_trip_once(
    server: RedisServer, writes: list[bytes]
) -> None:
    extra = {"redis": {"url": server.url}, "session_state": {"provider": "redis"}}
    with Client(engine_for(extra)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None
        # What a restarted Redis has forgotten: EVALSHA fails, EVAL runs the body
        # (and caches it); never SCRIPT LOAD and a third round trip.
        subprocess.run(["redis-cli", "-p", str(server.port), "script", "flush"], check=True)
        writes.clear()
        assert c.get("/inc", headers=with_id(sid)).text == '{"n": 2}'
        assert sent_commands(writes) == [["SET", "GET", "PEXPIRE"], ["EVALSHA"], ["EVAL"]]
        writes.clear()
        assert c.get("/inc", headers=with_id(sid)).text == '{"n": 3}'
        assert sent_commands(writes) == [["SET", "GET", "PEXPIRE"], ["EVALSHA"]]


def test_a_read_only_request_is_one_round_trip(server: RedisServer, writes: list[bytes]) -> None:
    extra = {
        "redis": {"url": server.url},
        "session_state": {"provider": "redis"},
        "locations": [{"path": "/ro", "session_state": {"mode": "read_only"}}],
    }
    with Client(engine_for(extra)) as c:
        sid = session_cookie(c.get("/inc"))
        assert sid is not None
        writes.clear()
        assert c.get("/ro/x", headers=with_id(sid)).text == '{"n": 1}'
        # Load, lock looked at, expiry slid: one pipeline; nothing after the handler.
        assert sent_commands(writes) == [["GET", "EXISTS", "PEXPIRE"]]
