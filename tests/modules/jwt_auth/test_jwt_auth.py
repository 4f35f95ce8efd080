"""auth.jwt through the real pipeline: keys, algorithms, claims, RFC 6750 challenges."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonnade import Context, Handler
from colonnade.core.auth import AUTH_FAILURE
from colonnade.modules.jwt_auth.module import CLAIMS
from colonnade.testing import Client, TestResponse, build_engine

from .conftest import (
    Keys,
    b64,
    bearer,
    claims,
    hs256_by_hand,
    jwk,
    pem,
    segment,
    sign,
    unsigned,
    write_jwks,
)


class Echo(Handler):
    """Answers with the user the server authenticated, and the token's claims."""

    id = "test.echo"

    def execute(self, ctx: Context) -> None:
        if ctx.request.path.endswith("/app401"):
            ctx.response.status = 401
            if ctx.request.path.startswith("/own"):
                ctx.response.headers.append(
                    (b"www-authenticate", b'Bearer error="insufficient_scope", scope="orders"')
                )
            ctx.response.body = b"the application says no"
            return
        user = ctx.user
        out = {
            "user": user.name if user else None,
            "auth_type": user.auth_type if user else None,
            "roles": sorted(user.roles) if user else [],
            "claims": dict(ctx.items.get(CLAIMS, {})),
        }
        ctx.response.headers.append((b"content-type", b"application/json"))
        ctx.response.body = json.dumps(out).encode()


@pytest.fixture
def files(tmp_path: Path, keys: Keys) -> dict[str, str]:
    """Key files outside the content folder."""
    secrets_dir = tmp_path / "keys"
    secrets_dir.mkdir()
    (secrets_dir / "rsa.pem").write_bytes(pem(keys.rsa))
    (secrets_dir / "ec.pem").write_bytes(pem(keys.ec))
    (secrets_dir / "ed.pem").write_bytes(pem(keys.ed))
    (secrets_dir / "secret").write_bytes(keys.secret + b"\n")
    return {
        "rsa": str(secrets_dir / "rsa.pem"),
        "ec": str(secrets_dir / "ec.pem"),
        "ed": str(secrets_dir / "ed.pem"),
        "secret": str(secrets_dir / "secret"),
        "jwks": write_jwks(
            secrets_dir / "jwks.json", jwk(keys.rsa, "r1"), jwk(keys.ec, "e1", alg="ES256")
        ),
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "api").mkdir(parents=True)
    return site


def config(root: Path, settings: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": ["auth.jwt", "test.echo"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [{"path": "*", "handler": "test.echo"}],
        **extra,
    }
    if settings is not None:
        out["jwt_authentication"] = settings
    return out


