"""TLS for ``https://`` bindings: contexts, certificates chosen by SNI, the store, reload.

How this works
--------------
Each TLS port of a worker has one *front* context (:class:`TlsPort`): the
protocol settings every certificate shares (versions, ciphers, ALPN, session
tickets) and an SNI callback, but no certificate of its own. During each
handshake the callback picks a certificate for the name the client sent and
switches the connection to that certificate's context (``SSLObject.context``):

1. the port's site that lists the name in ``host_names``, if it has a certificate;
2. a certificate store (that site's, else the port's default site's, else the
   server's): ``NAME.pem``, then the wildcard file ``_.PARENT.pem`` (``*``
   written ``_``, as IIS's Centralized Certificate Store names it);
3. the port's default site's certificate, else ``[server.tls]``'s default one;
4. nothing: the handshake is refused with the ``unrecognized_name`` alert.

A client that sends no SNI gets step 3. Session tickets are sealed with the front
context's keys, which stay while the worker serves this configuration, so a
client resumes across certificate rotations.

Every certificate is a :class:`Certificate`: when a handshake needs it, and at
most every ``reload_check`` seconds, the identities (inode, size, mtime) of its
certificate, key and passphrase files are compared with those it was loaded
from; a change loads a new context for the handshakes that follow, while open
connections keep the one they started with. A new file that does not load leaves
the previous certificate serving and is logged once, with the file and the
reason. The same look at a store folder's own identity notices files added or
removed there.

Client certificates
-------------------
A site whose ``client_certificates`` is ``accept`` or ``require`` asks for a
certificate in the handshake. OpenSSL takes the verify mode and flags of a
connection from the context it *starts* with, not from the one the SNI callback
switches to, so a port where some site asks has one more front context per
client CA (and CRL) file (``TlsPort.fronts``), and the handshake peeks the SNI
name first (``TlsPort.front``) to start with the right one. The certificate is
checked against the store of the context the SNI callback chose, so each
certificate of such a site is loaded with the site's CA and CRL files (a profile
per pair, the files watched as the certificate's own are). Dates are not checked
in the handshake (``X509_V_FLAG_NO_CHECK_TIME``): an expired certificate reaches
the pipeline, which answers it 403.17 as IIS does. One that does not chain to
the CA, or that a CRL lists, fails the handshake (Python's ``ssl`` has no verify
callback to let it through).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import NamedTuple

from colonnade.config.schema import CertificateFiles, ServerConfig, SiteConfig, TlsSettings
from colonnade.engine.sites import parse_binding
from colonnade.errors import ConfigError, combined

log = logging.getLogger("colonnade.tls")

#: A host name as a store file may be named after (checked before any lookup).
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$")
#: The file name suffixes of a store: the certificate (and chain, and maybe the
#: key), and the separate key.
CERT_SUFFIX = ".pem"
KEY_SUFFIX = ".key"
#: The first label of a wildcard file: ``_.example.com.pem`` serves ``*.example.com``.
WILDCARD_LABEL = "_"

# The attribute of an SSLObject that holds the SNI name its handshake sent.
_SNI_ATTR = "colonnade_sni"
# ... and the one that holds what the site chosen by that name asks of clients.
_CLIENT_ATTR = "colonnade_client_certificates"
# The attribute of a certificate's SSLContext that holds the certificate (PEM).
_LEAF_ATTR = "colonnade_certificate_pem"
#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME (``ssl`` has no name for it): the chain of a
#: client certificate is verified without looking at dates.
X509_V_FLAG_NO_CHECK_TIME = 0x200000
# The largest client CA file read (a bundle of every public CA is ~250 KiB).
_MAX_CA_BUNDLE = 16 << 20

#: The socket descriptor of the connection whose handshake runs (set by the code
#: that starts it; the loop runs the transport's callbacks, and so the SNI
#: callback, in a copy of that context).
HANDSHAKE_FD: ContextVar[int] = ContextVar("HANDSHAKE_FD", default=-1)

# A fatal unrecognized_name alert (RFC 8446 6.2), as a plaintext record: the SNI
# callback runs before the ServerHello, when alerts are not yet encrypted.
_UNRECOGNIZED_NAME_ALERT = bytes(
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME]
)


class CertificateError(Exception):
    """A certificate or key that does not load; the message says why (never a secret),
    ``which`` names the file at fault: ``"certificate"`` or ``"key"``."""

    def __init__(self, message: str, which: str = "certificate") -> None:
        super().__init__(message)
        self.which = which


def _unreadable(cert: str, key: str | None) -> CertificateError | None:
    # Which of the two files cannot be opened (load_cert_chain's OSError does not
    # say: its filename is empty when the key file is missing).
    for which, path in (("certificate", cert), ("key", key)):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return CertificateError(f"cannot read {path}: {exc.strerror or exc}", which)
    return None


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class Passphrase(NamedTuple):
    """Where the passphrase of an encrypted key comes from (a file or a variable)."""

    file: str | None = None
    env: str | None = None

    def read(self) -> bytes | None:
        """The passphrase (None: none configured)."""
        if self.file is not None:
            try:
                with open(self.file, "rb") as f:
                    return f.readline().rstrip(b"\r\n")
            except OSError as exc:
                raise CertificateError(
                    f"cannot read the passphrase file {self.file}: {exc.strerror}"
                ) from None
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise CertificateError(
                    f"the passphrase variable {self.env} is not set in the environment"
                )
            return value.encode()
        return None


def passphrase_of(files: CertificateFiles) -> Passphrase:
    """The passphrase source ``files`` name."""
    return Passphrase(files.passphrase_file, files.passphrase_env)


class ClientTrust(NamedTuple):
    """What a client certificate is checked against: the CA certificates in the PEM
    file ``ca``, and the revocation lists in the PEM file ``crl``."""

    ca: str
    crl: str | None = None


class ClientPolicy(NamedTuple):
    """What a site asks of clients: a certificate (``accept`` or ``require``) that
    ``trust`` vouches for."""

    mode: str
    trust: ClientTrust


class Profile:
    """The protocol settings every context of a server shares; with ``client``,
    those of the sites that ask for client certificates that it vouches for."""

    def __init__(
        self, settings: TlsSettings, alpn: Sequence[str], client: ClientTrust | None = None
    ) -> None:
        self.settings = settings
        self.alpn = tuple(alpn)
        self.client = client

    def context(self) -> ssl.SSLContext:
        """A server context with these settings and no certificate."""
        settings = self.settings
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        )
        ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
        ctx.set_ciphers(settings.ciphers)
        # Compression: CRIME. Client-initiated renegotiation: a CPU-bound DoS, and
        # nothing needs it (client certificates are asked for in the handshake).
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        if not settings.session_tickets:
            ctx.options |= ssl.OP_NO_TICKET
            ctx.num_tickets = 0
        ctx.set_alpn_protocols(list(self.alpn))
        if self.client is not None:
            # The handshake's verify mode and flags are the front context's (the
            # one the connection started with: OpenSSL does not take them from
            # the context the SNI callback switches to); set here for both.
            # Dates are not checked in the handshake, so that an expired
            # certificate gets IIS's readable 403.17 instead of a bare alert.
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
            if self.client.crl is not None:
                # The client's certificate only: its CAs are the ones client_ca lists.
                ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return ctx

    def load(self, cert: str, key: str | None, passphrase: Passphrase) -> ssl.SSLContext:
        """A context serving ``cert`` (and ``key``), trusting the client CA file (and
        its revocation lists) for client certificates; CertificateError says why not."""
        secret = passphrase.read()
        ctx = self.context()
        try:
            # A password callable always: with none, OpenSSL would prompt on the
            # terminal for an encrypted key and block the worker.
            ctx.load_cert_chain(cert, key, password=lambda: secret or b"")
        except ssl.SSLError as exc:
            raise CertificateError(_why(exc, cert, key, secret is not None)) from None
        except OSError as exc:
            raise _unreadable(cert, key) or CertificateError(
                f"cannot read {exc.filename or cert}: {exc.strerror or exc}"
            ) from None
        if self.client is not None:
            # The client certificate is checked against the store of the context
            # the SNI callback chose (this one), not the front context's.
            load_client_ca(ctx, self.client.ca)
            if self.client.crl is not None:
                load_client_crl(ctx, self.client.crl)
        setattr(ctx, _LEAF_ATTR, _leaf_pem(cert))
        return ctx


def load_client_ca(ctx: ssl.SSLContext, path: str) -> None:
    """Trust the CA certificates of the PEM file ``path`` for client certificates;
    CertificateError says why not."""
    data = _read_pem(path, "CA", b"CERTIFICATE", "certificate")
    try:
        # PEM is ASCII; anything else can only be in comments between the blocks.
        ctx.load_verify_locations(cadata=data.decode("ascii", "ignore"))
    except (ssl.SSLError, ValueError) as exc:
        raise CertificateError(
            f"the client CA file {path} does not load ({_reason(exc)})"
        ) from None


def load_client_crl(ctx: ssl.SSLContext, path: str) -> None:
    """Add the certificate revocation lists of the PEM file ``path`` to the store of
    ``ctx``; CertificateError says why not."""
    _read_pem(path, "CRL", b"X509 CRL", "revocation list")
    try:
        # (cadata= takes certificates only; a file is read for CRLs too.)
        ctx.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(
            f"the client CRL file {path} does not load ({_reason(exc)})"
        ) from None


def _read_pem(path: str, kind: str, label: bytes, what: str) -> bytes:
    # The file, if it holds at least one PEM block of ``label`` and is not huge.
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_CA_BUNDLE + 1)
    except OSError as exc:
        raise CertificateError(
            f"cannot read the client {kind} file {path}: {exc.strerror or exc}"
        ) from None
    if len(data) > _MAX_CA_BUNDLE:
        raise CertificateError(f"the client {kind} file {path} is larger than 16 MiB")
    if b"-----BEGIN " + label + b"-----" not in data:
        raise CertificateError(f"the client {kind} file {path} holds no PEM {what}")
    return data


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)


def _leaf_pem(path: str) -> str | None:
    # The first certificate of a PEM file (the server's own; its chain follows).
    try:
        with open(path, "rb") as f:
            text = f.read(_MAX_CA_BUNDLE).decode("ascii", "replace")
    except OSError:
        return None
    start = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        return None
    return text[start : end + len("-----END CERTIFICATE-----")] + "\n"


def _why(exc: ssl.SSLError, cert: str, key: str | None, has_secret: bool) -> str:
    reason = exc.reason or str(exc)
    try:
        with open(key or cert, "rb") as f:
            encrypted = b"ENCRYPTED" in f.read(1 << 20)
    except OSError:
        encrypted = False
    if encrypted and not has_secret:
        return "the private key is encrypted: set passphrase_file or passphrase_env"
    if encrypted:
        return f"the private key does not decrypt with the passphrase given ({reason})"
    if reason == "KEY_VALUES_MISMATCH":
        return "the private key does not belong to the certificate"
    return f"not a PEM certificate with its private key ({reason})"


class Certificate:
    """One certificate's context, loaded again when its files change."""

    def __init__(
        self, profile: Profile, cert: str, key: str | None, passphrase: Passphrase
    ) -> None:
        self.profile = profile
        self.cert = cert
        self.key = key
        self.passphrase = passphrase
        self.context: ssl.SSLContext | None = None
        self._seen: object = None  # the file identities last tried
        self._checked = -math.inf

    def _identity(self) -> object:
        client = self.profile.client
        files = [self.cert, self.key, self.passphrase.file, *(client or ())]
        return tuple(_identity(f) if f is not None else None for f in files)

    def current(self, now: float) -> ssl.SSLContext | None:
        """The context for a new handshake (None: the certificate never loaded)."""
        if now - self._checked >= self.profile.settings.reload_check:
            self._checked = now
            self.refresh()
        return self.context

    def refresh(self) -> None:
        """Load the files again if they changed since they were last tried."""
        identity = self._identity()
        if identity == self._seen:
            return
        self._seen = identity
        try:
            new = self.profile.load(self.cert, self.key, self.passphrase)
        except CertificateError as exc:
            if self.context is None:
                log.error("certificate %s: %s; its handshakes are refused", self.cert, exc)
            else:
                log.error(
                    "certificate %s changed but does not load: %s; the previous one "
                    "goes on serving",
                    self.cert,
                    exc,
                )
            return
        if self.context is not None:
            log.info("certificate %s: reloaded for new connections", self.cert)
        self.context = new


