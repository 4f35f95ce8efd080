"""A refusal caused by a setting names the setting to change (413.1, 403.14, 404.3):
on the page for a local client and in the log, never for a remote one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

from .conftest import Process
from .test_config_errors import html
from .wire import Conn, Wire

PAGES = """\
[server]
modules = ["security.request_filtering", "static.default_document", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[request_filtering]
max_allowed_content_length = 10
"""

SETTINGS = {
    # path, method, body → status, substatus and the setting named
    "413.1": ("/upload", "POST", b"x" * 11, "request_filtering.max_allowed_content_length = 10"),
    "403.14": ("/empty/", "GET", b"", "directory_browse.enabled = true"),
    "404.3": ("/notes.xyz", "GET", b"", "'.xyz': add it to static_content.mime_map"),
}


@pytest.mark.parametrize("code", sorted(SETTINGS))
def test_a_refusal_names_the_setting_to_change(tmp_path: Path, code: str) -> None:
    port = free_port()
    (tmp_path / "www" / "empty").mkdir(parents=True)
    (tmp_path / "www" / "notes.xyz").write_text("notes")
    (tmp_path / "colonnade.toml").write_text(PAGES.format(port=port))
    path, method, body, setting = SETTINGS[code]
    status = int(code.split(".")[0])
    server = Process(["-c", "colonnade.toml"], cwd=tmp_path, port=port)
    try:

        def send(*headers: str) -> Wire:
            with Conn(port) as c:
                head = "".join(f"{h}\r\n" for h in headers)
                c.send(
                    f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
                    f"{head}Connection: close\r\n\r\n".encode()
                    + body
                )
                return c.response()

        local = send()
        assert local.status == status
        assert f"Error code: {code}".encode() in local.body
        assert html(setting) in local.body  # the local client is told what to change
        remote = send("Forwarded: for=203.0.113.7")
        assert remote.status == status and f"Error code: {code}".encode() in remote.body
        assert b"administrator" not in remote.body and setting.encode() not in remote.body
        wait_for(lambda: setting in server.stderr(), PATIENCE, "the log line naming it")
        (line,) = [x for x in server.stderr().splitlines() if setting in x]
        assert f"{method} {path}: {code} " in line  # logged once, not per request
    finally:
        server.kill()
