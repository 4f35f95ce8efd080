"""``[http_logging]``: the access log (IIS site ``logFile`` plus ``httpLogging``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section
from colonnade.modules.http_logging.fields import FIELDS, HEADER_FIELD

#: IIS's default ``logExtFileFlags``, in IIS's order.
IIS_DEFAULT_FIELDS: tuple[str, ...] = (
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
)

#: Every field name besides ``cs(Header)`` / ``sc(Header)``.
STANDARD_FIELDS: frozenset[str] = frozenset(FIELDS)


def _default_fields() -> list[str]:
    return [*IIS_DEFAULT_FIELDS, "x-correlation-id"]


class HttpLoggingSection(Section, frozen=True):
    """Access log settings. Every one may be set per URL (``[[locations]]``).

    - ``enabled``: log requests at all (IIS ``dontLog`` inverted).
    - ``selective``: ``"all"``, ``"success"`` (status < 400) or ``"error"``
      (status >= 400), as IIS ``selectiveLogging``.
    - ``target``: ``"stdout"`` (default), ``"stderr"`` or a file path. A relative
      path is relative to the server process's working directory, not to the site
      root (log files do not belong inside served content). The folder must
      exist. Every target an application's settings name is opened at start-up;
      applications, locations and modules naming the same file share one open
      file and one buffer.
    - ``format``: ``"w3c"`` (IIS's W3C extended format, with its ``#Software``,
      ``#Version``, ``#Date`` and ``#Fields`` header written when the file is new or
      empty or its last ``#Fields`` line lists other fields: once per file, however
      many workers append to it or replace each other; a ``#Fields`` line more than
      64 MB before the end is not searched for, and the header is written again)
      or ``"json"`` (one object per line, the same fields with snake_case keys:
      ``cs(User-Agent)`` → ``cs_user_agent``; missing values are ``null`` and
      numbers are numbers), or ``"common"`` / ``"combined"`` (the NCSA formats of
      Apache and nginx that goaccess and awstats read; their fields are fixed and
      ``fields`` does not apply).
    - ``fields``: IIS's default list plus ``x-correlation-id`` at the end. That
      field is ours, not IIS's: the short id shown on 5xx error pages (and in the
      error log), so an error report can be matched to its log line; it is ``-``
      for other statuses. ``sc-win32-status`` is 64 when the client went away
      before its response was complete (as IIS logs it; an HTTP/2 stream the client
      reset too), 1236 when the server cut the request short itself (a stop's or a
      drain's deadline; a client below ``limits.min_bytes_per_second`` once the
      response began, a send stuck longer than ``timeouts.body``, an HTTP/2
      client's protocol error ending the connection, a response that failed
      half-way and was aborted (the application raised after its head went out:
      the error log has the failure); IIS's
      ERROR_CONNECTION_ABORTED, as it logs a connection HTTP.sys drops on a
      timer), else 0. Optional:
      ``sc-bytes``, ``cs-bytes``, ``cs-host``, ``cs-version``, ``s-sitename``,
      ``s-computername``, ``x-peer-ip`` (ours: the address the connection came
      from, which differs from ``c-ip`` when ``security.trusted_proxies`` took the
      client from a proxy's header), ``x-tls-version``, ``x-tls-cipher`` and
      ``x-tls-sni`` (ours, IIS's W3C log has none: the TLS version, cipher suite
      and SNI name of an ``https`` connection, ``-`` on plain HTTP),
      ``x-tls-client-subject`` and ``x-tls-client-sha256`` (ours: the client
      certificate's subject and SHA-256 fingerprint, ``-`` without one),
      ``x-request-target`` (ours: the request target as the client sent it, still
      percent-encoded and before any rewrite), ``x-upstream`` (ours: the upstream
      ``handler.proxy`` sent the request to,
      ``HOST:PORT`` or ``unix:/path``; ``-`` for other requests) and any
      request or response header as ``cs(Header-Name)`` / ``sc(Header-Name)``.
    - ``buffer_size``: lines are buffered in memory and written in one batch once
      the buffer holds about this many bytes (IIS writes 64 KB batches too;
      lines are kept as raw values until then and formatted in the batch, so the
      count is estimated from the length of the lines written last); 0 writes
      every line at once. Per target: sharers get the smallest asked for.
    - ``flush_interval``: seconds after which a partly filled buffer is written
      (per target, the smallest asked for).

    A write that fails (a full disk, a closed stream) loses the lines it held;
    requests are served on, and the error log counts them: ``access log FILE: N
    line(s) lost (M since it was opened)``. Writing resumes with the next batch.

    Timestamps are UTC; ``time-taken`` is in milliseconds from when the request
    entered the pipeline to when it is logged.
    """

    key = "http_logging"

    enabled: bool = True
    selective: Literal["all", "success", "error"] = "all"
    format: Literal["w3c", "json", "common", "combined"] = "w3c"
    target: Annotated[str, Meta(min_length=1)] = "stdout"
    fields: list[str] = msgspec.field(default_factory=_default_fields)
    buffer_size: Annotated[int, Meta(ge=0, le=64 * 1024 * 1024)] = 65536
    flush_interval: Annotated[float, Meta(gt=0, le=3600)] = 1.0

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("fields: at least one field is needed")
        seen: set[str] = set()
        for name in self.fields:
            if name not in STANDARD_FIELDS and HEADER_FIELD.match(name) is None:
                raise ValueError(f"fields: unknown log field {name!r}")
            if name.lower() in seen:
                raise ValueError(f"fields: {name!r} is listed twice")
            seen.add(name.lower())

    def written_paths(self) -> tuple[str, ...]:
        """The log file (none for ``stdout`` and ``stderr``)."""
        return () if self.target in ("stdout", "stderr") else (self.target,)
