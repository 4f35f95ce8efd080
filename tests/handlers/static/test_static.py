"""The static file handler: types, lengths, HEAD, errors, validators, confinement."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade.core.httputil import weak_match
from colonnade.core.request import Request
from colonnade.handlers.static.config import (
    BUILTIN_MIME_TYPES,
    StaticContentSection,
    parse_http_date,
)
from colonnade.handlers.static.handler import StaticFile, http_date
from colonnade.testing import Client, RecordingWriter, TestResponse, build_engine, make_context

ALL = ["security.request_filtering", "static.default_document", "handler.static"]
STATIC_ONLY = ["handler.static"]
SECRET = b"TOP-SECRET-7f3a"


def config(root: Path, modules: list[str] = STATIC_ONLY, **sections: Any) -> dict[str, Any]:
    site: dict[str, Any] = {"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}
    if "virtual_directories" in sections:
        site["virtual_directories"] = sections.pop("virtual_directories")
    return {"server": {"modules": modules}, "sites": [site], **sections}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    files = {
        "index.html": b"<h1>home</h1>",
        "style.CSS": b"body{}",
        "app.js": b"let a",
        "data.json": b"{}",
        "logo.png": b"\x89PNG....",
        "icon.svg": b"<svg/>",
        "font.woff2": b"wOF2",
        "notes.txt": b"hello world",
        "archive.xyz": b"xyz!",
        "README": b"read me",
        "dir/inner.txt": b"inner",
    }
    for name, data in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return site


@pytest.fixture
def client(root: Path) -> Iterator[Client]:
    with Client(build_engine(config(root))) as c:
        yield c


def length_sent(response: TestResponse) -> int | None:
    assert response.context is not None
    writer = response.context.writer
    assert isinstance(writer, RecordingWriter)
    return writer.content_length


def code(response: TestResponse) -> str:
    substatus = response.context.response.substatus if response.context is not None else 0
    return f"{response.status}.{substatus}"


@pytest.mark.parametrize(
    ("target", "content_type"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/style.CSS", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/data.json", "application/json"),
        ("/logo.png", "image/png"),
        ("/icon.svg", "image/svg+xml"),
        ("/font.woff2", "font/woff2"),
        ("/notes.txt", "text/plain; charset=utf-8"),
    ],
)
def test_content_type_length_and_body(
    client: Client, root: Path, target: str, content_type: str
) -> None:
    response = client.get(target)
    data = (root / target.lstrip("/")).read_bytes()
    assert response.status == 200
    assert response.header("content-type") == content_type
    assert response.header("content-length") == str(len(data))
    assert length_sent(response) == len(data)
    assert response.body == data


def test_head_sends_the_head_only(client: Client) -> None:
    response = client.head("/notes.txt")
    assert response.status == 200
    assert response.header("content-length") == "11"
    assert response.header("etag") is not None
    assert response.context is not None
    assert response.body == b""
    writer = response.context.writer
    # A file kept in memory is handed over as for GET (so HEAD's head is GET's,
    # compressed variants included); the transport sends none of it.
    assert isinstance(writer, RecordingWriter) and writer.chunks == [b"hello world"]
    assert writer.content_length == 11


def test_head_of_a_file_from_disk_reads_none_of_it(root: Path) -> None:
    with Client(build_engine(config(root, static_content={"cache_max_file_size": 0}))) as c:
        response = c.head("/notes.txt")
    assert response.status == 200 and response.body == b""
    assert response.context is not None
    writer = response.context.writer
    assert isinstance(writer, RecordingWriter) and writer.chunks == []
    assert writer.content_length == 11


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_verbs_are_405_with_allow(client: Client, method: str) -> None:
    response = client.request(method, "/notes.txt")
    assert response.status == 405
    assert response.header("allow") == "GET, HEAD"
    assert b"hello" not in response.body


@pytest.mark.parametrize(
    ("settings", "target", "expected", "content_type"),
    [
        ({}, "/archive.xyz", "404.3", None),
        ({}, "/README", "404.3", None),
        (
            {"default_mime_type": "application/octet-stream"},
            "/archive.xyz",
            "200.0",
            "application/octet-stream",
        ),
        ({"mime_map": {".xyz": "application/x-xyz"}}, "/archive.xyz", "200.0", "application/x-xyz"),
        ({"mime_map": {".XYZ": "application/x-xyz"}}, "/archive.xyz", "200.0", "application/x-xyz"),
        ({"mime_map": {".": "text/plain"}}, "/README", "200.0", "text/plain"),
        ({"mime_map": {".txt": "text/x-notes"}}, "/notes.txt", "200.0", "text/x-notes"),
        (
            {"mime_map": {".xyz": "application/x-xyz"}},
            "/notes.txt",
            "200.0",
            "text/plain; charset=utf-8",
        ),
    ],
)
def test_mime_map_and_default_mime_type(
    root: Path, settings: dict[str, Any], target: str, expected: str, content_type: str | None
) -> None:
    with Client(build_engine(config(root, static_content=settings))) as c:
        response = c.get(target)
    assert code(response) == expected
    if content_type is not None:
        assert response.header("content-type") == content_type
    else:
        assert b"read me" not in response.body and b"xyz!" not in response.body


def test_builtin_mime_table_is_lower_case_and_sized() -> None:
    assert 90 <= len(BUILTIN_MIME_TYPES) <= 200
    assert all(ext == ext.lower() and ext.startswith(".") for ext in BUILTIN_MIME_TYPES)
    assert ".toml" not in BUILTIN_MIME_TYPES  # web.toml must never get a type by default


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/dir", "301.0"),
        ("/dir/", "403.14"),
        ("/", "403.14"),
        ("/missing.txt", "404.0"),
        ("/dir/missing/deeper.txt", "404.0"),
        ("/notes.txt/", "404.0"),
        ("/notes.txt/x", "404.0"),
    ],
)
def test_directories_and_missing_files(client: Client, target: str, expected: str) -> None:
    assert code(client.get(target)) == expected


def test_a_fifo_is_not_a_file(root: Path, client: Client) -> None:
    os.mkfifo(root / "pipe.txt")
    assert code(client.get("/pipe.txt")) == "404.0"


def test_permission_denied_is_403(
    root: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).endswith("/dir"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    assert code(client.get("/dir/inner.txt")) == "403.0"
    assert code(client.get("/notes.txt")) == "200.0"


# -- validators and 304 ------------------------------------------------------------------


def test_validators(root: Path) -> None:
    # Checked on every request, so the file cache notices the change at once.
    settings = {"cache_check_interval": 0}
    with Client(build_engine(config(root, static_content=settings))) as client:
        check_validators(client, root)


def check_validators(client: Client, root: Path) -> None:
    response = client.get("/notes.txt")
    st = os.stat(root / "notes.txt")
    assert response.header("last-modified") == formatdate(int(st.st_mtime), usegmt=True)
    etag = response.header("etag")
    assert etag is not None and etag.startswith('"') and etag.endswith('"')
    # A new version gets a new tag, even within the same second and size.
    os.utime(root / "notes.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert client.get("/notes.txt").header("etag") != etag


def test_set_etag_false(root: Path) -> None:
    with Client(build_engine(config(root, static_content={"set_etag": False}))) as c:
        response = c.get("/notes.txt")
        assert response.header("etag") is None
        assert c.get("/notes.txt", headers={"if-none-match": "*"}).status == 304


def test_conditional_get(client: Client, root: Path) -> None:
    first = client.get("/notes.txt")
    etag = first.header("etag")
    last_modified = first.header("last-modified")
    assert etag is not None and last_modified is not None
    mtime = int(os.stat(root / "notes.txt").st_mtime)
    past = formatdate(mtime - 10, usegmt=True)
    future = formatdate(mtime + 10, usegmt=True)
    rows = [
        ({"if-none-match": etag}, 304),
        ({"if-none-match": "W/" + etag}, 304),
        ({"if-none-match": f'"nope", {etag}'}, 304),
        ({"if-none-match": "*"}, 304),
        ({"if-none-match": '"nope"'}, 200),
        ({"if-modified-since": last_modified}, 304),
        ({"if-modified-since": future}, 304),
        ({"if-modified-since": past}, 200),
        ({"if-modified-since": "not a date"}, 200),
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
        ({"if-none-match": '"nope"', "if-modified-since": last_modified}, 200),
    ]
    for headers, status in rows:
        response = client.get("/notes.txt", headers=headers)
        assert (headers, response.status) == (headers, status)
        if status == 304:
            assert response.body == b""
            assert response.header("etag") == etag
            assert response.header("last-modified") == last_modified
            assert response.header("content-length") is None
        else:
            assert response.body == b"hello world"


def test_head_conditional(client: Client) -> None:
    etag = client.get("/notes.txt").header("etag")
    assert etag is not None
    assert client.head("/notes.txt", headers={"if-none-match": etag}).status == 304


def test_helpers() -> None:
    assert http_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date(b"Sun Nov  6 08:49:37 1994") == 784111777
    assert parse_http_date(b"garbage") is None
    assert weak_match(b'W/"a", "b"', b'"b"')
    assert not weak_match(b'"a"', None)
    assert not weak_match(b'"ab"', b'"a"')


# -- roots: virtual directories, symlinks inside, symlinks out ----------------------------


@pytest.fixture
def layout(tmp_path: Path, root: Path) -> Path:
    """A secret outside the root, symlinks pointing at it, and one that stays inside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "secret.txt").symlink_to(tmp_path / "secret.txt")  # a file link out
    (root / "link").symlink_to(outside)  # a folder link out
    (root / "dir" / "up").symlink_to("../..")  # a relative link climbing out
    (root / "inside.txt").symlink_to(root / "notes.txt")  # stays inside: fine
    (root / "alias").symlink_to(root / "dir")
    return tmp_path


