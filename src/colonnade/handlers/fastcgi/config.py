"""``[fastcgi]``: the FastCGI applications (IIS ``system.webServer/fastCgi``) and
which one serves a URL.

Applications are defined in the server file only, as IIS keeps ``fastCgi`` in
applicationHost.config: the list of programs the server may start is the
administrator's, never a content folder's. A location or ``web.toml`` picks one
of them with ``application``.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section, Where

#: Seconds, as IIS bounds its FastCGI timeouts (10 s to a week; shorter here,
#: for tests and for operators who want them).
Timeout = Annotated[float, Meta(gt=0, le=604800)]

AppName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="a name of letters, digits, '_', '.' and '-' such as 'php'",
    ),
]


class FastCgiApplication(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, dict=True
):
    """A FastCGI program Colonnade starts and manages (``program``), or a FastCGI
    server that runs on its own (``address``): exactly one of the two."""

    program: str | None = None
    """The FastCGI program to start (``/usr/bin/php-cgi``): started on demand by
    each worker of the pool, as many as ``max_instances``, each accepting on a
    socket passed as its file descriptor 0; they run as the pool's user, in its
    sandbox, and end with the worker."""
    arguments: list[str] = msgspec.field(default_factory=list)
    """Arguments of ``program`` (``["-d", "open_basedir=/srv/www"]``)."""
    address: str | None = None
    """A FastCGI server to connect to instead: ``unix:/run/php/php-fpm.sock`` or
    ``HOST:PORT`` (``127.0.0.1:9000``, ``[::1]:9000``)."""
    max_instances: Annotated[int, Meta(ge=0, le=10000)] = 0
    """Processes (``program``) or connections (``address``) per worker, each
    serving one request at a time; 0: as many as the machine has CPUs."""
    instance_max_requests: Annotated[int, Meta(ge=1, le=10_000_000)] = 200
    """Requests a process (or a connection) serves before it is replaced. For
    PHP, ``PHP_FCGI_MAX_REQUESTS`` is set to the same number, so php-cgi never
    exits on its own before it is recycled."""
    idle_timeout: Timeout = 300.0
    """Seconds an unused process or connection is kept."""
    activity_timeout: Timeout = 70.0
    """Seconds a request may go without any progress (no byte read from the
    application, none of the request body taken by it, none of the response taken by
    the client); then the process is killed and the client gets 504.1. Both timeouts
    are checked every tenth of the shorter one (at most every second): one is noticed
    up to two such ticks after it passed."""
    request_timeout: Timeout = 90.0
    """Seconds a whole request may take; then the process is killed and the
    client gets 504.1 (or, once the response has begun, the connection is cut)."""
    connect_timeout: Timeout = 10.0
    """Seconds to connect to ``address`` (or to a new process)."""
    queue_length: Annotated[int, Meta(ge=0, le=10_000_000)] = 1000
    """Requests that may wait for a free process (or connection); more get 503.4."""
    rapid_fails_per_minute: Annotated[int, Meta(ge=1, le=100000)] = 10
    """Processes that may exit unexpectedly (or connections fail) in a minute; past
    that, no new one is started for the rest of the minute and requests get 503.0."""
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    """Environment variables of ``program`` (of the worker's own environment only
    ``PATH``, ``LANG``, ``LC_ALL`` and ``TZ`` are passed on)."""
    params: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra FastCGI parameters sent with each request, after the CGI variables
    (``PHP_VALUE`` for php-fpm, ``APP_ENV``)."""
    monitor_changes_to: str | None = None
    """A file (``/etc/php/8.2/cgi/php.ini``) whose change replaces the processes:
    idle ones at once, busy ones after their request."""
    stderr_mode: Literal["log", "fail"] = "log"
    """What the application's FastCGI STDERR stream means: ``log`` (warnings:
    logged, the response stands), ``fail`` (the request failed: 500.0 if the
    response has not begun, else the connection is cut; logged either way)."""
    max_stderr: Annotated[int, Meta(ge=0, le=1 << 20)] = 8192
    """Bytes of a request's STDERR kept for its log line; the rest is counted."""
    script_extensions: list[str] = msgspec.field(default_factory=lambda: [".php"])
    """The endings a script's URL must have (``[]``: any file). Where a mapping
    does not require the file (``resource_type``), the script is the first
    existing file along the URL path, the rest being ``PATH_INFO``; this keeps
    ``/uploads/a.jpg/x.php`` from running ``a.jpg``."""

    def __post_init__(self) -> None:
        if (self.program is None) == (self.address is None):
            raise ValueError("set exactly one of program (managed) or address (external)")
        if self.program is not None and not os.path.isabs(self.program):
            raise ValueError(f"program must be an absolute path, not {self.program!r}")
        if self.address is not None:
            parse_address(self.address)
        given = self.environment.get("PHP_FCGI_MAX_REQUESTS")
        if given is not None and (not given.isdigit() or int(given) < self.instance_max_requests):
            raise ValueError(
                "environment.PHP_FCGI_MAX_REQUESTS must be at least instance_max_requests: "
                "php-cgi would exit before it is recycled (leave it out: it is set for you)"
            )
        if self.environment.get("PHP_FCGI_CHILDREN", "0") != "0":
            raise ValueError(
                "environment.PHP_FCGI_CHILDREN must be 0: each process serves one request "
                "at a time, and max_instances says how many there are"
            )

    @functools.cached_property
    def instances(self) -> int:
        """``max_instances``, with 0 resolved to the number of CPUs."""
        return self.max_instances or os.cpu_count() or 1


def parse_address(address: str) -> tuple[str, str | tuple[str, int]]:
    """``("unix", path)`` or ``("tcp", (host, port))``; ``ValueError`` otherwise."""
    if address.startswith("unix:"):
        path = address[5:]
        if not os.path.isabs(path):
            raise ValueError(f"a unix socket address needs an absolute path: {address!r}")
        return "unix", path
    host, colon, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"an address is 'unix:/path' or 'HOST:PORT', not {address!r}")
    return "tcp", (host, int(port))


class FastCgiSection(Section, frozen=True):
    """``[fastcgi]``: FastCGI applications, and the one that serves the URL."""

    key = "fastcgi"
    allowed_keys = {"applications": Where.SERVER}

    applications: dict[AppName, FastCgiApplication] = msgspec.field(default_factory=dict)
    """The FastCGI applications (``[fastcgi.applications.php]``), server file only."""
    application: str = ""
    """Which application runs the scripts ``handler.fastcgi`` is mapped to here;
    may be left out when only one is defined."""

    def __post_init__(self) -> None:
        if not self.applications:
            return  # a level below the server's, decoded alone; checked merged too
        if self.application and self.application not in self.applications:
            defined = ", ".join(sorted(self.applications))
            raise ValueError(
                f"application: no FastCGI application {self.application!r} is defined "
                f"(defined: {defined})"
            )
        if not self.application and len(self.applications) > 1:
            raise ValueError(
                "application: several FastCGI applications are defined; name the one "
                "that serves here (a default at the server level, others in locations)"
            )

    @property
    def chosen(self) -> str:
        """The name of the application that serves here ("" if none is defined)."""
        return self.application or next(iter(self.applications), "")
