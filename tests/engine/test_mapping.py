"""The handler mapping: path, verbs and IIS's resource types (file, directory, either)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from colonnade import Context, Handler
from colonnade.core.cgienv import Script, find_script
from colonnade.core.confine import FILE_CHECKS
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
    # os.stat and os.lstat, not mapping.resource_kind: engine/mapping.py is compiled
    # by mypyc in the compiled build, where calls inside the module are bound at
    # build time. A request's path is walked with lstat (Application.lstat_inside).
    ctx = make_context("GET", "/x.php", root=str(root))  # (its roots resolved: lstat)
    looked: list[str] = []

    def counting(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def count(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            if str(path).startswith(str(root)):
                looked.append(str(path))
            return real(path, *args, **kwargs)

        return count

    monkeypatch.setattr(os, "stat", counting(os.stat))
    monkeypatch.setattr(os, "lstat", counting(os.lstat))
    handlers = HandlerMap(
        [
            compile_rule("*.php", ["POST"], SCRIPT, "file"),
            compile_rule("*.php", ["GET"], FOLDER, "directory"),
            compile_rule("*.php", ["GET"], SCRIPT, "file"),
            compile_rule("*", ["*"], STATIC),
        ]
    )
    assert handlers.select("/x.php", "GET", ctx).id
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


def test_the_mappings_walk_is_left_for_the_script_search(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mapping's stat of the request's file (its confinement walk) is what
    ``find_script`` uses for the same path: one walk per request, not two."""
    handlers = HandlerMap([compile_rule("*.php", ["*"], SCRIPT, "file")])
    ctx = make_context("GET", "/x.php", root=str(root))
    assert handlers.select("/x.php", "GET", ctx).id == "script"
    assert ctx.file_stat is not None and ctx.file_stat[0] == str(root / "x.php")
    walked: list[str] = []
    real_lstat = os.lstat

    def counting(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        walked.append(str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", counting)
    assert find_script(ctx) == Script("/x.php", str(root / "x.php"), "")
    assert walked == []
    # A stat of another path (the request was remapped since) is not used: the
    # path is walked (once its kept check is forgotten: [server] file_check_cache).
    ctx.file_stat = (str(root / "dir.php"), os.stat(root / "dir.php"))
    FILE_CHECKS.configure(FILE_CHECKS.validity)
    assert find_script(ctx) == Script("/x.php", str(root / "x.php"), "")
    assert walked == [str(root / "x.php")]


def test_a_symlinked_script_is_mapped_but_judged_by_its_real_path(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The walk cannot vouch for a symlink: the mapping follows it (a file), leaves
    no stat behind, and the script search resolves it: outside the root, no script."""
    outside = tmp_path_factory.mktemp("outside") / "secret.php"
    outside.write_text("<?php")
    (root / "link.php").symlink_to(outside)
    (root / "inner.php").symlink_to(root / "x.php")
    handlers = HandlerMap(
        [compile_rule("*.php", ["*"], SCRIPT, "file"), compile_rule("*", ["*"], STATIC)]
    )
    for name, script in (("link.php", None), ("inner.php", "/inner.php")):
        ctx = make_context("GET", f"/{name}", root=str(root))
        assert handlers.select(f"/{name}", "GET", ctx).id == "script"
        assert ctx.file_stat is None
        found = find_script(ctx)
        assert (found.name if found else None) == script
    ctx = make_context("GET", "/uploads/a.jpg/x.php", root=str(root))
    assert handlers.select("/uploads/a.jpg/x.php", "GET", ctx).id == "static"
    assert ctx.file_stat is None


PATTERNS = [
    "*.php",
    "*php",
    "*.PHP",
    "*.tar.gz",
    "*x",
    "*.p?p",
    "*.[pP]hp",
    "*/a.php",
    "*",
    "/a/*.php",
]
PATHS = [
    "/x.php",
    "/a/b.php",
    "/x.PHP",
    "/x.phps",
    "/php",
    "/x.php/extra",
    "/a\nb/x.php",
    "/x.tar.gz",
    "/a/a.php",
    "/a.php",
    "/",
    "",
    "/caf\u00e9.php",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_an_ending_pattern_matches_what_its_regex_matches(pattern: str) -> None:
    # *.ext is tested as the path's ending: every path matches as by the regex.
    rule = compile_rule(pattern, ["*"], SCRIPT)
    mapping = HandlerMap([rule])
    if pattern in ("*.php", "*php", "*.PHP", "*.tar.gz", "*x"):
        assert rule.suffix == pattern[1:]
    else:
        assert rule.suffix == ""
    for path in PATHS:
        expected = rule.match is None or rule.match.fullmatch(path) is not None
        try:
            found = mapping.select(path, "GET") is SCRIPT
        except HttpError:
            found = False
        assert found is expected, (pattern, path)


def test_one_catch_all_rule_is_the_mapping_without_a_select() -> None:
    # A hosted application's mapping: every path and verb, whatever the path names.
    only = HandlerMap([compile_rule("*", ["*"], SCRIPT)])
    assert only.only is SCRIPT
    ctx = make_context("DELETE", "/any/where")
    only.map(ctx)
    assert ctx.handler is SCRIPT
    assert ctx.remapper is only
    # Anything a rule checks (a pattern, verbs, a resource type, a second rule) selects.
    for rules in (
        [compile_rule("*.php", ["*"], SCRIPT)],
        [compile_rule("*", ["GET"], SCRIPT)],
        [compile_rule("*", ["*"], SCRIPT, "file")],
        [compile_rule("*", ["*"], SCRIPT), compile_rule("*", ["*"], STATIC)],
    ):
        assert HandlerMap(rules).only is None


def test_a_server_of_one_application_routes_every_request_to_it(tmp_path: Path) -> None:
    one = build_engine(root=str(tmp_path))
    (runtime,) = one.runtimes
    assert one.router.only is runtime
    assert one.route(1, "any.example", "/x") is runtime
    two = build_engine(
        {
            "sites": [
                {
                    "name": "s",
                    "bindings": ["http://127.0.0.1:8080"],
                    "root": str(tmp_path),
                    "applications": [{"path": "/app", "root": str(tmp_path)}],
                }
            ]
        },
        base_dir=str(tmp_path),
    )
    assert two.router.only is None
    assert two.route(8080, "h", "/app/x").app.path == "/app"
    assert two.route(8080, "h", "/x").app.path == "/"
