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
UrlPath = Annotated[
    str, Meta(pattern=r"^/[^\s]*$", description="a URL path: '/' and then no spaces")
]
#: The path prefix a reverse proxy strips before it forwards a request to an
#: application (``[asgi]``/``[wsgi]`` ``root_path``): empty, or ``/a/b`` (no
#: trailing slash).
RootPath = Annotated[
    str,
    Meta(
        pattern=r"^(/[^/\s]+)*$",
        description="'' or a URL path without a trailing slash, such as '/api'",
    ),
]

#: The content root of a stand-in site (in a pool worker's view of the
#: configuration, a site another pool serves): a path that never exists, and
#: that the engine does not check.
STAND_IN_ROOT = "/nonexistent/colonnade: served by another pool"

#: The embedded default module set (what `colonnade serve` loads with no config).
DEFAULT_MODULES: tuple[str, ...] = (
    "security.request_filtering",
    "http.compression",  # static files only by default, as IIS's default install
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
    max_connections_per_client: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    """Open connections one client address (the TCP peer, not a forwarded address)
    may hold in one worker; the next is answered 503 with ``Connection: close``
    (over TLS: closed before the handshake; an HTTP/2 one is just closed) and counted.
    0: no cap (the default, as nginx's ``limit_conn`` is opt-in: many users can share
    one address behind a NAT or a proxy). Counted per worker process: see
    [Security](security.md#connections-per-client)."""
    min_bytes_per_second: Annotated[int, Meta(ge=0, le=1_073_741_824)] = 240
    """The slowest a client may send a request body or read a response, in bytes per
    second, measured over ``min_rate_window`` (IIS ``webLimits/@minBytesPerSecond``,
    240 by default; Kestrel's ``MinRequestBodyDataRate`` and ``MinResponseDataRate``).
    A request body arriving slower is answered 408 (the connection closed if the
    response had begun); a client reading slower while the server has bytes queued
    for it is disconnected. 0: no minimum."""
    min_rate_window: Annotated[float, Meta(ge=1, le=3600)] = 5.0
    """The window, in seconds, over which ``min_bytes_per_second`` is measured, and the
    grace period before the first measure: each window must bring its length times
    ``min_bytes_per_second`` bytes, so a pause shorter than a window costs nothing if
    the client makes up for it (Kestrel's grace period, 5 s)."""


class Timeouts(_Strict):
    """Per-connection timeouts, in seconds."""

    header: Seconds = 30.0
    """From a connection's first byte to the end of the request head (then 408)."""
    body: Seconds = 60.0
    """Longest wait for the next piece of a request body (then 408)."""
    keep_alive: Seconds = 15.0
    """An idle kept-alive connection is closed after this."""
    lingering: Annotated[float, Meta(ge=0, le=3600)] = 5.0
    """After an answer sent before the request (its body) was read to the end, or a
    closing answer with more bytes sent behind its request (pipelined requests), the
    connection stops writing but goes on reading and discarding what the client still
    sends, so that the client reads the answer instead of a reset: it closes once the
    client is silent this long, or closes its side. 0 closes at once."""
    lingering_total: Seconds = 30.0
    """The longest a connection lingers that way, however much the client sends (and
    at most 64 MiB read)."""
    graceful: Seconds = 30.0
    """On stop, how long requests in flight may still run."""


class ResponseCache(_Strict):
    """``[server.response_cache]``: the connection layer's response cache, Colonnade's
    analog of HTTP.sys's kernel cache (see [the response cache](response-cache.md)).

    A small static file's 200 (and its HEAD), once served by the pipeline, is kept
    with its headers and answered from memory by the HTTP/1.1 connection itself: no
    pipeline walk, still an access log line and a count in the site's metrics. So is
    an output-cached 200 once the output cache answered it (its rule's
    `response_cache`), for no longer than its entry lives. Only where no module must
    see the request (no authentication, rewrite or third-party module on the path);
    entries are looked up again after the static handler's
    ``cache_check_interval``."""

    enabled: bool = True
    """Answer eligible requests from the response cache."""
    max_entries: Annotated[int, Meta(ge=1, le=10_000_000)] = 10_000
    """Most responses kept per worker (least recently stored dropped first)."""
    max_bytes: Annotated[int, Meta(ge=0, le=1 << 40)] = 64 * 1024 * 1024
    """Most bytes of bodies and headers kept per worker."""
    max_entry_size: Annotated[int, Meta(ge=0, le=16 * 1024 * 1024)] = 256 * 1024
    """Largest body kept; larger files stay on the pipeline (and sendfile)."""


class Http2(_Strict):
    """``[server.http2]``: HTTP/2 (RFC 9113) settings and defences, per connection.

    HTTP/2 is spoken over cleartext by prior knowledge (a connection that opens with
    the HTTP/2 preface) and over TLS where ALPN chooses ``h2``. The first four keys
    are announced to the client in the server's SETTINGS frame. A client that breaks
    a limit or floods the server is answered with a GOAWAY frame carrying the error
    code RFC 9113 names (``ENHANCE_YOUR_CALM`` for floods) and the connection is
    closed; each case is counted and logged once per connection.
    """

    enabled: bool = True
    """Accept HTTP/2; false answers a cleartext preface with HTTP/1.1's 400 (``PRI``
    is no method) and never offers ``h2`` in ALPN."""
    max_concurrent_streams: Annotated[int, Meta(ge=1, le=10_000)] = 100
    """Requests one connection may have open at once (``SETTINGS_MAX_CONCURRENT_STREAMS``);
    a stream beyond it is a protocol error."""
    initial_window_size: Annotated[int, Meta(ge=65_535, le=2_147_483_647)] = 262_144
    """Request body bytes a client may send on one stream before the application
    reads them (``SETTINGS_INITIAL_WINDOW_SIZE``): the per-stream buffer bound.
    The connection's own window is reopened as data arrives."""
    max_frame_size: Annotated[int, Meta(ge=16_384, le=16_777_215)] = 16_384
    """Largest frame payload the server accepts (``SETTINGS_MAX_FRAME_SIZE``)."""
    max_header_list_size: Annotated[int, Meta(ge=1024, le=1_048_576)] = 65_536
    """Largest decoded header list of a request, RFC 9113's measure (names, values and
    32 bytes per field; ``SETTINGS_MAX_HEADER_LIST_SIZE``). A larger one, whether sent
    plainly or as an HPACK bomb (a few bytes referring to a large table entry many
    times), ends the connection with ENHANCE_YOUR_CALM. The encoded header block
    (HEADERS and its CONTINUATION frames) is bound by the same size, which stops a
    CONTINUATION flood before anything is decoded."""
    flood_window: Seconds = 10.0
    """The period, in seconds, over which the four counts below are taken."""
    max_resets: Annotated[int, Meta(ge=1, le=1_000_000)] = 200
    """RST_STREAM frames a client may send per ``flood_window``; more is the rapid
    reset attack (CVE-2023-44487): ENHANCE_YOUR_CALM."""
    max_pings: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    """PING frames a client may send per ``flood_window`` (each one costs an answer);
    more is a flood: ENHANCE_YOUR_CALM."""
    max_settings: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    """SETTINGS frames a client may send per ``flood_window`` (each one costs an
    acknowledgement); more is a flood: ENHANCE_YOUR_CALM."""
    max_empty_frames: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    """Empty DATA frames (no payload, not ending the stream) a client may send per
    ``flood_window``; they carry nothing and cost work (CVE-2019-9518): more is a
    flood, ENHANCE_YOUR_CALM."""


#: Mozilla's "intermediate" TLS 1.2 suites (server-side TLS guidelines v5.7), the
#: ECDHE ones only: forward secrecy with AEAD ciphers (AES-GCM, ChaCha20-Poly1305).
#: Its three DHE suites are left out: they would need finite-field parameters of
#: our own, and every client that has DHE has ECDHE too. TLS 1.3 suites are
#: OpenSSL's (all AEAD) and not set by this string.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)

EnvName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="an environment variable name: letters, digits and '_', "
        "not starting with a digit",
    ),
]
#: An environment variable name, or ``""`` for none (a module's optional key source).
EnvNameOrEmpty = Annotated[
    str,
    Meta(
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
        description="an environment variable name: letters, digits and '_', "
        "not starting with a digit (or empty: none)",
    ),
]


