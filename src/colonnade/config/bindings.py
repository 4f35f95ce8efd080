"""Bindings: where a site listens (``http://host:port``, ``https://…``, ``unix:/path``).

Apart from the engine's routing (``engine/sites.py``, compiled), which uses them,
so that the master binds every listening socket without importing a compiled
module: mypyc builds one shared library for all of them, and importing any one
maps and relocates the whole library (~2.5 MiB of an idle master's RSS).

A plain ``http(s)://name-or-IPv4:port`` is read by a regular expression; anything
else (IPv6, user info, a query, odd spaces or case, a bad port) by ``urlsplit``, as
all of them were, so the master imports ``urllib.parse`` (and ``ipaddress``, which
it imports: ~0.3 MiB) only for such a binding. Both read a plain one alike (a test
compares them).
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from colonnade.errors import ConfigError

#: The port a unix-socket binding routes as: the sites on unix sockets share one
#: "port" (0, which no TCP binding has), told apart by their host names as the
#: sites on one TCP port are; a request on a unix socket has no server address,
#: and the engine routes a request without one on port 0.
UNIX_PORT = 0

#: The longest unix socket path (``sun_path`` holds 108 bytes with its NUL).
UNIX_PATH_MAX = 107

#: ``http(s)://HOST:PORT[/]``, HOST a name or an IPv4 address: what ``urlsplit`` reads
#: as scheme, hostname (lowercased) and port, without the module.
_PLAIN = re.compile(r"(https?)://([A-Za-z0-9.-]+):([0-9]{1,5})/?")


class Binding(NamedTuple):
    """Where a site listens: ``http://host:port``, ``https://host:port``, or a unix
    socket, ``unix:/path`` (``host`` the absolute path, ``port`` :data:`UNIX_PORT`)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        if self.host.startswith("/"):
            return f"unix:{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def is_unix(host: str) -> bool:
    """Whether a binding's (or a listening key's) ``host`` is a unix socket's path."""
    return host.startswith("/")


def parse_binding(text: str, *, file: str | None = None, key: str = "") -> Binding:
    """Parse ``http://127.0.0.1:8080``, ``https://0.0.0.0:8443`` (or ``host:port`` for
    http), or ``unix:/absolute/path`` (HTTP over a unix socket, gunicorn's form)."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/") or "\0" in path or len(path.encode()) > UNIX_PATH_MAX:
            raise ConfigError(
                f"a unix socket binding is unix:/ABSOLUTE/PATH (at most {UNIX_PATH_MAX} "
                f"bytes), not {text!r}",
                file=file,
                key=key,
            )
        return Binding("http", os.path.normpath(path), UNIX_PORT)
    if "://" not in text:
        text = "http://" + text
    plain = _PLAIN.fullmatch(text)
    if plain is not None and int(plain[3]) <= 65535:
        return Binding(plain[1], plain[2].lower(), int(plain[3]))
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"not a binding: {text!r} ({exc})", file=file, key=key) from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"unsupported scheme {parts.scheme!r} (http or https)", file=file, key=key
        )
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            f"a binding is http://HOST:PORT or https://HOST:PORT, not {text!r}",
            file=file,
            key=key,
        )
    return Binding(parts.scheme, parts.hostname, port)