class Store:
    """A certificate store folder: ``HOST.pem`` (+ ``HOST.key``), ``_.DOMAIN.pem``."""

    def __init__(self, profile: Profile, folder: str, passphrase: Passphrase) -> None:
        self.profile = profile
        self.folder = folder
        self.passphrase = passphrase
        self._files: dict[str, tuple[str, str | None]] = {}  # name -> (cert, key)
        self._certs: dict[str, Certificate] = {}
        self._seen: object = None
        self._checked = -math.inf

    def lookup(self, name: str, now: float) -> ssl.SSLContext | None:
        """The context for host ``name`` (exact file first, then the wildcard one)."""
        if now - self._checked >= self.profile.settings.reload_check:
            self._checked = now
            self._list()
        for stem in (name, wildcard_stem(name)):
            if stem is None or stem not in self._files:
                continue
            cert = self._certs.get(stem)
            if cert is None:
                pem, key = self._files[stem]
                cert = self._certs[stem] = Certificate(self.profile, pem, key, self.passphrase)
            ctx = cert.current(now)
            if ctx is not None:
                return ctx
        return None

    def _list(self) -> None:
        identity = _identity(self.folder)
        if identity == self._seen:
            return
        self._seen = identity
        try:
            names = os.listdir(self.folder)
        except OSError as exc:
            log.error("certificate store %s: %s", self.folder, exc.strerror)
            names = []
        present = set(names)
        files: dict[str, tuple[str, str | None]] = {}
        for entry in names:
            if not entry.endswith(CERT_SUFFIX):
                continue
            stem = entry[: -len(CERT_SUFFIX)].lower()
            key = stem + KEY_SUFFIX
            files[stem] = (
                os.path.join(self.folder, entry),
                os.path.join(self.folder, key) if key in present else None,
            )
        self._files = files
        # A name whose files went away, or whose key file came or went, is loaded
        # anew when next asked for.
        gone = [s for s, c in self._certs.items() if files.get(s) != (c.cert, c.key)]
        for stem in gone:
            del self._certs[stem]


