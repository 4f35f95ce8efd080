"""The admin API: JSON over HTTP/1.1 on the control socket and the admin binding.

How this works
--------------
Every resource is a control-socket command (``control.Command``, carried out by
``commands.execute``): :data:`ROUTES` maps a method and a path to a command's
``op``; the path's ``{fields}``, the query string and a JSON object body fill
in its other fields, and the reply becomes the JSON answer (its ``status``, if
any, the HTTP status). A command added to ``commands.py`` appears in the API
with one line here.

The HTTP is Colonnade's own sans-IO parser (``http/h1.py``: its limits on the
request line, header count and size, its request smuggling checks), driven by a
small loop of ours rather than by the transport layer: the master serves no
site, and these connections need none of the pipeline. Bodies are bounded
(:data:`MAX_BODY`), and so is the time a client may take (:data:`READ_TIMEOUT`).

Who may ask: on the control socket, its owner and root (``control.py`` checks
the peer's uid before a byte is read). On the admin binding (:class:`AdminServer`,
``[admin] bind``), a bearer token from ``[admin] token_file`` or ``token_env``,
compared in constant time, or over HTTPS a client certificate issued by
``[admin.tls] client_ca``. A refusal is 401 (no credentials) or 403 (wrong
ones), logged with the client's address, and says nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import stat
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from colonnade.config.load import locate
from colonnade.config.schema import AdminSettings, ServerConfig, TlsSettings
from colonnade.errors import ConfigError
from colonnade.http.events import Body, EndOfMessage, ProtocolError, RequestHead
from colonnade.http.h1 import HTTP1Connection
from colonnade.pools.console import Console, is_console
from colonnade.pools.console import header as _header
from colonnade.pools.control import Command, Handler, run_command, stop_server

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("colonnade.admin")

#: The largest request body (a configuration write's table) the API reads.
MAX_BODY = 1 << 20
#: Seconds a client may take to send a request (head and body), and to be idle
#: between requests on a kept-alive connection.
READ_TIMEOUT = 30.0
#: Seconds a closing connection waits for the client's side of a TLS close.
CLOSE_WAIT = 1.0
#: Connections the admin binding keeps open at once.
MAX_CONNECTIONS = 64
#: The most query fields a request may carry.
MAX_FIELDS = 32


class Route(NamedTuple):
    """``method`` on ``pattern`` (``{name}`` matches one path segment, which fills
    the command's field ``name``) runs the command ``op``; ``fields`` are fixed."""

    method: str
    pattern: str
    op: str
    fields: Mapping[str, Any] = {}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/server", "server"),
    Route("GET", "/api/sites", "sites"),
    Route("GET", "/api/applications", "applications"),
    Route("GET", "/api/modules", "modules"),
    Route("GET", "/api/pools", "pools"),
    Route("GET", "/api/pools/{pool}", "pools"),
    Route("GET", "/api/workers", "workers"),
    Route("POST", "/api/pools/{pool}/recycle", "recycle"),
    Route("POST", "/api/pools/{pool}/stop", "stop"),
    Route("POST", "/api/pools/{pool}/start", "start"),
    Route("POST", "/api/reload", "reload"),
    Route("POST", "/api/cache/purge", "purge"),
    Route("GET", "/api/requests", "requests"),
    Route("GET", "/api/sites/{site}/log", "access_log"),
    Route("GET", "/api/farms", "farms"),
    Route("GET", "/api/traces", "traces"),
    Route("GET", "/api/traces/{trace_id}", "trace"),
    Route("GET", "/metrics", "metrics"),
    Route("POST", "/api/farms/{farm}/members/{member}/{action}", "farm"),
    Route("GET", "/api/config", "config"),
    Route("GET", "/api/config/file", "config_file"),
    Route("GET", "/api/config/tree", "config_tree"),
    Route("GET", "/api/config/schema/{section}", "config_schema"),
    Route("PUT", "/api/config/sections/{section}", "config_set"),
    Route("DELETE", "/api/config/sections/{section}", "config_set", {"delete": True}),
)


class Request(NamedTuple):
    """One HTTP request, read whole."""

    head: RequestHead
    body: bytes


