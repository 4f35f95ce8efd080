"""Detailed errors for the operator: a failing request answered to a local client
names the module and stage that failed, the handler, URL, physical path, user and
logon method, the correlation id and the kept trace's id; a remote client (or a
loopback one behind a proxy header) gets the plain page. Never a traceback, never
the exception's message."""

from __future__ import annotations

import http.client
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.testing import Client, TestResponse
from tests.hosting.support import engine, live, site_config

APPS = "tests.hosting.apps.wsgi_apps"
LEAKS = ("Traceback", "SECRET", "wsgi_apps.py", "Detailed error", "colonnade trace show")


def config(tmp_path: Path, **errors: Any) -> dict[str, Any]:
    return site_config(
        f"{APPS}:raises",
        root=str(tmp_path / "www"),
        modules=["auth.anonymous", "http.custom_errors", "tracing.failed_requests"],
        sections={
            "failed_request_tracing": {
                "directory": str(tmp_path / "traces"),
                "rules": [{"path": "/traced/*", "status_codes": "500"}],
            },
            "custom_errors": errors,
        },
    )


@pytest.fixture
def serve(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    caplog.set_level(logging.CRITICAL, logger="colonnade.error")
    (tmp_path / "www").mkdir()
    clients: list[Client] = []

    def start(client_addr: tuple[str, int], **errors: Any) -> Client:
        client = Client(engine(config(tmp_path, **errors)), client_addr=client_addr)
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def row(name: str, value: str) -> str:
    return f"<tr><th>{name}</th><td>{value}</td></tr>"


def cid(response: TestResponse) -> str:
    assert response.context is not None
    return response.context.correlation_id


def test_a_local_client_sees_where_it_failed_and_the_trace(serve: Any, tmp_path: Path) -> None:
    response = serve(("127.0.0.1", 40000)).get("/traced/report?q=<b>")
    assert response.status == 500
    text = response.text
    assert "Detailed error information" in text
    assert row("Module", "handler.wsgi") in text
    assert row("Stage", "EXECUTE_REQUEST_HANDLER") in text
    assert row("Handler", "handler.wsgi") in text
    assert row("Requested URL", "http://localhost/traced/report?q=&lt;b&gt;") in text
    assert row("Physical path", os.path.join(str(tmp_path / "www"), "traced", "report")) in text
    assert row("Logon user", "(anonymous)") in text
    assert row("Logon method", "anonymous") in text
    assert row("Correlation id", f"<code>{cid(response)}</code>") in text
    assert row("Failed request trace", f"<code>colonnade trace show {cid(response)}</code>") in text
    assert "<code>RuntimeError</code>" in text
    assert "<q>" not in text and "<b>" not in text  # escaped
    for leak in ("Traceback", "SECRET"):
        assert leak not in text


def test_no_trace_id_where_no_trace_is_kept(serve: Any) -> None:
    response = serve(("127.0.0.1", 40000)).get("/untraced")
    assert response.status == 500
    assert row("Module", "handler.wsgi") in response.text  # the traceback names it
    assert row("Stage", "EXECUTE_REQUEST_HANDLER") in response.text
    assert "Failed request trace" not in response.text


@pytest.mark.parametrize("addr", [("203.0.113.9", 40000), ("2001:db8::1", 40000)])
def test_a_remote_client_keeps_the_plain_page(serve: Any, addr: tuple[str, int]) -> None:
    response = serve(addr).get("/traced/report")
    assert response.status == 500
    assert cid(response) in response.text  # the id to quote, and nothing else
    for leak in (*LEAKS, "handler.wsgi", "EXECUTE_REQUEST_HANDLER"):
        assert leak not in response.text, leak


def test_error_mode_custom_gives_local_clients_the_plain_page_too(serve: Any) -> None:
    response = serve(("127.0.0.1", 40000), error_mode="custom").get("/traced/report")
    for leak in LEAKS:
        assert leak not in response.text, leak


def test_over_a_real_socket_a_proxy_header_makes_a_loopback_client_remote(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="colonnade.error")
    (tmp_path / "www").mkdir()
    with live(config(tmp_path), tmp_path) as server:

        def get(headers: dict[str, str]) -> str:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("GET", "/traced/x", headers=headers)
                response = conn.getresponse()
                assert response.status == 500
                return response.read().decode()
            finally:
                conn.close()

        local = get({})
        proxied = get({"X-Forwarded-For": "198.51.100.7"})
    assert row("Module", "handler.wsgi") in local and "colonnade trace show" in local
    for leak in (*LEAKS, "handler.wsgi"):
        assert leak not in proxied, leak