TRAVERSALS = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%5csecret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%c0%af..%c0%afsecret.txt",
    "/%e0%80%ae%e0%80%ae/secret.txt",
    "//../secret.txt",
    "/./../secret.txt",
    "/a/../../secret.txt",
    "/dir/../../secret.txt",
    "/dir/%2e%2e/%2e%2e/secret.txt",
    "/.%2e/secret.txt",
    "/%2e./secret.txt",
    "/..;/secret.txt",
    "/secret.txt",
    "/secret.txt%00.html",
    "/link/secret.txt",
    "/link/",
    "/link",
    "/LINK/secret.txt",
    "/link%2fsecret.txt",
    "/dir/up/secret.txt",
    "/dir/up/outside/secret.txt",
    "/dir/up/site/../secret.txt",
    "/dir/up/",
    "/\\..\\secret.txt",
    "/..\\secret.txt",
]


def raw_request(client: Client, target: str) -> TestResponse:
    """Like ``Client.request`` but with the target split by hand (urlsplit reads a
    leading ``//`` as an authority)."""
    from colonnade.core.urlpath import decode_path
    from colonnade.errors import HttpError

    raw_path, _, query = target.encode().partition(b"?")
    writer = RecordingWriter()
    try:
        path = decode_path(raw_path)
    except HttpError as exc:
        writer.send_all(exc.status, None, [], exc.message.encode())
        return TestResponse(writer, "GET", None)
    request = Request(
        "GET",
        path,
        raw_path=raw_path,
        query=query,
        host="localhost",
        headers=[(b"host", b"localhost")],
        client=("127.0.0.1", 1),
        server=("127.0.0.1", 8080),
    )
    ctx = client.loop.run_until_complete(client.engine.handle(request, writer))
    return TestResponse(writer, "GET", ctx)


