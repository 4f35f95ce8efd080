"""MAP_PATH: a module changes where a URL's file is, once per request, still confined."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from colonnade import CONTINUE, Context, Module, Stage, hook
from colonnade.errors import ModuleError
from colonnade.testing import Client, build_engine, make_context, run_stage

from .conftest import colonnade_modules

MODULES = ["static.default_document", "static.directory_listing", "handler.static"]


class Alias(Module):
    """``/alias/...`` is served from the folder ``stock`` of the application's root."""

    id = "test.alias"
    calls: ClassVar[list[tuple[str, str]]] = []  # one list per test (see fresh_calls)

    @hook(Stage.MAP_PATH)
    def map_path(self, ctx: Context, url_path: str, physical_path: str) -> str | None:
        self.calls.append((url_path, physical_path))
        if url_path == "/alias" or url_path.startswith("/alias/"):
            return str(Path(ctx.app.root) / "stock") + url_path[len("/alias") :]
        return None


class Escape(Module):
    """Maps ``/etc/...`` to the machine's ``/etc``: outside every root."""

    id = "test.escape"

    @hook(Stage.MAP_PATH)
    def map_path(self, ctx: Context, url_path: str, physical_path: str) -> str | None:
        return url_path if url_path.startswith("/etc/") else None


class Readers(Module):
    """Reads the physical path at several stages, as several modules would."""

    id = "test.readers"

    @hook(Stage.BEGIN_REQUEST)
    def begin(self, ctx: Context) -> None:
        ctx.items["begin"] = ctx.physical_path

    @hook(Stage.PRE_EXECUTE_REQUEST_HANDLER)
    def pre(self, ctx: Context) -> None:
        ctx.items["pre"] = ctx.physical_path

    @hook(Stage.LOG_REQUEST)
    def log(self, ctx: Context) -> None:
        ctx.items["log"] = ctx.physical_path


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    Alias.calls = []


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "stock" / "docs").mkdir(parents=True)
    (site / "stock" / "a.txt").write_text("from stock")
    (site / "stock" / "docs" / "index.html").write_text("stock index")
    (site / "stock" / "list").mkdir()
    (site / "stock" / "list" / "one.txt").write_text("1")
    (site / "b.txt").write_text("plain b")
    return site