@pytest.fixture
def serve(root: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(settings: dict[str, Any] | None = None, **extra: Any) -> Client:
        client = Client(build_engine(config(root, settings, **extra), modules=[Echo]))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def rs256(files: dict[str, str], **more: Any) -> dict[str, Any]:
    return {"enabled": True, "algorithms": ["RS256"], "public_key_file": files["rsa"], **more}


def body(response: TestResponse) -> dict[str, Any]:
    assert response.status == 200, (response.status, response.headers, response.body)
    out: dict[str, Any] = json.loads(response.body)
    return out


def challenge(response: TestResponse) -> str:
    values = [v.decode() for k, v in response.headers if k == b"www-authenticate"]
    assert len(values) == 1, response.headers
    return values[0]


def refused(response: TestResponse, description: str, error: str = "invalid_token") -> None:
    assert response.status == 401, (response.status, response.body)
    assert challenge(response) == (
        f'Bearer realm="api", error="{error}", error_description="{description}"'
    )


# -- good tokens, each kind of key ---------------------------------------------------------


def test_rs256_token_with_a_pem_key_authenticates(serve: Any, files: Any, keys: Keys) -> None:
    client = serve(rs256(files, roles_claim="roles"))
    token = sign(keys.rsa, "RS256", claims(roles=["admin", "ops"], email="ann@example.com"))
    out = body(client.get("/api/x", headers=bearer(token)))
    assert (out["user"], out["auth_type"], out["roles"]) == ("ann", "Bearer", ["admin", "ops"])
    assert out["claims"]["email"] == "ann@example.com"


def test_no_token_is_left_to_the_other_schemes(serve: Any, files: Any) -> None:
    client = serve(rs256(files))
    out = body(client.get("/api/x"))
    assert out["user"] is None  # nobody authenticated it: anonymous decides
    out = body(client.get("/api/x", headers={"Authorization": "Basic YW5uOnB3"}))
    assert out["user"] is None


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_ec_and_eddsa_keys(serve: Any, files: Any, keys: Keys, alg: str) -> None:
    private, path = (keys.ec, files["ec"]) if alg == "ES256" else (keys.ed, files["ed"])
    client = serve({"enabled": True, "algorithms": [alg], "public_key_file": path})
    assert body(client.get("/", headers=bearer(sign(private, alg))))["user"] == "ann"
    # The other key of the same family does not verify it.
    assert client.get("/", headers=bearer(sign(keys.rsa, "RS256"))).status == 401


def test_hs256_with_a_secret_file_and_an_environment_variable(
    serve: Any, files: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sign(keys.secret, "HS256")
    by_file = serve({"enabled": True, "algorithms": ["HS256"], "secret_file": files["secret"]})
    assert body(by_file.get("/", headers=bearer(token)))["user"] == "ann"
    monkeypatch.setenv("TEST_JWT_SECRET", "s" * 40)
    by_env = serve({"enabled": True, "algorithms": ["HS256"], "secret_env": "TEST_JWT_SECRET"})
    assert body(by_env.get("/", headers=bearer(sign(b"s" * 40, "HS256"))))["user"] == "ann"
    assert by_env.get("/", headers=bearer(token)).status == 401  # the file's secret


def test_jwks_key_chosen_by_kid(serve: Any, files: Any, keys: Keys) -> None:
    client = serve({"enabled": True, "algorithms": ["RS256", "ES256"], "jwks_file": files["jwks"]})
    assert body(client.get("/", headers=bearer(sign(keys.rsa, "RS256", kid="r1"))))["user"]
    assert body(client.get("/", headers=bearer(sign(keys.ec, "ES256", kid="e1"))))["user"]
    # A kid naming another key, an unknown kid, no kid with two keys in the set.
    response = client.get("/", headers=bearer(sign(keys.rsa, "RS256", kid="e1")))
    assert response.status == 401
    assert client.get("/", headers=bearer(sign(keys.rsa, "RS256", kid="zz"))).status == 401
    assert client.get("/", headers=bearer(sign(keys.rsa, "RS256"))).status == 401


def test_jwks_of_one_key_verifies_tokens_without_kid(
    serve: Any, tmp_path: Path, keys: Keys
) -> None:
    path = write_jwks(tmp_path / "one.json", jwk(keys.rsa))
    client = serve({"enabled": True, "algorithms": ["RS256"], "jwks_file": path})
    assert body(client.get("/", headers=bearer(sign(keys.rsa, "RS256"))))["user"] == "ann"


# -- claims: iss, aud, exp, nbf, iat with leeway ---------------------------------------------


def test_issuer_and_audience(serve: Any, files: Any, keys: Keys) -> None:
    client = serve(
        rs256(files, issuer="https://idp.example", audience=["api", "api2"], realm="api")
    )
    good = claims(iss="https://idp.example", aud=["other", "api2"])
    assert body(client.get("/", headers=bearer(sign(keys.rsa, "RS256", good))))["user"] == "ann"
    for payload, words in [
        (claims(iss="https://idp.example.evil", aud="api"), "the token is from another issuer"),
        (claims(iss="https://idp.exampl", aud="api"), "the token is from another issuer"),
        (claims(aud="api"), "the token has no iss claim"),
        (claims(iss="https://idp.example", aud="web"), "the token is not meant for this audience"),
        (claims(iss="https://idp.example"), "the token has no aud claim"),
    ]:
        refused(client.get("/", headers=bearer(sign(keys.rsa, "RS256", payload))), words)


def test_a_token_with_an_audience_is_refused_where_none_is_configured(
    serve: Any, files: Any, keys: Keys
) -> None:
    client = serve(rs256(files, realm="api"))
    response = client.get("/", headers=bearer(sign(keys.rsa, "RS256", claims(aud="api"))))
    refused(response, "the token is not meant for this audience")


def test_expiry_and_not_before_with_leeway(serve: Any, files: Any, keys: Keys) -> None:
    import time

    now = int(time.time())
    client = serve(rs256(files, leeway=30, realm="api"))

    def status(**overrides: Any) -> int:
        token = sign(keys.rsa, "RS256", claims(**overrides))
        return int(client.get("/", headers=bearer(token)).status)

    assert status(exp=now - 10) == 200  # within the leeway
    assert status(nbf=now + 10) == 200
    assert status(iat=now + 10) == 200
    assert status(exp=now - 120) == 401
    refused(
        client.get("/", headers=bearer(sign(keys.rsa, "RS256", claims(exp=now - 120)))),
        "the token has expired",
    )
    refused(
        client.get("/", headers=bearer(sign(keys.rsa, "RS256", claims(nbf=now + 120)))),
        "the token is not valid yet",
    )
    assert status(iat=now + 120) == 401
    refused(
        client.get("/", headers=bearer(sign(keys.rsa, "RS256", claims(exp=None)))),
        "the token has no exp claim",
    )
    strict = serve(rs256(files, leeway=0, require_exp=False))
    token = sign(keys.rsa, "RS256", claims(exp=now - 10))
    assert strict.get("/", headers=bearer(token)).status == 401
    assert body(strict.get("/", headers=bearer(sign(keys.rsa, "RS256", claims(exp=None)))))


# -- roles and names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "payload", "roles"),
    [
        ("realm_access.roles", {"realm_access": {"roles": ["admin", "ops"]}}, ["admin", "ops"]),
        ("scope", {"scope": "read write  read"}, ["read", "write"]),
        ("https://example.com/roles", {"https://example.com/roles": ["a"]}, ["a"]),
        ("roles", {}, []),
    ],
)
def test_roles_from_a_claim(
    serve: Any, files: Any, keys: Keys, setting: str, payload: dict[str, Any], roles: list[str]
) -> None:
    client = serve(rs256(files, roles_claim=setting))
    token = sign(keys.rsa, "RS256", claims(**payload))
    assert body(client.get("/", headers=bearer(token)))["roles"] == roles


def test_roles_of_the_wrong_shape_and_a_name_claim(serve: Any, files: Any, keys: Keys) -> None:
    client = serve(rs256(files, roles_claim="roles", name_claim="profile.login", realm="api"))
    token = sign(keys.rsa, "RS256", claims(profile={"login": "bob"}, roles=["r"]))
    assert body(client.get("/", headers=bearer(token)))["user"] == "bob"
    token = sign(keys.rsa, "RS256", claims(profile={"login": "bob"}, roles={"r": 1}))
    refused(
        client.get("/", headers=bearer(token)), "the token's roles claim is not a list of roles"
    )
    refused(
        client.get("/", headers=bearer(sign(keys.rsa, "RS256"))),
        "the token has no profile.login claim",
    )


# -- attacks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_tokens_are_refused(serve: Any, files: Any, alg: str) -> None:
    client = serve(rs256(files, realm="api"))
    refused(
        client.get("/", headers=bearer(unsigned(claims(), alg))), "unsigned tokens are not accepted"
    )


def test_an_unlisted_algorithm_is_refused(serve: Any, files: Any, keys: Keys) -> None:
    client = serve(rs256(files, realm="api"))
    # A good RS512 signature by the right key: still not on the allow-list.
    token = sign(keys.rsa, "RS512")
    refused(client.get("/", headers=bearer(token)), "the token algorithm is not accepted")
    token = sign(keys.rsa, "PS256")
    refused(client.get("/", headers=bearer(token)), "the token algorithm is not accepted")


def test_key_confusion_rsa_public_key_as_hmac_secret(
    serve: Any, files: Any, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    public_pem = pem(keys.rsa)
    forged = hs256_by_hand(public_pem, claims(sub="mallory"))
    # (a) HS256 not allowed: refused before any key is tried.
    client = serve(rs256(files, realm="api"))
    refused(client.get("/", headers=bearer(forged)), "the token algorithm is not accepted")
    # (b) both allowed: HS256 is verified with the secret only, never the PEM.
    both = serve(
        rs256(files, algorithms=["RS256", "HS256"], secret_file=files["secret"], realm="api")
    )
    refused(both.get("/", headers=bearer(forged)), "the token signature is invalid")
    # (c) the JWKS key as a secret, by kid: the RSA key named never verifies HS256.
    jwks = serve(
        {
            "enabled": True,
            "algorithms": ["RS256", "HS256"],
            "jwks_file": files["jwks"],
            "secret_file": files["secret"],
            "realm": "api",
        }
    )
    forged = hs256_by_hand(public_pem, claims(sub="mallory"), kid="r1")
    refused(jwks.get("/", headers=bearer(forged)), "no key verifies the token")
    assert "mallory" not in caplog.text


def test_tampered_payload_and_signature(serve: Any, files: Any, keys: Keys) -> None:
    client = serve(rs256(files, roles_claim="roles", realm="api"))
    token = sign(keys.rsa, "RS256", claims(roles=["user"]))
    head, _, sig = token.split(".")
    tampered = f"{head}.{segment(claims(roles=['admin']))}.{sig}"
    refused(client.get("/", headers=bearer(tampered)), "the token signature is invalid")
    flipped = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    refused(
        client.get("/", headers=bearer(f"{head}.{token.split('.')[1]}.{flipped}")),
        "the token signature is invalid",
    )
    refused(
        client.get("/", headers=bearer(f"{head}.{token.split('.')[1]}")), "the token is malformed"
    )


def test_oversized_and_malformed_credentials(serve: Any, files: Any, keys: Keys) -> None:
    client = serve(rs256(files, realm="api", max_token_bytes=1024))
    big = sign(keys.rsa, "RS256", claims(pad="x" * 2000))
    refused(client.get("/", headers=bearer(big)), "the token is too long")
    huge = "A" * 20000  # over the server's Authorization limit
    refused(
        client.get("/", headers={"Authorization": f"Bearer {huge}"}),
        "the Authorization header must be Bearer and one token",
        "invalid_request",
    )
    for value in ["Bearer", "Bearer   ", "Bearer a b", "Bearer a,b", "bearer ab=c", 'Bearer "x"']:
        response = client.get("/", headers={"Authorization": value})
        refused(
            response, "the Authorization header must be Bearer and one token", "invalid_request"
        )
    response = client.get("/", headers=[(b"authorization", b"Bearer \xff\xfe")])
    refused(response, "the Authorization header must be Bearer and one token", "invalid_request")
    # The scheme is case-insensitive (RFC 9110 11.1).
    assert body(client.get("/", headers={"Authorization": "BEARER " + sign(keys.rsa, "RS256")}))


def test_deeply_nested_json_is_refused_not_a_crash(serve: Any, files: Any) -> None:
    client = serve(rs256(files, realm="api"))
    nested = b64(b"[" * 5000 + b"]" * 5000)
    for token in [f"{nested}.{nested}.AAAA", f"{segment({'alg': 'RS256'})}.{nested}.AAAA"]:
        assert client.get("/", headers=bearer(token)).status == 401


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.one_of(
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=",
            max_size=300,
        ),
        st.lists(st.binary(max_size=80), min_size=1, max_size=4).map(
            lambda parts: ".".join(b64(p) for p in parts)
        ),
        st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4).map(
            lambda header: f"{segment(header)}.{segment({'sub': 1})}.AAAA"
        ),
    )
)
def test_any_garbage_is_a_401_never_a_500(fuzz_client: Client, token: str) -> None:
    response = fuzz_client.get("/", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert challenge(response).startswith('Bearer realm="api", error="invalid_')


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("fuzz")
    jwks = write_jwks(folder / "jwks.json", jwk(keys.rsa, "r1"), jwk(keys.ec, "e1"))
    (folder / "site").mkdir()
    secret = folder / "secret"
    secret.write_bytes(keys.secret)
    settings = {
        "enabled": True,
        "algorithms": ["RS256", "ES256", "HS256"],
        "jwks_file": jwks,
        "secret_file": str(secret),
        "realm": "api",
    }
    with Client(build_engine(config(folder / "site", settings), modules=[Echo])) as client:
        yield client


# -- challenges on every 401 ------------------------------------------------------------------


def test_any_401_carries_the_challenge_without_an_error(serve: Any, files: Any, keys: Keys) -> None:
    client = serve(rs256(files, realm="api"))
    response = client.get("/app401")
    assert response.status == 401
    assert challenge(response) == 'Bearer realm="api"'  # RFC 6750 3.1: no error without a token
    # A good token and a 401 from the application: still no error.
    response = client.get("/app401", headers=bearer(sign(keys.rsa, "RS256")))
    assert challenge(response) == 'Bearer realm="api"'
    no_realm = serve(rs256(files))
    assert challenge(no_realm.get("/app401")) == "Bearer"
    response = no_realm.get("/", headers=bearer(unsigned(claims())))
    assert challenge(response) == (
        'Bearer error="invalid_token", error_description="unsigned tokens are not accepted"'
    )
    # An application's own Bearer challenge is left as it is, not doubled.
    response = client.get("/own/app401", headers=bearer(sign(keys.rsa, "RS256")))
    assert challenge(response) == 'Bearer error="insufficient_scope", scope="orders"'
    # Other statuses never carry it.
    assert not [k for k, _ in client.get("/").headers if k == b"www-authenticate"]


def test_the_challenge_survives_a_custom_error_page(serve: Any, files: Any, root: Path) -> None:
    (root / "401.html").write_text("<h1>Sign in with a token</h1>")
    client = serve(
        rs256(files, realm="api"),
        server={"modules": ["auth.jwt", "http.custom_errors", "test.echo"]},
        custom_errors={"error_mode": "custom", "errors": [{"status": 401, "file": "401.html"}]},
    )
    response = client.get("/", headers=bearer(unsigned(claims())))
    assert response.status == 401
    assert b"Sign in with a token" in response.body
    refused(response, "unsigned tokens are not accepted")


def test_a_refusal_is_logged_with_its_reason_never_the_token(
    serve: Any, files: Any, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    client = serve(rs256(files))
    token = sign(keys.rsa, "RS256", claims(exp=1))
    with caplog.at_level(logging.INFO):
        response = client.get("/api/x", headers=bearer(token))
    assert response.status == 401
    assert response.context.items[AUTH_FAILURE] == "the token has expired"
    assert "Bearer logon failed for /api/x from 127.0.0.1: the token has expired" in caplog.text
    assert token not in caplog.text and token.split(".")[2] not in caplog.text


# -- keys: rotation, change of files -----------------------------------------------------------


def test_jwks_rotation_is_picked_up_without_a_restart(
    serve: Any, tmp_path: Path, keys: Keys
) -> None:
    from tests.support.wait import PATIENCE, wait_for

    path = tmp_path / "rotating.json"
    write_jwks(path, jwk(keys.rsa, "2026-01"))
    client = serve(
        {
            "enabled": True,
            "algorithms": ["RS256"],
            "jwks_file": str(path),
            "key_check_interval": 0.1,
        }
    )
    old = sign(keys.rsa, "RS256", kid="2026-01")
    new = sign(keys.rsa2, "RS256", kid="2026-02")
    assert client.get("/", headers=bearer(old)).status == 200  # and now cached
    assert client.get("/", headers=bearer(new)).status == 401
    # Rotation: the new key joins the set...
    write_jwks(path, jwk(keys.rsa, "2026-01"), jwk(keys.rsa2, "2026-02"))
    wait_for(
        lambda: client.get("/", headers=bearer(new)).status == 200, PATIENCE, "the new key in use"
    )
    assert client.get("/", headers=bearer(old)).status == 200
    # ...then the old one leaves it: its tokens stop working, cached or not.
    write_jwks(path, jwk(keys.rsa2, "2026-02"))
    wait_for(
        lambda: client.get("/", headers=bearer(old)).status == 401, PATIENCE, "the old key gone"
    )
    assert client.get("/", headers=bearer(new)).status == 200


def test_a_broken_key_file_keeps_the_previous_keys(
    serve: Any, tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.wait import PATIENCE, wait_for

    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(keys.rsa, "a"))
    client = serve(
        {
            "enabled": True,
            "algorithms": ["RS256"],
            "jwks_file": str(path),
            "key_check_interval": 0.1,
            "cache_seconds": 0,
        }
    )
    token = sign(keys.rsa, "RS256", kid="a")

    def served_and_logged(words: str) -> bool:
        # The files are checked when a request needs the keys.
        assert client.get("/", headers=bearer(token)).status == 200
        return words in caplog.text

    path.write_text('{"keys": [')  # half written
    wait_for(lambda: served_and_logged("not JSON"), PATIENCE, "the reload refused")
    assert caplog.text.count("JWT keys not reloaded") == 1  # once per change, not per request
    path.unlink()
    wait_for(lambda: served_and_logged("No such file"), PATIENCE, "the missing file reported")
    write_jwks(path, jwk(keys.rsa2, "a"))
    wait_for(lambda: client.get("/", headers=bearer(token)).status == 401, PATIENCE, "the new key")


# -- per location, web.toml, [lock] -------------------------------------------------------------


def test_per_location_and_in_web_toml(serve: Any, files: Any, keys: Keys, root: Path) -> None:
    (root / "api" / "web.toml").write_text(
        f"""
[jwt_authentication]
enabled = true
algorithms = ["ES256"]
public_key_file = "{files["ec"]}"
roles_claim = "roles"
"""
    )
    client = serve(
        None,
        locations=[{"path": "/admin", "jwt_authentication": rs256(files)}],
    )
    es = bearer(sign(keys.ec, "ES256", claims(roles="a b")))
    rs = bearer(sign(keys.rsa, "RS256"))
    assert body(client.get("/api/x", headers=es))["roles"] == ["a", "b"]
    assert client.get("/api/x", headers=rs).status == 401
    assert body(client.get("/admin/x", headers=rs))["user"] == "ann"
    assert client.get("/admin/x", headers=es).status == 401
    # Where it is not enabled, a bearer token is nobody's business.
    assert body(client.get("/other", headers=rs))["user"] is None


def test_lock_stops_a_web_toml_from_switching_it_off(root: Path, files: Any, keys: Keys) -> None:
    (root / "api" / "web.toml").write_text("[jwt_authentication]\nenabled = false\n")
    settings = rs256(files)
    locked = build_engine(
        config(root, settings, lock={"jwt_authentication": "deny"}), modules=[Echo]
    )
    with Client(locked) as client:
        # IIS's 500.19: the folder's configuration is refused, nothing is served
        # there, and a wrong token is still refused elsewhere.
        response = client.get("/api/x", headers=bearer(sign(keys.rsa2, "RS256")))
        assert response.status == 500
        assert b"500.19" in response.body
        assert client.get("/x", headers=bearer(sign(keys.rsa2, "RS256"))).status == 401
    # Unlocked, the same web.toml switches it off for /api.
    with Client(build_engine(config(root, settings), modules=[Echo])) as client:
        assert client.get("/api/x", headers=bearer(sign(keys.rsa2, "RS256"))).status == 200
        assert client.get("/x", headers=bearer(sign(keys.rsa2, "RS256"))).status == 401


def test_environment_secret_never_reaches_config_show(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colonnade.management.effective import effective_config

    secret = "correct-horse-battery-staple-" + os.urandom(8).hex()
    monkeypatch.setenv("TEST_JWT_SHOW", secret)
    settings = {"enabled": True, "algorithms": ["HS256"], "secret_env": "TEST_JWT_SHOW"}
    with Client(build_engine(config(root, settings), modules=[Echo])) as client:
        shown = json.dumps(effective_config(client.engine, None, "/"))
    assert "TEST_JWT_SHOW" in shown
    assert secret not in shown


def test_the_docs_recipe_server_settings_enabled_per_location(
    serve: Any, files: Any, keys: Keys
) -> None:
    settings = rs256(files, issuer="https://login.example.com", audience=["orders-api"])
    del settings["enabled"]
    client = serve(settings, locations=[{"path": "/api", "jwt_authentication": {"enabled": True}}])
    token = sign(keys.rsa, "RS256", claims(iss="https://login.example.com", aud="orders-api"))
    assert body(client.get("/api/orders", headers=bearer(token)))["user"] == "ann"
    assert body(client.get("/home", headers=bearer(token)))["user"] is None
    assert client.get("/api/orders", headers=bearer(sign(keys.rsa, "RS256"))).status == 401


def test_a_web_toml_may_switch_it_on_over_the_servers_settings(
    serve: Any, files: Any, keys: Keys, root: Path
) -> None:
    (root / "api" / "web.toml").write_text("[jwt_authentication]\nenabled = true\n")
    settings = rs256(files)
    del settings["enabled"]
    client = serve(settings)
    token = bearer(sign(keys.rsa, "RS256"))
    assert body(client.get("/api/x", headers=token))["user"] == "ann"
    assert body(client.get("/x", headers=token))["user"] is None


def test_incomplete_effective_settings_fail_the_start_naming_the_path(
    root: Path, files: Any
) -> None:
    from colonnade.errors import ConfigError

    locations = [{"path": "/api", "jwt_authentication": {"enabled": True}}]
    engine = build_engine(config(root, {"issuer": "x"}, locations=locations), modules=[Echo])
    with pytest.raises(ConfigError) as info, Client(engine):
        pass
    assert "algorithms: required when jwt_authentication is enabled" in str(info.value)
    assert "(the settings for /api of site t)" in str(info.value)