class CertificateFiles(_Strict):
    """Where a certificate, its key and the key's passphrase come from."""

    certificate: str | None = None
    """A PEM file: the certificate, then its chain (relative to the server file). It
    may hold the private key too (a combined PEM), else set ``key``."""
    key: str | None = None
    """The PEM private key of ``certificate``, when it is not in the same file."""
    passphrase_file: str | None = None
    """A file holding the passphrase of an encrypted key (its first line). The
    passphrase itself is never in the configuration, never logged."""
    passphrase_env: EnvName | None = None
    """An environment variable holding the passphrase of an encrypted key."""
    certificate_store: str | None = None
    """A folder of certificates named by host name, chosen by SNI (IIS's Centralized
    Certificate Store): ``www.example.com.pem`` (with ``www.example.com.key`` beside
    it, or the key inside), and ``_.example.com.pem`` for ``*.example.com``. Read
    when a name is first asked for, and again when its files change."""
    client_certificates: Literal["ignore", "accept", "require"] | None = None
    """Client certificates (IIS's SSL Settings: Ignore, Accept, Require): ``ignore``
    does not ask for one; ``accept`` asks for one in the handshake and passes it on
    (a client may send none); ``require`` asks too, and a request without one is
    answered 403.7 (by ``security.ssl``, which must be enabled). A certificate
    must chain to ``client_ca`` or the handshake fails; an expired one is answered
    403.17. Unset in ``[sites.tls]``: ``[server.tls]``'s (default ``ignore``). Asked
    in the handshake, chosen by the SNI name: TLS 1.3 and HTTP/2 have no
    renegotiation to ask later. See [TLS](tls.md#client-certificates)."""
    client_ca: str | None = None
    """The CA certificates (PEM) a client certificate must chain to; required
    unless ``client_certificates`` is ``ignore``. Read again when it changes, as the
    certificate is. Unset in ``[sites.tls]``: ``[server.tls]``'s."""
    client_crl: str | None = None
    """Certificate revocation lists (PEM) of the CAs in ``client_ca``: a client
    certificate they list fails the handshake. With it, every CA that issues client
    certificates needs its list in the file (else its certificates fail too). Their
    next-update dates are not checked: an old list still refuses what it lists.
    Read again when it changes. Unset in ``[sites.tls]``: ``[server.tls]``'s."""