@pytest.mark.parametrize("modules", [ALL, STATIC_ONLY], ids=["all-modules", "static-only"])
@pytest.mark.parametrize(
    "mime", [{}, {"default_mime_type": "text/plain"}], ids=["mime-map", "serve-any-type"]
)
def test_traversal_never_leaks(
    layout: Path, root: Path, modules: list[str], mime: dict[str, Any]
) -> None:
    engine = build_engine(config(root, modules, static_content=mime))
    with Client(engine) as client:
        results = []
        for target in TRAVERSALS:
            for response in (client.request("GET", target), raw_request(client, target)):
                results.append((target, response.status, SECRET in response.body))
    leaks = [r for r in results if r[2] or not 400 <= r[1] < 500]
    assert leaks == []


@pytest.mark.parametrize("name", ["web.toml", "sub/WEB.TOML", "Web.Toml"])
def test_web_toml_is_never_served(root: Path, name: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# SECRET-SETTINGS\n")
    settings = {"default_mime_type": "text/plain"}  # even when any type would be served
    with Client(build_engine(config(root, static_content=settings))) as client:
        response = client.get("/" + name)
    assert code(response) == "404.8"
    assert b"SECRET-SETTINGS" not in response.body


def test_symlinks_inside_the_root_are_served(layout: Path, client: Client) -> None:
    assert client.get("/inside.txt").body == b"hello world"
    assert client.get("/alias/inner.txt").body == b"inner"


def test_allow_symlinks_outside_root(layout: Path, root: Path) -> None:
    engine = build_engine(config(root, static_content={"allow_symlinks_outside_root": True}))
    with Client(engine) as client:
        assert client.get("/link/secret.txt").body == SECRET
        assert client.get("/secret.txt").body == SECRET
        assert code(client.get("/../secret.txt")) == "400.0"  # URL climbing is never allowed


def test_virtual_directory_is_a_root(tmp_path: Path, root: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "clip.txt").write_text("clip")
    (media / "out").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    vdirs = [{"path": "/media", "root": str(media)}]
    with Client(build_engine(config(root, virtual_directories=vdirs))) as client:
        assert client.get("/media/clip.txt").body == b"clip"
        leaked = client.get("/media/out/secret.txt")
        assert leaked.status == 404 and SECRET not in leaked.body


def test_root_link_to_elsewhere_is_the_root(tmp_path: Path) -> None:
    # The root folder itself may be a symlink (a deploy "current" link).
    release = tmp_path / "release-1"
    release.mkdir()
    (release / "a.txt").write_text("v1")
    (tmp_path / "current").symlink_to(release)
    with Client(build_engine(config(tmp_path / "current"))) as client:
        assert client.get("/a.txt").body == b"v1"


def test_handler_without_provision_uses_the_context_app(root: Path) -> None:
    ctx = make_context("GET", "/notes.txt", root=str(root))
    StaticFile().execute(ctx)
    assert ctx.response.status == 200
    assert ctx.response.body == b"hello world"  # small: read into the file cache


def test_last_modified_in_the_past_second(root: Path, client: Client) -> None:
    now = time.time()
    os.utime(root / "notes.txt", (now, now))
    response = client.get("/notes.txt", headers={"if-modified-since": formatdate(now, usegmt=True)})
    assert response.status == 304


@pytest.mark.parametrize(
    "raw",
    [
        {"mime_map": {"txt": "text/plain"}},
        {"mime_map": {".txt": "text plain"}},
        {"mime_map": {".txt": "text/plain\r\nx: y"}},
        {"default_mime_type": ""},
        {"set_etag": "yes"},
    ],
)
def test_invalid_settings_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, StaticContentSection, strict=True)


def test_web_toml_behind_a_symlink_is_never_served(root: Path) -> None:
    (root / "web.toml").write_text("# SECRET-SETTINGS\n")
    (root / "settings.txt").symlink_to(root / "web.toml")
    with Client(build_engine(config(root))) as client:
        response = client.get("/settings.txt")
    assert code(response) == "404.8"
    assert b"SECRET-SETTINGS" not in response.body


def test_the_type_follows_the_requested_name(root: Path) -> None:
    (root / "current.js").symlink_to(root / "notes.txt")
    with Client(build_engine(config(root))) as client:
        response = client.get("/current.js")
    assert response.header("content-type") == "text/javascript; charset=utf-8"
    assert response.body == b"hello world"
