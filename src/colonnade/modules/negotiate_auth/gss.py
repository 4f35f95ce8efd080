"""The GSSAPI side of Negotiate: acceptor credentials and one token's verdict.

Imported only when the module is provisioned with the scheme enabled somewhere
(``gssapi`` is an optional dependency: ``colonnade[kerberos]``).

How this works: an :class:`Acceptor` is made once per effective section. It
acquires acceptor credentials for the configured service name from the
configured keytab through the credential store extension (``gss_acquire_cred_from``
with ``keytab`` and ``rcache``), never through the process environment, so two
applications with two keytabs live side by side in one worker. The credentials
are for SPNEGO and Kerberos only, and SPNEGO is told to negotiate nothing but
Kerberos (``gss_set_neg_mechs``), so an NTLM mechanism installed on the machine
is never offered. :meth:`Acceptor.accept` runs ``gss_accept_sec_context`` on one
token: it reads the keytab and writes the replay cache (file I/O), so the module
calls it on a worker thread; python-gssapi releases the GIL inside the library.
"""

from __future__ import annotations

from typing import NamedTuple

import gssapi
import gssapi.exceptions
import gssapi.raw
from gssapi.raw import GSSError

from colonnade.modules.negotiate_auth.config import WindowsAuthenticationSection

#: SPNEGO (RFC 4178), the mechanism RFC 4559 puts in the header.
SPNEGO = gssapi.Mechanism.from_sasl_name("SPNEGO")
KERBEROS = gssapi.MechType.kerberos

#: The longest reason kept from a GSSAPI error message (they are the library's
#: own text, never the token; bounded all the same, for the log).
_MAX_REASON = 200


class Accepted(NamedTuple):
    """A token accepted: who the client is, and the token that proves the server."""

    principal: str
    """The client principal, ``alice@EXAMPLE.COM``."""
    realm: str
    """Its realm (after the last ``@``), ``""`` if it has none."""
    reply: bytes | None
    """The output token for ``WWW-Authenticate: Negotiate`` (mutual authentication)."""


class SetupError(Exception):
    """The acceptor cannot be made from these settings (message names the cause)."""


def describe(exc: GSSError) -> str:
    """A GSSAPI error as one short printable line: the minor status alone where the
    major one only says to look there ("Request is a replay", "Clock skew too
    great"), else both."""
    major, _, minor = exc.gen_message().partition(", Minor (")
    major = major.partition("): ")[2] or major
    minor = minor.partition("): ")[2]
    if not minor or minor.startswith(("Unknown error", "gss_display_status")):
        text = major
    elif "Minor code may provide" in major:
        text = minor
    else:
        text = f"{major}: {minor}"
    # The library's text ends in a NUL at times; keep the log line clean.
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text[:_MAX_REASON]


class Acceptor:
    """Acceptor credentials for one section, and :meth:`accept` for one token."""

    __slots__ = ("_creds",)

    def __init__(self, settings: WindowsAuthenticationSection) -> None:
        service = settings.service_name
        name: gssapi.Name | None
        if service.kind == "any":
            name = None
        elif service.kind == "hostbased":
            name = gssapi.Name(service.text, gssapi.NameType.hostbased_service)
        else:
            name = gssapi.Name(service.text, gssapi.NameType.kerberos_principal)
        store: dict[bytes | str, bytes | str] = {}
        if settings.keytab:
            store["keytab"] = settings.keytab
        if settings.replay_cache:
            store["rcache"] = settings.replay_cache
        try:
            # Kerberos alone first: where the keytab lacks the key, SPNEGO's error
            # hides the reason that Kerberos gives ("No key table entry found
            # matching HTTP/www.example.com@"). An empty store still goes through
            # gss_acquire_cred_from: the library's defaults.
            gssapi.Credentials(name=name, usage="accept", mechs=[KERBEROS], store=store)
            self._creds = gssapi.Credentials(
                name=name, usage="accept", mechs=[SPNEGO, KERBEROS], store=store
            )
            gssapi.raw.set_neg_mechs(self._creds, [KERBEROS])
        except GSSError as exc:
            raise SetupError(describe(exc)) from None

    def accept(self, token: bytes) -> Accepted | str:
        """Judge one client token (blocking: keytab and replay cache file I/O):
        :class:`Accepted`, or why not (for the log; never the token)."""
        # The raw call: the high-level SecurityContext keeps a failure to raise on
        # the next attribute read, to let an initiator send the error token first.
        try:
            result = gssapi.raw.accept_sec_context(token, self._creds)
            shown = gssapi.raw.display_name(result.initiator_name).name
        except GSSError as exc:
            return describe(exc)
        if result.more_steps:
            # SPNEGO wants another round trip: the client offered another
            # mechanism first (NTLM). Contexts are not kept between requests.
            return "the client needs a multi-leg exchange (not Kerberos): not supported"
        if result.mech != KERBEROS:  # set_neg_mechs makes this unreachable; be sure
            return f"mechanism {result.mech.dotted_form} is not Kerberos"
        # A flag set at run time (typed as one flag): its bits, for both.
        if int(result.flags) & gssapi.RequirementFlag.anonymity:
            return "anonymous Kerberos principal"
        principal = shown.decode("utf-8", "backslashreplace")
        realm = principal.rpartition("@")[2] if "@" in principal else ""
        reply = result.token
        return Accepted(principal, realm, reply or None)
