"""One bearer token verified: syntax, header, key, signature, claims; and a small cache.

The order is chosen so that the cheap refusals come first and nothing
attacker-controlled is parsed before it is bounded: the length, the RFC 6750
``b64token`` syntax, then the header (``alg`` on the allow-list, a key of that
algorithm's family for the ``kid``), and only then PyJWT's signature and claim
checks (``exp``, ``nbf``, ``iat`` with leeway, ``iss``, ``aud``).

The cache: a verified token is remembered by the whole ``Authorization`` value
that carried it, for ``cache_seconds`` at most and never past its ``exp``, so
a request that brings it again costs a dictionary lookup and a clock read
(:meth:`Verifier.recall`, before the header is even split), against 40-180 µs
for a verification, depending on the algorithm. Only verified tokens are in
it, so a hit needs none of the other checks. Its memory is bounded by
``cache_entries`` times ``max_token_bytes``. The tokens themselves are kept (an
earlier version kept a BLAKE2b digest instead; hashing cost a third of the
module's time per request): whoever can read a worker's memory reads its keys
too, which is worse, and forms authentication keeps its tickets the same way.
It is emptied whenever the keys change, so a key withdrawn from the JWKS stops
verifying at the next key check (``key_check_interval``). Refusals are not
cached: a refusal is cheap (it fails before the signature) or costs a
signature check an attacker cannot avoid paying for either way.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

try:
    import jwt
    from jwt import exceptions as jwt_errors
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "auth.jwt needs PyJWT with its crypto extra: pip install 'colonnade[jwt]'"
    ) from exc

from colonnade.core.principal import Principal
from colonnade.modules.jwt_auth.config import JwtAuthenticationSection
from colonnade.modules.jwt_auth.keys import KeyRing, KeySource

#: RFC 6750 2.1: ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="``.
_B64TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")

#: The ``auth_type`` of a user authenticated by a bearer token.
AUTH_TYPE = "Bearer"

INVALID_REQUEST = "invalid_request"
INVALID_TOKEN = "invalid_token"


class TokenRefused(Exception):  # noqa: N818 - a refusal, not a failure of the server
    """A bearer credential that does not authenticate.

    ``error`` and ``description`` go to the client in the challenge (RFC 6750 3:
    fixed words, never key material or the token); ``reason`` goes to the log.
    """

    def __init__(self, error: str, description: str, reason: str = "") -> None:
        super().__init__(reason or description)
        self.error = error
        self.description = description
        self.reason = reason or description


class Verified(NamedTuple):
    """What a good token says: the user, and its claims (read-only)."""

    user: Principal
    claims: Mapping[str, Any]


def lookup(claims: Mapping[str, Any], path: tuple[str, tuple[str, ...]]) -> Any:
    """The claim at ``path`` (see ``config.claim_path``), or None.

    A claim whose whole name matches is taken first (``https://example.com/roles``);
    else the dotted parts walk into nested objects (``realm_access.roles``).
    """
    whole, parts = path
    if whole in claims:
        return claims[whole]
    value: Any = claims
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _refusal(exc: Exception) -> TokenRefused:
    # PyJWT's exception → the words a client may see. Subclasses before their bases.
    if isinstance(exc, jwt_errors.ExpiredSignatureError):
        return TokenRefused(INVALID_TOKEN, "the token has expired")
    if isinstance(exc, jwt_errors.ImmatureSignatureError):
        return TokenRefused(INVALID_TOKEN, "the token is not valid yet")
    if isinstance(exc, jwt_errors.InvalidSignatureError):
        return TokenRefused(INVALID_TOKEN, "the token signature is invalid")
    if isinstance(exc, jwt_errors.InvalidAudienceError):
        return TokenRefused(INVALID_TOKEN, "the token is not meant for this audience")
    if isinstance(exc, jwt_errors.InvalidIssuerError):
        return TokenRefused(INVALID_TOKEN, "the token is from another issuer")
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return TokenRefused(INVALID_TOKEN, f"the token has no {exc.claim} claim")
    if isinstance(exc, jwt_errors.InvalidAlgorithmError):
        return TokenRefused(INVALID_TOKEN, "the token algorithm is not accepted")
    return TokenRefused(
        INVALID_TOKEN, "the token is malformed", f"malformed token ({type(exc).__name__})"
    )


class Verifier:
    """Verifies the bearer tokens of one section's settings."""

    def __init__(
        self,
        section: JwtAuthenticationSection,
        source: KeySource,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        policy = section.policy
        self._policy = policy
        self._source = source
        self._ring: KeyRing | None = None
        # Until when (wall clock) the ring need not be asked for: it looks at its
        # files no more often than the interval anyway. Past it, or with a clock
        # set back (the window then lies too far ahead), the ring is asked again.
        self._keys_until = -math.inf
        self._interval = section.key_check_interval
        self._jwt = jwt.PyJWT(options={"require": ["exp"] if section.require_exp else []})
        # A one-element tuple: compared with ==, never as a substring.
        self._issuer = (section.issuer,) if section.issuer else None
        self._audience = list(policy.audience) if policy.audience else None
        self._leeway = section.leeway
        self._max = section.max_token_bytes
        self._ttl = section.cache_seconds
        self._entries = section.cache_entries
        # Authorization value -> (the user, until when it is trusted: the sooner of
        # now + cache_seconds and its exp). First in, first out: popitem(last=False)
        # is O(1), where deleting a plain dict's first key again and again leaves
        # holes every lookup then skips.
        self._cache: OrderedDict[bytes, tuple[Verified, float]] = OrderedDict()
        self._wall = wall

    def recall(self, header: bytes) -> Verified | None:
        """The user of a token verified before, by the whole ``Authorization``
        value that carried it, while it is still trusted; None otherwise (then
        :meth:`verify` decides)."""
        hit = self._cache.get(header)
        if hit is None:
            return None
        now = self._wall()
        # Chained: a window beyond now + its length means the clock went back.
        if now < hit[1] <= now + self._ttl and now < self._keys_until <= now + self._interval:
            return hit[0]
        return None

    def verify(self, credentials: bytes, header: bytes | None = None) -> Verified:
        """The user the token ``credentials`` authenticates, or :class:`TokenRefused`.
        ``header``: the whole ``Authorization`` value, which :meth:`recall` is
        given on the next request (the credentials alone by default)."""
        if len(credentials) > self._max:
            raise TokenRefused(
                INVALID_TOKEN,
                "the token is too long",
                f"token of {len(credentials)} bytes, over max_token_bytes = {self._max}",
            )
        now = self._wall()
        ring = self._ring
        if ring is None or not now < self._keys_until <= now + self._interval:
            self._keys_until = now + self._interval
            ring = self._source.ring()
            if ring is not self._ring:
                self._cache.clear()  # keys changed: verify everything again
                self._ring = ring
        if not self._ttl:
            return self._verify(credentials, ring)[0]
        key = credentials if header is None else header
        cache = self._cache
        hit = cache.get(key)
        if hit is not None:
            if now < hit[1] <= now + self._ttl:
                return hit[0]
            del cache[key]
        verified, exp = self._verify(credentials, ring)
        if len(cache) >= self._entries:
            cache.popitem(last=False)  # the oldest
        cache[key] = (verified, min(now + self._ttl, exp))
        return verified

    def _verify(self, credentials: bytes, ring: KeyRing) -> tuple[Verified, float]:
        if _B64TOKEN.fullmatch(credentials) is None:
            # RFC 6750 3.1 invalid_request: the header is not "Bearer <token>".
            raise TokenRefused(
                INVALID_REQUEST,
                "the Authorization header must be Bearer and one token",
                "malformed Bearer credentials",
            )
        token = credentials.decode("ascii")
        alg, kid = _header(token)
        if alg.lower() == "none":
            raise TokenRefused(
                INVALID_TOKEN, "unsigned tokens are not accepted", "unsigned token (alg none)"
            )
        if alg not in self._policy.algorithms:
            raise TokenRefused(
                INVALID_TOKEN,
                "the token algorithm is not accepted",
                f"alg {alg[:20]!r} is not in algorithms",
            )
        key = ring.find(alg, kid)
        if key is None:
            raise TokenRefused(
                INVALID_TOKEN,
                "no key verifies the token",
                f"no {alg} key" + (f" with kid {kid[:64]!r}" if kid is not None else ""),
            )
        try:
            claims = self._jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        except (jwt_errors.PyJWTError, ValueError, TypeError, RecursionError) as exc:
            raise _refusal(exc) from None
        return self._principal(claims), _expiry(claims)

    def _principal(self, claims: dict[str, Any]) -> Verified:
        policy = self._policy
        name = lookup(claims, policy.name_claim)
        if not isinstance(name, str) or not name:
            raise TokenRefused(
                INVALID_TOKEN,
                f"the token has no {policy.name_claim[0]} claim",
                f"name claim {policy.name_claim[0]!r} missing or not a string",
            )
        roles: frozenset[str] = frozenset()
        if policy.roles_claim is not None:
            value = lookup(claims, policy.roles_claim)
            if isinstance(value, str):
                roles = frozenset(value.split())
            elif isinstance(value, list) and all(isinstance(role, str) for role in value):
                roles = frozenset(value)
            elif value is not None:
                raise TokenRefused(
                    INVALID_TOKEN,
                    f"the token's {policy.roles_claim[0]} claim is not a list of roles",
                )
        return Verified(Principal(name, AUTH_TYPE, roles), MappingProxyType(claims))


def _header(token: str) -> tuple[str, str | None]:
    """The ``alg`` and ``kid`` of a compact JWS, read to choose the key.

    Read here rather than with ``jwt.get_unverified_header``, which decodes and
    checks all three segments: PyJWT does that again when it verifies, and it is
    the larger part of the cost of a token (a Python loop per character).
    """
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError, RecursionError):
        raise TokenRefused(
            INVALID_TOKEN, "the token is malformed", "header is not base64url JSON"
        ) from None
    alg = header.get("alg") if isinstance(header, dict) else None
    kid = header.get("kid") if isinstance(header, dict) else None
    if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
        raise TokenRefused(INVALID_TOKEN, "the token is malformed", "alg or kid missing or wrong")
    if "crit" in header:
        # RFC 7515 4.1.11: extensions listed in crit must be understood, and none
        # is here (RFC 7797's unencoded payload has no use in a bearer token).
        # PyJWT before 2.12 ignored crit: this does not depend on its version.
        raise TokenRefused(
            INVALID_TOKEN, "the token is malformed", "a crit header (no extension is supported)"
        )
    return alg, kid


def _expiry(claims: Mapping[str, Any]) -> float:
    # Checked by PyJWT already (a number): the cache keeps the token until then.
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return float("inf")
    try:
        return float(exp)
    except OverflowError:  # an int beyond a float (10**400): never, in effect
        return float("inf")
