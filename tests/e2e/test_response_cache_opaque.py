"""The response cache's rule on a path where a module of the application is not
transparent (rewrite with no rule; Basic authentication where enabled): the rule keeps
what it found per runtime and section set (``engine.respcache.blocking``) instead of
walking the modules for each answer again, and the connection asks its verdict
(``ResponseCache.judge``, ``engine.respcache.refusing``) before such a request takes
the pipeline: no record is made and none offered, while the modules still see every
request, other paths are still kept, and a reload judges afresh."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from colonnade.config.schema import DEFAULT_MODULES
from colonnade.engine import Engine
from colonnade.engine.respcache import (
    MAX_VERDICTS,
    OFF_WHEN_DISABLED,
    RACY_NS,
    blocking,
    eligible,
    refusing,
    remember,
)
from colonnade.testing import build_engine
from colonnade.transport.server import ServerState
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.modules.basic_auth.support import basic, htpasswd, needs_htpasswd


def _module(id: str, *, hooks: bool = True, section: object = object) -> Any:
    return SimpleNamespace(id=id, subscriptions=("hook",) if hooks else (), section=section)


class _Enabled:
    enabled = True


class _Disabled:
    enabled = False


def test_the_modules_not_transparent_for_a_path_block_it() -> None:
    sections: Any = {_Enabled: _Enabled(), _Disabled: _Disabled()}
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
    assert blocking(modules, sections) == {"rewrite", "third.party", basic}
    assert blocking(modules[:2], sections) == frozenset()


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

    def look(state: ServerState) -> tuple[int, list[frozenset[str]], list[bool]]:
        cache = state.respcache
        assert cache is not None
        return cache.stored, list(cache.blocking.values()), list(cache.refused.values())

    with LiveServer(config, tmp_path).start() as live, Conn(live.port) as conn:
        offers = _count_offers(live)
        for name in ("page.txt", "other.txt", "third.txt"):
            (www / name).write_bytes(b"page\n")  # many paths, one verdict
            for _ in range(3):
                conn.send(f"GET /{name} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                wire = conn.response()
                assert wire.status == 200 and wire.body == b"page\n"
        stored, found, refused = live.look(look)
        assert stored == 0
        assert frozenset({"rewrite"}) in found
        # One verdict for the application's paths, asked before each took the
        # pipeline: not one answer was recorded and offered to the rule.
        assert refused == [True]
        assert offers == []


def _count_offers(live: LiveServer) -> list[str]:
    """The paths whose answers the server's response cache offers its rule from now
    on (the rule still decides): the list grows as they come."""
    offered: list[str] = []

    def rule(engine: Any, ctx: Any, headers: Any, memo: Any) -> Any:
        offered.append(ctx.request.path)
        return eligible(engine, ctx, headers, memo)

    def install(state: ServerState) -> None:
        assert state.respcache is not None
        state.respcache.rule = rule

    live.look(install)
    return offered


def _runtime(**kwargs: Any) -> Any:
    modules = [
        SimpleNamespace(id=id, grants_response_cache=id == "cache.output")
        for id in kwargs.get("modules", ("handler.static", "rewrite", "cache.output"))
    ]
    rules = [SimpleNamespace(handler=SimpleNamespace(id=h)) for h in kwargs.get("handlers", ())]
    return SimpleNamespace(modules=modules, handler_map=SimpleNamespace(rules=rules))


def test_a_verdict_refuses_only_where_no_answer_could_be_kept() -> None:
    static = _runtime(handlers=("handler.asgi", "handler.static"))
    assert refusing(static, frozenset()) is False
    assert refusing(static, frozenset({"rewrite"})) is True
    # The output cache may grant an answer where it alone is in the way; with
    # another module in the way, nothing may.
    assert refusing(static, frozenset({"cache.output"})) is False
    assert refusing(static, frozenset({"cache.output", "rewrite"})) is True
    # No mapping to the static file handler: only a grant could keep an answer.
    asgi = _runtime(handlers=("handler.asgi",))
    assert refusing(asgi, frozenset()) is False
    assert refusing(_runtime(modules=("handler.asgi",), handlers=("handler.asgi",)), frozenset())
    alone = _runtime(modules=("handler.static",), handlers=("handler.static",))
    assert refusing(alone, frozenset()) is False


def test_the_verdicts_are_bounded() -> None:
    memo: dict[tuple[Any, Any], bool] = {}
    for i in range(MAX_VERDICTS + 10):
        remember(memo, (i, i), True)
        assert len(memo) <= MAX_VERDICTS
    assert memo[(MAX_VERDICTS + 9, MAX_VERDICTS + 9)] is True


def _both_config(base: Path, both: tuple[str, ...]) -> dict[str, Any]:
    """Basic authentication enabled at each path of ``both``, beside anonymous: a
    request with no credentials is answered 200 as the anonymous user there, an
    answer the rule must never keep (Basic must see every request)."""
    return {
        "server": {"modules": [*DEFAULT_MODULES, "auth.anonymous", "auth.basic"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "static_content": {"cache_check_interval": 30},
        "locations": [
            {
                "path": path,
                "basic_authentication": {
                    "enabled": True,
                    "realm": "r",
                    "user_file": str(base / "users"),
                },
            }
            for path in both
        ],
    }


def _get(conn: Conn, target: str, *headers: str) -> tuple[int, bytes]:
    extra = "".join(f"{h}\r\n" for h in headers)
    conn.send(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())
    wire = conn.response()
    return wire.status, wire.body


def _counters(live: LiveServer) -> tuple[int, int, dict[str, bool | None]]:
    """(entries stored, hits, the verdict kept for /both's and /open's files: None
    where there is none) of the server's response cache."""

    def read(state: ServerState) -> tuple[int, int, dict[str, bool | None]]:
        cache = state.respcache
        assert cache is not None
        verdicts: dict[str, bool | None] = {}
        for path in ("/both/file.txt", "/open/file.txt"):
            runtime = state.engine.sites[0].app_for(path)
            assert runtime is not None
            verdicts[path] = cache.refused.get((runtime, runtime.app.sections_for(path)))
        return cache.stored, cache.hits, verdicts

    return live.look(read)