class ApiError(Exception):
    """A request the API answers with ``status`` and ``message`` without running it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for ``method`` on ``path`` and its path fields; ApiError 404/405."""
    segments = path.rstrip("/").split("/") if path != "/" else [""]
    allowed: list[str] = []
    for route in ROUTES:
        parts = route.pattern.split("/")
        if len(parts) != len(segments):
            continue
        fields: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not segment:
                    break
                fields[part[1:-1]] = urllib.parse.unquote(segment, errors="strict")
            elif part != segment:
                break
        else:
            if route.method == method:
                return route, fields
            allowed.append(route.method)
    if allowed:
        raise ApiError(405, f"{method} is not allowed here (allowed: {', '.join(allowed)})")
    raise ApiError(404, f"no resource at {path} (GET /api lists them)")


def command_for(request: Request, who: str) -> Command:
    """The command ``request`` asks for; ApiError 400/404/405 when it asks for none."""
    head = request.head
    method = head.method.decode("latin-1")
    try:
        route, fields = match(method, head.path.decode("latin-1"))
    except UnicodeDecodeError:
        raise ApiError(400, "the path is not UTF-8") from None
    given: dict[str, Any] = dict(fields)
    try:
        query = urllib.parse.parse_qsl(
            head.query.decode("latin-1"),
            keep_blank_values=True,
            strict_parsing=bool(head.query),
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"bad query string: {exc}") from None
    for name, value in query:
        if name in given:
            raise ApiError(400, f"{name!r} is given twice")
        given[name] = value
    if request.body.strip():
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        for name, value in body.items():
            if name in given:
                raise ApiError(400, f"{name!r} is given twice")
            given[name] = value
    version = _header(head, b"if-match")
    if version is not None and "version" not in given:
        given["version"] = version.strip().strip('"')
    for name in ("op", "who"):
        if name in given:
            raise ApiError(400, f"{name!r} is not a field a client gives")
    given.update(route.fields)
    given["op"] = route.op
    given["who"] = who
    try:
        return msgspec.convert(given, Command, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(400, str(exc)) from None


#: Who is signed in (for the audit log), else None; and the HTTP status of a refusal.
Authenticate = Callable[[Request], tuple[str | None, int]]


async def serve_http(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    received: bytes,
    handler: Handler,
    who: str | Authenticate,
    peer: str = "control socket",
    console: tuple[Console, Callable[[bytes], str | None]] | None = None,
) -> None:
    """Answer HTTP/1.1 requests on one connection until it closes; ``received``:
    bytes already read. ``who``: the client, known (the control socket), or the
    check that tells who it is (the admin binding). ``console``: on the admin
    binding, the web console and the check of a sign-in token; it answers every
    path outside ``/api``."""
    conn = HTTP1Connection(server=b"colonnade")
    pending = received
    try:
        while True:
            request = await _read_request(reader, writer, conn, pending)
            pending = b""
            if request is None:
                return
            if isinstance(request, ProtocolError):
                writer.write(conn.error_response(request.status, request.reason))
                await writer.drain()
                return
            if console is not None and is_console(request.head.path):
                page = console[0].answer(request.head, request.body, console[1], peer)
                writer.write(
                    conn.start_response(
                        request.head, page.status, page.headers, content_length=len(page.body)
                    )
                    + conn.body(page.body)
                    + conn.end_response()
                )
                await writer.drain()
                if not conn.keep_alive:
                    return
                continue
            status, reply = await _answer(request, handler, who, peer)
            text = reply.get("text")
            if status == 200 and isinstance(text, str):
                # Not JSON: an exposition for Prometheus (``GET /metrics``).
                data = text.encode()
                headers = [(b"content-type", str(reply["content_type"]).encode())]
            else:
                data = json.dumps(reply, indent=1).encode() + b"\n"
                headers = [(b"content-type", b"application/json")]
            version = reply.get("version")
            if isinstance(version, str):
                headers.append((b"etag", f'"{version}"'.encode()))
            if status == 401:
                headers.append((b"www-authenticate", b'Bearer realm="colonnade"'))
            writer.write(
                conn.start_response(request.head, status, headers, content_length=len(data))
                + conn.body(data)
                + conn.end_response()
            )
            await writer.drain()
            if not conn.keep_alive:
                return
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
        return
    except OSError as exc:
        # A TLS client's error: ssl is imported (by the admin binding) only for TLS,
        # and the control socket, which serves this too, never needs it.
        tls = sys.modules.get("ssl")
        if tls is None or not isinstance(exc, tls.SSLError):
            raise
        return
    finally:
        writer.close()
        # Bounded: over TLS, closing waits for the client's close_notify.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT):
                await writer.wait_closed()


async def _read_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conn: HTTP1Connection,
    pending: bytes,
) -> Request | ProtocolError | None:
    head: RequestHead | None = None
    body = bytearray()
    events = conn.feed(pending) if pending else []
    async with asyncio.timeout(READ_TIMEOUT):
        while True:
            for event in events:
                if isinstance(event, RequestHead):
                    head = event
                    if (event.content_length or 0) > MAX_BODY:
                        return ProtocolError(status=413, reason="Content Too Large")
                    if event.expect_continue:
                        # curl asks before sending a body over 1 KiB (a section's table).
                        writer.write(conn.continue_response())
                elif isinstance(event, Body):
                    body += event.data
                    if len(body) > MAX_BODY:
                        return ProtocolError(status=413, reason="Content Too Large")
                elif isinstance(event, EndOfMessage) and head is not None:
                    return Request(head, bytes(body))
                elif isinstance(event, ProtocolError):
                    return event
            data = await reader.read(65536)
            if not data:
                events = conn.feed_eof()
                if not events:
                    return None
                continue
            events = conn.feed(data)


