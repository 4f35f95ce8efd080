"""A web.toml that cannot be used is confined to its URL subtree (500.19), and what
a site may look like without being an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from colonnade.config.load import from_dict
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, each_error
from colonnade.modules.standard import BUILTIN
from colonnade.pools.config import pool_view
from colonnade.testing import Client


def site(**extra: Any) -> dict[str, Any]:
    return {
        "server": {"modules": ["static.default_document", "handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:8080"], "root": "www", **extra}],
    }


def build(tmp_path: Path, config: dict[str, Any], previous: Engine | None = None) -> Engine:
    loaded = from_dict(config, source=str(tmp_path / "colonnade.toml"), base_dir=str(tmp_path))
    return Engine(loaded, Registry.standard(BUILTIN, with_entry_points=False), previous=previous)


@pytest.fixture
def www(tmp_path: Path) -> Path:
    for folder in ("www/a/b", "www/c", "shop/x"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("www/a/b/f.txt", "www/a/f.txt", "www/c/f.txt", "www/f.txt", "shop/x/f.txt"):
        (tmp_path / name).write_text(name)
    return tmp_path


def test_the_subtree_answers_500_19_and_only_it(www: Path) -> None:
    (www / "www" / "a" / "web.toml").write_text("[default_document]\nfiles = 1\n")
    engine = build(www, site(applications=[{"path": "/shop", "root": "shop"}]))
    (broken,) = engine.broken
    assert (broken.site, broken.path, broken.error.line) == ("main", "/a", 2)
    root, shop = sorted(engine.runtimes, key=lambda rt: rt.app.path)
    # Only an application with a broken level in its tree checks for one per request.
    assert root.app.broken and not shop.app.broken
    assert shop.walk.__name__ != "refusing"
    with Client(engine) as client:
        for path in ("/a", "/a/", "/a/f.txt", "/a/b/f.txt"):
            response = client.get(path)
            assert (response.status, response.context.response.substatus) == (500, 19), path
            assert "www/a/web.toml:2: default_document.files" in response.text
        for path, body in (("/f.txt", "www/f.txt"), ("/c/f.txt", "www/c/f.txt")):
            assert client.get(path).text == body
        assert client.get("/shop/x/f.txt").text == "shop/x/f.txt"
        assert client.get("/ab").status == 404  # a sibling with the same prefix is not below


def test_a_reload_that_fixes_the_file_heals_the_subtree(www: Path) -> None:
    web = www / "www" / "a" / "web.toml"
    web.write_text('[default_document]\nenabled = "yes"\n')
    first = build(www, site())
    assert first.broken
    web.write_text("[default_document]\nenabled = false\n")
    second = build(www, site(), previous=first)
    assert not second.broken and second.fresh  # the application was built anew
    with Client(second) as client:
        assert client.get("/a/f.txt").text == "www/a/f.txt"


def test_the_settings_of_a_broken_folder_are_not_merged_below_it(www: Path) -> None:
    # Its sound sibling keys are no more trustworthy than the broken one.
    (www / "www" / "a" / "web.toml").write_text(
        '[default_document]\nfiles = ["x.html"]\nenabeld = false\n'
    )
    (www / "www" / "a" / "b" / "web.toml").write_text("[default_document]\nenabled = true\n")
    engine = build(www, site())
    (broken,) = engine.broken
    settings = engine.runtimes[0].app.sections_for("/a/b")
    assert settings.broken is broken.error
    assert "files" not in settings.raw.get("default_document", {})
    assert engine.runtimes[0].app.sections_for("/c").broken is None


def test_server_file_mistakes_are_not_confined(www: Path) -> None:
    config = site()
    config["locations"] = [{"path": "/a", "default_document": {"files": 1}}]
    with pytest.raises(ConfigError) as info:
        build(www, config)
    assert info.value.key == "locations[0].default_document.files"


# -- what is not an error --------------------------------------------------------------


def test_a_virtual_directory_inside_an_application_serves(www: Path) -> None:
    (www / "media").mkdir()
    (www / "media" / "m.txt").write_text("media")
    engine = build(
        www,
        site(
            applications=[{"path": "/shop", "root": "shop"}],
            virtual_directories=[{"path": "/shop/media", "root": "media"}],
        ),
    )
    with Client(engine) as client:
        assert client.get("/shop/media/m.txt").text == "media"
        assert client.get("/shop/x/f.txt").text == "shop/x/f.txt"


def test_sites_sharing_a_port_by_host_name_or_apart_by_port(www: Path) -> None:
    config = site(host_names=["a.example"])
    config["sites"] += [
        {"name": "b", "bindings": ["http://127.0.0.1:8080"], "root": "www", "host_names": ["B.x"]},
        {"name": "c", "bindings": ["http://127.0.0.1:8080"], "root": "www"},  # the default
        {"name": "d", "bindings": ["http://127.0.0.1:8081"], "root": "www"},
        {"name": "e", "bindings": ["http://127.0.0.1:8082"], "root": "www", "host_names": ["B.x"]},
    ]
    config["locations"] = [{"path": "/a", "default_document": {"enabled": False}}]
    build(www, config)


def test_a_pool_workers_stand_in_sites_are_not_checked(www: Path) -> None:
    config = site()
    config["pools"] = {"other": {}}
    config["sites"].append(
        {"name": "b", "bindings": ["http://127.0.0.1:8081"], "root": "www", "pool": "other"}
    )
    loaded = from_dict(config, source=str(www / "colonnade.toml"), base_dir=str(www))
    view = pool_view(loaded, "default")  # site b is a stand-in with a root that never exists
    Engine(view, Registry.standard(BUILTIN, with_entry_points=False))


def test_a_root_that_is_a_file_or_below_one_is_refused(www: Path) -> None:
    config = site(
        applications=[
            {"path": "/one", "root": "www/f.txt"},
            {"path": "/two", "root": "www/f.txt/sub"},
        ]
    )
    with pytest.raises(ConfigError) as info:
        build(www, config)
    assert [(e.key, e.message) for e in each_error(info.value)] == [
        ("sites[0].applications[0].root", f"not a folder: {www}/www/f.txt"),
        ("sites[0].applications[1].root", f"no such folder: {www}/www/f.txt/sub"),
    ]
