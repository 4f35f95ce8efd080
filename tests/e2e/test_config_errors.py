"""Configuration mistakes over the real command line and real sockets.

- `check` runs exactly the validation `serve` runs (single process and master) and
  reports every mistake of a tree in one run, each with file, line and key;
- a web.toml that cannot be used answers 500.19 in its own folder (file, line and
  key to local clients and in the log) while the rest of the site serves, as IIS
  does with a bad web.config; `check` still fails on it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

from .conftest import Process
from .wire import Conn, Wire

#: One tree with every mistake that `check` used to pass and `serve` refused or
#: ignored (issue #26, point 3).
MISTAKES = """\
[server]
modules = ["security.request_filtering", "static.default_document", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

  [[sites.applications]]
  path = "/app"
  root = "app"

  [[sites.virtual_directories]]
  path = "/app"
  root = "media"

  [[sites.virtual_directories]]
  path = "/pics"
  root = "pictures"

[[sites]]
name = "blog"
bindings = ["http://127.0.0.1:{port}"]
root = "blog"

[[sites]]
name = "shop"
bindings = ["http://127.0.0.1:{other}"]
host_names = ["shop.example"]
root = "www"

[[sites]]
name = "shop2"
bindings = ["http://127.0.0.1:{other}"]
host_names = ["Shop.example"]
root = "www"

[[locations]]
path = "mian/docs"
request_filtering = {{ max_url = 100 }}
"""

EXPECTED = [
    "colonnade.toml:14: sites[0].virtual_directories[0].path: /app is also the path of the "
    "application sites[0].applications[0]: its root folder (or its Python app) and this "
    "folder cannot both serve it; mount the folder inside the application (such as "
    "/app/static), or make it the application's root",
    "colonnade.toml:19: sites[0].virtual_directories[1].root: no such folder: {tmp}/pictures",
    "colonnade.toml:21: sites[1].host_names: site 'blog' is never reached on port {port}: "
    "site 'main' (sites[0]) answers every host name there too; give one of them host_names",
    "colonnade.toml:24: sites[1].root: no such folder: {tmp}/blog",
    "colonnade.toml:35: sites[3].host_names[0]: 'Shop.example' on port {other} is a host "
    "name of site 'shop' (sites[2]) too: its requests never reach site 'shop2'",
    "colonnade.toml:39: locations[0].path: no site named 'mian' (did you mean 'main'?): a "
    "location's path is /URL (every site) or SITE/URL",
    "www/docs/web.toml:2: static_content.cache_max_bytes: may be set at the server and "
    "application levels only, not in a folder's web.toml",
]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def reported(stderr: str) -> list[str]:
    """The errors the command printed (its log lines left out)."""
    return [
        line.removeprefix("colonnade: ")
        for line in stderr.splitlines()
        if line.startswith("colonnade: ")
    ]


def test_check_and_serve_report_every_mistake_of_the_tree_alike(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    for folder in ("www/docs", "app", "media"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "www" / "docs" / "web.toml").write_text("[static_content]\ncache_max_bytes = 10\n")
    (tmp_path / "colonnade.toml").write_text(MISTAKES.format(port=port, other=other))
    expected = [line.format(tmp=tmp_path, port=port, other=other) for line in EXPECTED]

    check = cli(tmp_path, "check")
    assert check.returncode == 2
    assert reported(check.stderr) == expected
    for workers in ("0", "1"):  # one process; the master (which checks without the apps)
        serve = cli(
            tmp_path, "serve", "--workers", workers, "--no-watch", "--control", "run/control.sock"
        )
        assert serve.returncode == 2, serve.stderr
        assert reported(serve.stderr) == expected, workers


def test_serving_a_root_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    for command in ("serve", "check"):
        out = cli(tmp_path, command, "--root", "nowhere", "--bind", "127.0.0.1:1")
        assert out.returncode == 2
        assert out.stderr == f"colonnade: --root nowhere: no such folder: {tmp_path}/nowhere\n"


# -- a broken web.toml is confined to its folder -----------------------------------------

SITE = """\
[server]
modules = ["security.request_filtering", "static.default_document",
           "static.directory_listing", "handler.static", "log.http"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

  [[sites.applications]]
  path = "/shop"
  root = "shop"
"""

BROKEN = '[static_content]\nset_etag = "no"\n\n[directory_brwse]\nenabled = true\n'
FILE_ERRORS = (
    "www/docs/web.toml:2: static_content.set_etag: Expected `bool`, got `str`",
    "www/docs/web.toml:4: directory_brwse: no enabled module owns this section "
    "(did you mean 'directory_browse'?)",
)


def get(port: int, path: str, *headers: str) -> Wire:
    with Conn(port) as c:
        extra = "".join(f"{h}\r\n" for h in headers)
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n".encode())
        return c.response()


def html(text: str) -> bytes:
    return text.replace("'", "&#x27;").encode()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "www" / "docs" / "deep").mkdir(parents=True)
    (tmp_path / "www" / "docs" / "deep" / "a.txt").write_text("deep")
    (tmp_path / "www" / "index.html").write_text("home")
    (tmp_path / "www" / "docs" / "web.toml").write_text(BROKEN)
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "index.html").write_text("shop")
    return tmp_path


@pytest.mark.parametrize("workers", ["0", "1"], ids=["single-process", "master-and-worker"])
def test_a_broken_web_toml_answers_500_19_in_its_folder_and_the_rest_serves(
    tree: Path, workers: str
) -> None:
    port = free_port()
    (tree / "colonnade.toml").write_text(SITE.format(port=port))
    check = cli(tree, "check")
    assert check.returncode == 2  # still an error for `check`
    assert reported(check.stderr) == list(FILE_ERRORS)

    server = Process(["-c", "colonnade.toml", "--workers", workers], cwd=tree, port=port)
    try:
        local = get(port, "/docs/deep/a.txt")
        assert local.status == 500
        assert b"Error code: 500.19" in local.body
        for error in FILE_ERRORS:  # a local client is shown file, line and key
            assert html(error) in local.body
        found = re.search(rb"Correlation id: <code>(\w+)</code>", local.body)
        assert found is not None
        # A remote client (here: through a proxy) gets the terse page only.
        remote = get(port, "/docs/", "X-Forwarded-For: 203.0.113.7")
        assert remote.status == 500 and b"Error code: 500.19" in remote.body
        assert b"web.toml" not in remote.body and b"set_etag" not in remote.body
        # The rest of the site, and the other application, serve as configured.
        assert (get(port, "/").status, get(port, "/").body) == (200, b"home")
        assert get(port, "/shop/").body == b"shop"
        assert get(port, "/documents").status == 404  # /docs is a folder, not a prefix

        # The log names file, line and key: once when the configuration is read,
        # and with each request's correlation id.
        cid = found.group(1).decode()
        wait_for(lambda: f"correlation_id={cid}" in server.stderr(), PATIENCE, "the log line")
        log = server.stderr()
        for error in FILE_ERRORS:
            assert f"{error} (requests for site main at /docs and below are answered 500.19)" in log
        line = next(x for x in log.splitlines() if f"correlation_id={cid}" in x)
        assert "GET /docs/deep/a.txt: 500.19" in line and FILE_ERRORS[0] in line

        # A fixed file heals the folder (a change of a web.toml is picked up live).
        (tree / "www" / "docs" / "web.toml").write_text("[static_content]\nset_etag = false\n")
        wait_for(lambda: get(port, "/docs/deep/a.txt").status == 200, PATIENCE, "the folder healed")
        assert get(port, "/docs/deep/a.txt").body == b"deep"
    finally:
        server.kill()


def test_a_broken_web_toml_at_an_applications_root_takes_the_application_down(
    tree: Path,
) -> None:
    # It may have changed the application's modules: nothing of it can be trusted,
    # so the whole application answers 500.19; the site's other applications serve.
    port = free_port()
    (tree / "www" / "docs" / "web.toml").unlink()
    (tree / "shop" / "web.toml").write_text('[modules]\nadd = ["handler.statik"]\n')
    (tree / "colonnade.toml").write_text(SITE.format(port=port))
    server = Process(["-c", "colonnade.toml"], cwd=tree, port=port)
    try:
        for path in ("/shop", "/shop/", "/shop/index.html"):
            page = get(port, path)
            assert page.status == 500 and b"Error code: 500.19" in page.body, path
        assert (
            html(
                "shop/web.toml:2: modules.add[0]: no module named 'handler.statik' is installed "
                "(did you mean 'handler.static'?)"
            )
            in get(port, "/shop/").body
        )
        assert get(port, "/").body == b"home"
        assert get(port, "/docs/deep/a.txt").body == b"deep"
    finally:
        server.kill()


def test_a_broken_server_file_still_refuses_the_start(tree: Path) -> None:
    (tree / "colonnade.toml").write_text(SITE.format(port=1) + "\n[static_content]\nset_etag = 1\n")
    out = cli(tree, "serve")
    assert out.returncode == 2
    assert reported(out.stderr) == [
        "colonnade.toml:15: static_content.set_etag: Expected `bool`, got `int`",
        *FILE_ERRORS,
    ]


@pytest.mark.parametrize("workers", ["0", "1"], ids=["single-process", "master-and-worker"])
def test_a_refused_reload_logs_every_mistake(tree: Path, workers: str) -> None:
    port = free_port()
    (tree / "www" / "docs" / "web.toml").unlink()
    config = tree / "colonnade.toml"
    config.write_text(SITE.format(port=port))
    server = Process(["-c", "colonnade.toml", "--workers", workers], cwd=tree, port=port)
    try:
        assert get(port, "/").body == b"home"
        config.write_text(
            SITE.format(port=port).replace('root = "shop"', 'root = "shops"')
            + "\n[default_document]\nfiles = 1\n"
        )
        mistakes = (
            f"colonnade.toml:12: sites[0].applications[0].root: no such folder: {tree}/shops",
            "colonnade.toml:15: default_document.files: Expected `array`, got `int`",
        )
        for mistake in mistakes:
            wait_for(lambda m=mistake: m in server.stderr(), PATIENCE, mistake)
        refused = [x for x in server.stderr().splitlines() if "refused, still serving" in x]
        assert [m for m in mistakes if any(line.endswith(m) for line in refused)] == list(mistakes)
        assert get(port, "/shop/").body == b"shop"  # the previous configuration serves
    finally:
        server.kill()