async def _answer(
    request: Request, handler: Handler, who: str | Authenticate, peer: str
) -> tuple[int, dict[str, Any]]:
    head = request.head
    method = head.method.decode("latin-1")
    target = head.target.decode("latin-1")
    if not isinstance(who, str):
        name, refusal = who(request)
        if name is None:
            # The log says why; the client learns only that it is not signed in.
            log.warning("admin API: %s refused %d: %s %s", peer, refusal, method, target)
            error = "not signed in" if refusal == 401 else "forbidden"
            return refusal, {"ok": False, "error": error}
        who = f"{name} ({peer})"
    if head.path in (b"/api", b"/api/"):
        return 200, {
            "ok": True,
            "resources": [{"method": r.method, "path": r.pattern, "op": r.op} for r in ROUTES],
        }
    try:
        command = command_for(request, who)
    except ApiError as exc:
        return exc.status, {"ok": False, "error": exc.message}
    reply = dict(await run_command(handler, command))
    status = int(reply.pop("status", 200 if reply.get("ok") else 400))
    if method != "GET":
        log.info("admin API: %s: %s %s -> %d", who, method, target, status)
    return status, reply


# -- the admin binding ------------------------------------------------------------------


def read_tokens(settings: AdminSettings) -> dict[str, bytes]:
    """Token name → token, from ``token_file`` (read now) and ``token_env``."""
    tokens: dict[str, bytes] = {}
    if settings.token_file is not None:
        try:
            with open(settings.token_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            log.error("admin API: cannot read the token file %s: %s", settings.token_file, exc)
            lines = []
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) == 1:
                tokens.setdefault("token", words[0].encode())
            elif len(words) == 2:
                tokens.setdefault(words[0], words[1].encode())
    if settings.token_env is not None:
        value = os.environ.get(settings.token_env, "")
        if value:
            tokens[f"env:{settings.token_env}"] = value.encode()
    return tokens


def check_admin(config: ServerConfig) -> list[ConfigError]:
    """The mistakes of ``[admin]`` that the master sees (workers never read the
    token file): a binding nobody can sign in to, a token file that is missing or
    that every user may read."""
    settings = config.admin
    if settings.bind is None:
        return []
    errors = []
    client_ca = settings.tls is not None and settings.tls.client_ca is not None
    if settings.token_file is None and settings.token_env is None and not client_ca:
        errors.append(
            ConfigError(
                "an admin binding needs a way to sign in: token_file, token_env, "
                "or [admin.tls] client_ca",
                key="admin.bind",
            )
        )
    if settings.token_file is not None:
        try:
            mode = os.stat(settings.token_file).st_mode
        except OSError as exc:
            errors.append(
                ConfigError(
                    f"cannot read {settings.token_file}: {exc.strerror}", key="admin.token_file"
                )
            )
        else:
            if mode & stat.S_IROTH:
                errors.append(
                    ConfigError(
                        f"{settings.token_file} may be read by every user: "
                        f"chmod o-r {settings.token_file}",
                        key="admin.token_file",
                    )
                )
    return [locate(e, config.source, config.lines) for e in errors]