def wildcard_stem(name: str) -> str | None:
    """The store name of the wildcard certificate for ``name`` (one label deep)."""
    parent = name.partition(".")[2]
    return f"{WILDCARD_LABEL}.{parent}" if "." in parent else None


class _Route(NamedTuple):
    """Where the certificate for a name comes from, in order, and what is asked of
    the client: per site with host names, and one for every other name (or none)."""

    own: Certificate | None
    """The site's own certificate."""
    store: Store | None
    """The site's store, else the port's default site's, else the server's."""
    rest: tuple[Certificate, ...]
    """The port's default site's certificate, then ``[server.tls]``'s."""
    client: ClientPolicy | None
    """What the site asks of clients (None: no certificate)."""


class TlsPort:
    """One TLS port: the front contexts, and the certificate chosen for each name."""

    def __init__(
        self,
        profile: Profile,
        named: dict[str, _Route],
        unnamed: _Route,
        client_profiles: Mapping[ClientTrust, Profile],
    ) -> None:
        self.named = named
        self.unnamed = unnamed
        self.handshake_timeout = profile.settings.handshake_timeout
        self.shutdown_timeout = profile.settings.shutdown_timeout
        self.refused = 0  # handshakes refused for an unknown name
        self.context = profile.context()
        self.context.sni_callback = self._sni
        #: The front contexts that ask for a client certificate, by what vouches for it.
        self.fronts: dict[ClientTrust, ssl.SSLContext] = {}
        for route in (*named.values(), unnamed):
            if route.client is not None and route.client.trust not in self.fronts:
                front = client_profiles[route.client.trust].context()
                front.sni_callback = self._sni
                self.fronts[route.client.trust] = front
        #: Whether a handshake must know the SNI name before it starts: whether to
        #: ask for a client certificate is the front context's to say, and the
        #: SNI callback comes too late to change it.
        self.peek = bool(self.fronts)

    def route(self, name: str | None) -> _Route:
        """The route of SNI ``name`` (checked, lower case; None: none was sent)."""
        if name is None:
            return self.unnamed
        return self.named.get(name, self.unnamed)

    def front(self, name: str | None) -> ssl.SSLContext:
        """The context a handshake whose ClientHello names ``name`` starts with."""
        return self._front_of(self.route(name))

    def _front_of(self, route: _Route) -> ssl.SSLContext:
        client = route.client
        return self.context if client is None else self.fronts[client.trust]

    def choose(self, name: str | None) -> ssl.SSLContext | None:
        """The certificate context for SNI ``name`` (None: none serves it)."""
        return self._choose(self.route(name), name)

    @staticmethod
    def _choose(route: _Route, name: str | None) -> ssl.SSLContext | None:
        now = time.monotonic()
        if route.own is not None:
            ctx = route.own.current(now)
            if ctx is not None:
                return ctx
        if name is not None and route.store is not None:
            ctx = route.store.lookup(name, now)
            if ctx is not None:
                return ctx
        for cert in route.rest:
            ctx = cert.current(now)
            if ctx is not None:
                return ctx
        return None

    def _sni(self, conn: ssl.SSLObject, name: str | None, _front: ssl.SSLContext) -> int | None:
        if name is not None:
            name = name.lower().rstrip(".")
            if _HOST_NAME.match(name) is None:
                name = None  # not a host name: as if none was sent
        route = self.route(name)
        if self.peek and _front is not self._front_of(route):
            # The handshake started with the front of the name peeked from the
            # ClientHello, and this is another (a ClientHello split over records
            # hides its name from the peek): whether a certificate is asked for,
            # and how it is checked, would not be this site's. Refused.
            log.debug("TLS handshake refused: the SNI name %r was not seen before it", name)
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        try:
            chosen = self._choose(route, name)
        except Exception:
            log.exception("choosing a certificate for %r failed", name)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        if chosen is None:
            self.refused += 1
            log.debug("TLS handshake refused: no certificate for %r", name)
            # The loop drops a failed handshake's transport without sending what
            # OpenSSL queued (its alert): the client would see a bare close. So the
            # alert goes straight to the socket (7 bytes, which always fit).
            fd = HANDSHAKE_FD.get()
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.write(fd, _UNRECOGNIZED_NAME_ALERT)
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        conn.context = chosen
        setattr(conn, _SNI_ATTR, name)
        if route.client is not None:
            setattr(conn, _CLIENT_ATTR, route.client.mode)
        return None

    def certificates(self) -> list[Certificate]:
        """The explicit certificates of this port (not the stores' files)."""
        found: list[Certificate] = []
        for route in (*self.named.values(), self.unnamed):
            for cert in (route.own, *route.rest):
                if cert is not None:
                    found.append(cert)
        return found


