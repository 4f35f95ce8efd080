"""Sites, bindings and routing a request to its application."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from colonnade.core.urlpath import covers
from colonnade.errors import ConfigError

if TYPE_CHECKING:
    from colonnade.engine.runtime import AppRuntime


#: The port a unix-socket binding routes as: the sites on unix sockets share one
#: "port" (0, which no TCP binding has), told apart by their host names as the
#: sites on one TCP port are; a request on a unix socket has no server address,
#: and the engine routes a request without one on port 0.
UNIX_PORT = 0

#: The longest unix socket path (``sun_path`` holds 108 bytes with its NUL).
UNIX_PATH_MAX = 107


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


class Site:
    """A site: its bindings, host names and applications (longest path first)."""

    def __init__(
        self,
        name: str,
        bindings: Sequence[Binding],
        host_names: Sequence[str],
        apps: Sequence[AppRuntime],
    ) -> None:
        self.name = name
        self.bindings = tuple(bindings)
        self.host_names = frozenset(h.lower() for h in host_names)
        self.apps = tuple(sorted(apps, key=lambda a: len(a.app.path), reverse=True))
        self.root_app = next((a for a in self.apps if a.app.path == "/"), None)

    def app_for(self, path: str) -> AppRuntime | None:
        """The application whose path is the longest prefix of ``path``."""
        for runtime in self.apps:
            if covers(runtime.app.path, path):
                return runtime
        return None


class Router:
    """Chooses the site by the port the request arrived on and its Host header."""

    def __init__(self, sites: Sequence[Site]) -> None:
        self.sites = tuple(sites)
        self._by_port: dict[int, tuple[dict[str, Site], Site | None]] = {}
        for site in self.sites:
            for binding in site.bindings:
                named, default = self._by_port.get(binding.port, ({}, None))
                for host in site.host_names:
                    named.setdefault(host, site)
                if not site.host_names and default is None:
                    default = site
                self._by_port[binding.port] = (named, default)
        self._single = (
            self.sites[0] if len(self.sites) == 1 and not self.sites[0].host_names else None
        )

    def site_for(self, port: int, host: str) -> Site | None:
        """The site for a request on ``port`` with ``Host: host``."""
        if self._single is not None:
            return self._single
        entry = self._by_port.get(port)
        if entry is None:
            return None
        named, default = entry
        if named:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            site = named.get(name.lower())
            if site is not None:
                return site
        return default