class TlsSettings(CertificateFiles):
    """``[server.tls]``: TLS for every ``https://`` binding.

    ``certificate`` and ``key`` here are the *default certificate*: what a client
    gets whose SNI name (or lack of one) no site, site certificate or store file
    matches. Without a default certificate such a handshake is refused with the
    ``unrecognized_name`` alert. ``certificate_store`` is the store of every site
    that has none of its own; ``passphrase_*`` unlock the default certificate's and
    the store's keys. See [TLS](tls.md).
    """

    min_version: Literal["1.2", "1.3"] = "1.2"
    """The oldest TLS version accepted (TLS 1.0 and 1.1 never are)."""
    ciphers: Annotated[str, Meta(min_length=1)] = INTERMEDIATE_CIPHERS
    """The TLS 1.2 cipher suites (OpenSSL syntax); TLS 1.3 suites are OpenSSL's own.
    Default: Mozilla "intermediate", ECDHE with AES-GCM and ChaCha20-Poly1305."""
    session_tickets: bool = True
    """Session resumption by tickets (TLS 1.2 and 1.3). Ticket keys are per worker
    process: a client resumes with the worker that issued its ticket."""
    handshake_timeout: Seconds = 10.0
    """A handshake not finished within this many seconds is dropped."""
    shutdown_timeout: Seconds = 3.0
    """Closing a connection sends TLS's close_notify and waits this long for the
    client's before the TCP connection is closed anyway (a graceful stop or recycle
    waits for it too)."""
    reload_check: Annotated[float, Meta(ge=0.05, le=3600)] = 1.0
    """At most this often (seconds) a handshake looks whether certificate, key or
    passphrase files changed; a changed file is loaded for new handshakes."""


class ServerSettings(_Strict):
    """``[server]``: what every site of this server shares."""

    modules: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_MODULES))
    """Enabled modules by id, in order (the order of hooks within a stage)."""
    server_header: str = "colonnade"
    """The ``Server`` response header; empty to send none."""
    control_socket: str | None = None
    """The Unix socket of the running master for ``colonnade pools|recycle|stop|start``
    (relative to the server file). Default: ``$XDG_RUNTIME_DIR/colonnade/control.sock``,
    else ``/run/colonnade/control.sock`` as root, else
    ``$TMPDIR/colonnade-UID/control.sock``. ``colonnade serve --control SOCKET``
    overrides it (one socket per master, to run several side by side)."""
    listen_backlog: Annotated[int, Meta(ge=1, le=65535)] = 2048
    """The length of each listening socket's queue of connections not yet accepted
    (``listen(2)``'s backlog; the kernel caps it at ``net.core.somaxconn``). Taken
    when a socket is bound (a socket systemd or ``--fd`` passed keeps its own).
    ``colonnade serve --backlog N`` sets it."""
    tcp_notsent_lowat: Annotated[int, Meta(ge=0, le=1 << 30)] = 128 * 1024
    """The most bytes of an answer a TCP connection to a client keeps queued in the
    kernel *unsent* (Linux's ``TCP_NOTSENT_LOWAT``), beyond what is in flight to the
    client. Without it the kernel grows each connection's send buffer up to
    ``net.ipv4.tcp_wmem``'s maximum (4 MiB by default) and fills it, also for a client
    that reads slowly or not at all: a thousand such downloads pin gigabytes of the
    kernel's TCP memory, which puts every connection of the host under memory
    pressure (stalled reads and accepts). With it what has not left waits in the
    worker's own bounded buffers (and, behind a proxy, in the upstream), and the
    window in flight still grows with the client's reading (autotuning stays on), so
    a fast download loses nothing. Set on each listening TCP socket when a worker
    starts serving it (accepted connections inherit it: no system call per
    connection), including sockets systemd or ``--fd`` passed; with a master, a
    reload applies a changed value to the next connections (a single-process server,
    ``--workers 0``, takes it at its next start). 0: the kernel's default
    (``net.ipv4.tcp_notsent_lowat``, unlimited unless set). See
    [the proxy's slow clients](proxy.md#slow-clients)."""
    request_monitor: bool = True
    """Keep the table of executing requests the request monitor lists
    (``colonnade requests``, ``GET /api/requests``). Off: a request writes nothing
    for it, the monitor lists no request, and ``colonnade_requests_executing`` is 0."""
    metrics: bool = True
    """Count every request in its site's counters (``GET /metrics``:
    ``colonnade_requests_total``, the duration histogram, bytes out, auth failures,
    denied clients). Off: a request writes nothing for them and those families
    have no sample; the master's own (workers, recycles, queues) stay."""
    file_check_cache: Annotated[float, Meta(ge=0, le=60)] = 1.0
    """Seconds a file check is kept (0: none is): the handler mapping's check of a
    mapping's ``resource_type`` and the CGI and FastCGI handlers' search for the
    script keep what they found (the file exists and is a regular file or a folder,
    reached without a symlink inside the application) this long, at most 4096
    paths per worker, as nginx's ``open_file_cache`` does. A missing file is never
    kept (a new script is served at once); a deleted or replaced one, or one
    replaced by a symlink, is noticed within this time."""
    limits: Limits = msgspec.field(default_factory=Limits)
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    http2: Http2 = msgspec.field(default_factory=Http2)
    response_cache: ResponseCache = msgspec.field(default_factory=ResponseCache)
    tls: TlsSettings = msgspec.field(default_factory=TlsSettings)


