"""IP restrictions over real sockets, on 127.0.0.1 and ::1: the deny actions
(AbortRequest included: the connection closes without a byte), web.toml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.loopback import LOOPBACKS, exchange, live_on


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "a.txt").write_text("static")
    (site / "sub" / "a.txt").write_text("sub")
    return site


def config(root: Path, log: Path | None = None, **settings: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": ["log.http", "security.ip", "handler.static"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:1"], "root": str(root)}],
        "ip_security": settings,
    }
    if log is not None:
        out["http_logging"] = {"target": str(log), "format": "json", "buffer_size": 0}
    return out


@pytest.mark.parametrize("loopback", LOOPBACKS)
@pytest.mark.parametrize(
    ("action", "status"), [("Unauthorized", 401), ("Forbidden", 403), ("NotFound", 404)]
)
def test_deny_answers(root: Path, loopback: str, action: str, status: int) -> None:
    settings = {"rules": [{"address": loopback}], "deny_action": action}
    with live_on(loopback, config(root, **settings), root) as server:
        answer = exchange(loopback, server.port, "/a.txt")
    assert answer.status == status
    assert b"not allowed" in answer.body


@pytest.mark.parametrize("loopback", LOOPBACKS)
def test_abort_request_closes_the_connection_without_an_answer(
    root: Path, tmp_path: Path, loopback: str
) -> None:
    log = tmp_path / "access.log"
    with live_on(
        loopback,
        config(root, log, rules=[{"address": loopback}], deny_action="AbortRequest"),
        root,
    ) as s:
        answer = exchange(loopback, s.port, "/a.txt")
        # The server goes on serving others (an allowed path of the same site is
        # refused too: the entry holds the client everywhere).
        again = exchange(loopback, s.port, "/sub/a.txt")
    assert answer.raw == b"" and answer.status is None
    assert again.raw == b""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["sc_status"], line["sc_substatus"]) for line in lines] == [(403, 503)] * 2


@pytest.mark.parametrize("loopback", LOOPBACKS)
def test_allow_unlisted_false_lets_only_listed_loopback_in(root: Path, loopback: str) -> None:
    settings = {"allow_unlisted": False, "rules": [{"address": loopback, "allowed": True}]}
    with live_on(loopback, config(root, **settings), root) as server:
        assert exchange(loopback, server.port, "/a.txt").body == b"static"
    other = "::1" if loopback == "127.0.0.1" else "127.0.0.1"
    settings = {"allow_unlisted": False, "rules": [{"address": other, "allowed": True}]}
    with live_on(loopback, config(root, **settings), root) as server:
        assert exchange(loopback, server.port, "/a.txt").status == 403


@pytest.mark.parametrize("loopback", LOOPBACKS)
def test_web_toml_deny_where_the_server_allows_it(root: Path, loopback: str) -> None:
    (root / "sub" / "web.toml").write_text(
        f'[ip_security]\nrules = {{ add = [{{ address = "{loopback}" }}] }}\n'
    )
    cfg = {**config(root), "lock": {"ip_security": "allow"}}
    with live_on(loopback, cfg, root) as server:
        assert exchange(loopback, server.port, "/a.txt").status == 200
        assert exchange(loopback, server.port, "/sub/a.txt").status == 403
    with live_on(loopback, config(root), root) as server:  # locked: the web.toml is refused
        assert exchange(loopback, server.port, "/sub/a.txt").status == 500
        assert exchange(loopback, server.port, "/a.txt").status == 200
