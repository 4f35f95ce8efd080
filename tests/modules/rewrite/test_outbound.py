"""Outbound rules on response headers, over real sockets: a Location rewritten by
its status, cookies made Secure, a missing header added, preconditions on the
content type, inheritance into a web.toml, no response splitting; and every bad
rule refused at load with its key."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.errors import ConfigError, each_error
from colonnade.testing import build_engine
from tests.e2e.conftest import LiveServer
from tests.support.wait import PATIENCE

MODULES = ["rewrite", "http.custom_headers", "static.default_document", "handler.static"]

RULES: dict[str, Any] = {
    "outbound_rules": [
        {
            # URL Rewrite's reference sample: the host of a redirect's Location.
            "name": "Change Location Header",
            "server_variable": "RESPONSE_LOCATION",
            "pattern": "^/(.*)",
            "conditions": [{"input": "{RESPONSE_STATUS}", "pattern": "^301"}],
            "action": {"type": "rewrite", "value": "https://public.example/{R:1}"},
        },
        {
            "name": "Secure cookies",
            "server_variable": "RESPONSE_Set_Cookie",
            "pattern": "^(?!.*;\\s*secure)(.+)$",
            "action": {"type": "rewrite", "value": "{R:1}; Secure"},
        },
        {
            "name": "Frame options when missing",
            "server_variable": "RESPONSE_X_Frame_Options",
            "pattern": "^$",
            "action": {"type": "rewrite", "value": "DENY"},
        },
        {
            "name": "Mark HTML",
            "server_variable": "RESPONSE_X_Kind",
            "pattern": ".*",
            "precondition": "IsHTML",
            "action": {"type": "rewrite", "value": "html from {HTTP_HOST}"},
        },
        {
            "name": "Echo the query",
            "server_variable": "RESPONSE_X_Echo",
            "pattern": ".*",
            "conditions": [{"input": "{QUERY_STRING}", "pattern": "."}],
            "action": {"type": "rewrite", "value": "{UrlDecode:{QUERY_STRING}}"},
            "stop_processing": True,
        },
        {
            "name": "after a stop",
            "server_variable": "RESPONSE_X_Late",
            "pattern": ".*",
            "action": {"type": "rewrite", "value": "ran"},
        },
    ],
    "preconditions": {
        "IsHTML": {"conditions": [{"input": "{RESPONSE_CONTENT_TYPE}", "pattern": "^text/html"}]}
    },
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "docs").mkdir()
    (www / "index.html").write_text("<p>home</p>")
    (www / "a.txt").write_text("a")
    (www / "docs" / "b.txt").write_text("b")
    # A folder's own rule, added to the inherited ones (IIS: parent to child).
    (www / "docs" / "web.toml").write_text(
        '[rewrite]\noutbound_rules = { add = [{ name = "docs", server_variable = '
        '"RESPONSE_X_Docs", pattern = ".*", action = { type = "rewrite", value = "yes" } }] }\n'
    )
    config = {
        "server": {"modules": MODULES},
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": "www"}],
        "custom_headers": {
            "add": {"Set-Cookie": "session=abc; HttpOnly"},
        },
        "rewrite": RULES,
    }
    with LiveServer(config, tmp_path).start() as live:
        yield live


def get(port: int, target: str) -> tuple[str, list[tuple[str, str]]]:
    """The status line and the header lines of ``GET target``, as sent on the wire."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as conn:
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    lines = [line.partition(":") for line in head[1:]]
    return head[0], [(name.lower(), value.strip()) for name, _, value in lines]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


def test_header_rules_on_the_wire(server: LiveServer) -> None:
    status, headers = get(server.port, "/sub")
    assert status.startswith("HTTP/1.1 301")
    assert values(headers, "location") == ["https://public.example/sub/"]
    assert values(headers, "set-cookie") == ["session=abc; HttpOnly; Secure"]
    assert values(headers, "x-frame-options") == ["DENY"]
    # text/html only (the precondition): the redirect's body is HTML, a.txt is not.
    assert values(headers, "x-kind") == ["html from site.test"]
    assert values(headers, "x-late") == ["ran"]
    status, headers = get(server.port, "/a.txt")
    assert status.startswith("HTTP/1.1 200")
    assert values(headers, "location") == []  # a missing header stays missing
    assert values(headers, "x-kind") == []
    assert values(headers, "x-docs") == []
    _, headers = get(server.port, "/index.html")
    assert values(headers, "x-kind") == ["html from site.test"]


def test_a_web_toml_adds_rules_to_the_inherited_ones(server: LiveServer) -> None:
    _, headers = get(server.port, "/docs/b.txt")
    assert values(headers, "x-docs") == ["yes"]
    assert values(headers, "x-frame-options") == ["DENY"]


def test_stop_processing_and_no_response_splitting(server: LiveServer) -> None:
    status, headers = get(server.port, "/a.txt?a%0D%0AInjected:%20yes")
    assert status.startswith("HTTP/1.1 200")
    # The decoded query's CR LF are dropped: one header line, no injected one.
    assert values(headers, "x-echo") == ["aInjected: yes"]
    assert values(headers, "injected") == []
    assert values(headers, "x-late") == []  # after a rule with stop_processing


def load_errors(tmp_path: Path, rewrite: dict[str, Any]) -> list[str]:
    config = {
        "server": {"modules": MODULES},
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": "."}],
        "rewrite": rewrite,
    }
    with pytest.raises(ConfigError) as caught:
        build_engine(config, base_dir=str(tmp_path))
    return [str(e) for e in each_error(caught.value)]


def rule(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "r",
        "server_variable": "RESPONSE_X",
        "pattern": "(a)",
        "action": {"type": "rewrite", "value": "{R:1}"},
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("rewrite", "key", "message"),
    [
        (rule(server_variable="RESPONSE_Content_Length"), "server_variable", "frames"),
        (rule(server_variable="RESPONSE_Server"), "server_variable", "server_header"),
        (rule(server_variable="HTTP_X"), "server_variable", "RESPONSE_"),
        (rule(pattern="(a"), "pattern", "'(a'"),
        (rule(action={"type": "rewrite", "value": "{R:2}"}), "action.value", "{R:2}"),
        (rule(action={"type": "none", "value": "x"}), "action.value", "none action"),
        (
            rule(conditions=[{"input": "{URL}", "match_type": "is_file"}]),
            "conditions[0]",
            "needs a pattern",
        ),
        (rule(precondition="Nope"), "precondition", "no precondition named 'Nope'"),
    ],
)
def test_a_bad_outbound_rule_is_refused_at_load(
    tmp_path: Path, rewrite: dict[str, Any], key: str, message: str
) -> None:
    errors = load_errors(tmp_path, {"outbound_rules": [rewrite]})
    assert len(errors) == 1, errors
    assert f"rewrite.outbound_rules[0].{key}" in errors[0], errors
    assert message in errors[0], errors