class AdminSettings(_Strict):
    """``[admin]``: the admin API (see [Operations](operations.md#admin-api)).

    The API is always served on the control socket (to its owner and root, no
    token). With ``bind`` it is served on a TCP address too, where every request
    needs a token (``Authorization: Bearer TOKEN``) or, over HTTPS with
    ``tls.client_ca``, a client certificate that CA issued.
    """

    bind: (
        Annotated[
            str,
            Meta(
                pattern=r"^(https?://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$",
                description="HOST:PORT, http://HOST:PORT or https://HOST:PORT",
            ),
        ]
        | None
    ) = None
    """The admin binding: ``"127.0.0.1:9180"`` (HTTP), ``"https://0.0.0.0:9443"``
    (HTTPS with ``[admin.tls]``). None: the control socket only. It needs a way
    to sign in: ``token_file``, ``token_env`` or ``[admin.tls] client_ca``."""
    token_file: str | None = None
    """A file of API tokens (relative to the server file), one per line:
    ``NAME TOKEN`` (the name is what the audit log records) or a bare ``TOKEN``
    (named ``token``); ``#`` starts a comment. Read at each sign-in, so a rotated
    token counts at once. Refused if every user may read it (``chmod o-r``)."""
    token_env: EnvName | None = None
    """An environment variable holding one more token (named ``env:VAR``)."""
    audit_log: str | None = None
    """A file (relative to the server file) the API appends one JSON line to for
    every change it makes or refuses: configuration writes (file, section, old and
    new values, secrets masked) and pool actions, with who asked. Always logged
    to the server log as well (``colonnade.audit``)."""
    tls: CertificateFiles | None = None
    """``[admin.tls]``: the certificate of an ``https://`` admin binding (the
    protocol settings are ``[server.tls]``'s). With ``client_ca``, a client
    certificate issued by that CA signs a client in (named by its subject's
    common name) without a token."""


class RedisSettings(_Strict):
    """``[redis]``: the one Redis every module that shares state uses (session
    state, the output cache's shared tier, dynamic IP restrictions' counters).

    Each worker process opens one connection pool, on its event loop at the
    first use, and closes it when it stops. While Redis cannot be reached,
    modules are told at once (no per-request wait beyond the first) and decide
    what to do; the server logs one line when it goes away and one when it is
    back, and retries with a growing back-off (``retry_min`` to ``retry_max``).
    See [Redis](redis.md).
    """

    url: Annotated[
        str,
        Meta(
            pattern=r"^(redis|rediss|unix)://",
            min_length=9,
            description="a redis://, rediss:// or unix:// URL",
        ),
    ] = "redis://127.0.0.1:6379/0"
    """Where Redis is: ``"redis://host:6379/0"``, ``"rediss://host:6380/0"``
    (TLS), ``"unix:///run/redis/redis.sock?db=0"``. A user name may be in it
    (``redis://user@host``); give the password with ``password_file`` or
    ``password_env`` (one in the URL works, and is never logged or shown, but
    then it sits in the configuration file)."""
    password_file: str | None = None
    """A file holding the password (its first line; relative to the server file).
    Read when the configuration is loaded; never logged."""
    password_env: EnvName | None = None
    """An environment variable holding the password."""
    tls_ca: str | None = None
    """``rediss://``: the CA certificates (PEM) the server's certificate must
    chain to (default: the system's)."""
    tls_certificate: str | None = None
    """``rediss://``: a client certificate (PEM) to present, for a Redis that
    requires one (``tls-auth-clients``); it may hold the key too."""
    tls_key: str | None = None
    """``rediss://``: the client certificate's private key, when not in the same file."""
    tls_check_hostname: bool = True
    """``rediss://``: check that the server's certificate names the URL's host."""
    pool_size: Annotated[int, Meta(ge=1, le=10_000)] = 32
    """Connections per worker process at most; a command waits up to
    ``connect_timeout`` for a free one."""
    connect_timeout: Annotated[float, Meta(gt=0, le=60)] = 1.0
    """Seconds to connect (and to wait for a free pooled connection)."""
    command_timeout: Annotated[float, Meta(gt=0, le=60)] = 0.5
    """Seconds to wait for an answer before Redis counts as unreachable."""
    retry_min: Annotated[float, Meta(gt=0, le=3600)] = 0.5
    """After a failure, Redis is not asked again for this many seconds (modules
    are told it is unavailable at once); doubled after each failed retry..."""
    retry_max: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    """...up to this many seconds."""
    key_prefix: Annotated[str, Meta(max_length=100)] = "colonnade:"
    """Prefix of every key the modules write (each adds its own part after it):
    change it to share one Redis database between several farms."""

    def __post_init__(self) -> None:
        scheme = self.url.partition("://")[0]
        tls = ("tls_ca", "tls_certificate", "tls_key")
        if scheme != "rediss":
            for name in tls:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only for a rediss:// URL")
        if self.tls_key is not None and self.tls_certificate is None:
            raise ValueError("tls_key: needs tls_certificate")
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("password_file and password_env: give one of them")
        if self.retry_max < self.retry_min:
            raise ValueError("retry_max: less than retry_min")


