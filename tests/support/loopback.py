"""Live servers on either loopback address, and raw HTTP/1.1 exchanges with them."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, NamedTuple

from colonnade.engine.sites import Binding
from colonnade.transport.sockets import bind_socket
from tests.e2e.conftest import LiveServer
from tests.support.wait import PATIENCE


def has_ipv6_loopback() -> bool:
    """True if ``::1`` can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


#: The loopback addresses a test runs over: both where IPv6 exists.
LOOPBACKS = ["127.0.0.1", *(["::1"] if has_ipv6_loopback() else [])]


def live_on(host: str, config: dict[str, Any], root: Path) -> LiveServer:
    """A started :class:`LiveServer` for ``config`` listening on ``host``."""
    server = LiveServer(config, root)
    if host != "127.0.0.1":
        server.sock.close()
        server.sock = bind_socket(Binding("http", host, 0))
        server.port = server.sock.getsockname()[1]
    return server.start()


class Answer(NamedTuple):
    """What came back on the connection: nothing at all, or a response."""

    raw: bytes
    status: int | None
    headers: dict[str, str]
    body: bytes
    reset: bool


def exchange(host: str, port: int, target: str, headers: dict[str, str] | None = None) -> Answer:
    """Send ``GET target`` with ``headers`` on a new connection and read until the
    server closes it (``Connection: close``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lines = [f"GET {target} HTTP/1.1", "Host: example.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    data = b""
    reset = False
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(PATIENCE)
        sock.connect((host, port))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            reset = True
    if not data:
        return Answer(data, None, {}, b"", reset)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return Answer(data, int(status_line.split()[1]), fields, body, reset)
