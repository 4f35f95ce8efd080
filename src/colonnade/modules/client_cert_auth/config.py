"""``[client_certificate_mapping_authentication]``: certificates mapped to user names.

IIS's ``iisClientCertificateMappingAuthentication``: one-to-one mappings (one
certificate, here by its fingerprint, to one user) and many-to-one mappings
(rules on the subject's and issuer's fields, to one user, or a refusal). The
mappings are compiled once per section object (:attr:`ClientCertificateMappingSection.
mapper`): a fingerprint is one dict lookup, a rule one compiled pattern.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section
from colonnade.core.clientcert import ClientCertificate
from colonnade.core.principal import PrincipalName

Fingerprint = Annotated[
    str,
    Meta(
        pattern=r"^[0-9A-Fa-f]{2}(?:[: ]?[0-9A-Fa-f]{2}){19,31}$",
        description="a certificate's SHA-256 fingerprint (64 hex digits) or SHA-1 "
        "thumbprint (40), with or without ':' between bytes",
    ),
]
SubField = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z][A-Za-z0-9.]{0,63}$",
        description="a distinguished-name attribute: CN, O, OU, L, S (or ST), C, E "
        "(or emailAddress), DC, UID, or a dotted OID",
    ),
]


class OneToOneMapping(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `one_to_one` entry (IIS `oneToOneMappings/add`): one certificate, one user."""

    fingerprint: Fingerprint
    """The certificate's SHA-256 fingerprint (`openssl x509 -noout -fingerprint
    -sha256 -in alice.pem`), or its SHA-1 thumbprint as IIS shows it. A reissued
    certificate has another fingerprint, as in IIS (which compares the whole
    certificate)."""
    user: PrincipalName
    """The user the certificate logs on as."""
    roles: list[PrincipalName] = []
    """Roles the user has (for URL authorization)."""
    enabled: bool = True
    """Off: the entry is skipped."""

    def __post_init__(self) -> None:
        if len(normal_fingerprint(self.fingerprint)) not in (40, 64):
            raise ValueError(
                f"fingerprint {self.fingerprint!r}: 64 hex digits (SHA-256) or 40 (SHA-1)"
            )


class MappingRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One rule of a many-to-one mapping (IIS `rules/add`)."""

    field: Literal["subject", "issuer"]
    """Whose name the rule looks at (IIS `certificateField`: Subject, Issuer)."""
    sub_field: SubField
    """The attribute (IIS `certificateSubField`): `CN`, `O`, `OU`, `L`, `S`, `C`, `E`, …"""
    match: Annotated[str, Meta(min_length=1, max_length=1024)]
    """The value (IIS `matchCriteria`); `*` matches any characters. The rule holds
    when any value of the attribute matches the whole pattern."""
    case_sensitive: bool = True
    """Compare case-sensitively (IIS `compareCaseSensitive`, default true)."""


class ManyToOneMapping(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `many_to_one` entry (IIS `manyToOneMappings/add`): every certificate whose
    fields match all its rules is `allow`ed as `user`, or `deny`ed (403.12)."""

    name: Annotated[str, Meta(min_length=1, max_length=256)]
    """The mapping's name (its key: a `web.toml` removes or replaces it by name)."""
    rules: Annotated[list[MappingRule], Meta(min_length=1)]
    """All must hold (IIS: AND)."""
    permission: Literal["allow", "deny"] = "allow"
    """`allow`: log on as `user`; `deny`: answer 403.12 (IIS `permissionMode`)."""
    user: PrincipalName | None = None
    """The user an `allow` mapping logs on as (required for `allow`)."""
    roles: list[PrincipalName] = []
    """Roles the user has."""
    description: str = ""
    """For the administrator."""
    enabled: bool = True
    """Off: the mapping is skipped."""

    def __post_init__(self) -> None:
        if self.permission == "allow" and self.user is None:
            raise ValueError(f"many_to_one {self.name!r}: an allow mapping needs a user")


class Mapped(NamedTuple):
    """What a certificate maps to: a user, or a refusal by a deny mapping."""

    user: str
    roles: frozenset[str]
    deny: str | None = None
    """The name of the deny mapping that matched (then ``user`` is empty)."""