#: A farm's name in ``[farms.NAME]`` (what a proxy mapping's ``farm`` names).
FarmName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="a farm name: 1-64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit",
    ),
]


#: A farm member's name (``colonnade farm drain FARM MEMBER``).
MemberName = Annotated[
    str, Meta(pattern=r"^\S{1,128}$", description="a name: 1-128 characters, no spaces")
]
#: A ``Host`` header value.
HostHeader = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9.:\[\]-]{1,255}$",
        description="a host name or address, with an optional :port",
    ),
]
#: A cookie name (an HTTP token).
CookieName = Annotated[
    str,
    Meta(
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$",
        description="a cookie name: 1-64 letters, digits or !#$%&'*+.^_`|~-",
    ),
]


def parse_upstream(address: str) -> tuple[str, int, str | None]:
    """``(host, port, unix_path)`` of an upstream address: ``"http://host[:port]"``
    (port 80 by default; an IPv6 host in brackets) or ``"unix:/path"`` (then host
    ``""``, port 0). A ValueError says what is wrong."""
    if address.startswith("unix:"):
        path = address[5:]
        if not path.startswith("/") or "\x00" in path:
            raise ValueError(f"{address!r}: unix: needs an absolute socket path")
        return "", 0, path
    scheme, sep, rest = address.partition("://")
    if not sep or scheme != "http":
        raise ValueError(f"{address!r}: give http://host[:port] or unix:/path")
    rest = rest.removesuffix("/")
    if not rest or any(c in rest for c in "/?#@ \t"):
        raise ValueError(f"{address!r}: only a host and port (no path, query or user)")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or not host or (tail and not tail.startswith(":")):
            raise ValueError(f"{address!r}: an IPv6 host is written [::1]:port")
        port_text = tail[1:] if tail else ""
    else:
        host, _, port_text = rest.partition(":")
        if not host:
            raise ValueError(f"{address!r}: no host")
    if not port_text:
        return host, 80, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{address!r}: the port is a number from 1 to 65535")
    return host, int(port_text), None


class FarmMember(_Strict):
    """``[[farms.NAME.members]]``: one server of a farm (ARR's ``webFarm/server``)."""

    address: Annotated[str, Meta(min_length=6, max_length=1024)]
    """Where the member listens: ``"http://10.0.0.5:8080"`` (port 80 when none is
    given) or ``"unix:/run/app.sock"``."""
    name: MemberName | None = None
    """What logs, ``colonnade farms`` and ``colonnade farm drain FARM MEMBER`` call
    it (default: ``host:port``, or ``unix:/path``)."""
    weight: Annotated[int, Meta(ge=1, le=1000)] = 1
    """Its share of new requests relative to the other members (every algorithm
    but request hash counts it; request hash gives it that share of the keys)."""
    max_connections: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    """Requests one worker process sends it at once at most (0: no limit); a
    member at its limit is passed over for new requests."""

    def __post_init__(self) -> None:
        host, port, unix_path = parse_upstream(self.address)
        if self.name is None:
            self.name = f"unix:{unix_path}" if unix_path is not None else _host_port(host, port)

    @property
    def key(self) -> str:
        """Its name (given, or made from the address)."""
        assert self.name is not None  # set in __post_init__
        return self.name


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _status_ranges(text: str) -> list[tuple[int, int]]:
    ranges = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"statuses: {part.strip()!r} is not a status or a range low-high")
        first, last = int(low), int(high) if dash else int(low)
        if not 100 <= first <= last <= 999:
            raise ValueError(f"statuses: {part.strip()!r} is not within 100-999, low first")
        ranges.append((first, last))
    return ranges


class FarmHealth(_Strict):
    """``[farms.NAME.health]``: how a farm finds its members down and back up.

    **Active probe** (ARR's health test), when ``url`` is set: every worker asks
    each member for ``url`` every ``interval`` seconds; an answer within
    ``timeout`` whose status is in ``statuses`` (and whose body holds
    ``body_match``, when set) passes, anything else fails. A failed probe marks
    the member down; the next passing one brings it back.

    **Passive detection**, always: ``failures`` failed requests (connection
    refused, reset, timed out, a broken answer) within ``window`` seconds, with
    no successful one after them, mark the member down for that worker. With a
    probe, only the probe brings it back; without one, it is tried again after
    ``retry_after`` seconds (one more failure then marks it down again at once).
    """

    url: UrlPath | None = None
    """The path (and query) of the probe, asked of every member with ``GET``:
    ``"/health"``. Unset: no active probe."""
    host: HostHeader | None = None
    """The ``Host`` header of the probe (default: the member's ``host:port``)."""
    interval: Annotated[float, Meta(ge=0.05, le=86400)] = 30.0
    """Seconds between two probes of a member (ARR: 30)."""
    timeout: Annotated[float, Meta(ge=0.05, le=86400)] = 30.0
    """Seconds a probe may take, connecting to reading the body (ARR: 30)."""
    statuses: Annotated[str, Meta(min_length=3, max_length=200)] = "200-399"
    """The statuses a passing probe may answer: codes and ranges, ``"200-399,404"``."""
    body_match: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    """A text the body of a passing probe must contain (ARR's ``responseMatch``);
    the first ``max_body`` bytes are searched."""
    max_body: Annotated[int, Meta(ge=1024, le=16_777_216)] = 65_536
    """Bytes of a probe's answer read at most (a longer body fails a ``body_match``
    that is not found within them; the head is bounded to 16 KiB)."""
    failures: Annotated[int, Meta(ge=1, le=10_000)] = 5
    """Failed requests within ``window`` (none succeeding after them) that mark
    a member down."""
    window: Annotated[float, Meta(gt=0, le=86400)] = 10.0
    """Seconds over which ``failures`` are counted."""
    retry_after: Annotated[float, Meta(gt=0, le=86400)] = 30.0
    """Without a probe: seconds after which a member marked down gets requests again."""

    def __post_init__(self) -> None:
        _status_ranges(self.statuses)

    def status_ranges(self) -> list[tuple[int, int]]:
        """``statuses`` as inclusive ``(low, high)`` ranges."""
        return _status_ranges(self.statuses)


