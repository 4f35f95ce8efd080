"""The access log's fields, each described once: the table every writer reads.

A :class:`Field` says, as Python source for the generated line code
(:mod:`.compiler`), what is captured while the request is logged and how the
captured values turn into a W3C value and a JSON value when a batch of lines is
rendered. Capture expressions may use these names:

- ``ctx`` the request context, ``r`` its request, ``resp`` its response;
- ``hd`` the request headers as a dict (built once per line, only when used);
- ``clock`` the :class:`Clock`, brought to the current second first (only when used);
- ``{arg}`` the field's own :attr:`Field.arg` (a header name), and the helpers in
  :data:`CAPTURE_NAMES`.

Render expressions get the captured values as ``{0}``, ``{1}``, ... plus the
names their writer binds: the W3C writer's escape memos (``escs`` for text,
``escb`` for bytes, ``nums`` for integers: ``-`` for a missing or empty value,
spaces as ``+``), and :data:`RENDER_NAMES` for both.
"""

from __future__ import annotations

import re
import socket
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from colonnade.core.context import end_clock
from colonnade.errors import ClientDisconnectedError

if TYPE_CHECKING:
    from colonnade.core.request import Request

#: ``cs(Header-Name)`` (request header) or ``sc(Header-Name)`` (response header).
HEADER_FIELD = re.compile(r"^(cs|sc)\(([!#$%&'*+.^_`|~0-9A-Za-z-]+)\)$")


def json_key(field: str) -> str:
    """The JSON key of a W3C field name: ``cs(User-Agent)`` → ``cs_user_agent``."""
    return field.lower().replace("(", "_").replace(")", "").replace("-", "_")


class Field(NamedTuple):
    """One log field (see the module docstring for the names its source may use)."""

    name: str  # the W3C name, as in ``#Fields``
    key: str  # the JSON key
    capture: tuple[str, ...]  # per request: the raw values, {0}, {1}, ... below
    w3c: str  # the W3C text (a str without spaces) from the captured values
    json: str  # the JSON value (str, int or None) from the captured values
    arg: bytes | None = None  # bound as ``{arg}`` in ``capture``


def _field(name: str, capture: tuple[str, ...], w3c: str, json: str) -> Field:
    return Field(name, json_key(name), capture, w3c, json)


# A header value: bytes, or None when the request or response has no such header.
_HEADER_JSON = "({0}.decode('latin-1') if {0} is not None else None)"

#: Every field but ``cs(...)``/``sc(...)``, by W3C name; IIS's default ones in IIS's order.
FIELDS: dict[str, Field] = {
    field.name: field
    for field in (
        _field("date", ("clock.date",), "{0}", "{0}"),
        _field("time", ("clock.time",), "{0}", "{0}"),
        _field("s-ip", ("r.server",), "({0}[0] if {0} else '-')", "({0}[0] if {0} else None)"),
        _field("cs-method", ("r.method",), "{0}", "{0}"),
        _field("cs-uri-stem", ("r.original_path",), "escs[{0}]", "{0}"),
        _field(
            "cs-uri-query",
            # The query the client sent, as cs-uri-stem is its path (IIS logs the
            # URL before a rewrite); the target holds it once a remap happened.
            ("(r.query if r.path is r.original_path else r.target.partition(b'?')[2])",),
            "escb[{0}]",
            "({0}.decode('latin-1') if {0} else None)",
        ),
        _field(
            "s-port", ("r.server",), "(nums[{0}[1]] if {0} else '-')", "({0}[1] if {0} else None)"
        ),
        _field(
            "cs-username",
            ("ctx.user",),
            "('-' if {0} is None else escs[{0}.name])",
            "(None if {0} is None else {0}.name or None)",
        ),
        _field("c-ip", ("r.client",), "({0}[0] if {0} else '-')", "({0}[0] if {0} else None)"),
        # Ours: the connection's address, when a trusted proxy named another client.
        _field("x-peer-ip", ("r.peer",), "({0}[0] if {0} else '-')", "({0}[0] if {0} else None)"),
        # Ours: the request target exactly as the client sent it (path and query,
        # still percent-encoded; before any rewrite): the NCSA formats' request line.
        _field("x-request-target", ("r.target",), "escb[{0}]", "{0}.decode('latin-1')"),
        _field("sc-status", ("resp.status",), "nums[{0}]", "{0}"),
        _field("sc-substatus", ("resp.substatus",), "nums[{0}]", "{0}"),
        _field(
            "sc-win32-status",
            ("ctx.error",),
            "('0' if {0} is None else nums[win32({0})])",
            "win32({0})",
        ),
        _field(
            "time-taken",
            ("end_clock(ctx) - ctx.started",),
            "nums[int({0} * 1000)]",
            "int({0} * 1000)",
        ),
        _field("sc-bytes", ("ctx.writer.bytes_sent",), "nums[{0}]", "{0}"),
        _field("cs-bytes", ("request_size(r)",), "nums[{0}]", "{0}"),
        _field("cs-host", ("r.host",), "escs[{0}]", "({0} or None)"),
        _field("cs-version", ("r.version",), "'HTTP/' + {0}", "'HTTP/' + {0}"),
        _field("s-sitename", ("ctx.app.site",), "escs[{0}]", "{0}"),
        # Ours: IIS's W3C log has no TLS fields. '-' on plain HTTP; the SNI name is
        # '-' too when the client sent none.
        _field(
            "x-tls-version",
            ("r.tls",),
            "('-' if {0} is None else {0}.version)",
            "(None if {0} is None else {0}.version)",
        ),
        _field(
            "x-tls-cipher",
            ("r.tls",),
            "('-' if {0} is None else {0}.cipher)",
            "(None if {0} is None else {0}.cipher)",
        ),
        _field(
            "x-tls-sni",
            ("r.tls",),
            "('-' if {0} is None or {0}.server_name is None else {0}.server_name)",
            "(None if {0} is None else {0}.server_name)",
        ),
        # Ours: the client certificate's subject (RFC 4514) and SHA-256
        # fingerprint; '-' without one (parsed once per connection, when rendered).
        _field(
            "x-tls-client-subject",
            ("r.tls",),
            "('-' if {0} is None or {0}.client is None else escs[{0}.client.subject])",
            "(None if {0} is None or {0}.client is None else {0}.client.subject)",
        ),
        _field(
            "x-tls-client-sha256",
            ("r.tls",),
            "('-' if {0} is None or {0}.client is None else {0}.client.sha256)",
            "(None if {0} is None or {0}.client is None else {0}.client.sha256)",
        ),
        _field("s-computername", (), "escs[COMPUTER_NAME]", "COMPUTER_NAME"),
        # Ours: the upstream a gateway handler (handler.proxy) sent the request to.
        _field(
            "x-upstream",
            ("(ctx.items.get('upstream') if ctx.items else None)",),
            "('-' if {0} is None else escs[{0}])",
            "{0}",
        ),
        # Ours, not IIS's: 5xx answers made one for their error page; asking for it
        # on other requests would generate an id per request for nothing.
        _field(
            "x-correlation-id",
            ("(ctx.correlation_id if resp.status >= 500 else None)",),
            "('-' if {0} is None else {0})",
            "{0}",
        ),
    )
}


