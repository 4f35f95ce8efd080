"""auth.jwt over real sockets: a WSGI and an ASGI application see the token's user
and roles; bad tokens get RFC 6750 answers on the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn, Wire

from .conftest import Keys, claims, pem, sign, unsigned

pytestmark = pytest.mark.e2e

WSGI_APP = """
import json


def app(environ, start_response):
    ctx = environ["colonnade.context"]
    claims = environ["colonnade.items"].get("auth.jwt.claims", {})
    body = json.dumps({
        "user": environ.get("REMOTE_USER"),
        "auth_type": environ.get("AUTH_TYPE"),
        "roles": sorted(ctx.user.roles) if ctx.user else [],
        "email": claims.get("email"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""

ASGI_APP = """
import json


async def app(scope, receive, send):
    assert scope["type"] == "http"
    ext = scope["extensions"]["colonnade"]
    user = ext["user"]
    body = json.dumps({
        "user": user.name if user else None,
        "auth_type": user.auth_type if user else None,
        "roles": sorted(user.roles) if user else [],
        "email": ext["items"].get("auth.jwt.claims", {}).get("email"),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""


def tree(tmp_path: Path, keys: Keys) -> dict[str, Any]:
    for name, source in (("wsgi", WSGI_APP), ("asgi", ASGI_APP)):
        folder = tmp_path / name
        folder.mkdir()
        # A module name of its own: the apps are imported by name, once per process.
        (folder / f"jwt_{name}_app.py").write_text(source)
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello")
    (tmp_path / "idp.pem").write_bytes(pem(keys.ec))
    return {
        "server": {"modules": ["auth.jwt", "handler.static"]},
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [
                    {"path": "/wsgi", "root": "wsgi", "app": "jwt_wsgi_app:app", "app_dir": "wsgi"},
                    {"path": "/asgi", "root": "asgi", "app": "jwt_asgi_app:app", "app_dir": "asgi"},
                ],
            }
        ],
        "jwt_authentication": {
            "enabled": True,
            "algorithms": ["ES256"],
            "public_key_file": str(tmp_path / "idp.pem"),
            "issuer": "https://idp.example",
            "audience": ["orders-api"],
            "roles_claim": "realm_access.roles",
            "realm": "orders",
        },
    }


def get(port: int, path: str, authorization: bytes | None = None) -> Wire:
    with Conn(port) as c:
        extra = b"Authorization: " + authorization + b"\r\n" if authorization else b""
        c.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")
        return c.response()


def good_token(keys: Keys, **more: Any) -> bytes:
    payload = claims(
        iss="https://idp.example",
        aud="orders-api",
        realm_access={"roles": ["clerk", "auditor"]},
        email="ann@example.com",
        **more,
    )
    return b"Bearer " + sign(keys.ec, "ES256", payload).encode()


def test_wsgi_and_asgi_apps_see_the_user_and_roles(tmp_path: Path, keys: Keys) -> None:
    with LiveServer(tree(tmp_path, keys), tmp_path).start() as server:
        token = good_token(keys)
        seen = {
            "user": "ann",
            "auth_type": "Bearer",
            "roles": ["auditor", "clerk"],
            "email": "ann@example.com",
        }
        for path in ("/wsgi/me", "/asgi/me"):
            response = get(server.port, path, token)
            assert response.status == 200, response.body
            assert json.loads(response.body) == seen
        # Without a token the applications see nobody (anonymous decides).
        for path in ("/wsgi/me", "/asgi/me"):
            assert json.loads(get(server.port, path).body)["user"] is None
        # Static content takes the same token.
        assert get(server.port, "/hello.txt", token).body == b"hello"


@pytest.mark.parametrize(
    ("authorization", "error", "description"),
    [
        (b"Bearer " + b"x" * 9000, "invalid_token", "the token is too long"),
        (
            b"Bearer not a token",
            "invalid_request",
            "the Authorization header must be Bearer and one token",
        ),
        (
            b"Bearer \x80\xff",
            "invalid_request",
            "the Authorization header must be Bearer and one token",
        ),
        (b"Bearer e30.e30.", "invalid_token", "the token is malformed"),
    ],
)
def test_bad_credentials_on_the_wire(
    tmp_path: Path, keys: Keys, authorization: bytes, error: str, description: str
) -> None:
    with LiveServer(tree(tmp_path, keys), tmp_path).start() as server:
        for path in ("/wsgi/me", "/asgi/me", "/hello.txt"):
            response = get(server.port, path, authorization)
            assert response.status == 401
            assert response.headers["www-authenticate"] == (
                f'Bearer realm="orders", error="{error}", error_description="{description}"'
            )


def test_refused_tokens_never_reach_the_apps(tmp_path: Path, keys: Keys) -> None:
    with LiveServer(tree(tmp_path, keys), tmp_path).start() as server:
        cases = {
            "unsigned tokens are not accepted": b"Bearer "
            + unsigned(claims(iss="https://idp.example", aud="orders-api")).encode(),
            "the token has expired": good_token(keys, exp=1),
            "the token is not meant for this audience": b"Bearer "
            + sign(keys.ec, "ES256", claims(iss="https://idp.example", aud="web")).encode(),
        }
        for description, authorization in cases.items():
            for path in ("/wsgi/me", "/asgi/me"):
                response = get(server.port, path, authorization)
                assert response.status == 401, (path, response.body)
                assert response.headers["www-authenticate"] == (
                    f'Bearer realm="orders", error="invalid_token", '
                    f'error_description="{description}"'
                )
                assert b"auth_type" not in response.body
