"""``[windows_authentication]``: Negotiate (Kerberos through SPNEGO) with a keytab.

The section keeps IIS's name (``windowsAuthentication``), as the other
authentication sections keep theirs (``basic_authentication``,
``anonymous_authentication``): an administrator coming from IIS finds it where
they look, and the module id (``auth.negotiate``) says what it does on Linux.
The settings are checked when the configuration is decoded; what the module
derives from them with GSSAPI (the acceptor credentials) is made once per
section object, when the application is provisioned.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from typing import Annotated, NamedTuple

from msgspec import Meta

from colonnade.config.sections import Section

#: A Kerberos realm as written in krb5.conf: no separators, no spaces.
Realm = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=r"^[^\s@/\\]+$",
        description="a Kerberos realm such as 'EXAMPLE.COM' (case-sensitive)",
    ),
]

#: ``HTTP``, ``HTTP@www.example.com``: a GSSAPI host-based service name.
_HOSTBASED = re.compile(r"[A-Za-z0-9._-]+(?:@[A-Za-z0-9._-]+)?")
#: ``HTTP/www.example.com@EXAMPLE.COM``: a Kerberos principal name.
_PRINCIPAL = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(?:@[^\s@/\\]+)?")


class ServiceName(NamedTuple):
    """``service_principal`` parsed: what GSSAPI is asked to accept tickets for."""

    text: str
    """The name as GSSAPI imports it ("" = any key in the keytab)."""
    kind: str
    """``"any"``, ``"hostbased"`` (``HTTP``, ``HTTP@host``) or ``"principal"``
    (``HTTP/host@REALM``)."""


class WindowsAuthenticationSection(Section, frozen=True, dict=True):
    """Windows authentication (IIS ``windowsAuthentication``): the Negotiate scheme
    (RFC 4559), Kerberos tickets carried by SPNEGO, checked with GSSAPI against a
    keytab. Browsers and `curl --negotiate` on machines with a Kerberos ticket
    (an Active Directory or MIT realm) log on without a password prompt.

    A request with `Authorization: Negotiate <token>` whose ticket is valid is
    authenticated as the client's principal (`alice@EXAMPLE.COM`, `AUTH_TYPE`
    `Negotiate`), and the response carries the server's mutual-authentication
    token (`WWW-Authenticate: Negotiate <token>`). A token that fails (expired,
    replayed, for another service, not Kerberos, a realm not allowed) is a
    401.1. Every 401 for a URL where this is enabled carries the challenge
    `WWW-Authenticate: Negotiate`.

    Only Kerberos is accepted: NTLM, and any SPNEGO exchange needing more than
    one round trip, is refused (IIS on Windows offers NTLM too). The server
    needs the `gssapi` package (`pip install 'colonnade[kerberos]'`); the
    Kerberos library reads its `krb5.conf` (`KRB5_CONFIG`) as usual.

    Locked by default, as IIS locks its authentication sections.
    """

    key = "windows_authentication"
    locked = True

    enabled: bool = False
    """Accept Negotiate credentials and challenge with `Negotiate` (off by
    default, as in IIS)."""
    keytab: str = ""
    """The keytab holding the service's keys: an absolute path, readable by the
    pool's user. Empty: the Kerberos library's default (the server's
    `KRB5_KTNAME` environment variable, else `default_keytab_name` of krb5.conf,
    usually `/etc/krb5.keytab`). Read when the application starts and again for
    each ticket, so a key rotated into the file (`ktadd`) is used at once."""
    service_principal: str = "HTTP"
    """Whose tickets are accepted. `HTTP` (the default): `HTTP/<host>` for any
    host name with a key in the keytab, i.e. whatever name the client reached
    the server by. `HTTP@www.example.com`: only `HTTP/www.example.com` (a GSSAPI
    host-based name; the realm comes from krb5.conf). `HTTP/www.example.com@EXAMPLE.COM`:
    exactly that principal. `*`: any key in the keytab, of any service."""
    strip_realm: bool = False
    """Name the user `alice` instead of `alice@EXAMPLE.COM` (`REMOTE_USER`, the
    access log, URL authorization rules). Needs exactly one realm in `realms`:
    with several (or any), users of the same name in two realms would become one."""
    realms: list[Realm] = []
    """The client realms accepted (case-sensitive); empty: any realm the KDC
    trusts (cross-realm trust included). A ticket of another realm is a 401.1."""
    replay_cache: str = ""
    """Where seen authenticators are remembered, so that a captured token cannot
    be used twice: a Kerberos replay cache name such as
    `file2:/var/lib/colonnade/krb5.rcache` (the pool's user must be able to
    write it: `colonnade check` verifies). Empty: the library's default (MIT: a
    file in `/var/tmp`, or `KRB5RCACHEDIR`), shared by every worker of the
    pool's user. `none:` turns the check off (not advised)."""

    def __post_init__(self) -> None:
        if self.keytab and (not os.path.isabs(self.keytab) or "\x00" in self.keytab):
            raise ValueError(
                f"keytab: {self.keytab!r} is not an absolute path (empty: the library's default)"
            )
        if "\x00" in self.replay_cache or self.replay_cache != self.replay_cache.strip():
            raise ValueError("replay_cache: a replay cache name without spaces around it")
        _ = self.service_name  # a malformed name fails at load, naming its key
        if len(set(self.realms)) != len(self.realms):
            raise ValueError("realms: a realm is listed twice")
        if self.strip_realm and len(self.realms) != 1:
            # Any other realm the KDC trusts (a partner forest) would have its
            # alice named as ours: her URL rules, her group-file roles, her data.
            raise ValueError(
                "strip_realm: list the one realm whose users are named without it in "
                "realms (with several, or any, alice@OTHER.REALM would be our alice)"
            )

    def written_paths(self) -> tuple[str, ...]:
        """The replay cache file, where one is named (``file2:PATH``)."""
        kind, _, residual = self.replay_cache.partition(":")
        return (residual,) if self.enabled and kind == "file2" and residual else ()

    @cached_property
    def service_name(self) -> ServiceName:
        """``service_principal`` parsed (raises ``ValueError`` naming the key)."""
        text = self.service_principal
        if text == "*":
            return ServiceName("", "any")
        if _PRINCIPAL.fullmatch(text):
            return ServiceName(text, "principal")
        if _HOSTBASED.fullmatch(text):
            return ServiceName(text, "hostbased")
        raise ValueError(
            f"service_principal: {text!r} is not a service name: 'HTTP', "
            "'HTTP@host.example.com', 'HTTP/host.example.com@REALM' or '*'"
        )

    @cached_property
    def allowed_realms(self) -> frozenset[str] | None:
        """``realms`` as a set; None when any realm is accepted."""
        return frozenset(self.realms) if self.realms else None
