"""The verifier alone: the cache of verified tokens (bounded, never past exp, emptied
when the keys change) and the key ring's choice of key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest

from colonnade.modules.jwt_auth.config import JwtAuthenticationSection
from colonnade.modules.jwt_auth.keys import KeySettings, KeySource, load_ring
from colonnade.modules.jwt_auth.verifier import TokenRefused, Verifier

from .conftest import Keys, claims, jwk, sign, write_jwks


class Clocks:
    """A wall clock and a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.wall_now = time.time()
        self.mono_now = 1000.0

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def advance(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono_now += seconds


class _CountingJWT(jwt.PyJWT):
    def __init__(self, seen: list[bytes], options: Any) -> None:
        super().__init__(options=options)
        self.seen = seen

    def decode(self, jwt: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(jwt.encode() if isinstance(jwt, str) else jwt)
        return super().decode(jwt, *args, **kwargs)


def make(
    tmp_path: Path, keys: Keys, clocks: Clocks, **settings: Any
) -> tuple[Verifier, list[bytes], Path]:
    path = tmp_path / "jwks.json"
    if not path.exists():
        write_jwks(path, jwk(keys.rsa, "a"))
    section = msgspec.convert(
        {"enabled": True, "algorithms": ["RS256"], "jwks_file": str(path), **settings},
        JwtAuthenticationSection,
    )
    source = KeySource(
        KeySettings(str(path), "", "", "", section.policy.algorithms, section.key_check_interval),
        clock=clocks.mono,
    )
    verifier = Verifier(section, source, wall=clocks.wall)
    verified: list[bytes] = []
    # Signature checks counted through PyJWT (the Verifier may be compiled by
    # mypyc: its methods cannot be replaced, its attributes take their own type).
    verifier._jwt = _CountingJWT(verified, verifier._jwt.options)
    return verifier, verified, path


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def test_a_verified_token_is_remembered_for_cache_seconds(
    tmp_path: Path, keys: Keys, clocks: Clocks
) -> None:
    verifier, verified, _ = make(tmp_path, keys, clocks, cache_seconds=30)
    token = sign(keys.rsa, "RS256", kid="a").encode()
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert len(verified) == 1
    clocks.advance(31)
    assert verifier.verify(token) == first
    assert len(verified) == 2


def test_never_past_the_tokens_expiry(tmp_path: Path, keys: Keys, clocks: Clocks) -> None:
    verifier, verified, _ = make(tmp_path, keys, clocks, cache_seconds=600, leeway=0)
    exp = int(clocks.wall_now) + 60  # far enough for PyJWT's real clock on a slow machine
    token = sign(keys.rsa, "RS256", claims(exp=exp), kid="a").encode()
    verifier.verify(token)
    clocks.advance(2)
    verifier.verify(token)
    assert len(verified) == 1
    clocks.wall_now = exp + 0.5  # PyJWT reads the real clock: the token is still good
    verifier.verify(token)
    assert len(verified) == 2  # but the cache did not answer for it


def test_the_cache_is_bounded(tmp_path: Path, keys: Keys, clocks: Clocks) -> None:
    verifier, verified, _ = make(tmp_path, keys, clocks, cache_entries=2)
    tokens = [sign(keys.rsa, "RS256", claims(n=i), kid="a").encode() for i in range(3)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._cache) == 2
    verifier.verify(tokens[2])
    verifier.verify(tokens[1])
    assert len(verified) == 3
    verifier.verify(tokens[0])  # the oldest went
    assert len(verified) == 4


def test_a_token_is_recalled_by_the_header_that_carried_it(
    tmp_path: Path, keys: Keys, clocks: Clocks
) -> None:
    verifier, verified, _ = make(tmp_path, keys, clocks, cache_seconds=10)
    token = sign(keys.rsa, "RS256", kid="a").encode()
    header = b"Bearer " + token
    assert verifier.recall(header) is None  # never verified
    first = verifier.verify(token, header)
    assert verifier.recall(header) is first
    assert verifier.recall(b"bearer " + token) is None  # another header: verify decides
    assert verifier.recall(token) is None
    clocks.advance(11)  # past cache_seconds
    assert verifier.recall(header) is None
    assert verifier.verify(token, header) == first
    assert len(verified) == 2


def test_recall_asks_the_keys_again_after_the_interval(
    tmp_path: Path, keys: Keys, clocks: Clocks
) -> None:
    verifier, _, path = make(tmp_path, keys, clocks, key_check_interval=1)
    token = sign(keys.rsa, "RS256", kid="a").encode()
    verifier.verify(token, b"Bearer " + token)
    write_jwks(path, jwk(keys.rsa2, "a"))
    clocks.advance(1.5)
    # Past the interval a hit is not trusted: verify looks at the keys, which
    # changed, and the old key's token no longer verifies.
    assert verifier.recall(b"Bearer " + token) is None
    with pytest.raises(TokenRefused, match="signature"):
        verifier.verify(token, b"Bearer " + token)


def test_a_clock_set_back_does_not_stretch_the_cache(
    tmp_path: Path, keys: Keys, clocks: Clocks
) -> None:
    verifier, verified, _ = make(tmp_path, keys, clocks, cache_seconds=10)
    token = sign(keys.rsa, "RS256", kid="a").encode()
    verifier.verify(token, b"Bearer " + token)
    clocks.wall_now -= 3600  # the wall clock set back an hour
    assert verifier.recall(b"Bearer " + token) is None
    verifier.verify(token, b"Bearer " + token)
    assert len(verified) == 2


def test_off_with_cache_seconds_zero(tmp_path: Path, keys: Keys, clocks: Clocks) -> None:
    verifier, verified, _ = make(tmp_path, keys, clocks, cache_seconds=0)
    token = sign(keys.rsa, "RS256", kid="a").encode()
    verifier.verify(token)
    verifier.verify(token)
    assert len(verified) == 2
    assert not verifier._cache


def test_refusals_are_not_cached(tmp_path: Path, keys: Keys, clocks: Clocks) -> None:
    verifier, verified, _ = make(tmp_path, keys, clocks)
    token = sign(keys.rsa2, "RS256", kid="a").encode()
    for _ in range(2):
        with pytest.raises(TokenRefused):
            verifier.verify(token)
    assert len(verified) == 2 and not verifier._cache


def test_a_key_change_empties_the_cache(tmp_path: Path, keys: Keys, clocks: Clocks) -> None:
    verifier, verified, path = make(tmp_path, keys, clocks, key_check_interval=1)
    token = sign(keys.rsa, "RS256", kid="a").encode()
    verifier.verify(token)
    write_jwks(path, jwk(keys.rsa2, "a"))
    verifier.verify(token)  # not checked again yet: the interval bounds the stat calls
    assert len(verified) == 1
    clocks.advance(1.5)
    with pytest.raises(TokenRefused, match="signature"):
        verifier.verify(token)


def test_ring_picks_a_key_of_the_algorithms_family(tmp_path: Path, keys: Keys) -> None:
    path = write_jwks(tmp_path / "j.json", jwk(keys.rsa, "r"), jwk(keys.ec, "e"))
    algs = frozenset({"RS256", "PS256", "ES256", "ES384"})
    ring = load_ring(KeySettings(path, "", "", "", algs, 1.0))
    assert ring.find("RS256", "r") is not None
    assert ring.find("PS256", "r") is not None  # same family, no alg in the JWK
    assert ring.find("ES256", "r") is None
    assert ring.find("ES256", "e") is not None
    assert ring.find("ES384", "e") is None  # a P-256 key never verifies ES384
    assert ring.find("HS256", "r") is None
    assert ring.find("RS256", None) is None  # two keys: the token must say which


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": 10**400},  # an int too large for a float: the cache's expiry
        {"exp": 1e400},  # JSON's 1e400 is inf: int(inf) overflows in PyJWT
        {"nbf": 1e400},
        {"iat": 1e400},
        {"exp": 2**63},
    ],
)
def test_huge_numbers_in_time_claims_are_refused_not_raised(
    tmp_path: Path, keys: Keys, clocks: Clocks, overrides: dict[str, Any]
) -> None:
    # Only the issuer can sign such a token, but "never a 500" holds for it too.
    verifier, _, _ = make(tmp_path, keys, clocks, cache_seconds=30)
    token = sign(keys.rsa, "RS256", claims(**overrides), kid="a").encode()
    try:
        outcome = verifier.verify(token).user.name
    except TokenRefused as refused:
        outcome = refused.error
    assert outcome in ("ann", "invalid_token")
    if overrides.get("exp") == 10**400:
        assert outcome == "ann"  # far in the future is a valid expiry