def wildcard(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    """``pattern`` (``*`` for any characters) as a regex matching whole values."""
    body = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(body, 0 if case_sensitive else re.IGNORECASE)


class _Compiled(NamedTuple):
    mapping: ManyToOneMapping
    rules: tuple[tuple[bool, str, re.Pattern[str]], ...]  # (issuer?, sub field, pattern)


class Mapper:
    """The enabled mappings of a section, compiled."""

    def __init__(self, section: ClientCertificateMappingSection) -> None:
        self.one_to_one: dict[str, OneToOneMapping] = {}
        if section.one_to_one_enabled:
            for entry in section.one_to_one:
                if entry.enabled:
                    key = normal_fingerprint(entry.fingerprint)
                    self.one_to_one.setdefault(key, entry)
        self.many_to_one: tuple[_Compiled, ...] = ()
        if section.many_to_one_enabled:
            self.many_to_one = tuple(
                _Compiled(
                    m,
                    tuple(
                        (r.field == "issuer", r.sub_field, wildcard(r.match, r.case_sensitive))
                        for r in m.rules
                    ),
                )
                for m in section.many_to_one
                if m.enabled
            )

    def map(self, cert: ClientCertificate) -> Mapped | None:
        """The user ``cert`` maps to (one-to-one first, then the many-to-one mappings
        in order, the first whose rules all hold), or None."""
        if self.one_to_one:
            entry = self.one_to_one.get(cert.sha256) or self.one_to_one.get(cert.sha1)
            if entry is not None:
                return Mapped(entry.user, frozenset(entry.roles))
        for compiled in self.many_to_one:
            if all(
                any(pattern.fullmatch(v) for v in cert.values(sub, issuer=issuer))
                for issuer, sub, pattern in compiled.rules
            ):
                mapping = compiled.mapping
                if mapping.permission == "deny":
                    return Mapped("", frozenset(), deny=mapping.name)
                return Mapped(mapping.user or "", frozenset(mapping.roles))
        return None


def normal_fingerprint(text: str) -> str:
    """A fingerprint as :class:`ClientCertificate` writes it: lower-case hex only."""
    return re.sub(r"[: ]", "", text).lower()


class ClientCertificateMappingSection(Section, frozen=True, dict=True):
    """Client certificate mapping authentication (IIS
    `iisClientCertificateMappingAuthentication`): a request whose TLS connection
    carries a valid client certificate logs on as the user a mapping names
    (`REMOTE_USER`, `AUTH_TYPE = SSL/PCT` as IIS reports it, the access log's
    `cs-username`). One-to-one mappings (by fingerprint) are tried first, then the
    many-to-one mappings in order; the first that matches decides. A `deny`
    mapping answers 403.12; a certificate no mapping matches logs nobody on (where
    anonymous access is off, `auth.anonymous` answers 401.2).

    The certificate is asked for in the handshake of sites whose `[sites.tls]
    client_certificates` is `accept` or `require`, and must chain to their
    `client_ca`; an expired one maps to nobody (and `security.ssl` answers it 403.17).
    Locked by default, as IIS locks it.
    """

    key = "client_certificate_mapping_authentication"
    locked = True

    enabled: bool = False
    """Map client certificates to users here (IIS's default: off)."""
    one_to_one_enabled: bool = True
    """Use the `one_to_one` mappings (IIS `oneToOneCertificateMappingsEnabled`)."""
    many_to_one_enabled: bool = True
    """Use the `many_to_one` mappings (IIS `manyToOneCertificateMappingsEnabled`)."""
    one_to_one: list[OneToOneMapping] = []
    """Tables with `fingerprint` (the certificate's SHA-256 fingerprint, 64 hex
    digits, `:` between bytes allowed, as `openssl x509 -noout -fingerprint
    -sha256` prints it; or the SHA-1 thumbprint IIS shows), `user`, optional
    `roles` and `enabled` (true). A reissued certificate has another fingerprint."""
    many_to_one: list[ManyToOneMapping] = []
    """Tables with `name` (their key for `add`/`remove` in a `web.toml`), `rules`,
    `permission` (`allow`, the default, or `deny`: 403.12), `user` (for `allow`),
    optional `roles`, `description` and `enabled` (true). A rule is a table with
    `field` (`subject` or `issuer`), `sub_field` (`CN`, `O`, `OU`, `L`, `S`, `C`,
    `E`, `DC`, `UID` or a dotted OID), `match` (the whole value; `*` matches any
    characters) and `case_sensitive` (true); all rules of a mapping must hold, and
    a rule holds when any value of its attribute matches."""

    @cached_property
    def mapper(self) -> Mapper:
        """The enabled mappings, compiled once."""
        return Mapper(self)