@needs_htpasswd
def test_a_path_where_basic_is_enabled_is_refused_before_the_pipeline(tmp_path: Path) -> None:
    # Issue #24 item 2: the cache is bypassed for a path as soon as an authentication
    # module is enabled there; now without a record made and offered per request, and
    # Basic still sees every request there (credentials, a wrong password).
    www = tmp_path / "www"
    for folder in ("both", "open"):
        (www / folder).mkdir(parents=True)
        (www / folder / "file.txt").write_bytes(b"file\n")
    htpasswd(tmp_path / "users", "alice", "wonder-land")
    # The rule keeps no file changed in the last two seconds (the static handler's
    # "racy" rule): let them settle, so that what may be kept is kept at once.
    time.sleep(RACY_NS / 1e9 + 0.2)
    both, open_ = "/both/file.txt", "/open/file.txt"
    with LiveServer(_both_config(tmp_path, ("/both",)), tmp_path).start() as live:
        with Conn(live.port) as conn:
            offers = _count_offers(live)
            for _ in range(3):
                assert _get(conn, both) == (200, b"file\n")
                assert _get(conn, open_) == (200, b"file\n")
            # /open's answer kept and hit twice; /both's never offered.
            assert _counters(live) == (1, 2, {both: True, open_: False})
            assert offers == [open_]
            (auth,) = basic("alice", "wrong").values()
            assert _get(conn, both, f"Authorization: {auth}")[0] == 401
            assert _get(conn, both)[0] == 200
            assert _counters(live)[:2] == (1, 2)

        # A reload that switches Basic on for /open and off for /both: the new
        # generation judges afresh, refuses /open's answers and keeps /both's; one
        # that switches it off everywhere keeps both.
        for enabled, expected in (
            (("/open",), (1, 2, {both: False, open_: True})),
            ((), (2, 4, {both: False, open_: False})),
        ):
            engine: Engine = build_engine(
                _both_config(tmp_path, enabled), base_dir=str(tmp_path), with_entry_points=True
            )
            engine.start()
            try:
                live.look(lambda state, engine=engine: state.switch(engine))
                with Conn(live.port) as conn:
                    for _ in range(3):
                        for path in (both, open_):
                            assert _get(conn, path) == (200, b"file\n")
                    assert _counters(live) == expected
            finally:
                live.look(lambda state: state.switch(live.engine))
                engine.close()


@needs_htpasswd
def test_a_folder_whose_default_document_may_be_kept_is_not_refused(tmp_path: Path) -> None:
    # review15: "/" is judged by its own settings before the pipeline, but the default
    # document remaps it to /index.html, under that file's settings, which the rule
    # reads after the walk. Basic enabled for the site and disabled for /index.html:
    # the anonymous answer to "/" is kept (as before rcache4), a wrong password on
    # "/" still gets 401 (a request with credentials never takes the cache).
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"home\n")
    htpasswd(tmp_path / "users", "alice", "wonder-land")
    time.sleep(RACY_NS / 1e9 + 0.2)
    on = {"enabled": True, "realm": "r", "user_file": str(tmp_path / "users")}
    config: dict[str, Any] = {
        "server": {"modules": [*DEFAULT_MODULES, "auth.anonymous", "auth.basic"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "static_content": {"cache_check_interval": 30},
        "basic_authentication": on,
        "locations": [{"path": "/index.html", "basic_authentication": {"enabled": False}}],
    }

    def read(state: ServerState) -> tuple[int, int]:
        assert state.respcache is not None
        return state.respcache.stored, state.respcache.hits

    with LiveServer(config, tmp_path).start() as live, Conn(live.port) as conn:
        for _ in range(3):
            assert _get(conn, "/") == (200, b"home\n")
        assert live.look(read) == (1, 2)
        (auth,) = basic("alice", "wrong").values()
        assert _get(conn, "/", f"Authorization: {auth}")[0] == 401


def test_a_routing_fault_sends_the_request_to_the_pipeline_without_a_record() -> None:
    # review15: a fault in the verdict's routing is not the connection's: judge says
    # refused (no record) with no route, and the pipeline meets the fault where it is
    # answered.
    import colonnade.transport.respcache as respcache

    if not str(respcache.__file__).endswith(".py"):
        # A native class's instance takes only a real Engine (a type check at
        # the assignment), whose route cannot be made to fail from here.
        pytest.skip("the compiled ResponseCache takes a real Engine only")

    class _Faulty:
        settings = SimpleNamespace(
            response_cache=SimpleNamespace(max_entries=1, max_bytes=1, max_entry_size=1)
        )
        router = SimpleNamespace(only=None)

        def route(self, port: int, host: str, path: str) -> Any:
            raise RuntimeError("no route")

    cache = respcache.ResponseCache(_Faulty())  # type: ignore[arg-type]
    assert cache.judge(80, "localhost", "/file.txt") == (True, None)
    # A folder's path is never refused here (its default document decides later),
    # nor routed: the engine routes it.
    assert cache.judge(80, "localhost", "/docs/") == (False, None)
