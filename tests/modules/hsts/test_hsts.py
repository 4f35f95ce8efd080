"""http.hsts over real sockets: the header on HTTPS responses only, the redirect from
HTTP to the site's HTTPS port, per-site settings, and what the configuration refuses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from colonnade.errors import ConfigError
from colonnade.testing import build_engine
from tests.e2e.conftest import LiveServer
from tests.support.ports import free_port
from tests.support.tls import client_context, issue
from tests.support.wait import PATIENCE

pytestmark = pytest.mark.e2e

YEAR = 31_536_000


class Ports:
    def __init__(self) -> None:
        self.http = free_port()
        self.https = free_port()


def site_config(ports: Ports, cert: Path, **hsts: Any) -> dict[str, Any]:
    return {
        "server": {"modules": ["http.hsts", "handler.static"]},
        "hsts": {"enabled": True, "max_age": YEAR, "redirect_http_to_https": True, **hsts},
        "sites": [
            {
                "name": "main",
                "root": "www",
                "bindings": [f"http://127.0.0.1:{ports.http}", f"https://127.0.0.1:{ports.https}"],
                "tls": {"certificate": str(cert)},
            },
            {
                "name": "legacy",
                "root": "www",
                "host_names": ["legacy.test"],
                "bindings": [f"http://127.0.0.1:{ports.http}", f"https://127.0.0.1:{ports.https}"],
            },
        ],
        # IIS's per-site element: one site opts out of both.
        "locations": [
            {"path": "legacy/", "hsts": {"enabled": False, "redirect_http_to_https": False}}
        ],
    }


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def served(tmp_path: Path, ca: trustme.CA) -> Iterator[tuple[Ports, httpx.Client]]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello")
    cert = issue(ca, tmp_path / "certs", "www", "www.example.test", "legacy.test", combined=True)
    ports = Ports()
    server = LiveServer(
        site_config(ports, cert.cert, include_subdomains=True),
        tmp_path,
        port=ports.http,
        more_ports=(ports.https,),
    ).start()
    with httpx.Client(verify=client_context(ca), timeout=PATIENCE) as client:
        yield ports, client
    server.stop()


def plain(port: int, target: str, host: str) -> bytes:
    """A raw HTTP/1.1 request (any target), the response head."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[0]


def test_http_is_redirected_to_the_sites_https_port_keeping_host_and_target(
    served: tuple[Ports, httpx.Client],
) -> None:
    ports, client = served
    head = plain(ports.http, "/a%20b/c.txt?x=1&y=%2F", f"www.example.test:{ports.http}")
    assert head.startswith(b"HTTP/1.1 301 ")
    assert (
        f"\r\nlocation: https://www.example.test:{ports.https}/a%20b/c.txt?x=1&y=%2F\r\n".encode()
        in head
    )
    assert b"strict-transport-security" not in head  # never over plain HTTP
    # Following it lands on the HTTPS page, which carries the header.
    response = client.get(
        f"http://127.0.0.1:{ports.http}/hello.txt", headers={"host": "www.example.test"}
    )
    assert response.status_code == 301
    location = response.headers["location"]
    assert location == f"https://www.example.test:{ports.https}/hello.txt"


def test_https_responses_carry_strict_transport_security(
    served: tuple[Ports, httpx.Client],
) -> None:
    ports, client = served
    ok = _get(client, ports.https, "/hello.txt", "www.example.test")
    assert ok.status_code == 200 and ok.text == "hello"
    assert ok.headers["strict-transport-security"] == f"max-age={YEAR}; includeSubDomains"
    missing = _get(client, ports.https, "/nothing", "www.example.test")
    assert missing.status_code == 404
    assert missing.headers["strict-transport-security"] == f"max-age={YEAR}; includeSubDomains"


def _get(client: httpx.Client, port: int, path: str, host: str) -> httpx.Response:
    # Connect to 127.0.0.1 but send SNI and Host for ``host``: httpx's sni_hostname.
    return client.get(
        f"https://127.0.0.1:{port}{path}",
        headers={"host": host},
        extensions={"sni_hostname": host},
    )


def test_a_site_opts_out_in_its_location(served: tuple[Ports, httpx.Client]) -> None:
    ports, client = served
    assert plain(ports.http, "/hello.txt", "legacy.test").startswith(b"HTTP/1.1 200 ")
    response = _get(client, ports.https, "/hello.txt", "legacy.test")
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers


def test_308_keeps_the_method(tmp_path: Path, ca: trustme.CA) -> None:
    (tmp_path / "www").mkdir()
    cert = issue(ca, tmp_path / "certs", "www", "www.example.test", combined=True)
    ports = Ports()
    cfg = site_config(ports, cert.cert, redirect_status=308, https_port=443)
    with LiveServer(cfg, tmp_path, port=ports.http, more_ports=(ports.https,)).start():
        head = plain(ports.http, "/form", "www.example.test:8080")
    assert head.startswith(b"HTTP/1.1 308 ")
    assert b"\r\nlocation: https://www.example.test/form\r\n" in head  # 443: no port


def test_what_the_configuration_refuses(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    base: dict[str, Any] = {
        "server": {"modules": ["http.hsts", "handler.static"]},
        "sites": [{"name": "main", "root": "www", "bindings": ["http://127.0.0.1:8080"]}],
    }
    with pytest.raises(ConfigError, match="preload: browsers' preload lists"):
        build_engine({**base, "hsts": {"enabled": True, "preload": True}}, base_dir=str(tmp_path))
    engine = build_engine(
        {**base, "hsts": {"redirect_http_to_https": True}}, base_dir=str(tmp_path)
    )
    with pytest.raises(ConfigError, match="no https:// binding to redirect to"):
        engine.start()
    with pytest.raises(ConfigError, match=r"at an application's root|below"):
        build_engine(
            {**base, "locations": [{"path": "main/sub", "hsts": {"enabled": True}}]},
            base_dir=str(tmp_path),
        )
