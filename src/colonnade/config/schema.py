"""The server configuration's own schema (module sections are owned by modules).

Everything here is decoded strictly: an unknown key or a wrong type is an error
naming the dotted key. Values are checked for range with ``msgspec.Meta``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

PositiveInt = Annotated[int, Meta(ge=1)]
Seconds = Annotated[float, Meta(gt=0, le=86400)]
UrlPath = Annotated[str, Meta(pattern=r"^/[^\s]*$")]

#: The embedded default module set (what `colonnade serve` loads with no config).
DEFAULT_MODULES: tuple[str, ...] = (
    "security.request_filtering",
    "static.default_document",
    "static.directory_listing",
    "handler.static",
    "log.http",
)


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Limits(_Strict):
    """Connection and protocol limits (per worker)."""

    max_connections: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    """Open connections per worker; more are answered 503 and closed at once."""
    max_request_target: Annotated[int, Meta(ge=64, le=1_048_576)] = 8192
    """Longest request target (path and query) in bytes; longer is 414."""
    max_header_size: Annotated[int, Meta(ge=1024, le=1_048_576)] = 65_536
    """Largest header section in bytes; larger is 431."""
    max_headers: Annotated[int, Meta(ge=1, le=10_000)] = 100
    """Most header fields in one request; more is 431."""
    max_pipelined: Annotated[int, Meta(ge=1, le=1024)] = 16
    """Pipelined requests read ahead of the one being answered before reading pauses."""


class Timeouts(_Strict):
    """Per-connection timeouts, in seconds."""

    header: Seconds = 30.0
    """From a connection's first byte to the end of the request head (then 408)."""
    body: Seconds = 60.0
    """Longest wait for the next piece of a request body (then 408)."""
    keep_alive: Seconds = 15.0
    """An idle kept-alive connection is closed after this."""
    graceful: Seconds = 30.0
    """On stop, how long requests in flight may still run."""


class ServerSettings(_Strict):
    """``[server]``: what every site of this server shares."""

    modules: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_MODULES))
    """Enabled modules by id, in order (the order of hooks within a stage)."""
    server_header: str = "colonnade"
    """The ``Server`` response header; empty to send none."""
    limits: Limits = msgspec.field(default_factory=Limits)
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)


class PoolConfig(_Strict):
    """``[pools.NAME]``: a pool of worker processes."""

    workers: Annotated[int, Meta(ge=0, le=256)] = 1
    """Worker processes of the pool (0: serve in the master process)."""


InterfaceName = Literal["auto", "asgi", "wsgi"]


class ApplicationConfig(_Strict):
    """``[[sites.applications]]``: an application mounted at a URL path.

    ``app`` names a Python application (``pkg.module:attr``) that then answers
    every request of the application except paths a ``[[handlers]]`` entry maps
    elsewhere; ``interface`` is detected unless given.
    """

    path: UrlPath
    """The URL path the application is mounted at (``/api``)."""
    root: str | None = None
    """Its content folder (default: the site root plus the path)."""
    pool: str | None = None
    """The pool whose workers serve it (default: the site's)."""
    app: str | None = None
    """A Python application, ``pkg.module:attr`` (WSGI or ASGI)."""
    interface: InterfaceName = "auto"
    """The Python app's interface; ``auto`` detects it."""
    factory: bool = False
    """``app`` names a factory to call for the application object."""
    app_dir: str | None = None
    """A folder to put on ``sys.path`` before importing ``app``."""


class VirtualDirectoryConfig(_Strict):
    """``[[sites.virtual_directories]]``: a URL path served from another folder."""

    path: UrlPath
    """The URL path (``/media``)."""
    root: str
    """The folder served there (relative to the server file)."""


class SiteConfig(_Strict):
    """``[[sites]]``: bindings, a root folder and the applications under it."""

    name: Annotated[str, Meta(min_length=1)]
    """A unique name (used by ``[[locations]]`` paths and the tools)."""
    bindings: Annotated[list[str], Meta(min_length=1)]
    """Where it listens: ``http://HOST:PORT``."""
    root: str = "."
    """The content folder (relative to the server file)."""
    pool: str = "default"
    """The pool serving the site's root application."""
    host_names: list[str] = msgspec.field(default_factory=list)
    """Host headers this site answers; empty: any host not claimed by another site."""
    applications: list[ApplicationConfig] = msgspec.field(default_factory=list)
    """Applications mounted under the site (``[[sites.applications]]``)."""
    virtual_directories: list[VirtualDirectoryConfig] = msgspec.field(default_factory=list)
    """Folders mounted at URL paths (``[[sites.virtual_directories]]``)."""


class HandlerMapping(_Strict):
    """``[[handlers]]``: requests matching ``path`` and ``verbs`` go to ``handler``.

    ``path`` is ``*`` (everything), ``*.ext`` (by extension), or a URL pattern
    starting with ``/`` where ``*`` matches any characters.
    """

    path: Annotated[str, Meta(min_length=1)]
    """``*``, ``*.ext``, or a URL pattern starting with ``/`` (``*`` matches anything)."""
    handler: Annotated[str, Meta(min_length=1)]
    """The id of an enabled handler (``handler.static``)."""
    verbs: list[str] = msgspec.field(default_factory=lambda: ["*"])
    """Methods it serves; ``*`` for all. Other methods get 405 with ``Allow``."""
    name: str = ""
    """A label for tools."""


DEFAULT_HANDLERS: tuple[HandlerMapping, ...] = (
    HandlerMapping(path="*", handler="handler.static", name="StaticFile"),
)


class ServerConfig(_Strict):
    """The whole server file after decoding; module sections stay raw tables."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    pools: dict[str, PoolConfig] = msgspec.field(default_factory=lambda: {"default": PoolConfig()})
    sites: list[SiteConfig] = msgspec.field(default_factory=list)
    handlers: list[HandlerMapping] = msgspec.field(default_factory=lambda: list(DEFAULT_HANDLERS))
    locations: list[dict[str, Any]] = msgspec.field(default_factory=list)
    # Sections ``web.toml`` files may not override ("deny"), or may although the
    # section is locked by default ("allow"); keys are section names or dotted keys.
    lock: dict[str, Literal["allow", "deny"]] = msgspec.field(default_factory=dict)
    # Section tables of modules, keyed by section name; checked by the engine
    # against the enabled modules' section types.
    sections: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    source: str = "<embedded default>"
    base_dir: str = "."
    lines: Any = None  # the KeyLines index of the source file, for error messages
