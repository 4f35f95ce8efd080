"""The response cache exists only where it could ever store an answer: a generation
whose applications have no static file handler makes none, so their requests pay
nothing for it (no key, no record, no offer)."""

from __future__ import annotations

from pathlib import Path

from colonnade.transport.respcache import for_engine
from tests.hosting.support import engine, site_config

APPS = "tests.hosting.apps.asgi_apps"


def test_no_cache_where_no_mapping_names_the_static_handler() -> None:
    # The static handler enabled (as by default) but mapped nowhere: no cache.
    only_asgi = engine(site_config(f"{APPS}:hello", modules=["handler.static"]))
    assert any(rt.handler_map.handler("handler.static") for rt in only_asgi.runtimes)
    assert not any(
        rule.handler.id == "handler.static"
        for rt in only_asgi.runtimes
        for rule in rt.handler_map.rules
    )
    assert for_engine(only_asgi) is None


def test_a_cache_where_an_application_serves_static_files(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    static = engine(
        {
            "sites": [
                {"name": "s", "bindings": ["http://127.0.0.1:1"], "root": str(tmp_path / "www")}
            ]
        }
    )
    assert for_engine(static) is not None
    # Switched off by its settings, it stays off.
    off = engine(
        {
            "sites": [
                {"name": "s", "bindings": ["http://127.0.0.1:1"], "root": str(tmp_path / "www")}
            ],
            "server": {"response_cache": {"enabled": False}},
        }
    )
    assert for_engine(off) is None
