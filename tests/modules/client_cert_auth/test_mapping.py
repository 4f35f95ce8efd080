"""The mappings of auth.client_certificate, compiled and matched against parsed
certificates (made by a test CA): one-to-one by fingerprint, many-to-one rules
(AND, wildcards, case), deny, order, disabled entries, and what decoding refuses."""

from __future__ import annotations

import ssl
from typing import Any

import msgspec
import pytest
import trustme

from colonnade.config.validation import convert
from colonnade.core.clientcert import ClientCertificate, parse_certificate
from colonnade.errors import ConfigError
from colonnade.modules.client_cert_auth.config import ClientCertificateMappingSection, Mapped


def cert(
    ca: trustme.CA, cn: str, org: str = "Example", unit: str | None = None
) -> ClientCertificate:
    issued = ca.issue_cert(
        f"{cn}@example.test", common_name=cn, organization_name=org, organization_unit_name=unit
    )
    return parse_certificate(ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode()))


def section(**raw: Any) -> ClientCertificateMappingSection:
    return convert({"enabled": True, **raw}, ClientCertificateMappingSection)


def rule(field: str, sub: str, match: str, **more: Any) -> dict[str, Any]:
    return {"field": field, "sub_field": sub, "match": match, **more}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="Example CA")


def test_one_to_one_by_sha256_or_sha1_in_any_spelling(ca: trustme.CA) -> None:
    alice, bob = cert(ca, "alice"), cert(ca, "bob")
    colons = ":".join(alice.sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    mapper = section(
        one_to_one=[
            {"fingerprint": colons, "user": "alice", "roles": ["staff"]},
            {"fingerprint": bob.sha1, "user": "bob"},
        ]
    ).mapper
    assert mapper.map(alice) == Mapped("alice", frozenset({"staff"}))
    assert mapper.map(bob) == Mapped("bob", frozenset())
    assert mapper.map(cert(ca, "carol")) is None
    # Another certificate for the same subject has another fingerprint (as in IIS).
    assert mapper.map(cert(ca, "alice")) is None
    off = section(
        one_to_one=[{"fingerprint": alice.sha256, "user": "alice"}], one_to_one_enabled=False
    )
    assert off.mapper.map(alice) is None
    disabled = section(one_to_one=[{"fingerprint": alice.sha256, "user": "a", "enabled": False}])
    assert disabled.mapper.map(alice) is None


def test_many_to_one_rules_all_hold_first_mapping_wins(ca: trustme.CA) -> None:
    mapper = section(
        many_to_one=[
            {
                "name": "contractors",
                "permission": "deny",
                "rules": [rule("subject", "OU", "Contractors")],
            },
            {
                "name": "partners",
                "user": "partner",
                "roles": ["partners"],
                "rules": [
                    rule("subject", "O", "Partner *"),
                    rule("issuer", "O", "example ca", case_sensitive=False),
                ],
            },
            {"name": "staff", "user": "staff", "rules": [rule("subject", "S", "*")]},
            {"name": "anyone", "user": "someone", "rules": [rule("subject", "CN", "*")]},
        ]
    ).mapper
    assert mapper.map(cert(ca, "p1", "Partner Alpha")) == Mapped("partner", frozenset({"partners"}))
    # Deny comes first in the list: it wins over the partners mapping.
    assert mapper.map(cert(ca, "p2", "Partner Beta", "Contractors")) == Mapped(
        "", frozenset(), deny="contractors"
    )
    # A rule on an attribute the certificate lacks does not hold (no S= here).
    assert mapper.map(cert(ca, "x", "Elsewhere")) == Mapped("someone", frozenset())
    # The issuer rule fails for another CA: the partners mapping does not apply.
    other = trustme.CA(organization_name="Other CA")
    assert mapper.map(cert(other, "p3", "Partner Gamma")) == Mapped("someone", frozenset())
    # Case-sensitive by default (IIS compareCaseSensitive = true), whole values only.
    strict = section(
        many_to_one=[{"name": "e", "user": "e", "rules": [rule("subject", "O", "example")]}]
    )
    assert strict.mapper.map(cert(ca, "y", "Example")) is None
    assert strict.mapper.map(cert(ca, "y", "example")) == Mapped("e", frozenset())
    assert strict.mapper.map(cert(ca, "y", "examples")) is None


def test_one_to_one_is_tried_before_many_to_one(ca: trustme.CA) -> None:
    alice = cert(ca, "alice", unit="Contractors")
    mapper = section(
        one_to_one=[{"fingerprint": alice.sha256, "user": "alice"}],
        many_to_one=[
            {"name": "no", "permission": "deny", "rules": [rule("subject", "OU", "Contractors")]}
        ],
    ).mapper
    assert mapper.map(alice) == Mapped("alice", frozenset())
    assert mapper.map(cert(ca, "eve", unit="Contractors")) is not None


def test_parsed_fields_and_aliases(ca: trustme.CA) -> None:
    c = cert(ca, "alice", "Example", "Eng")
    assert c.subject.startswith("CN=alice,OU=Eng")
    assert c.values("cn") == ["alice"]
    assert c.values("O") == ["Example"]
    assert c.values("O", issuer=True) == ["Example CA"]
    assert c.values("E") == []  # trustme puts the address in the SAN, not the name
    assert c.problem(c.not_before + 1) is None
    assert c.problem(c.not_after + 1) == "certificate has expired"
    assert c.problem(c.not_before - 1) == "certificate is not yet valid"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"one_to_one": [{"fingerprint": "abcd", "user": "a"}]}, "fingerprint"),
        ({"one_to_one": [{"fingerprint": "zz" * 32, "user": "a"}]}, "fingerprint"),
        ({"one_to_one": [{"fingerprint": "ab" * 33, "user": "a"}]}, "fingerprint"),
        ({"one_to_one": [{"fingerprint": "ab" * 32}]}, "user"),
        ({"many_to_one": [{"name": "x", "rules": [rule("subject", "CN", "a")]}]}, "needs a user"),
        ({"many_to_one": [{"name": "x", "user": "u", "rules": []}]}, "rules"),
        (
            {"many_to_one": [{"name": "x", "user": "u", "rules": [rule("body", "CN", "a")]}]},
            "field",
        ),
        (
            {"many_to_one": [{"name": "x", "user": "u", "rules": [rule("subject", "C N", "a")]}]},
            "sub_field",
        ),
    ],
)
def test_decoding_refuses_bad_mappings(raw: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigError, msgspec.ValidationError)) as caught:
        section(**raw)
    assert message in str(caught.value)


def test_fingerprint_lengths(ca: trustme.CA) -> None:
    c = cert(ca, "z")
    assert len(c.sha256) == 64 and len(c.sha1) == 40
    assert c.sha256 == c.sha256.lower()