def sni_name(conn: ssl.SSLObject) -> str | None:
    """The SNI name the handshake of ``conn`` sent (checked, lower case), or None."""
    name: str | None = getattr(conn, _SNI_ATTR, None)
    return name


def client_certificates(conn: ssl.SSLObject) -> str:
    """What the site chosen by the handshake of ``conn`` asks of clients: ``ignore``,
    ``accept`` or ``require``."""
    mode: str = getattr(conn, _CLIENT_ATTR, "ignore")
    return mode


def server_certificate(conn: ssl.SSLObject) -> str | None:
    """The certificate (PEM) the handshake of ``conn`` presented, where known."""
    pem: str | None = getattr(conn.context, _LEAF_ATTR, None)
    return pem


def client_policy(files: CertificateFiles | None, server: TlsSettings) -> ClientPolicy | None:
    """What a site with TLS settings ``files`` asks of clients (None: nothing);
    a setting it leaves unset is ``[server.tls]``'s."""
    mode = (files.client_certificates if files is not None else None) or (
        server.client_certificates or "ignore"
    )
    ca = (files.client_ca if files is not None else None) or server.client_ca
    crl = (files.client_crl if files is not None else None) or server.client_crl
    if mode == "ignore" or ca is None:
        return None
    return ClientPolicy(mode, ClientTrust(ca, crl))


