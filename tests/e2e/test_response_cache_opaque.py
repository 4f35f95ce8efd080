"""The response cache's rule on a path whose application has a module that is never
transparent (here rewrite with no rule): every answer is offered and refused, and the
rule keeps what it found per runtime (``engine.respcache.opaque``) instead of walking
the modules for each answer again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from colonnade.config.schema import DEFAULT_MODULES
from colonnade.engine.respcache import OFF_WHEN_DISABLED, opaque
from colonnade.transport.server import ServerState
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn


def _module(id: str, *, hooks: bool = True, section: object = object) -> Any:
    return SimpleNamespace(id=id, subscriptions=("hook",) if hooks else (), section=section)


def test_only_modules_transparent_for_no_request_are_opaque() -> None:
    modules = [
        _module("log.http"),
        _module("handler.static"),
        _module("rewrite"),
        _module("third.party", section=None),
        _module("hookless", hooks=False, section=None),
        _module("security.request_filtering"),
        *(_module(m) for m in sorted(OFF_WHEN_DISABLED)),
    ]
    assert opaque(modules) == {"rewrite", "third.party"}
    assert opaque(modules[:2]) == frozenset()


def test_a_path_with_rewrite_is_refused_once_per_runtime(tmp_path: Path) -> None:
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
        return cache.stored, sorted(cache.opaque.values(), key=sorted)

    with LiveServer(config, tmp_path).start() as live, Conn(live.port) as conn:
        for _ in range(3):
            conn.send(b"GET /page.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            wire = conn.response()
            assert wire.status == 200 and wire.body == b"page\n"
        stored, found = live.look(look)
        assert stored == 0
        assert frozenset({"rewrite"}) in found
