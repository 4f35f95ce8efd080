"""The handler mapping: path, verbs and IIS's resource types (file, directory, either)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from colonnade import Context, Handler
from colonnade.engine.mapping import DIRECTORY, FILE, HandlerMap, compile_rule, resource_kind
from colonnade.errors import ConfigError, HttpError
from colonnade.testing import build_engine, make_context


class Named(Handler):
    """A handler told apart by its id."""

    def __init__(self, handler_id: str) -> None:
        self.id = handler_id

    def execute(self, ctx: Context) -> None:
        ctx.response.body = self.id.encode()


SCRIPT = Named("script")
STATIC = Named("static")
FOLDER = Named("folder")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "a.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "x.php").write_text("<?php")
    (tmp_path / "dir.php").mkdir()
    (tmp_path / "dangling.php").symlink_to(tmp_path / "nowhere")  # dangling: not a file
    return tmp_path


def test_resource_kind(root: Path) -> None:
    assert resource_kind(str(root / "x.php")) == FILE
    assert resource_kind(str(root / "dir.php")) == DIRECTORY
    assert resource_kind(str(root / "missing.php")) == 0
    assert resource_kind(str(root / "uploads" / "a.jpg" / "x.php")) == 0  # a file as folder
    assert resource_kind(str(root / "dangling.php")) == 0
    assert resource_kind(str(root / "x\x00.php")) == 0


@pytest.mark.parametrize(
    ("resource_type", "path", "chosen"),
    [
        ("file", "/x.php", "script"),
        ("file", "/missing.php", "static"),
        ("file", "/uploads/a.jpg/x.php", "static"),  # the classic: never the script handler
        ("file", "/dir.php", "static"),
        ("file", "/dangling.php", "static"),
        ("directory", "/dir.php", "script"),
        ("directory", "/x.php", "static"),
        ("either", "/x.php", "script"),
        ("either", "/dir.php", "script"),
        ("either", "/missing.php", "static"),
        ("unspecified", "/missing.php", "script"),  # the file need not exist
        ("unspecified", "/uploads/a.jpg/x.php", "script"),
    ],
)
def test_resource_type_decides_and_a_misfit_falls_through(
    root: Path, resource_type: str, path: str, chosen: str
) -> None:
    handlers = HandlerMap(
        [compile_rule("*.php", ["*"], SCRIPT, resource_type), compile_rule("*", ["*"], STATIC)]
    )
    ctx = make_context("GET", path, root=str(root))
    assert handlers.select(path, "GET", ctx).id == chosen
    assert handlers.select(path, "GET", ctx.physical_path).id == chosen


def test_without_a_physical_path_resource_rules_never_match() -> None:
    handlers = HandlerMap(
        [compile_rule("*.php", ["*"], SCRIPT, "either"), compile_rule("*", ["*"], STATIC)]
    )
    assert handlers.select("/x.php", "GET").id == "static"


def test_the_physical_path_is_looked_at_once_and_only_when_needed(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.stat, not mapping.resource_kind: engine/mapping.py is compiled by mypyc in
    # the compiled build, where calls inside the module are bound at build time.
    looked: list[str] = []
    real_stat = os.stat

    def counting(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).startswith(str(root)):
            looked.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    handlers = HandlerMap(
        [
            compile_rule("*.php", ["POST"], SCRIPT, "file"),
            compile_rule("*.php", ["GET"], FOLDER, "directory"),
            compile_rule("*.php", ["GET"], SCRIPT, "file"),
            compile_rule("*", ["*"], STATIC),
        ]
    )
    assert handlers.select("/x.php", "GET", make_context("GET", "/x.php", root=str(root))).id
    assert looked == [str(root / "x.php")]
    looked.clear()
    assert handlers.select("/x.txt", "GET", str(root / "x.txt")).id == "static"
    assert looked == []  # no rule with a resource type matched the path


def test_405_offers_only_the_verbs_of_rules_that_fit(root: Path) -> None:
    handlers = HandlerMap(
        [
            compile_rule("*.php", ["GET", "POST"], SCRIPT, "file"),
            compile_rule("*.php", ["PUT"], FOLDER, "directory"),
            compile_rule("/dir.php", ["GET"], STATIC),
        ]
    )
    with pytest.raises(HttpError) as caught:
        handlers.select("/x.php", "DELETE", str(root / "x.php"))
    assert (caught.value.status, caught.value.headers) == (405, [(b"allow", b"GET, POST")])
    with pytest.raises(HttpError) as caught:
        handlers.select("/dir.php", "DELETE", str(root / "dir.php"))
    assert caught.value.headers == [(b"allow", b"GET, PUT")]
    with pytest.raises(HttpError) as caught:  # nothing fits a missing file: 404.4
        handlers.select("/missing.php", "GET", str(root / "missing.php"))
    assert (caught.value.status, caught.value.substatus) == (404, 4)


def _config(root: Path, **mapping_fields: object) -> dict[str, object]:
    return {
        "server": {"modules": ["handler.static"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [{"path": "*.php", "handler": "handler.static", **mapping_fields}],
    }


def test_resource_type_is_configured_per_mapping(root: Path) -> None:
    engine = build_engine(_config(root, resource_type="file"))
    rules = engine.runtimes[0].handler_map.rules
    assert [(r.pattern, r.resource) for r in rules] == [("*.php", FILE)]


def test_a_wrong_resource_type_names_the_key(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.resource_type"):
        build_engine(_config(root, resource_type="File"))