class FarmSettings(_Strict):
    """``[farms.NAME]``: a server farm, the members a reverse proxy spreads
    requests over (ARR's ``webFarm``). See [Reverse proxy](proxy.md#farms).

    The members' state (in flight, counters, health) lives in each worker
    process and is kept across configuration reloads while the farm and the
    member keep their names.
    """

    members: Annotated[list[FarmMember], Meta(min_length=1, max_length=1000)]
    """The servers (``[[farms.NAME.members]]``)."""
    algorithm: Literal[
        "weighted_round_robin", "least_requests", "least_response_time", "request_hash"
    ] = "weighted_round_robin"
    """How a new request picks a member: ``weighted_round_robin`` (in turn, by
    weight, evenly interleaved), ``least_requests`` (the fewest requests in flight
    per weight), ``least_response_time`` (the lowest recent response time, times
    its requests in flight, per weight), ``request_hash`` (the same key always
    reaches the same member; see ``hash_by``)."""
    hash_by: Annotated[
        str,
        Meta(
            pattern=r"^(url|path|client|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[^\s;=,]+)$",
            description="url, path, client, header:NAME or cookie:NAME",
        ),
    ] = "url"
    """``request_hash``: the key: ``url`` (path and query), ``path``, ``client``
    (the client's address), ``header:NAME`` or ``cookie:NAME``. A request without
    the header or cookie is balanced by weighted round robin."""
    affinity: bool = False
    """Client affinity (ARR's ``affinity useCookie``): the first answer sets a
    cookie naming the member; the client's next requests go to it while it is
    available or draining. When it is down or disabled the client moves to
    another member (and gets a new cookie)."""
    affinity_cookie: CookieName = "ARRAffinity"
    """The name of the affinity cookie."""
    health: FarmHealth = msgspec.field(default_factory=FarmHealth)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for member in self.members:
            if member.key in seen:
                raise ValueError(f"members: two are named {member.key!r} (give each a name)")
            seen.add(member.key)


#: A duration in seconds where 0 is allowed (it turns the timer or trigger off).
Duration = Annotated[float, Meta(ge=0, le=31_536_000)]
#: A time of day, ``"HH:MM"`` or ``"HH:MM:SS"`` (local time).
TimeOfDay = Annotated[
    str,
    Meta(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        description="a time of day, 'HH:MM' or 'HH:MM:SS' (00:00 to 23:59:59)",
    ),
]
PoolName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="a pool name: 1-64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit",
    ),
]


class PoolLimits(_Strict):
    """``[pools.NAME.limits]``: resource limits of each worker (``setrlimit``).

    A worker can only lower what the master itself may use: a limit above the
    master's hard limit is an error at the worker's start.
    """

    open_files: Annotated[int, Meta(ge=64, le=1_048_576)] | None = None
    """Most open file descriptors (``RLIMIT_NOFILE``); none: inherit the master's."""
    memory: Annotated[int, Meta(ge=64 * 1024 * 1024)] | None = None
    """Address space in bytes (``RLIMIT_AS``); allocations beyond it fail (MemoryError).
    Python reserves address space generously (thread stacks): allow headroom."""


class Recycling(_Strict):
    """``[pools.NAME.recycling]``: when a worker is replaced by a fresh one.

    Every trigger is per worker and 0 turns it off. A recycle is overlapped: the
    new worker is serving before the old one stops accepting; the old one then
    finishes its requests within ``shutdown_time_limit`` and hands its idle
    connections over, so no request and no connection is lost.
    """

    time: Duration = 104_400.0
    """Uptime in seconds after which a worker is recycled (IIS ``periodicRestart time``,
    1740 minutes)."""
    requests: Annotated[int, Meta(ge=0)] = 0
    """Requests a worker answers before it is recycled (IIS ``requests``). The
    recycle starts at exactly this count; with overlapping, the worker answers
    what it already accepted while its replacement starts."""
    memory: Annotated[int, Meta(ge=0)] = 0
    """Resident memory (RSS) in bytes above which a worker is recycled."""
    private_memory: Annotated[int, Meta(ge=0)] = 0
    """Private memory in bytes (private clean + dirty pages) above which a worker is
    recycled."""
    schedule: list[TimeOfDay] = msgspec.field(default_factory=list)
    """Times of day (local time, ``"03:00"`` or ``"03:00:30"``) at which the pool's
    workers are recycled."""
    overlapping: bool = True
    """Start the new worker before the old one stops (false: stop first, then start;
    IIS ``disallowOverlappingRotation``, inverted)."""
    on_config_change: bool = True
    """Recycle the pool when a change of the server file affects it (IIS
    ``disallowRotationOnConfigChange``, inverted). ``web.toml`` changes never need one:
    workers pick them up live."""


