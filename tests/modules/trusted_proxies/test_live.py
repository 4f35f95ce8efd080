"""Over real sockets: the client a trusted proxy names is the one every part sees —
IP restrictions, a WSGI app's REMOTE_ADDR, an ASGI app's scope, the access log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.loopback import LOOPBACKS, Answer, exchange, live_on

APPS = "tests.hosting.apps"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.txt").write_text("static")
    return site


def config(root: Path, proxies: list[str], log: Path) -> dict[str, Any]:
    return {
        "server": {
            "modules": [
                "log.http",
                "security.request_filtering",
                "security.ip",
                "security.trusted_proxies",
                "handler.static",
            ]
        },
        "sites": [
            {
                "name": "t",
                "bindings": ["http://127.0.0.1:1"],
                "root": str(root),
                "applications": [
                    {"path": "/w", "app": f"{APPS}.wsgi_apps:environ_app"},
                    {"path": "/a", "app": f"{APPS}.asgi_apps:scope_app"},
                ],
            }
        ],
        "trusted_proxies": {
            "proxies": proxies,
            "headers": ["forwarded", "x-forwarded-for", "x-forwarded-proto"],
        },
        "ip_security": {"rules": [{"address": "203.0.113.0/24"}]},
        "http_logging": {
            "target": str(log),
            "format": "json",
            "buffer_size": 0,
            "fields": ["c-ip", "x-peer-ip", "sc-status"],
        },
    }


def logged(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def visit(
    loopback: str, cfg: dict[str, Any], root: Path, forwarded: str, x_forwarded: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], Answer, Answer, Answer]:
    """The WSGI environ, the ASGI scope, a static file and two requests from a
    denied address (by X-Forwarded-For, by Forwarded), through one server."""
    with live_on(loopback, cfg, root) as server:
        port = server.port
        wsgi = exchange(loopback, port, "/w/", x_forwarded)
        asgi = exchange(loopback, port, "/a/", {"Forwarded": forwarded})
        static = exchange(loopback, port, "/a.txt", x_forwarded)
        denied = exchange(loopback, port, "/a.txt", {"X-Forwarded-For": "203.0.113.5"})
        denied_fwd = exchange(loopback, port, "/w/", {"Forwarded": "for=203.0.113.5"})
    return json.loads(wsgi.body), json.loads(asgi.body), static, denied, denied_fwd


@pytest.mark.parametrize("loopback", LOOPBACKS)
def test_a_trusted_proxy_names_the_client_for_everyone(
    root: Path, tmp_path: Path, loopback: str
) -> None:
    log = tmp_path / "access.log"
    environ, scope, static, denied, denied_fwd = visit(
        loopback,
        config(root, [loopback], log),
        root,
        'for="[2001:db8::7]:4711";proto=https',
        {"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"},
    )
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("198.51.100.7", "0")
    assert environ["wsgi.url_scheme"] == "https"
    assert scope["client"] == ["2001:db8::7", 4711]
    assert scope["scheme"] == "https"
    assert static.status == 200 and static.body == b"static"
    # IP restrictions decide on the forwarded client, not on the proxy.
    assert denied.status == 403 and denied_fwd.status == 403
    lines = logged(log)
    assert [line["c_ip"] for line in lines] == [
        "198.51.100.7",
        "2001:db8::7",
        "198.51.100.7",
        "203.0.113.5",
        "203.0.113.5",
    ]
    assert [line["sc_status"] for line in lines] == [200, 200, 200, 403, 403]
    assert {line["x_peer_ip"] for line in lines} == {loopback}  # the proxy, kept


@pytest.mark.parametrize("loopback", LOOPBACKS)
def test_the_same_headers_from_an_untrusted_peer_are_ignored(
    root: Path, tmp_path: Path, loopback: str
) -> None:
    log = tmp_path / "access.log"
    environ, scope, static, denied, denied_fwd = visit(
        loopback,
        config(root, ["192.0.2.1"], log),
        root,
        "for=203.0.113.5;proto=https",
        {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"},
    )
    assert environ["REMOTE_ADDR"] == loopback  # the peer, not the forged address
    assert environ["wsgi.url_scheme"] == "http"
    assert scope["client"][0] == loopback and scope["scheme"] == "http"
    # The forged, denied address did not count.
    assert static.status == denied.status == denied_fwd.status == 200
    assert {(line["c_ip"], line["x_peer_ip"]) for line in logged(log)} == {(loopback, loopback)}