def test_a_critical_header_extension_is_refused(tmp_path: Path, keys: Keys, clocks: Clocks) -> None:
    # RFC 7515 4.1.11: an extension named in crit that the recipient does not
    # understand makes the token invalid. PyJWT before 2.12 ignored crit
    # (CVE-2026-32597); the verifier refuses it whatever PyJWT is installed.
    verifier, _, _ = make(tmp_path, keys, clocks)
    token = sign(keys.rsa, "RS256", kid="a", crit=["x-policy"], **{"x-policy": "mfa"})
    with pytest.raises(TokenRefused) as refused:
        verifier.verify(token.encode())
    assert refused.value.error == "invalid_token"
    assert "crit" in refused.value.reason


@pytest.mark.parametrize(
    "headers",
    [
        {"kid": "../../../../etc/passwd"},
        {"kid": "a", "jku": "https://evil.example/jwks.json"},
        {"kid": "a", "x5u": "https://evil.example/cert.pem"},
        {"kid": "a", "jwk": "attacker"},  # filled in below: the signer's own public key
    ],
)
def test_keys_named_or_carried_by_the_token_are_never_used(
    tmp_path: Path, keys: Keys, clocks: Clocks, headers: dict[str, Any]
) -> None:
    # Signed with a key the server does not have (rsa2), pointing at itself.
    verifier, _, _ = make(tmp_path, keys, clocks)
    if "jwk" in headers:
        headers = {**headers, "jwk": jwk(keys.rsa2)}
    token = sign(keys.rsa2, "RS256", **headers)
    with pytest.raises(TokenRefused):
        verifier.verify(token.encode())
