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
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Callable, Sequence
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
    """A certificate or key that does not load; the message says why (never a secret)."""


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


class Profile:
    """The protocol settings every context of a server shares."""

    def __init__(self, settings: TlsSettings, alpn: Sequence[str]) -> None:
        self.settings = settings
        self.alpn = tuple(alpn)

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
        return ctx

    def load(self, cert: str, key: str | None, passphrase: Passphrase) -> ssl.SSLContext:
        """A context serving ``cert`` (and ``key``); CertificateError says why not."""
        secret = passphrase.read()
        ctx = self.context()
        try:
            # A password callable always: with none, OpenSSL would prompt on the
            # terminal for an encrypted key and block the worker.
            ctx.load_cert_chain(cert, key, password=lambda: secret or b"")
        except ssl.SSLError as exc:
            raise CertificateError(_why(exc, cert, key, secret is not None)) from None
        except OSError as exc:
            raise CertificateError(
                f"cannot read {exc.filename or cert}: {exc.strerror or exc}"
            ) from None
        return ctx


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
        files = [self.cert, self.key, self.passphrase.file]
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


class _Choice(NamedTuple):
    """What a site brings to its TLS port: its own certificate, its own store."""

    certificate: Certificate | None
    store: Store | None


class TlsPort:
    """One TLS port: the front context, and the certificate chosen for each name."""

    def __init__(
        self,
        profile: Profile,
        named: dict[str, _Choice],
        default: _Choice | None,
        fallback: Certificate | None,
        store: Store | None,
    ) -> None:
        self.named = named
        self.default = default
        self.fallback = fallback
        self.store = store
        self.handshake_timeout = profile.settings.handshake_timeout
        self.shutdown_timeout = profile.settings.shutdown_timeout
        self.refused = 0  # handshakes refused for an unknown name
        self.context = profile.context()
        self.context.sni_callback = self._sni

    def choose(self, name: str | None) -> ssl.SSLContext | None:
        """The certificate context for SNI ``name`` (None: none serves it)."""
        now = time.monotonic()
        site = self.named.get(name) if name is not None else None
        if site is not None and site.certificate is not None:
            ctx = site.certificate.current(now)
            if ctx is not None:
                return ctx
        if name is not None:
            store = site.store if site is not None and site.store is not None else None
            if store is None and self.default is not None:
                store = self.default.store
            store = store or self.store
            if store is not None:
                ctx = store.lookup(name, now)
                if ctx is not None:
                    return ctx
        for cert in (self.default.certificate if self.default else None, self.fallback):
            if cert is not None:
                ctx = cert.current(now)
                if ctx is not None:
                    return ctx
        return None

    def _sni(self, conn: ssl.SSLObject, name: str | None, _front: ssl.SSLContext) -> int | None:
        if name is not None:
            name = name.lower().rstrip(".")
            if _HOST_NAME.match(name) is None:
                name = None  # not a host name: as if none was sent
        try:
            chosen = self.choose(name)
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
        return None


def sni_name(conn: ssl.SSLObject) -> str | None:
    """The SNI name the handshake of ``conn`` sent (checked, lower case), or None."""
    name: str | None = getattr(conn, _SNI_ATTR, None)
    return name


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
        fallback = cache.certificate(server)
        server_store = cache.store(server, server)
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
            named: dict[str, _Choice] = {}
            default: _Choice | None = None
            for site in sites:
                files = site.tls or CertificateFiles()
                choice = _Choice(cache.certificate(files), cache.store(files, server))
                for host in site.host_names:
                    named.setdefault(host.lower(), choice)
                if not site.host_names and default is None:
                    default = choice
            ports[port] = TlsPort(profile, named, default, fallback, server_store)
        return cls(ports)

    def certificates(self) -> list[Certificate]:
        """Every explicit certificate (not the stores' files), once each."""
        found: dict[int, Certificate] = {}
        for port in self.ports.values():
            choices = [*port.named.values(), port.default]
            certs = [c.certificate for c in choices if c is not None]
            for cert in [*certs, port.fallback]:
                if cert is not None:
                    found[id(cert)] = cert
        return list(found.values())


class _Cache:
    """Certificates and stores by what they are made of, reused from the previous set."""

    def __init__(self, profile: Profile, previous: TlsSet | None) -> None:
        self.profile = profile
        self.certs: dict[tuple[object, ...], Certificate] = {}
        self.stores: dict[tuple[object, ...], Store] = {}
        if previous is not None:
            for port in previous.ports.values():
                for choice in [*port.named.values(), port.default]:
                    if choice is not None:
                        self._keep(choice.certificate, choice.store)
                self._keep(port.fallback, port.store)

    def _keep(self, cert: Certificate | None, store: Store | None) -> None:
        if cert is not None and cert.profile.settings == self.profile.settings:
            self.certs[(cert.cert, cert.key, cert.passphrase)] = cert
        if store is not None and store.profile.settings == self.profile.settings:
            self.stores[(store.folder, store.passphrase)] = store

    def certificate(self, files: CertificateFiles) -> Certificate | None:
        if files.certificate is None:
            return None
        key = (files.certificate, files.key, passphrase_of(files))
        cert = self.certs.get(key)
        if cert is None or cert.profile.alpn != self.profile.alpn:
            cert = self.certs[key] = Certificate(self.profile, *key)
        return cert

    def store(self, files: CertificateFiles, server: TlsSettings) -> Store | None:
        if files.certificate_store is None:
            return None
        # A store's keys are unlocked by its own level's passphrase, else the server's.
        own = passphrase_of(files)
        passphrase = own if own != Passphrase() else passphrase_of(server)
        key = (files.certificate_store, passphrase)
        store = self.stores.get(key)
        if store is None or store.profile.alpn != self.profile.alpn:
            store = self.stores[key] = Store(self.profile, files.certificate_store, passphrase)
        return store


def check_tls(config: ServerConfig) -> list[ConfigError]:
    """What is wrong with the TLS settings of ``config``, each naming its key.

    Bindings: one port is http or https, not both; every https port has some
    certificate (a site's, a store, or the default one); a site's ``tls`` needs
    an https binding. Files: every explicit certificate loads (with its key and
    passphrase), every store folder exists, the cipher string is valid.
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
    _check_files(profile, server, "server.tls", error)
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
            error(f"{files.certificate}: {exc}", f"{where}.certificate")
    if files.certificate_store is not None and not os.path.isdir(files.certificate_store):
        error(f"no such folder: {files.certificate_store}", f"{where}.certificate_store")
