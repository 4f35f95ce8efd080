"""Negotiate authentication (IIS WindowsAuthenticationModule): Kerberos via SPNEGO.

How this works:

- *Provision.* Where ``windows_authentication.enabled`` is on at any level of the
  application, ``gssapi`` is imported and an :class:`~.gss.Acceptor` is made for
  each distinct section (acceptor credentials from its keytab): a missing
  library, keytab or key fails at start-up as a ``ConfigError`` naming the key,
  not on the first request. Where it is off everywhere, nothing is imported.
- *AUTHENTICATE_REQUEST* (priority MEDIUM, before anonymous at LAST): a request
  with ``Authorization: Negotiate <base64>`` and no user yet has its token
  judged by ``gss_accept_sec_context`` on a small thread pool (the call reads
  the keytab and writes the replay cache: file I/O kept off the event loop).
  Accepted: ``ctx.user`` is the client principal with ``auth_type``
  ``Negotiate``. Refused, or a header that is not base64 or too long
  (``core.auth.MAX_AUTHORIZATION``): 401.1 with the reason logged. Each request
  is authenticated on its own (IIS ``authPersistNonNTLM = false``).
- *SEND_RESPONSE* (``core.auth.CHALLENGE_PRIORITY``: before the header modules
  and ``http.custom_errors``, which keeps ``WWW-Authenticate`` when it replaces a
  page): a 401 gets the ``Negotiate`` challenge (whoever made the
  401); an authenticated response gets the server's mutual-authentication token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec

from colonnade.core.app import Application
from colonnade.core.auth import (
    CHALLENGE_PRIORITY,
    add_challenge,
    authorization,
    refuse_credentials,
)
from colonnade.core.compiled import PerSection
from colonnade.core.context import Context
from colonnade.core.module import FINISH, Module, Outcome, Priority, hook
from colonnade.core.principal import Principal
from colonnade.core.stages import Stage
from colonnade.core.urlpath import covers
from colonnade.errors import ConfigError
from colonnade.modules.negotiate_auth.config import WindowsAuthenticationSection

if TYPE_CHECKING:
    from colonnade.modules.negotiate_auth.gss import Acceptor

#: The scheme as IIS names it in ``AUTH_TYPE`` and the challenge.
SCHEME = "Negotiate"
_CHALLENGE = (b"www-authenticate", b"Negotiate")
#: ``ctx.items`` key: the ``WWW-Authenticate`` value carrying the server's token.
_REPLY = "auth.negotiate.reply"

#: Threads judging tokens at once, per application. Each call is short (about a
#: millisecond: a keytab read, a decryption, a replay-cache write); a few threads
#: keep a slow disk from stalling the event loop without letting a flood of bad
#: tokens take every core.
THREADS = 4
#: Tokens judged or waiting for a thread at once, at most; more are answered 503
#: with ``Retry-After`` (as ``auth.basic`` bounds its checks): a flood of tokens
#: cannot queue without bound and keep real logons waiting behind it.
MAX_CHECKS = 64

_INSTALL = (
    "the Negotiate scheme needs the 'gssapi' package, which is not installed: "
    "pip install 'colonnade[kerberos]' (it builds against the MIT Kerberos headers: "
    "apt-get install libkrb5-dev gcc)"
)


def _gss() -> Any:
    """The GSSAPI side (:mod:`.gss`), imported on first need; raises ImportError."""
    return importlib.import_module("colonnade.modules.negotiate_auth.gss")


class NegotiateAuthentication(Module):
    """``auth.negotiate``: Kerberos tickets via ``Authorization: Negotiate`` (RFC 4559)."""

    id = "auth.negotiate"
    section = WindowsAuthenticationSection

    def __init__(self) -> None:
        self._acceptors: PerSection[WindowsAuthenticationSection, Acceptor] = PerSection(
            self._make_acceptor
        )
        self._executor: ThreadPoolExecutor | None = None
        self._checks = 0

    def provision(self, app: Application) -> None:
        """Make the acceptor of every enabled section the application can see."""
        paths = [app.path, *(lvl.path for lvl in app.levels if covers(app.path, lvl.path))]
        for path in dict.fromkeys(paths):
            sections = app.sections_for(path)
            settings = sections.get(WindowsAuthenticationSection)
            if settings.enabled:
                try:
                    self._acceptors.get(settings)
                except ConfigError as exc:
                    raise _located(exc, sections.origins) from None

    def cleanup(self) -> None:
        """Stop the token threads and drop the credentials."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._acceptors.clear()

    def _make_acceptor(self, settings: WindowsAuthenticationSection) -> Acceptor:
        try:
            gss = _gss()
        except ImportError as exc:
            raise ConfigError(f"{_INSTALL} ({exc})", key="windows_authentication") from None
        if settings.keytab and not os.access(settings.keytab, os.R_OK):
            why = "no such file" if not os.path.exists(settings.keytab) else "not readable"
            raise ConfigError(
                f"cannot read the keytab {settings.keytab} ({why} for this process)",
                key="windows_authentication.keytab",
            )
        for written in settings.written_paths():
            folder = os.path.dirname(written) or "."
            if not os.access(folder, os.W_OK | os.X_OK):
                # The library would accept this and fail every logon later.
                raise ConfigError(
                    f"the replay cache's folder {folder} is missing or not writable",
                    key="windows_authentication.replay_cache",
                )
        try:
            acceptor: Acceptor = gss.Acceptor(settings)
        except gss.SetupError as exc:
            if settings.replay_cache and _usable_without_replay_cache(gss, settings):
                raise ConfigError(
                    f"the replay cache {settings.replay_cache!r} cannot be used: {exc}",
                    key="windows_authentication.replay_cache",
                ) from None
            raise ConfigError(
                f"no key to accept tickets for {settings.service_principal!r} "
                f"in {settings.keytab or 'the default keytab'}: {exc}",
                key="windows_authentication.service_principal",
            ) from None
        return acceptor

    @hook(Stage.AUTHENTICATE_REQUEST, priority=Priority.MEDIUM)
    async def authenticate_request(self, ctx: Context) -> Outcome | None:
        """Judge a Negotiate token: the user, or 401.1."""
        if ctx.user is not None:
            return None
        settings = ctx.sections.get(WindowsAuthenticationSection)
        if not settings.enabled:
            return None
        credentials = authorization(ctx.request)
        if credentials is None or credentials.scheme != "negotiate":
            return None
        if not credentials.credentials:
            refuse_credentials(ctx, SCHEME, "no token, or a header longer than allowed")
            return FINISH
        try:
            token = base64.b64decode(credentials.credentials, validate=True)
        except (binascii.Error, ValueError):
            refuse_credentials(ctx, SCHEME, "the token is not base64")
            return FINISH
        acceptor = self._acceptors.get(settings)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="colonnade-gssapi")
        if self._checks >= MAX_CHECKS:
            ctx.error_response(
                503, 0, "Service Unavailable", detail="auth.negotiate: too many tokens at once"
            )
            ctx.response.headers.append((b"retry-after", b"1"))
            return FINISH
        loop = asyncio.get_running_loop()
        self._checks += 1
        try:
            verdict = await loop.run_in_executor(self._executor, acceptor.accept, token)
        finally:
            self._checks -= 1
        if isinstance(verdict, str):
            refuse_credentials(ctx, SCHEME, verdict)
            return FINISH
        allowed = settings.allowed_realms
        if allowed is not None and verdict.realm not in allowed:
            refuse_credentials(ctx, SCHEME, f"realm {verdict.realm!r} is not in realms")
            return FINISH
        name = verdict.principal
        if settings.strip_realm and verdict.realm:
            name = name[: -len(verdict.realm) - 1]
        ctx.user = Principal(name, SCHEME)
        if verdict.reply:
            ctx.items[_REPLY] = b"Negotiate " + base64.b64encode(verdict.reply)
        return None

    @hook(Stage.SEND_RESPONSE, priority=CHALLENGE_PRIORITY)
    def send_response(self, ctx: Context) -> None:
        """The challenge on a 401; the server's token on an authenticated answer."""
        response = ctx.response
        if response.status == 401:
            if ctx.sections.get(WindowsAuthenticationSection).enabled and not _challenges(
                response.headers
            ):
                add_challenge(ctx, _CHALLENGE[1])
            return
        reply = ctx.items.get(_REPLY)
        if reply is not None:
            response.headers = [*response.headers, (b"www-authenticate", reply)]


def _usable_without_replay_cache(gss: Any, settings: WindowsAuthenticationSection) -> bool:
    # Which setting to name: the credentials are acquired with the keytab and the
    # replay cache together, and the library's error does not say which failed.
    try:
        gss.Acceptor(msgspec.structs.replace(settings, replay_cache=""))
    except gss.SetupError:
        return False
    return True


def _challenges(headers: list[tuple[bytes, bytes]]) -> bool:
    # The 401 already challenges with Negotiate (an application's own): not twice.
    for name, value in headers:
        if name == b"www-authenticate" and value[:9].lower() == b"negotiate":
            return True
    return False


def _located(exc: ConfigError, origins: dict[str, str]) -> ConfigError:
    """``exc`` naming the file that set the key at fault (or the section)."""
    if exc.file is not None:
        return exc
    section = f"{WindowsAuthenticationSection.key}."
    source = origins.get(exc.key) or next(
        (where for key, where in origins.items() if key.startswith(section)), ""
    )
    file, _, entry = source.partition(": ")
    key = f"{entry}.{exc.key}" if entry else exc.key
    return ConfigError(exc.message, file=file or None, key=key)