def field(name: str) -> Field:
    """The field named ``name``; header fields (``cs(Name)``, ``sc(Name)``) made on demand.

    Raises ``KeyError`` for an unknown name (the section refuses those first).
    """
    known = FIELDS.get(name)
    if known is not None:
        return known
    header = HEADER_FIELD.match(name)
    if header is None:
        raise KeyError(name)
    arg = header.group(2).lower().encode("latin-1")
    if header.group(1) == "cs":
        # The header's value (bytes or None), not the request's header list: a
        # captured list would be traversed by every garbage collection until the
        # batch is written.
        capture = "hd.get({arg})"
    else:
        capture = "resp.header({arg})"
    return Field(name, json_key(name), (capture,), "escb[{0}]", _HEADER_JSON, arg)


class Clock:
    """The date and time strings of the current UTC second, formatted once a second.

    Lines are captured synchronously, so one instance serves every line in the process.
    """

    __slots__ = ("date", "next", "second", "time")

    def __init__(self) -> None:
        self.second = -1
        self.next = 0.0  # when ``second`` ends: one float compare per line
        self.date = ""
        self.time = ""

    def refresh(self, now: float) -> None:
        """Format the clock strings for the second ``now`` falls in."""
        second = int(now)
        t = time.gmtime(second)
        self.date = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        self.time = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        self.second = second
        self.next = second + 1.0


def request_size(request: Request) -> int:
    """``cs-bytes``: the request as received (request line, headers, declared body)."""
    size = len(request.method) + len(request.target) + len(request.version) + 13
    body = 0
    for name, value in request.headers:
        size += len(name) + len(value) + 4
        if name == b"content-length" and value.isdigit():
            body = int(value)
    return size + body


def win32_status(error: BaseException | None) -> int:
    """``sc-win32-status``: 64 when the client went away before its response was
    complete (an HTTP/2 stream it reset too), 1236 when the server dropped the
    connection or stream itself (``ServerAbortedError``: a stop's or a drain's
    deadline, a timer that gave up on the client, an HTTP/2 protocol error, a
    response that failed half-way and was aborted); else
    0. The IIS Win32 statuses that mean something off Windows.
    """
    return error.WIN32_STATUS if isinstance(error, ClientDisconnectedError) else 0


COMPUTER_NAME = socket.gethostname()

#: Names the capture expressions may use besides the request's own.
CAPTURE_NAMES: dict[str, Any] = {
    "clock": Clock(),
    "end_clock": end_clock,
    "request_size": request_size,
}
#: Names the render expressions of every writer may use.
RENDER_NAMES: dict[str, Any] = {"win32": win32_status, "COMPUTER_NAME": COMPUTER_NAME}