class TlsSet:
    """The TLS ports of one configuration, by port number."""

    def __init__(self, ports: dict[int, TlsPort]) -> None:
        self.ports = ports

    def port(self, port: int) -> TlsPort | None:
        """The TLS settings of ``port`` (None: plain HTTP)."""
        return self.ports.get(port)

    @classmethod
    def build(
        cls, config: ServerConfig, alpn: Sequence[str], previous: TlsSet | None = None
    ) -> TlsSet:
        """The TLS ports of ``config``; certificates and stores of ``previous`` whose
        files and settings are the same are kept (with their contexts, so a file that
        broke meanwhile still has its last good certificate)."""
        profile = Profile(config.server.tls, alpn)
        cache = _Cache(profile, previous)
        server = config.server.tls
        ports: dict[int, TlsPort] = {}
        sites_on: dict[int, list[SiteConfig]] = {}
        for site in config.sites:
            for text in site.bindings:
                binding = parse_binding(text)
                if binding.scheme == "https":
                    on = sites_on.setdefault(binding.port, [])
                    if site not in on:
                        on.append(site)
        for port, sites in sites_on.items():
            default = next((site for site in sites if not site.host_names), None)
            default_files = default.tls if default is not None else None

            named: dict[str, _Route] = {}
            for site in sites:
                if site.host_names:
                    site_route = _route(cache, server, site.tls, default_files, True)
                    for host in site.host_names:
                        named.setdefault(host.lower(), site_route)
            unnamed = _route(
                cache, server, default_files if default else None, default_files, False
            )
            ports[port] = TlsPort(profile, named, unnamed, cache.profiles)
        return cls(ports)

    def certificates(self) -> list[Certificate]:
        """Every explicit certificate (not the stores' files), once each."""
        found: dict[int, Certificate] = {}
        for port in self.ports.values():
            for cert in port.certificates():
                found[id(cert)] = cert
        return list(found.values())


