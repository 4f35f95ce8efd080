"""Live servers for the proxy tests: a Colonnade node serving the Starlette
upstream app, and a Colonnade front end whose ``handler.proxy`` forwards to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.conftest import LiveServer
from tests.hosting.support import live, site_config

UPSTREAM_APP = "tests.handlers.proxy.upstream_app:app"


@contextmanager
def upstream_node(root: Path) -> Iterator[LiveServer]:
    """A Colonnade node serving the upstream app at /."""
    with live(site_config(UPSTREAM_APP), root) as server:
        yield server


def front_config(upstream: str, log: Path | None = None, **proxy: Any) -> dict[str, Any]:
    """A site whose every URL goes to ``upstream`` through handler.proxy; with
    ``log``, an access log in JSON there that names the upstream."""
    config: dict[str, Any] = {
        "server": {"modules": ["handler.proxy"]},
        "handlers": [{"path": "*", "handler": "handler.proxy"}],
        "sites": [{"name": "front", "bindings": ["http://127.0.0.1:8080"]}],
        "proxy": {"upstream": upstream, **proxy},
    }
    if log is not None:
        config["server"]["modules"].append("log.http")
        config["http_logging"] = {
            "target": str(log),
            "format": "json",
            "buffer_size": 0,
            "fields": ["cs-uri-stem", "sc-status", "x-upstream", "x-correlation-id"],
        }
    return config


@contextmanager
def front(root: Path, upstream: str, log: Path | None = None, **proxy: Any) -> Iterator[LiveServer]:
    """A Colonnade front end proxying to ``upstream``."""
    server = LiveServer(front_config(upstream, log, **proxy), root).start()
    try:
        yield server
    finally:
        server.stop()


def front_file(port: int, *lines: str) -> str:
    """The server file of a front end on ``port`` whose every URL goes through
    handler.proxy; ``lines`` continue its ``[server]`` table (and may open others:
    ``[proxy]``, ``[farms.NAME]``, ``[pools.NAME]``)."""
    head = [
        "[[sites]]",
        'name = "front"',
        f'bindings = ["http://127.0.0.1:{port}"]',
        'root = "www"',
        "[[handlers]]",
        'path = "*"',
        'handler = "handler.proxy"',
        "[server]",
        'modules = ["handler.proxy"]',
    ]
    return "\n".join([*head, *lines]) + "\n"
