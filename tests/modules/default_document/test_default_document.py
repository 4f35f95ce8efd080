"""Default document: the trailing-slash redirect, the ordered file list, switching off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import FINISH, Context, Handler, Stage
from colonnade.handlers.static.handler import StaticFile, redirect_to_folder
from colonnade.modules.default_document.config import DefaultDocumentSection
from colonnade.modules.default_document.module import DefaultDocument
from colonnade.testing import Client, TestResponse, build_engine, make_context, run_stage

MODULES = ["security.request_filtering", "static.default_document", "handler.static"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    files = {
        "index.html": "root index",
        "sub/index.html": "sub index.html",
        "sub/index.htm": "sub index.htm",
        "second/index.htm": "second index.htm",
        "second/default.html": "second default.html",
        "last/default.htm": "last default.htm",
        "last/readme.txt": "readme",
        "empty/readme.txt": "readme",
        "a dir/index.html": "spaced",
        "odd/index.html/inner.txt": "a folder called index.html",
        "odd/index.htm": "odd index.htm",
        "custom/home.html": "custom home",
        "custom/index.html": "custom index",
    }
    for name, text in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return site


def serve(root: Path, **sections: Any) -> Client:
    config = {
        "server": {"modules": MODULES},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        **sections,
    }
    return Client(build_engine(config))


def code(response: TestResponse) -> str:
    substatus = response.context.response.substatus if response.context is not None else 0
    return f"{response.status}.{substatus}"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/sub", "/sub/"),
        ("/sub?a=1&b=two", "/sub/?a=1&b=two"),
        ("/empty", "/empty/"),  # redirected whether or not it has a default document
        ("/a%20dir", "/a%20dir/"),
        ("/sub/../second", "/second/"),
    ],
)
def test_directory_without_slash_redirects(root: Path, target: str, location: str) -> None:
    with serve(root) as client:
        response = client.get(target)
    assert response.status == 301
    assert response.header("location") == location
    assert location.encode().replace(b"&", b"&amp;") in response.body


def test_redirect_works_for_head_and_any_handler_verb(root: Path) -> None:
    with serve(root) as client:
        assert client.head("/sub").status == 301


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/", "root index"),
        ("/sub/", "sub index.html"),
        ("/second/", "second index.htm"),
        ("/last/", "last default.htm"),
        ("/odd/", "odd index.htm"),  # a folder named index.html is skipped
        ("/sub/?q=1", "sub index.html"),
    ],
)
def test_first_existing_file_in_order(root: Path, target: str, body: str) -> None:
    with serve(root) as client:
        response = client.get(target)
    assert (response.status, response.text) == (200, body)
    assert response.header("content-type") == "text/html; charset=utf-8"


def test_no_default_document_is_403_14(root: Path) -> None:
    with serve(root) as client:
        assert code(client.get("/empty/")) == "403.14"


def test_custom_file_list(root: Path) -> None:
    with serve(root, default_document={"files": ["home.html", "index.html"]}) as client:
        assert client.get("/custom/").text == "custom home"
        assert code(client.get("/second/")) == "403.14"  # its files are not listed


def test_disabled(root: Path) -> None:
    with serve(root, default_document={"enabled": False}) as client:
        assert code(client.get("/sub/")) == "403.14"
        # The folder redirect is the static handler's, whatever default documents do.
        assert client.get("/sub").header("location") == "/sub/"
        assert client.get("/index.html").text == "root index"


def test_disabled_by_location(root: Path) -> None:
    locations = [{"path": "/sub", "default_document": {"enabled": False}}]
    with serve(root, locations=locations) as client:
        assert code(client.get("/sub/")) == "403.14"
        assert client.get("/second/").text == "second index.htm"


def test_files_are_not_redirected(root: Path) -> None:
    with serve(root) as client:
        assert client.get("/index.html").text == "root index"
        assert code(client.get("/missing")) == "404.0"


def test_redirect_uses_the_canonical_path() -> None:
    # A raw "//host" must not become "Location: //host/" (another host entirely).
    ctx = make_context("GET", "//evil.example?x=1", root="/")
    redirect_to_folder(ctx)
    assert ctx.response.status == 301
    assert ctx.response.header(b"location") == b"/evil.example/?x=1"


def test_hook_remaps_to_the_default_document(root: Path) -> None:
    ctx = make_context("GET", "/sub/", root=str(root))
    ctx.handler = StaticFile()
    assert run_stage(DefaultDocument(), Stage.POST_MAP_REQUEST_HANDLER, ctx) is not FINISH
    assert (ctx.request.path, ctx.request.original_path) == ("/sub/index.html", "/sub/")
    assert ctx.physical_path == str(root / "sub" / "index.html")
    assert ctx.response.status == 200


def test_only_file_serving_handlers_get_default_documents(root: Path) -> None:
    ctx = make_context("GET", "/sub/", root=str(root))
    before = ctx.physical_path
    run_stage(DefaultDocument(), Stage.POST_MAP_REQUEST_HANDLER, ctx)  # no handler chosen
    assert (ctx.physical_path, ctx.request.path) == (before, "/sub/")


class Script(Handler):
    """Stands in for FastCGI: says which script it would run."""

    id = "test.script"

    def execute(self, ctx: Context) -> None:
        ctx.response.body = f"script {ctx.request.path} {ctx.physical_path}".encode()


def serve_scripts(root: Path) -> Client:
    (root / "php").mkdir()
    (root / "php" / "index.php").write_text("<?php echo 'hi';")
    (root / "php" / "index.html").write_text("not me: index.php comes first")
    (root / "uploads").mkdir()
    (root / "uploads" / "a.jpg").write_bytes(b"\xff\xd8 <?php system($_GET['c']);")
    config = {
        "server": {"modules": [*MODULES, "test.script"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [
            {"path": "*.php", "handler": "test.script", "resource_type": "file"},
            {"path": "*", "handler": "handler.static"},
        ],
        "default_document": {"files": ["index.php", "index.html"]},
    }
    return Client(build_engine(config, modules=[Script]))


def test_a_default_document_reaches_the_handler_its_extension_maps_to(root: Path) -> None:
    with serve_scripts(root) as client:
        response = client.get("/php/?x=1")
        assert response.text == f"script /php/index.php {root / 'php' / 'index.php'}"
        assert response.context is not None
        assert response.context.request.original_path == "/php/"
        # A folder whose first default document is static still gets the static handler.
        assert client.get("/sub/").text == "sub index.html"
        assert client.get("/php/index.php").text.startswith("script /php/index.php ")


def test_a_script_mapping_for_files_only_never_runs_a_path_through_another_file(
    root: Path,
) -> None:
    with serve_scripts(root) as client:
        for target in ("/uploads/a.jpg/x.php", "/missing.php", "/php/missing.php"):
            response = client.get(target)
            assert code(response) == "404.0", target
            assert b"script" not in response.body


def test_symlinked_directory_out_of_the_root_is_not_redirected(tmp_path: Path, root: Path) -> None:
    (tmp_path / "outside").mkdir()
    (root / "out").symlink_to(tmp_path / "outside")
    (root / "in").symlink_to(root / "sub")
    with serve(root) as client:
        assert client.get("/out").status == 404
        assert client.get("/in").header("location") == "/in/"


@pytest.mark.parametrize("files", [["../index.html"], ["a/b.html"], [".."], [""], ["."]])
def test_file_names_must_be_plain(files: list[str]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"files": files}, DefaultDocumentSection, strict=True)
