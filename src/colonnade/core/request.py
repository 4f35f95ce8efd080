"""The request as modules and handlers see it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

from colonnade.core.clientcert import (
    ClientCertificate,
    certificate_variables,
    parse_certificate,
    verify_result,
)

Headers = list[tuple[bytes, bytes]]

#: Request headers a reverse proxy adds: a request carrying one came from further away.
PROXY_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})

_log = logging.getLogger("colonnade.tls")


def is_local_client(host: str, header_names: Iterable[bytes]) -> bool:
    """True for a request sent directly from a loopback address (127.0.0.0/8, ::1).

    ``host`` is the client's address, ``header_names`` the request's header names
    (lower case). A request carrying a proxy header (``Forwarded``,
    ``X-Forwarded-For``, ``X-Real-IP``) is not local, even from a loopback address:
    a reverse proxy on the same machine forwards other people's requests.
    """
    # Here, not at import: error pages only, and ipaddress is ~0.3 MiB of a worker.
    import ipaddress

    try:
        # An IPv6 zone id is not part of the address.
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False  # a Unix socket path or anything else: not known to be local
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    return not any(name in PROXY_HEADERS for name in header_names)


def is_local(request: Request) -> bool:
    """True for ``request`` sent directly from a loopback address (see
    :func:`is_local_client`): who may see an error's details for the administrator."""
    client = request.client
    if not client:
        return False
    return is_local_client(str(client[0]), (name for name, _ in request.headers))


class Body(Protocol):
    """The request body, read as it arrives (never buffered whole unless asked)."""

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if -1); ``b""`` at the end."""
        ...

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive."""
        ...


class _Chunks:
    """The async iterator of :func:`read_chunks` (a class, not an async generator:
    mypyc compiles this module and has no async generators)."""

    __slots__ = ("_body", "_size")

    def __init__(self, body: Body, size: int) -> None:
        self._body = body
        self._size = size

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._body.read(self._size)
        if not chunk:
            raise StopAsyncIteration
        return chunk


def read_chunks(body: Body, size: int = 65536) -> AsyncIterator[bytes]:
    """``body`` in reads of up to ``size`` bytes, until its end: what ``__aiter__``
    of a body that reads as it arrives returns."""
    return _Chunks(body, size)


class EmptyBody:
    """The body of a request that has none."""

    __slots__ = ()

    async def read(self, size: int = -1) -> bytes:
        """Always the end."""
        return b""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Chunks(self, -1)


class BytesBody:
    """A body already in memory (tests, replays, internal sub-requests)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from memory."""
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Chunks(self, -1)


EMPTY_BODY = EmptyBody()


class TlsInfo:
    """What a TLS connection negotiated; the same object for every request on it.

    ``server_name`` is the SNI name the client sent (lower case; None without
    SNI), ``alpn`` the ALPN protocol chosen (None when the client offered none).

    ``client_certificates`` is what the site chosen by the SNI name asks of
    clients (``ignore``, ``accept``, ``require``: ``[sites.tls]``), and
    ``client_der`` the certificate the client presented (DER; None without one).
    It chained to the site's ``client_ca`` in the handshake; its dates were not
    checked there: :attr:`client` parses it (once, on first use) and its
    ``problem()`` says whether it is valid now. ``server_pem`` is the server's
    own certificate (PEM), where known.
    """

    __slots__ = (
        "_client",
        "_ssl_variables",
        "alpn",
        "asgi",
        "cipher",
        "client_certificates",
        "client_der",
        "server_name",
        "server_pem",
        "version",
    )

    def __init__(
        self,
        version: str,
        cipher: str,
        server_name: str | None,
        alpn: str | None,
        client_certificates: str = "ignore",
        client_der: bytes | None = None,
        server_pem: str | None = None,
    ) -> None:
        self.version = version  # "TLSv1.3"
        self.cipher = cipher  # OpenSSL's name: "TLS_AES_256_GCM_SHA384"
        self.server_name = server_name
        self.alpn = alpn
        self.client_certificates = client_certificates
        self.client_der = client_der
        self.server_pem = server_pem
        self._client: ClientCertificate | bool | None = None  # False: does not parse
        self._ssl_variables: dict[str, str] | None = None
        #: The ASGI ``tls`` extension of the connection, made once by the ASGI handler.
        self.asgi: dict[str, Any] | None = None

    @property
    def client(self) -> ClientCertificate | None:
        """The client certificate, parsed (None: none was sent, or it does not parse:
        see :attr:`client_invalid`)."""
        found = self._client
        if found is None:
            if self.client_der is None:
                return None
            try:
                found = self._client = parse_certificate(self.client_der)
            except ValueError as exc:
                found = self._client = False
                _log.warning("a client certificate that OpenSSL accepted does not parse: %s", exc)
        return found if isinstance(found, ClientCertificate) else None

    @property
    def client_invalid(self) -> bool:
        """True when the client sent a certificate that does not parse."""
        return self.client_der is not None and self.client is None

    def ssl_variables(self) -> dict[str, str]:
        """mod_ssl's variables for an application (WSGI, CGI): ``HTTPS``,
        ``SSL_PROTOCOL``, ``SSL_CIPHER``, ``SSL_TLS_SNI`` and, where the site asks
        for client certificates, ``SSL_CLIENT_VERIFY`` and the ``SSL_CLIENT_*`` of
        the certificate. Shared between the requests of the connection: read only."""
        found = self._ssl_variables
        if found is None:
            found = {"HTTPS": "on", "SSL_PROTOCOL": self.version, "SSL_CIPHER": self.cipher}
            if self.server_name is not None:
                found["SSL_TLS_SNI"] = self.server_name
            if self.client_certificates != "ignore":
                cert = self.client
                if cert is not None:
                    found.update(certificate_variables(cert))
                found["SSL_CLIENT_VERIFY"] = verify_result(cert, self.client_invalid)
            self._ssl_variables = found
        if self.client_der is not None:
            # Its validity is a matter of the moment of the request.
            return {**found, "SSL_CLIENT_VERIFY": verify_result(self.client, self.client_invalid)}
        return found

    def __repr__(self) -> str:
        return f"<TlsInfo {self.version} {self.cipher} sni={self.server_name} alpn={self.alpn}>"