def serve(root: Path, *ids: str, **sections: object) -> Client:
    config = {
        "server": {"modules": [*ids, *MODULES]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        **sections,
    }
    return Client(build_engine(config, modules=[Alias, Escape, Readers]))


def test_a_map_path_hook_changes_the_file_static_serves(root: Path) -> None:
    assert not (root / "alias").exists()
    with serve(root, "test.alias") as client:
        response = client.get("/alias/a.txt")
        assert response.status == 200
        assert response.body == b"from stock"
        # Other URLs keep the application's own mapping.
        assert client.get("/b.txt").body == b"plain b"
        assert client.get("/a.txt").status == 404
    assert Alias.calls[0] == ("/alias/a.txt", str(root / "alias" / "a.txt"))


def test_default_document_and_listing_follow_the_hook(root: Path) -> None:
    with serve(
        root, "test.alias", directory_browse={"enabled": True}, default_document={}
    ) as client:
        assert client.get("/alias/docs/").body == b"stock index"
        listing = client.get("/alias/list/")
        assert listing.status == 200 and b"one.txt" in listing.body


def test_the_hook_runs_once_per_request_however_many_modules_read_the_path(root: Path) -> None:
    with serve(root, "test.readers", "test.alias") as client:
        response = client.get("/alias/a.txt")
        assert response.body == b"from stock"
        client.get("/b.txt")
    assert [url for url, _ in Alias.calls] == ["/alias/a.txt", "/b.txt"]
    items = response.context.items if response.context is not None else {}
    expected = str(root / "stock" / "a.txt")
    assert items["begin"] == items["pre"] == items["log"] == expected


def test_a_path_outside_the_roots_is_still_refused(root: Path) -> None:
    with serve(root, "test.escape", directory_browse={"enabled": True}) as client:
        assert client.get("/etc/passwd").status == 404
        assert client.get("/etc/").status in (403, 404)
        assert b"passwd" not in client.get("/etc/").body


def test_hooks_chain_in_configuration_order(root: Path) -> None:
    class Upper(Module):
        id = "test.upper"

        @hook(Stage.MAP_PATH)
        def map_path(self, ctx: Context, url_path: str, physical_path: str) -> str:
            ctx.items.setdefault("seen", []).append(physical_path)
            return physical_path.replace("stock", "STOCK")

    (root / "STOCK").mkdir()
    (root / "STOCK" / "a.txt").write_text("upper stock")
    config = {
        "server": {"modules": ["test.alias", "test.upper", "handler.static"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
    }
    with Client(build_engine(config, modules=[Alias, Upper])) as client:
        response = client.get("/alias/a.txt")
    assert response.body == b"upper stock"
    assert response.context is not None
    assert response.context.items["seen"] == [str(root / "stock" / "a.txt")]


def test_without_subscribers_the_application_has_no_hooks(root: Path) -> None:
    with serve(root) as client:
        assert client.engine.runtimes[0].app.map_path_hooks is None
        assert client.get("/b.txt").body == b"plain b"
    with serve(root, "test.alias") as client:
        assert client.engine.runtimes[0].app.map_path_hooks is not None


def test_a_relative_answer_is_a_500_naming_the_module(root: Path) -> None:
    class Relative(Module):
        id = "test.relative"

        @hook(Stage.MAP_PATH)
        def map_path(self, ctx: Context, url_path: str, physical_path: str) -> str:
            return "b.txt"

    config = {
        "server": {"modules": ["test.relative", "handler.static"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
    }
    with Client(build_engine(config, modules=[Relative])) as client:
        response = client.get("/b.txt")
    assert response.status == 500
    assert response.context is not None
    error = response.context.error
    assert isinstance(error, ModuleError) and error.module_id == "test.relative"


def test_declarations_are_checked() -> None:
    class Async(Module):
        id = "test.async_map"

        @hook(Stage.MAP_PATH)
        async def map_path(self, ctx: Context, url_path: str, physical_path: str) -> None:
            return None

    class Narrow(Module):
        id = "test.narrow_map"

        @hook(Stage.MAP_PATH)
        def map_path(self, ctx: Context) -> None:
            return None

    config = {
        "server": {"modules": ["test.async_map"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"]}],
    }
    with pytest.raises(ModuleError, match="must be synchronous"):
        build_engine(config, modules=[Async])
    config["server"] = {"modules": ["test.narrow_map"]}
    with pytest.raises(ModuleError, match=r"takes \(self, ctx, url_path, physical_path\)"):
        build_engine(config, modules=[Narrow])


ALIAS_MODULE = """
import os

from colonnade import Module, Stage, hook


class Alias(Module):
    id = "shop.alias"

    @hook(Stage.MAP_PATH)
    def map_path(self, ctx, url_path, physical_path):
        if url_path.startswith("/alias/"):
            return os.path.join(ctx.app.root, "stock", url_path[len("/alias/"):])
        return None
"""


def test_colonnade_modules_lists_the_hook_at_map_path(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "stock").mkdir(parents=True)
    (www / "alias.py").write_text(ALIAS_MODULE)
    (www / "web.toml").write_text('[application_modules]\n"shop.alias" = "alias:Alias"\n')
    cfg = tmp_path / "colonnade.toml"
    cfg.write_text(
        '[server]\nmodules = ["handler.static"]\n\n[[sites]]\nname = "main"\n'
        'bindings = ["http://127.0.0.1:8080"]\nroot = "www"\nallow_modules = true\n'
    )
    _, lines = colonnade_modules(cfg)
    # An application module has no registry entry: its origin is its file.
    assert lines["shop.alias"].split(None, 1)[1] == f"application module ({www / 'alias.py'})"
    assert lines["MAP_PATH"].split()[1:] == ["shop.alias", "(medium)"]
    assert lines["ERROR"].split()[-1] == "-"


def test_the_stage_harness_maps_through_a_modules_hooks(root: Path) -> None:
    ctx = make_context("GET", "/alias/a.txt", root=str(root))
    assert ctx.physical_path == str(root / "alias" / "a.txt")
    assert run_stage(Alias(), Stage.MAP_PATH, ctx) is CONTINUE
    assert ctx.physical_path == str(root / "stock" / "a.txt")