def check_token(tokens: Mapping[str, bytes], given: bytes) -> str | None:
    """The name of the token ``given`` is, compared with every token in constant
    time (no early exit: the time taken says nothing about which came close)."""
    found = None
    for name, token in tokens.items():
        if hmac.compare_digest(token, given) and found is None:
            found = name
    return found


class AdminServer:
    """The admin binding: the API on a TCP address, for signed-in clients."""

    def __init__(
        self,
        settings: AdminSettings,
        tls: TlsSettings,
        handler: Handler,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.tls_settings = tls
        self.server: asyncio.AbstractServer | None = None
        self.context: ssl.SSLContext | None = None
        self._open: set[asyncio.StreamWriter] = set()
        #: The web console's sessions (its key is drawn here: a restart signs out).
        self.console = Console(secure=(settings.bind or "").startswith("https://"))

    def _context(self) -> ssl.SSLContext | None:
        files = self.settings.tls
        bind = self.settings.bind or ""
        if not bind.startswith("https://") or files is None or files.certificate is None:
            return None
        from colonnade.transport.tls import (
            CertificateError,
            ClientTrust,
            Profile,
            passphrase_of,
        )

        trust = ClientTrust(files.client_ca, files.client_crl) if files.client_ca else None
        try:
            ctx = Profile(self.tls_settings, ["http/1.1"], trust).load(
                files.certificate, files.key, passphrase_of(files)
            )
        except CertificateError as exc:
            raise ConfigError(str(exc), key="admin.tls.certificate") from None
        if trust is not None:
            import ssl

            # A client certificate signs a client in here: its dates count.
            ctx.verify_flags &= ~ssl.VerifyFlags(0x200000)  # X509_V_FLAG_NO_CHECK_TIME
        return ctx

    async def start(self) -> str:
        """Listen; the address listened on."""
        bind = self.settings.bind
        assert bind is not None
        hostport = bind.partition("://")[2] or bind
        host, _, port = hostport.rpartition(":")
        self.context = self._context()
        self.server = await asyncio.start_server(
            self._client,
            host.strip("[]"),
            int(port),
            ssl=self.context,
            ssl_handshake_timeout=10.0 if self.context is not None else None,
            limit=64 * 1024,
        )
        sockname = self.server.sockets[0].getsockname()
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://{sockname[0]}:{sockname[1]}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        if len(self._open) >= MAX_CONNECTIONS:
            # Anyone may connect here, signed in or not: their number is bounded.
            log.warning("admin API: %s refused: %d connections open", peer, MAX_CONNECTIONS)
            writer.transport.abort()
            return
        sslobj = writer.get_extra_info("ssl_object")
        subject = _client_subject(sslobj) if sslobj is not None else None

        def authenticate(request: Request) -> tuple[str | None, int]:
            if subject is not None:
                return f"certificate {subject}", 200
            value = _header(request.head, b"authorization")
            if value is None:
                # The console's script calls the API with its session cookie;
                # a write must carry the session's CSRF token as well.
                session = self.console.session(request.head)
                if session is None:
                    return None, 401
                if not self.console.csrf_ok(request.head, session):
                    return None, 403
                return f"console {session.name}", 200
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None, 401
            name = self.check_token(token.strip().encode())
            if name is None:
                return None, 403
            return f"token {name}", 200

        self._open.add(writer)
        try:
            await serve_http(
                reader,
                writer,
                b"",
                self.handler,
                authenticate,
                peer,
                (self.console, self.check_token),
            )
        finally:
            self._open.discard(writer)

    def check_token(self, given: bytes) -> str | None:
        """The name of the token ``given`` (the console's sign-in), else None."""
        return check_token(read_tokens(self.settings), given)

    async def close(self) -> None:
        """Stop listening, and drop the connections still open (an operator's
        idle keep-alive connection does not hold up a stop)."""
        if self.server is not None:
            await stop_server(self.server)
            self.server = None
        for writer in list(self._open):
            writer.transport.abort()


def _client_subject(sslobj: Any) -> str | None:
    """The common name of a verified client certificate, else None."""
    cert = sslobj.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "(no common name)"