def _route(
    cache: _Cache,
    server: TlsSettings,
    files: CertificateFiles | None,
    default_files: CertificateFiles | None,
    named: bool,
) -> _Route:
    """The route of a site with TLS settings ``files`` (``named``: one with host
    names), or (not ``named``) of names no site has, on a port whose default site
    has ``default_files``."""
    client = client_policy(files, server)
    ca = client.trust if client is not None else None
    store = None
    for level in (files if named else None, default_files, server):
        if level is not None and (store := cache.store(level, server, ca)) is not None:
            break
    rest = [cache.certificate(level, ca) for level in (default_files, server) if level]
    return _Route(
        cache.certificate(files, ca) if named and files is not None else None,
        store,
        tuple(c for c in rest if c is not None),
        client,
    )


class _Cache:
    """Certificates and stores by what they are made of, reused from the previous set."""

    def __init__(self, profile: Profile, previous: TlsSet | None) -> None:
        self.profile = profile
        #: The profile of the sites whose client certificates each trust vouches for.
        self.profiles: dict[ClientTrust, Profile] = {}
        self.certs: dict[tuple[object, ...], Certificate] = {}
        self.stores: dict[tuple[object, ...], Store] = {}
        if previous is not None:
            for port in previous.ports.values():
                for route in (*port.named.values(), port.unnamed):
                    for cert in (route.own, *route.rest):
                        self._keep(cert, None)
                    self._keep(None, route.store)

    def _same(self, profile: Profile) -> bool:
        return profile.settings == self.profile.settings and profile.alpn == self.profile.alpn

    def _keep(self, cert: Certificate | None, store: Store | None) -> None:
        if cert is not None and self._same(cert.profile):
            self.certs[(cert.cert, cert.key, cert.passphrase, cert.profile.client)] = cert
        if store is not None and self._same(store.profile):
            self.stores[(store.folder, store.passphrase, store.profile.client)] = store

    def profile_for(self, client: ClientTrust | None) -> Profile:
        """The profile of sites whose client certificates ``client`` vouches for
        (None: sites not asking for one)."""
        if client is None:
            return self.profile
        found = self.profiles.get(client)
        if found is None:
            found = self.profiles[client] = Profile(
                self.profile.settings, self.profile.alpn, client
            )
        return found

    def certificate(
        self, files: CertificateFiles, client: ClientTrust | None
    ) -> Certificate | None:
        if files.certificate is None:
            return None
        key = (files.certificate, files.key, passphrase_of(files), client)
        cert = self.certs.get(key)
        if cert is None:
            cert = self.certs[key] = Certificate(
                self.profile_for(client), files.certificate, files.key, passphrase_of(files)
            )
        return cert

    def store(
        self, files: CertificateFiles, server: TlsSettings, client: ClientTrust | None
    ) -> Store | None:
        if files.certificate_store is None:
            return None
        # A store's keys are unlocked by its own level's passphrase, else the server's.
        own = passphrase_of(files)
        passphrase = own if own != Passphrase() else passphrase_of(server)
        key = (files.certificate_store, passphrase, client)
        store = self.stores.get(key)
        if store is None:
            store = self.stores[key] = Store(
                self.profile_for(client), files.certificate_store, passphrase
            )
        return store


