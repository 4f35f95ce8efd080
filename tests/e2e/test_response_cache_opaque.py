"""The response cache's rule on a path where a module of the application is not
transparent (rewrite with no rule; Basic authentication where enabled): every answer
is offered and refused, and the rule keeps what it found per runtime and section set
(``engine.respcache.blocking``) instead of walking the modules for each answer again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from colonnade.config.schema import DEFAULT_MODULES
from colonnade.engine.respcache import OFF_WHEN_DISABLED, blocking
from colonnade.transport.server import ServerState
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn


def _module(id: str, *, hooks: bool = True, section: object = object) -> Any:
    return SimpleNamespace(id=id, subscriptions=("hook",) if hooks else (), section=section)


class _Enabled:
    enabled = True


class _Disabled:
    enabled = False


def test_the_modules_not_transparent_for_a_path_block_it() -> None:
    sections = {_Enabled: _Enabled(), _Disabled: _Disabled()}
    ctx: Any = SimpleNamespace(sections=sections)
    basic, jwt, *_ = sorted(OFF_WHEN_DISABLED)
    modules = [
        _module("log.http"),
        _module("handler.static"),
        _module("rewrite"),
        _module("third.party", section=None),
        _module("hookless", hooks=False, section=None),
        _module(basic, section=_Enabled),
        _module(jwt, section=_Disabled),
    ]
    assert blocking(modules, ctx) == {"rewrite", "third.party", basic}
    assert blocking(modules[:2], ctx) == frozenset()


def test_a_path_with_rewrite_is_refused_from_the_memo(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "page.txt").write_bytes(b"page\n")
    (www / "web.toml").write_text('[modules]\nadd = ["rewrite"]\n')  # as bench/out/rewrite-0
    config = {
        "server": {"modules": [*DEFAULT_MODULES, "rewrite"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "static_content": {"cache_check_interval": 30},
    }

    def look(state: ServerState) -> tuple[int, list[frozenset[str]]]:
        cache = state.respcache
        assert cache is not None
        return cache.stored, list(cache.blocking.values())

    with LiveServer(config, tmp_path).start() as live, Conn(live.port) as conn:
        for _ in range(3):
            conn.send(b"GET /page.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            wire = conn.response()
            assert wire.status == 200 and wire.body == b"page\n"
        stored, found = live.look(look)
        assert stored == 0
        assert frozenset({"rewrite"}) in found
