"""Live reload: a web.toml dropped into a running server's folder takes effect; a
broken edit is refused while the server keeps answering with the old settings."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from .conftest import Process, free_port
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


def wait_for(port: int, path: str, status: int, seconds: float = 8.0) -> bytes:
    end = time.monotonic() + seconds
    last = None
    while time.monotonic() < end:
        last = status_of(port, path)
        if last[0] == status:
            return last[1]
        time.sleep(0.1)
    raise AssertionError(f"{path} never answered {status}; last {last}")


def test_dropped_web_toml_turns_listing_on_and_a_broken_edit_is_refused(tmp_path: Path) -> None:
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
        page = wait_for(port, "/pub/", 200)
        assert b"report.pdf" in page
        assert time.monotonic() - started < 5
        assert status_of(port, "/")[0] == 403  # only that folder changed

        web.write_text('[directory_browse]\nenabled = "yes"\n')  # broken
        time.sleep(1.5)
        assert status_of(port, "/pub/")[0] == 200  # the old configuration still serves

        web.write_text("[directory_browse]\nenabled = false\n")
        wait_for(port, "/pub/", 403)

        # SIGHUP re-reads too (here: nothing changed, so nothing switches).
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert status_of(port, "/pub/")[0] == 403
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        log = server.stderr()
        assert "www/pub/web.toml:2: directory_browse.enabled: Expected `bool`, got `str`" in log
        assert "still serving the previous configuration" in log
        assert re.search(
            r"reloaded \(SIGHUP\): generation \d+, 0 application\(s\) switched, "
            r"1 unchanged",
            log,
        )
    finally:
        server.kill()