def check_tls(config: ServerConfig) -> list[ConfigError]:
    """What is wrong with the TLS settings of ``config``, each naming its key.

    Bindings: one port is http or https, not both; every https port has some
    certificate (a site's, a store, or the default one); a site's ``tls`` needs
    an https binding. Files: every explicit certificate loads (with its key and
    passphrase), every store folder exists, the cipher string is valid. Client
    certificates: a CA file that loads where they are asked for, and the module
    that enforces ``require``.
    """
    errors: list[ConfigError] = []
    lines = config.lines

    def error(message: str, key: str) -> None:
        line = lines.line_for(key) if lines is not None else None
        errors.append(ConfigError(message, file=config.source, line=line, key=key))

    server = config.server.tls
    profile = Profile(server, ["http/1.1"])
    try:
        profile.context()
    except ssl.SSLError as exc:
        error(
            f"OpenSSL accepts no cipher of {server.ciphers!r} ({exc.reason})", "server.tls.ciphers"
        )
        return errors
    schemes: dict[int, dict[str, str]] = {}
    covered: set[int] = set()
    for i, site in enumerate(config.sites):
        https = False
        for j, text in enumerate(site.bindings):
            try:
                binding = parse_binding(text)
            except ConfigError:
                continue  # reported by the engine
            schemes.setdefault(binding.port, {}).setdefault(
                binding.scheme, f"sites[{i}].bindings[{j}]"
            )
            if binding.scheme == "https":
                https = True
                files = site.tls
                if files is not None and (files.certificate or files.certificate_store):
                    covered.add(binding.port)
        if site.tls is not None:
            if not https:
                error("the site has no https:// binding to use it on", f"sites[{i}].tls")
            _check_files(profile, site.tls, f"sites[{i}].tls", error)
            _check_client(config, site.tls, f"sites[{i}].tls", error)
    _check_files(profile, server, "server.tls", error)
    _check_client(config, server, "server.tls", error)
    for port, by_scheme in sorted(schemes.items()):
        if len(by_scheme) > 1:
            error(
                f"port {port} is bound as https here and as http in {by_scheme['http']}: "
                "a port speaks one of them",
                by_scheme["https"],
            )
        elif (
            "https" in by_scheme
            and port not in covered
            and server.certificate is None
            and server.certificate_store is None
        ):
            error(
                f"no certificate for port {port}: set [sites.tls] certificate or "
                "certificate_store for a site bound there, or [server.tls] certificate "
                "or certificate_store",
                by_scheme["https"],
            )
    return errors


def require_valid_tls(config: ServerConfig) -> None:
    """Raise every error :func:`check_tls` finds (a ConfigError), if any."""
    errors = check_tls(config)
    if errors:
        raise combined(errors)


#: The module that answers 403.7 where a certificate is required (by its id: the
#: transport knows modules only by name).
SSL_MODULE = "security.ssl"


def _check_client(
    config: ServerConfig, files: CertificateFiles, where: str, error: Callable[[str, str], None]
) -> None:
    mode = files.client_certificates
    ca = files.client_ca
    if mode not in (None, "ignore") and ca is None and config.server.tls.client_ca is None:
        error(
            f"client_certificates = {mode!r} needs client_ca: the CA certificates (PEM) "
            "client certificates must chain to",
            f"{where}.client_certificates",
        )
    if ca is not None:
        try:
            load_client_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ca)
        except CertificateError as exc:
            error(str(exc), f"{where}.client_ca")
    if files.client_crl is not None:
        try:
            load_client_crl(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), files.client_crl)
        except CertificateError as exc:
            error(str(exc), f"{where}.client_crl")
    if mode == "require" and SSL_MODULE not in config.server.modules:
        error(
            f"client_certificates = 'require' is enforced by the module {SSL_MODULE} "
            "(it answers 403.7 to a request without a certificate), which is not in "
            "server.modules",
            f"{where}.client_certificates",
        )


def _check_files(
    profile: Profile, files: CertificateFiles, where: str, error: Callable[[str, str], None]
) -> None:
    if files.passphrase_file is not None and files.passphrase_env is not None:
        error("set passphrase_file or passphrase_env, not both", f"{where}.passphrase_env")
        return
    if files.key is not None and files.certificate is None:
        error("a key without a certificate", f"{where}.key")
    if files.certificate is not None:
        try:
            profile.load(files.certificate, files.key, passphrase_of(files))
        except CertificateError as exc:
            path = files.certificate if exc.which == "certificate" else files.key
            said = str(exc)
            error(said if path and path in said else f"{path}: {said}", f"{where}.{exc.which}")
    if files.certificate_store is not None and not os.path.isdir(files.certificate_store):
        error(f"no such folder: {files.certificate_store}", f"{where}.certificate_store")