class RapidFail(_Strict):
    """``[pools.NAME.rapid_fail]``: stop a pool whose workers keep failing.

    A crash, a failed or too slow start and an unanswered ping each count. When
    ``max_crashes`` happen within ``interval`` seconds the pool is stopped and its
    requests are answered 503 until ``colonnade start POOL`` (or a reload that
    changes the pool).
    """

    enabled: bool = True
    """Rapid-fail protection on (IIS ``rapidFailProtection``)."""
    max_crashes: Annotated[int, Meta(ge=1, le=10_000)] = 5
    """Failures that stop the pool (IIS ``rapidFailProtectionMaxCrashes``)."""
    interval: Annotated[float, Meta(gt=0, le=86_400)] = 300.0
    """The window in seconds they are counted in (IIS ``rapidFailProtectionInterval``,
    5 minutes)."""


class PoolConfig(_Strict):
    """``[pools.NAME]``: an application pool, served by its own worker processes.

    Durations are in seconds. The master (activation service) starts the pool's
    workers on demand or at once, pings them, replaces crashed and hung ones and
    recycles them; see [the process model](process-model.md).
    """

    workers: Annotated[int, Meta(ge=0, le=256)] = 1
    """Worker processes (a web garden when more than 1; 0: one per CPU). IIS
    ``maxProcesses``. ``colonnade serve --workers N`` sets it for the pool named
    ``default``."""
    start: Literal["on_demand", "always"] = "on_demand"
    """``on_demand``: workers start at the pool's first request; ``always``: at once,
    and again after an idle timeout (IIS ``startMode``)."""
    queue_length: Annotated[int, Meta(ge=1, le=65_535)] = 1000
    """Connections the master holds for the pool while no worker of it is ready;
    beyond it they are answered 503 (IIS ``queueLength``)."""
    idle_timeout: Duration = 1200.0
    """When the pool's workers answered no request for this long they are stopped; the
    next request starts the pool again. 0: never (IIS ``idleTimeout``, 20 minutes)."""
    ping: bool = True
    """Ping the workers to find hung ones (IIS ``pingingEnabled``)."""
    ping_interval: Annotated[float, Meta(gt=0, le=86_400)] = 30.0
    """Seconds between pings of a worker (IIS ``pingInterval``)."""
    ping_response_time: Annotated[float, Meta(gt=0, le=86_400)] = 90.0
    """A worker that does not answer a ping within this is killed and replaced
    (IIS ``pingResponseTime``)."""
    startup_time_limit: Annotated[float, Meta(gt=0, le=86_400)] = 90.0
    """A worker not ready within this is killed; it counts as a failure (IIS
    ``startupTimeLimit``)."""
    shutdown_time_limit: Annotated[float, Meta(gt=0, le=86_400)] = 90.0
    """A stopping worker's requests may run this long; then it is killed (IIS
    ``shutdownTimeLimit``)."""
    user: str | Annotated[int, Meta(ge=0)] | None = None
    """The user the workers run as (name or uid); none: the master's. Needs a
    master running as root. It must reach the interpreter and what the pool serves
    and writes: `colonnade check` and the master check (the pool preflight)."""
    group: str | Annotated[int, Meta(ge=0)] | None = None
    """The group (name or gid); none: the user's primary group. Supplementary groups
    are the user's."""
    env: dict[EnvName, str] = msgspec.field(default_factory=dict)
    """Environment variables added for the workers (IIS ``environmentVariables``)."""
    sandbox: bool | Literal["best-effort"] = False
    """Confine the workers' file access with Landlock: read the content folders of
    the sites the pool serves and what Python needs, read-write a private temp folder.
    ``true`` refuses to run where the kernel has no Landlock; ``"best-effort"`` then
    runs unconfined and says so."""
    writable: list[str] = msgspec.field(default_factory=list)
    """Folders a sandboxed pool's workers may also read and write (relative to the
    server file): a SQLite database's folder, media uploads, caches. Each must
    exist. Without ``sandbox`` the Unix permissions alone decide."""
    limits: PoolLimits = msgspec.field(default_factory=PoolLimits)
    recycling: Recycling = msgspec.field(default_factory=Recycling)
    rapid_fail: RapidFail = msgspec.field(default_factory=RapidFail)


InterfaceName = Literal["auto", "asgi", "wsgi"]


