"""``[jwt_authentication]``: bearer tokens (RFC 6750) carrying a signed JWT (RFC 7519).

Everything that depends on the settings alone is checked when the configuration
is decoded (an algorithm list with ``none`` in it is refused here, naming the
key) and compiled once per section: the allowed algorithms, the claim paths and
the challenge header. Keys live in files the module reads (``keys.py``).
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated

from msgspec import Meta

from colonnade.config.schema import EnvNameOrEmpty
from colonnade.config.sections import Section

#: The algorithm families: which kind of key verifies a token of each algorithm.
#: A key only ever verifies the algorithms of its own family, so an RSA public key
#: can never be taken for an HMAC secret (the "key confusion" attack).
HMAC, RSA, EC, OKP = "oct", "RSA", "EC", "OKP"

#: The algorithms accepted in ``algorithms``, by family (RFC 7518 3.1, RFC 8037,
#: RFC 8812 for ES256K); ``none`` is not among them, on purpose.
ALGORITHMS: dict[str, str] = {
    "HS256": HMAC,
    "HS384": HMAC,
    "HS512": HMAC,
    "RS256": RSA,
    "RS384": RSA,
    "RS512": RSA,
    "PS256": RSA,
    "PS384": RSA,
    "PS512": RSA,
    "ES256": EC,
    "ES384": EC,
    "ES512": EC,
    "ES256K": EC,
    "EdDSA": OKP,
}

#: The curve an EC algorithm is defined on (RFC 7518 3.4, RFC 8812 3.2).
EC_CURVES: dict[str, str] = {
    "ES256": "P-256",
    "ES384": "P-384",
    "ES512": "P-521",
    "ES256K": "secp256k1",
}

#: The shortest HMAC secret accepted per algorithm: the size of the hash output
#: (RFC 7518 3.2: "a key of the same size as the hash output or larger MUST be used").
HMAC_MIN_BYTES: dict[str, int] = {"HS256": 32, "HS384": 48, "HS512": 64}

#: The smallest RSA modulus accepted (RFC 7518 3.3 and 3.5: 2048 bits or larger).
RSA_MIN_BITS = 2048

#: A claim name, optionally a dotted path into nested objects.
_CLAIM = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
#: A realm goes into a quoted-string: no quote, backslash or control characters.
_REALM = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")

AbsolutePath = Annotated[
    str,
    Meta(
        pattern=r"^(/.*)?$",
        description="an absolute file path (or empty)",
    ),
]


class JwtAuthenticationSection(Section, frozen=True, dict=True):
    """Bearer token authentication (module `auth.jwt`): an `Authorization: Bearer`
    header carrying a signed JSON Web Token authenticates the request as the
    token's subject, with roles from one of its claims.

    The token must be signed with one of `algorithms` by one of the configured
    keys, be within its validity time (`exp`, `nbf`, `iat`, with `leeway` for clock
    skew), and carry the `issuer` and one of the `audience` values where those are
    set. A token that fails is refused with 401 and `WWW-Authenticate: Bearer
    error="invalid_token"` (RFC 6750); a request without a token is left to the
    other schemes and to anonymous authentication, and every 401 of a URL where
    this is enabled carries the `Bearer` challenge.

    The keys come from a JWKS file (chosen by the token's `kid`), a PEM public key
    or certificate, and for the `HS*` algorithms a secret read from a file or an
    environment variable; the secret itself is never in the configuration, the
    logs or `colonnade config show`. Key files are read when the configuration is
    loaded and read again when they change (checked at most every
    `key_check_interval` seconds), so keys rotate without a restart.
    """

    key = "jwt_authentication"

    enabled: bool = False
    """Authenticate requests that carry a bearer token. Off by default."""
    algorithms: list[str] = []
    """The signature algorithms accepted (required when enabled): any of `HS256`,
    `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`,
    `ES384`, `ES512`, `ES256K`, `EdDSA`. List only those your issuer uses. `none`
    (unsigned tokens) is never accepted: a configuration naming it is refused."""
    issuer: str = ""
    """The required `iss` claim. Empty: not checked (set it whenever the keys are
    shared with another issuer)."""
    audience: list[str] = []
    """The accepted `aud` values: a token must name at least one of them. Empty:
    tokens that carry an `aud` claim are refused (RFC 7519 4.1.3), tokens without
    one are accepted."""
    leeway: Annotated[float, Meta(ge=0, le=3600)] = 60.0
    """Seconds of clock skew allowed when checking `exp`, `nbf` and `iat`."""
    require_exp: bool = True
    """Refuse tokens without an expiry (`exp`): a stolen one would be valid for ever."""
    jwks_file: AbsolutePath = ""
    """A JSON Web Key Set file (RFC 7517): the key is chosen by the token's `kid`
    (a set of one key also verifies tokens without a `kid`). Public keys only are
    needed; private parts in the file are ignored."""
    public_key_file: AbsolutePath = ""
    """A PEM public key (`BEGIN PUBLIC KEY`) or certificate: RSA, EC or Ed25519/Ed448.
    It verifies tokens of its family that name no `kid` of the JWKS file."""
    secret_file: AbsolutePath = ""
    """A file holding the shared secret of the `HS*` algorithms (its bytes as they
    are, one trailing newline dropped). Keep it outside the content folders (a
    secret file inside them is refused) and readable by the server only."""
    secret_env: EnvNameOrEmpty = ""
    """The name of an environment variable holding the `HS*` secret (its UTF-8
    bytes), instead of `secret_file`."""
    name_claim: str = "sub"
    """The claim that names the user (a dotted path reaches into nested objects:
    `profile.login`)."""
    roles_claim: str = ""
    """The claim holding the user's roles: a list of strings or one space-separated
    string (OAuth `scope`). A dotted path reaches into nested objects
    (`realm_access.roles` for Keycloak); a claim whose own name has dots
    (`https://example.com/roles`) is found first. Empty: no roles."""
    realm: str = ""
    """The `realm` of the `WWW-Authenticate: Bearer` challenge. Empty: none is sent."""
    max_token_bytes: Annotated[int, Meta(ge=256, le=16384)] = 8192
    """The longest token accepted, in bytes; longer ones are refused before any
    parsing."""
    key_check_interval: Annotated[float, Meta(ge=0.1, le=3600)] = 2.0
    """How often, at most, the key files are checked for changes (one `stat` each)."""
    cache_seconds: Annotated[float, Meta(ge=0, le=3600)] = 60.0
    """How long a verified token is remembered (by the header that carried it), so its signature
    is not checked again on every request; never past the token's `exp`, and
    forgotten when the keys change. 0 turns the cache off."""
    cache_entries: Annotated[int, Meta(ge=1, le=1_000_000)] = 4096
    """How many verified tokens are remembered at most (per set of settings)."""

    def __post_init__(self) -> None:
        _ = self.policy  # compile now: a bad value fails at load, naming its key

    def check_complete(self) -> None:
        """Refuse (ValueError, naming the keys) effective settings that cannot work.

        The checks that need several keys together, made on the merged settings of
        an enabled section only: a location or a ``web.toml`` may set one key alone
        (``enabled = true``) over the rest set above it, so they cannot run when
        each table is decoded on its own.
        """
        families = self.policy.families
        if self.enabled and not self.algorithms:
            raise ValueError(
                "algorithms: required when jwt_authentication is enabled: the signature "
                "algorithms your token issuer uses, such as ['RS256']"
            )
        if self.secret_file and self.secret_env:
            raise ValueError("secret_file, secret_env: set one of them, not both")
        has_secret = bool(self.secret_file or self.secret_env)
        if has_secret and HMAC not in families:
            raise ValueError(
                "secret_file, secret_env: a secret only verifies HS256, HS384 or HS512, "
                "and algorithms lists none of them"
            )
        if self.enabled and not (has_secret or self.jwks_file or self.public_key_file):
            raise ValueError(
                "jwks_file, public_key_file, secret_file, secret_env: enabled without a key; "
                "configure where the verification keys are"
            )
        if HMAC in families and self.public_key_file and not (has_secret or self.jwks_file):
            # The key-confusion attack's configuration: say so rather than let a
            # reader believe the public key verifies HS* tokens.
            raise ValueError(
                "algorithms: HS* tokens are verified with secret_file or secret_env "
                "(never with public_key_file); configure a secret or remove HS*"
            )

    @cached_property
    def policy(self) -> TokenPolicy:
        """What the settings alone decide, compiled once for this section."""
        return TokenPolicy(self)


def claim_path(name: str) -> tuple[str, tuple[str, ...]]:
    """``(whole name, dotted parts)``: how a claim setting is looked up in a payload."""
    return name, tuple(name.split("."))


class TokenPolicy:
    """A section's settings checked and compiled (read-only after construction)."""

    __slots__ = (
        "algorithms",
        "audience",
        "challenge",
        "families",
        "name_claim",
        "roles_claim",
    )

    def __init__(self, section: JwtAuthenticationSection) -> None:
        algorithms: list[str] = []
        for alg in section.algorithms:
            if alg.strip().lower() == "none":
                raise ValueError(
                    "algorithms: 'none' (unsigned tokens) is never accepted; remove it "
                    "and list the algorithms your token issuer signs with"
                )
            if alg not in ALGORITHMS:
                raise ValueError(
                    f"algorithms: {alg!r} is not a supported JWS algorithm; use any of "
                    + ", ".join(ALGORITHMS)
                )
            if alg not in algorithms:
                algorithms.append(alg)
        self.algorithms = frozenset(algorithms)
        self.families = frozenset(ALGORITHMS[alg] for alg in algorithms)
        for field, value in (
            ("name_claim", section.name_claim),
            ("roles_claim", section.roles_claim),
        ):
            if (value or field == "name_claim") and _CLAIM.fullmatch(value) is None:
                raise ValueError(f"{field}: {value!r} is not a claim name")
        self.name_claim = claim_path(section.name_claim)
        self.roles_claim = claim_path(section.roles_claim) if section.roles_claim else None
        self.audience = tuple(section.audience) or None
        if _REALM.fullmatch(section.realm) is None:
            raise ValueError(
                f"realm: {section.realm!r} must be printable ASCII without quotes or backslashes"
            )
        #: The challenge without an error, and the prefix of one with an error.
        self.challenge = (
            b'Bearer realm="%s"' % section.realm.encode("ascii") if section.realm else b"Bearer"
        )
