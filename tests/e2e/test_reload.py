"""Live reload: a web.toml dropped into a running server's folder takes effect; a
broken edit answers 500.19 in its folder alone (as IIS does with a bad web.config)
until it is fixed; broken application code keeps the old generation serving."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

from .conftest import Process
from .wire import Conn

CONFIG = """
[server]
modules = ["security.request_filtering", "static.default_document",
           "static.directory_listing", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"
"""


def status_of(port: int, path: str) -> tuple[int, bytes]:
    with Conn(port) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        r = c.response()
        return r.status, r.body


def answers(port: int, path: str, status: int, body: bytes | None = None) -> bytes:
    """Wait until ``path`` answers ``status`` (and ``body``); return the body."""

    def check() -> tuple[int, bytes] | None:
        got = status_of(port, path)
        return got if got[0] == status and body in (None, got[1]) else None

    return wait_for(check, PATIENCE, f"{path} answering {status} {body!r}")[1]


def logged(server: Process, text: str) -> None:
    """Wait until the server's log says ``text``."""
    wait_for(lambda: text in server.stderr(), PATIENCE, f"{text!r} in the log")


def test_dropped_web_toml_turns_listing_on_and_a_broken_edit_is_confined(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "www" / "pub").mkdir(parents=True)
    (tmp_path / "www" / "pub" / "report.pdf").write_bytes(b"%PDF")
    (tmp_path / "colonnade.toml").write_text(CONFIG.format(port=port))
    server = Process(["-c", "colonnade.toml"], cwd=tmp_path, port=port)
    try:
        assert status_of(port, "/pub/")[0] == 403  # 403.14: listing is off
        web = tmp_path / "www" / "pub" / "web.toml"
        started = time.monotonic()
        web.write_text("[directory_browse]\nenabled = true\n")
        page = answers(port, "/pub/", 200)
        assert b"report.pdf" in page
        # Promptly (the watcher waits 0.3 s for more changes), even on a loaded machine.
        assert time.monotonic() - started < 10
        assert status_of(port, "/")[0] == 403  # only that folder changed

        web.write_text('[directory_browse]\nenabled = "yes"\n')  # broken
        error = "www/pub/web.toml:2: directory_browse.enabled: Expected `bool`, got `str`"
        page = answers(port, "/pub/report.pdf", 500)
        assert b"Error code: 500.19" in page
        assert error.encode() in page  # this client is local: it sees file, line and key
        assert status_of(port, "/")[0] == 403  # the rest of the site serves as before

        web.write_text("[directory_browse]\nenabled = false\n")  # fixed: the folder heals
        answers(port, "/pub/", 403)
        assert status_of(port, "/pub/report.pdf")[0] == 200

        # SIGHUP re-reads too (here: nothing changed, so nothing switches).
        server.proc.send_signal(signal.SIGHUP)
        logged(server, "configuration reloaded (SIGHUP)")
        assert status_of(port, "/pub/")[0] == 403
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        log = server.stderr()
        assert f"{error} (requests for site main at /pub and below are answered 500.19)" in log
        assert re.search(
            r"correlation_id=\w+ GET /pub/report.pdf: 500.19 .*: " + re.escape(error), log
        )
        assert re.search(
            r"reloaded \(SIGHUP\): generation \d+, 0 application\(s\) switched, "
            r"1 unchanged",
            log,
        )
    finally:
        server.kill()


MODULE = """
from colonnade import FINISH, Module, Stage, hook

VERSION = b"{version}"


class Version(Module):
    id = "shop.version"

    @hook(Stage.BEGIN_REQUEST)
    def begin(self, ctx):
        if ctx.request.path == "/shop/version":
            ctx.response.body = VERSION
            return FINISH
        return None
"""

APP_CONFIG = """
[server]
modules = ["handler.static"]
control_socket = "run/control.sock"

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[sites.applications]]
path = "/shop"
root = "shop"
allow_modules = true
"""


@pytest.mark.parametrize("workers", [0, 1], ids=["single-process", "master-and-worker"])
def test_an_edited_application_module_is_reloaded(tmp_path: Path, workers: int) -> None:
    # IIS recycles an application whose code changes; here the application whose
    # module source changed is rebuilt from the new file (in every worker), and a
    # broken edit is refused while the previous code keeps serving.
    port = free_port()
    shop = tmp_path / "shop"
    shop.mkdir()
    (tmp_path / "www").mkdir()
    source = shop / "version.py"
    source.write_text(MODULE.format(version="v1"))
    (shop / "web.toml").write_text('[application_modules]\n"shop.version" = "version:Version"\n')
    (tmp_path / "colonnade.toml").write_text(APP_CONFIG.format(port=port))
    server = Process(["-c", "colonnade.toml", "--workers", str(workers)], cwd=tmp_path, port=port)
    try:
        assert answers(port, "/shop/version", 200) == b"v1"
        source.write_text(MODULE.format(version="v2"))
        answers(port, "/shop/version", 200, body=b"v2")

        source.write_text(MODULE.format(version="v3").replace("def begin", "def begin("))
        logged(server, "still serving the previous configuration")
        assert status_of(port, "/shop/version") == (200, b"v2")

        source.write_text(MODULE.format(version="v4"))
        answers(port, "/shop/version", 200, body=b"v4")
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
        log = server.stderr()
        assert "version.py failed to import" in log
        assert "still serving the previous configuration" in log
    finally:
        server.kill()
