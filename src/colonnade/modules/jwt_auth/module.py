"""Bearer token authentication (RFC 6750) with signed JWTs (``auth.jwt``).

How this works:

- *AUTHENTICATE_REQUEST* (priority MEDIUM, before anonymous authentication): a
  request whose ``Authorization`` scheme is ``Bearer`` has its token verified
  (:class:`~.verifier.Verifier`); a good token sets ``ctx.user`` (auth type
  ``Bearer``, roles from ``roles_claim``) and ``ctx.items["auth.jwt.claims"]``;
  a bad one is a 401.1 through ``core.auth.refuse_credentials``, with the RFC 6750
  error kept in ``ctx.items`` for the challenge. Requests without a bearer token,
  or already authenticated by another scheme, are left alone.
- *SEND_RESPONSE* (``core.auth.CHALLENGE_PRIORITY``, LOW): every 401 of a URL
  where this is enabled gets
  ``WWW-Authenticate: Bearer realm="..."``, with ``error`` and
  ``error_description`` when this module refused the token (RFC 6750 3), unless
  the application sent a Bearer challenge of its own (its ``scope``, its error). LOW runs
  before ``http.custom_headers`` (MEDIUM, so its ``remove`` still applies) and
  ``http.custom_errors`` (FIRST, which keeps the header when it replaces the page).
- *Compile once*: each section's verifier (its key source, cache and policy) is
  made once per section object (:class:`PerSection`); sections with the same key
  settings share one key source, so a key file is read once.

A malformed ``Authorization: Bearer`` header (no token, or more than one
``b64token``) is answered 401 with ``error="invalid_request"`` rather than RFC
6750's suggested 400: the issue requires a 401 with the challenge for every bad
credential, which keeps the other schemes' challenges on the answer and lets
dynamic IP restrictions count it as a failed logon.
"""

from __future__ import annotations

import os
import re

from colonnade.core.app import Application
from colonnade.core.auth import (
    CHALLENGE_PRIORITY,
    add_challenge,
    parse_authorization,
    refuse_credentials,
)
from colonnade.core.compiled import PerSection
from colonnade.core.context import Context
from colonnade.core.module import FINISH, Module, Outcome, hook
from colonnade.core.stages import Stage
from colonnade.errors import ConfigError
from colonnade.modules.jwt_auth.config import JwtAuthenticationSection
from colonnade.modules.jwt_auth.keys import KeySettings, KeySource
from colonnade.modules.jwt_auth.verifier import AUTH_TYPE, TokenRefused, Verifier

#: ``ctx.items`` key: the verified token's claims (a read-only mapping), for
#: applications (WSGI ``environ["colonnade.items"]``, the ASGI scope extension).
CLAIMS = "auth.jwt.claims"
#: ``ctx.items`` key: ``(error, description)`` of a refused token, for the challenge.
BEARER_ERROR = "auth.jwt.error"

_WWW_AUTHENTICATE = b"www-authenticate"
#: What may stand in an RFC 6750 error_description (3: %x20-21 / %x23-5B / %x5D-7E).
_NOT_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class JwtAuthentication(Module):
    """``auth.jwt``: ``Authorization: Bearer <JWT>`` authenticates the request."""

    id = "auth.jwt"
    section = JwtAuthenticationSection

    def __init__(self) -> None:
        self._sources: dict[KeySettings, KeySource] = {}
        self._verifiers: PerSection[JwtAuthenticationSection, Verifier | None] = PerSection(
            self._compile
        )

    def provision(self, app: Application) -> None:
        """Load the keys of every setting the application can see, so that a missing
        or unusable key file fails at start-up rather than on some request."""
        for path in app.level_paths():
            section = app.sections_for(path).get(JwtAuthenticationSection)
            try:
                self._verifiers.get(section)
            except ConfigError as exc:
                # Several files may have made these settings: say where they hold.
                raise ConfigError(
                    f"{exc.message} (the settings for {path} of site {app.site})",
                    file=exc.file,
                    key=exc.key,
                ) from None
            secret = section.secret_file
            if section.enabled and secret and app.contains(os.path.realpath(secret)):
                raise ConfigError(
                    f"{secret} lies inside the application's content folders, where it "
                    "could be served; keep the secret elsewhere",
                    key="jwt_authentication.secret_file",
                )

    def _compile(self, section: JwtAuthenticationSection) -> Verifier | None:
        if not section.enabled:
            return None
        try:
            section.check_complete()
        except ValueError as exc:
            raise ConfigError(str(exc), key="jwt_authentication") from None
        settings = KeySettings(
            section.jwks_file,
            section.public_key_file,
            section.secret_file,
            section.secret_env,
            section.policy.algorithms,
            section.key_check_interval,
        )
        source = self._sources.get(settings)
        if source is None:
            source = self._sources[settings] = KeySource(settings)
        return Verifier(section, source)

    def cleanup(self) -> None:
        """Forget the keys and the verified tokens."""
        self._verifiers.clear()
        self._sources.clear()

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate(self, ctx: Context) -> Outcome | None:
        """Verify a bearer token: set the user, or refuse with 401.1."""
        section = ctx.section(JwtAuthenticationSection)
        if not section.enabled or ctx.user is not None:
            return None
        header = ctx.request.header(b"authorization")
        if not header:
            return None
        # PerSection's fast read (the section's own dict), its call on the first use.
        verifiers = self._verifiers
        verifier = section.__dict__.get(verifiers.key) or verifiers.get(section)
        if verifier is None:  # pragma: no cover - enabled sections always compile to one
            return None
        # The common case first: the same header as before, a lookup.
        verified = verifier.recall(header)
        if verified is None:
            credentials = parse_authorization(header)
            if credentials is None or credentials.scheme != "bearer":
                return None
            try:
                verified = verifier.verify(credentials.credentials, header)
            except TokenRefused as refused:
                ctx.items[BEARER_ERROR] = (refused.error, refused.description)
                refuse_credentials(ctx, AUTH_TYPE, refused.reason)
                return FINISH
        ctx.user = verified.user
        ctx.items[CLAIMS] = verified.claims
        return None

    @hook(Stage.SEND_RESPONSE, priority=CHALLENGE_PRIORITY)
    def challenge(self, ctx: Context) -> None:
        """Add the ``Bearer`` challenge to a 401 (RFC 6750 3)."""
        response = ctx.response
        if response.status != 401:
            return
        section = ctx.section(JwtAuthenticationSection)
        if not section.enabled:
            return
        for name, present in response.headers:
            if name == _WWW_AUTHENTICATE and present.partition(b" ")[0].lower() == b"bearer":
                return  # the application sent its own Bearer challenge
        value = section.policy.challenge
        refused = ctx.items.get(BEARER_ERROR)
        if refused is not None:
            error, description = refused
            description = _NOT_DESCRIPTION.sub("?", description)
            joiner = b", " if value != b"Bearer" else b" "
            value += b'%serror="%s", error_description="%s"' % (
                joiner,
                error.encode("ascii"),
                description.encode("ascii"),
            )
        add_challenge(ctx, value)
