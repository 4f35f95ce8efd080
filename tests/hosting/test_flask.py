"""A real Flask application (WSGI) behind colonnade, mounted at /flask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flask")

from tests.e2e.conftest import LiveServer
from tests.hosting.browser import Browser
from tests.hosting.support import live, site_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = site_config("tests.hosting.apps.flask_app:app", path="/flask")
    with live(config, tmp_path_factory.mktemp("flask")) as running:
        yield running


def test_flask_knows_its_mount_path(server: LiveServer) -> None:
    page = Browser(server.port).get("/flask/")
    assert page.status == 200
    data = page.json()
    assert data["script_root"] == "/flask"
    assert data["path"] == "/"
    assert data["url_for"] == "/flask/"
    assert data["url"] == f"http://127.0.0.1:{server.port}/flask/"
    assert data["remote_addr"] == "127.0.0.1"


def test_json_and_form_posts(server: LiveServer) -> None:
    b = Browser(server.port)
    assert b.post_json("/flask/json", {"a": 1}).json() == {"a": 1, "seen": True}
    page = b.post_form("/flask/form", {"name": "Zoë", "tag": "x"})
    assert page.json() == {"name": ["Zoë"], "tag": ["x"]}


def test_multipart_upload(server: LiveServer) -> None:
    boundary = "----colonnade"
    payload = b"\x00\xff" * 100_000
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    page = Browser(server.port).request(
        "POST",
        "/flask/form",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert page.json() == {"note": ["hi"], "file": ["a.bin", str(len(payload))]}


def test_session_cookie_round_trip(server: LiveServer) -> None:
    b = Browser(server.port)
    assert b.get("/flask/session").json() == {"visits": 1}
    assert b.get("/flask/session").json() == {"visits": 2}


def test_streamed_response(server: LiveServer) -> None:
    page = Browser(server.port).get("/flask/stream?who=ann")
    assert page.headers["Transfer-Encoding"] == "chunked"
    assert page.text == "".join(f"line {i} for ann\n" for i in range(3))


def test_an_error_is_flasks_500_and_logged(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    page = Browser(server.port).get("/flask/error")
    assert page.status == 500
    assert "SECRET-TRACEBACK-DETAIL" not in page.text
    # Flask logs it itself (to wsgi.errors when logging is not configured).
    assert any(
        r.exc_info and "SECRET-TRACEBACK-DETAIL" in str(r.exc_info[1]) for r in caplog.records
    )


def test_not_found_outside_the_app(server: LiveServer, tmp_path: Path) -> None:
    assert Browser(server.port).get("/elsewhere").status == 404
