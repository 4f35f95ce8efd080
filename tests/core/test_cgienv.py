"""The CGI/1.1 variables and the script/path-info split, from hand-built contexts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.app import Application, VirtualDirectory
from colonnade.core.cgienv import (
    CGI_HEADERS,
    Script,
    as_bytes,
    cgi_variables,
    find_script,
    latin1_path,
    protocol_name,
)
from colonnade.core.context import Context
from colonnade.core.principal import Principal
from colonnade.core.request import Request, TlsInfo


def make_ctx(app: Application, path: str, **kw: Any) -> Context:
    request = Request(kw.pop("method", "GET"), path, **kw)
    return Context(request, app, writer=None, send_response=None)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "index.php").write_text("<?php")
    (tmp_path / "cgi-bin").mkdir()
    (tmp_path / "cgi-bin" / "run.cgi").write_text("#!/bin/sh\n")
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "evil.jpg").write_text("not a script")
    (tmp_path / "caf\u00e9.cgi").write_text("#!/bin/sh\n")
    return tmp_path


def root_app(site: Path, **kw: Any) -> Application:
    return Application(site="s", path="/", root=str(site), **kw)


# -- find_script ----------------------------------------------------------------------------


def test_the_whole_path_is_the_script(site: Path) -> None:
    ctx = make_ctx(root_app(site), "/cgi-bin/run.cgi")
    assert find_script(ctx) == Script("/cgi-bin/run.cgi", str(site / "cgi-bin/run.cgi"), "")


def test_path_info_after_the_script(site: Path) -> None:
    ctx = make_ctx(root_app(site), "/app/index.php/extra/more")
    found = find_script(ctx)
    assert found == Script("/app/index.php", str(site / "app/index.php"), "/extra/more")


def test_a_trailing_slash_is_path_info(site: Path) -> None:
    ctx = make_ctx(root_app(site), "/cgi-bin/run.cgi/")
    found = find_script(ctx)
    assert found is not None and found.path_info == "/"


def test_a_directory_is_never_the_script(site: Path) -> None:
    assert find_script(make_ctx(root_app(site), "/cgi-bin")) is None
    assert find_script(make_ctx(root_app(site), "/cgi-bin/missing.cgi/x")) is None
    assert find_script(make_ctx(root_app(site), "/nothing/here")) is None


def test_a_non_script_file_stops_the_search(site: Path) -> None:
    """``/uploads/evil.jpg/x.php``: evil.jpg is the only file on the way; a test
    that wants ``.php`` refuses it, and nothing below a file is looked at."""
    ctx = make_ctx(root_app(site), "/uploads/evil.jpg/x.php")

    def php(path: str) -> bool:
        return path.endswith(".php")

    assert find_script(ctx, php) is None
    # Without a test, the file found is evil.jpg itself (the handler's allow-list
    # must refuse it), never something "below" it.
    assert find_script(ctx) == Script("/uploads/evil.jpg", str(site / "uploads/evil.jpg"), "/x.php")


def test_accept_applies_to_the_whole_path_too(site: Path) -> None:
    ctx = make_ctx(root_app(site), "/uploads/evil.jpg")
    assert find_script(ctx, lambda p: p.endswith(".php")) is None


def test_a_symlink_out_of_the_application_is_no_script(site: Path, tmp_path_factory: Any) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.cgi"
    outside.write_text("#!/bin/sh\n")
    os.symlink(outside, site / "cgi-bin" / "link.cgi")
    assert find_script(make_ctx(root_app(site), "/cgi-bin/link.cgi")) is None
    assert find_script(make_ctx(root_app(site), "/cgi-bin/link.cgi/x")) is None


def test_a_nested_application_splits_below_its_path(site: Path) -> None:
    app = Application(site="s", path="/app", root=str(site / "app"))
    ctx = make_ctx(app, "/app/index.php/x")
    assert find_script(ctx) == Script("/app/index.php", str(site / "app/index.php"), "/x")


def test_a_virtual_directory_below_a_missing_folder(site: Path, tmp_path_factory: Any) -> None:
    elsewhere = tmp_path_factory.mktemp("vdir")
    (elsewhere / "tool.cgi").write_text("#!/bin/sh\n")
    app = root_app(site, virtual_directories=(VirtualDirectory("/tools/bin", str(elsewhere)),))
    ctx = make_ctx(app, "/tools/bin/tool.cgi/a")
    assert find_script(ctx) == Script("/tools/bin/tool.cgi", str(elsewhere / "tool.cgi"), "/a")


# -- cgi_variables ----------------------------------------------------------------------------


def variables(ctx: Context, **kw: Any) -> dict[str, str]:
    script = find_script(ctx)
    assert script is not None
    return cgi_variables(ctx, script, **kw)


def test_the_standard_variables(site: Path) -> None:
    ctx = make_ctx(
        root_app(site),
        "/app/index.php/extra",
        method="POST",
        raw_path=b"/app/index.php/extra",
        query=b"a=1&b=%20",
        headers=[
            (b"host", b"example.test:8080"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"3"),
            (b"x-thing", b"one"),
            (b"x-thing", b"two"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"authorization", b"Bearer t"),
        ],
        host="example.test:8080",
        client=("192.0.2.7", 51000),
        server=("10.0.0.1", 8080),
    )
    env = variables(ctx, software="colonnade/9")
    root = str(site)
    assert env == {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "colonnade/9",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "POST",
        "REQUEST_SCHEME": "http",
        "QUERY_STRING": "a=1&b=%20",
        "REQUEST_URI": "/app/index.php/extra?a=1&b=%20",
        "SCRIPT_NAME": "/app/index.php",
        "SCRIPT_FILENAME": root + "/app/index.php",
        "PATH_INFO": "/extra",
        "PATH_TRANSLATED": root + "/extra",
        "DOCUMENT_ROOT": root,
        "SERVER_NAME": "example.test",
        "SERVER_ADDR": "10.0.0.1",
        "SERVER_PORT": "8080",
        "REMOTE_ADDR": "192.0.2.7",
        "REMOTE_PORT": "51000",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "3",
        "HTTP_HOST": "example.test:8080",
        "HTTP_X_THING": "one, two",
        "HTTP_COOKIE": "a=1; b=2",
        "HTTP_AUTHORIZATION": "Bearer t",
    }


def test_no_path_info_no_path_translated(site: Path) -> None:
    env = variables(make_ctx(root_app(site), "/cgi-bin/run.cgi"))
    assert env["PATH_INFO"] == ""
    assert "PATH_TRANSLATED" not in env
    assert env["QUERY_STRING"] == ""
    assert "HTTPS" not in env and "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env


def test_request_uri_is_the_original_target_after_a_remap(site: Path) -> None:
    app = root_app(site)
    ctx = make_ctx(app, "/pretty/url", raw_path=b"/pretty/url", query=b"x=1")
    ctx.remap("/app/index.php")
    env = variables(ctx)
    assert env["REQUEST_URI"] == "/pretty/url?x=1"
    assert env["SCRIPT_NAME"] == "/app/index.php"
    assert env["PATH_INFO"] == ""


def test_httpoxy_and_odd_header_names_are_dropped(site: Path) -> None:
    ctx = make_ctx(
        root_app(site),
        "/cgi-bin/run.cgi",
        headers=[
            (b"proxy", b"http://evil.test:8888"),
            (b"x_real_ip", b"1.2.3.4"),
            (b"x.dotted", b"1"),
            (b"x-ok-1", b"fine"),
        ],
    )
    env = variables(ctx)
    assert "HTTP_PROXY" not in env
    assert not any(k.startswith("HTTP_X_REAL") or "." in k for k in env)
    assert env["HTTP_X_OK_1"] == "fine"
    assert CGI_HEADERS.key(b"proxy") is None
    assert CGI_HEADERS.key(b"proxy-authorization") == "HTTP_PROXY_AUTHORIZATION"


def test_https_and_the_user(site: Path) -> None:
    ctx = make_ctx(
        root_app(site),
        "/cgi-bin/run.cgi",
        scheme="https",
        tls=TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", None, "h2"),
        version="2",
    )
    ctx.user = Principal("j\u00f6rg", "Basic")
    env = variables(ctx)
    assert env["HTTPS"] == "on"
    assert env["REQUEST_SCHEME"] == "https"
    assert env["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert env["REMOTE_USER"].encode("latin-1").decode("utf-8") == "j\u00f6rg"
    assert env["AUTH_TYPE"] == "Basic"


def test_the_anonymous_user_sets_nothing(site: Path) -> None:
    ctx = make_ctx(root_app(site), "/cgi-bin/run.cgi")
    ctx.user = Principal("", "anonymous")
    env = variables(ctx)
    assert "REMOTE_USER" not in env and "AUTH_TYPE" not in env


def test_non_ascii_paths_are_utf8_bytes(site: Path) -> None:
    ctx = make_ctx(root_app(site), "/caf\u00e9.cgi/\u00fc")
    env = variables(ctx)
    raw = as_bytes(env)
    assert raw[b"SCRIPT_NAME"] == "/caf\u00e9.cgi".encode()
    assert raw[b"PATH_INFO"] == "/\u00fc".encode()
    assert raw[b"SCRIPT_FILENAME"] == os.fsencode(str(site / "caf\u00e9.cgi"))


def test_document_root_can_be_named(site: Path) -> None:
    env = variables(make_ctx(root_app(site), "/app/index.php/x"), document_root="/srv/www")
    assert env["DOCUMENT_ROOT"] == "/srv/www"
    assert env["PATH_TRANSLATED"] == "/srv/www/x"


def test_small_helpers() -> None:
    assert protocol_name("1.0") == "HTTP/1.0"
    assert protocol_name("3") == "HTTP/3"
    assert latin1_path("/\u00e9") == "/\u00c3\u00a9"
