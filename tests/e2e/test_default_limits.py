"""IIS's default request limits over real sockets, in a `colonnade serve` with no
module list (the default set, request filtering first): URL 4,096 bytes → 404.14,
query string 2,048 → 404.15, declared body 30,000,000 → 413.1, and the protocol's own
request-target limit (8,192) → 414; each configurable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

from .conftest import Process
from .wire import Conn

CONFIG = """
{extra}
[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"
"""

#: Lower limits, to show each one is the setting's.
CONFIGURED = """
[server.limits]
max_request_target = 1024

[request_filtering]
max_url = 100
max_query_string = 10
max_allowed_content_length = 1000
"""

Row = tuple[bytes, str]  # the request; the expected "status.substatus"


def request(target: str, *extra: str, method: str = "GET") -> bytes:
    return "\r\n".join([f"{method} {target} HTTP/1.1", "Host: t", *extra, "", ""]).encode()


def status_of(port: int, data: bytes) -> str:
    """``status.substatus`` as the answer shows it (its error page names the
    substatus; a 200 or a 414 from the protocol layer has none)."""
    with Conn(port) as c:
        c.send(data)
        r = c.response()
        marker = b"Error code: "
        if r.status != 200 and marker in r.body:
            code = r.body.split(marker, 1)[1].split(b"<", 1)[0].decode()
            return code if "." in code else f"{code}.0"
        return f"{r.status}.0"


def serve(tmp_path: Path, extra: str) -> Process:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello")
    port = free_port()
    (tmp_path / "colonnade.toml").write_text(CONFIG.format(port=port, extra=extra))
    return Process(["-c", "colonnade.toml", "--no-watch"], cwd=tmp_path, port=port)


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[Process]:
    server = serve(tmp_path, "")
    try:
        yield server
    finally:
        server.kill()


def path_of(length: int) -> str:
    """A raw path of ``length`` bytes that names no file."""
    return "/" + "a" * (length - 1)


DEFAULTS: list[Row] = [
    (request(path_of(4096)), "404.0"),  # at the limit: an ordinary miss
    (request(path_of(4097)), "404.14"),
    (request("/index.html?" + "q" * 2048), "200.0"),
    (request("/index.html?" + "q" * 2049), "404.15"),
    (request("/index.html", "Content-Length: 30000000", method="POST"), "405.0"),
    (request("/index.html", "Content-Length: 30000001", method="POST"), "413.1"),
    (request(path_of(8192)), "404.14"),  # request filtering's limit, below the protocol's
    (request(path_of(8193)), "414.0"),
]


def test_iis_default_limits(default_server: Process) -> None:
    got = [status_of(default_server.port, data) for data, _ in DEFAULTS]
    assert got == [want for _, want in DEFAULTS]


def test_the_limits_are_configurable(tmp_path: Path) -> None:
    rows: list[Row] = [
        (request(path_of(100)), "404.0"),
        (request(path_of(101)), "404.14"),
        (request("/index.html?" + "q" * 10), "200.0"),
        (request("/index.html?" + "q" * 11), "404.15"),
        (request("/index.html", "Content-Length: 1001", method="POST"), "413.1"),
        (request(path_of(1025)), "414.0"),
    ]
    server = serve(tmp_path, CONFIGURED)
    try:
        got = [status_of(server.port, data) for data, _ in rows]
        assert got == [want for _, want in rows]
    finally:
        server.kill()