class ApplicationConfig(_Strict):
    """``[[sites.applications]]``: an application mounted at a URL path.

    ``app`` names a Python application (``pkg.module:attr``) that then answers
    every request of the application except paths a ``[[handlers]]`` entry maps
    elsewhere and its virtual directories (static files); ``interface`` is
    detected unless given.
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
    allow_modules: bool = False
    """Allow application modules: classes shipped in the application's folder and
    ASGI middleware that wraps all of its content, declared in its root `web.toml`
    (`[application_modules]`)."""


class VirtualDirectoryConfig(_Strict):
    """``[[sites.virtual_directories]]``: a URL path served from another folder.

    Inside a Python application's URL space its content is static files: served
    by ``handler.static`` without a ``[[handlers]]`` entry (explicit entries are
    matched first and win). Where ``handler.static`` is not enabled, that is an
    error unless an entry maps the whole folder (``/static/*``) to a handler.
    """

    path: UrlPath
    """The URL path (``/media``)."""
    root: str
    """The folder served there (relative to the server file)."""


class SiteConfig(_Strict):
    """``[[sites]]``: bindings, a root folder and the applications under it."""

    name: Annotated[str, Meta(min_length=1)]
    """A unique name (used by ``[[locations]]`` paths and the tools)."""
    bindings: Annotated[list[str], Meta(min_length=1)]
    """Where it listens: ``http://HOST:PORT``, ``https://HOST:PORT``, or
    ``unix:/ABSOLUTE/PATH`` (HTTP over a unix socket, mode 0660, removed at stop)."""
    root: str = "."
    """The content folder (relative to the server file)."""
    pool: str = "default"
    """The pool serving the site's root application."""
    allow_modules: bool = False
    """Allow application modules (module classes, ASGI middleware) in the web.toml at
    the site root (its root application)."""
    host_names: list[str] = msgspec.field(default_factory=list)
    """Host headers this site answers; empty: any host not claimed by another site."""
    applications: list[ApplicationConfig] = msgspec.field(default_factory=list)
    """Applications mounted under the site (``[[sites.applications]]``)."""
    virtual_directories: list[VirtualDirectoryConfig] = msgspec.field(default_factory=list)
    """Folders mounted at URL paths (``[[sites.virtual_directories]]``)."""
    tls: CertificateFiles | None = None
    """``[sites.tls]``: the site's certificate on its ``https://`` bindings (for its
    host names, or for every name when it is the port's default site), or a
    certificate store of its own. See [TLS](tls.md)."""


class HandlerMapping(_Strict):
    """``[[handlers]]``: requests matching ``path``, ``verbs`` and ``resource_type``
    go to ``handler``; the first matching entry wins.

    ``path`` is ``*`` (everything), ``*.ext`` (by extension), or a URL pattern
    starting with ``/`` where ``*`` matches any characters. The mapping runs again
    when a module remaps the request (a default document ``index.php`` reaches
    the handler ``*.php`` maps to).

    An application's mappings are, in the order tried: the ``[[handlers]]`` of the
    ``web.toml`` at its root, those of the ``[[locations]]`` entries for its path
    (``[[locations.handlers]]``; a later entry's before an earlier one's), then the
    server file's (or, when it has none, the built-in ``StaticFile`` entry). Below
    an application's root neither may set any. ``colonnade modules --app PATH`` and
    ``colonnade config show --path P`` list them in that order, each with the file,
    line and key that added it. There is no ``remove`` or ``clear`` (IIS's
    ``<remove>``, ``<clear/>``): an entry tried earlier wins.
    """

    path: Annotated[str, Meta(min_length=1)]
    """``*``, ``*.ext``, or a URL pattern starting with ``/`` (``*`` matches anything)."""
    handler: Annotated[str, Meta(min_length=1)]
    """The id of an enabled handler (``handler.static``)."""
    verbs: list[str] = msgspec.field(default_factory=lambda: ["*"])
    """Methods it serves; ``*`` for all. A request with another method goes on to
    the next entries; when none serves it, the answer is 405 with ``Allow``."""
    resource_type: Literal["file", "directory", "either", "unspecified"] = "unspecified"
    """What the URL's physical path must be for the entry to apply (IIS
    ``resourceType``): ``file`` (a regular file), ``directory``, ``either``, or
    ``unspecified`` (not checked: the file need not exist). Otherwise the entry
    does not match and the next one is tried. Use ``file`` for handlers that run
    scripts (``*.php``): a missing script then gets the static handler's 404, and
    ``/uploads/a.jpg/x.php`` never reaches the script handler."""
    name: str = ""
    """A label, shown by `colonnade modules` and `config show`."""


DEFAULT_HANDLERS: tuple[HandlerMapping, ...] = (
    HandlerMapping(path="*", handler="handler.static", name="StaticFile"),
)


class ServerConfig(_Strict):
    """The whole server file after decoding; module sections stay raw tables."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    pools: dict[PoolName, PoolConfig] = msgspec.field(
        default_factory=lambda: {"default": PoolConfig()}
    )
    sites: list[SiteConfig] = msgspec.field(default_factory=list)
    handlers: list[HandlerMapping] = msgspec.field(default_factory=lambda: list(DEFAULT_HANDLERS))
    locations: list[dict[str, Any]] = msgspec.field(default_factory=list)
    # Sections ``web.toml`` files may not override ("deny"), or may although the
    # section is locked by default ("allow"); keys are section names or dotted keys.
    lock: dict[str, Literal["allow", "deny"]] = msgspec.field(default_factory=dict)
    #: The ``[redis]`` table (None: the file has none, and no module may use Redis).
    redis: RedisSettings | None = None
    #: The ``[farms.NAME]`` tables: the server farms a reverse proxy balances over.
    farms: dict[FarmName, FarmSettings] = msgspec.field(default_factory=dict)
    #: The ``[admin]`` table: the admin API's binding, tokens and audit log.
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    # Section tables of modules, keyed by section name; checked by the engine
    # against the enabled modules' section types.
    sections: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    source: str = "<embedded default>"
    base_dir: str = "."
    lines: Any = None  # the KeyLines index of the source file, for error messages