class Request:
    """One HTTP request: what the client sent, decoded once.

    ``path`` is the percent-decoded, dot-segment-free URL path (a ``str``);
    ``raw_path`` and ``query`` are the bytes as sent. Header names are lower case.
    ``original_path`` is the path the client asked for: ``path`` changes when a
    module remaps the request (:meth:`Context.remap`), ``original_path`` never
    (the access log's ``cs-uri-stem``, as IIS logs the URL the client sent).

    ``tls`` is the connection's :class:`TlsInfo` on an ``https`` binding, else
    None (``scheme`` says what the client asked for: a trusted proxy may make it
    ``https`` where ``tls`` is None).

    ``may_upgrade``: see its comment in ``__init__``.

    ``client`` is who every module, handler and application takes for the client;
    ``peer`` is the address the connection came from, which stays put when a
    trusted reverse proxy's ``Forwarded``/``X-Forwarded-For`` header names the
    client further away (``security.trusted_proxies`` changes ``client``,
    ``scheme`` and ``host``, never ``peer``).
    """

    __slots__ = (
        "body",
        "client",
        "headers",
        "host",
        "keep_alive",
        "may_upgrade",
        "method",
        "original_path",
        "path",
        "peer",
        "query",
        "raw_path",
        "scheme",
        "server",
        "target",
        "tls",
        "version",
    )

    def __init__(
        self,
        method: str,
        path: str,
        raw_path: bytes = b"",
        query: bytes = b"",
        target: bytes = b"",
        version: str = "1.1",
        headers: Headers | None = None,
        host: str = "",
        scheme: str = "http",
        client: tuple[str, int] | None = None,
        server: tuple[str, int] | None = None,
        body: Body = EMPTY_BODY,
        keep_alive: bool = True,
        tls: TlsInfo | None = None,
        may_upgrade: bool = True,
    ) -> None:
        self.method = method
        self.path = path
        self.original_path = path
        self.raw_path = raw_path or path.encode()
        self.query = query
        self.target = target or (self.raw_path + (b"?" + query if query else b""))
        self.version = version
        self.headers: Headers = headers if headers is not None else []
        self.host = host
        self.scheme = scheme
        self.client = client
        self.peer = client
        self.server = server
        self.body = body
        self.keep_alive = keep_alive
        self.tls = tls
        #: False where the request's maker knows it has no ``Upgrade`` field: the
        #: HTTP/1 parse found none of ``http.h1.PARTICULAR_FIELDS`` (Upgrade among
        #: them) in its head, or HTTP/2 (which refuses the field). A handler that
        #: looks for an upgrade (the ASGI handler's WebSocket) scans the fields
        #: only where it is True: the default, for a request made otherwise.
        self.may_upgrade = may_upgrade

    def header(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of header ``name`` (lower case), or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lower case), in order."""
        return [value for key, value in self.headers if key == name]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target.decode('latin-1')}>"
