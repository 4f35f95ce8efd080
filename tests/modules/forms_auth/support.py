"""What the forms authentication tests share: a key ring and a user store made
with the real tools, and sites whose content URL authorization (``authz.url``)
refuses to anonymous users, as a real site would protect it: the 401.2 it
answers is what forms authentication turns into the login redirect, and the
login page passes its rules (``bypass_login_pages``).
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ASGI_LIFESPAN

USERS = {"alice": "correct horse", "bob": "battery staple", "carol": "pw3", "dave": "pw4"}
#: The htpasswd flag each user's line is written with: every format the tool has.
FORMATS = {"alice": "-B", "bob": "-s", "carol": "-m", "dave": "-5"}

#: URL authorization rules that refuse anonymous users (and allow everyone else).
SIGN_IN_FIRST: dict[str, Any] = {"rules": {"add": [{"access": "deny", "users": ["?"]}]}}


def new_key() -> str:
    """A key as `openssl rand -base64 32` prints it."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write_keys(path: Path, *keys: str) -> Path:
    path.write_text("# forms keys\n" + "".join(k + "\n" for k in keys))
    path.chmod(0o600)
    return path


def write_users(path: Path) -> Path:
    """An htpasswd file made by the real htpasswd tool: alice in bcrypt, bob in
    {SHA}, carol in apr1-MD5, dave in SHA-512 crypt."""
    path.unlink(missing_ok=True)
    for name, password in USERS.items():
        flag = FORMATS[name]
        create = ["-c"] if not path.exists() else []
        subprocess.run(
            ["htpasswd", "-b", *create, flag, str(path), name, password],
            check=True,
            capture_output=True,
        )
    path.chmod(0o600)
    return path


def forms_site(base: Path, *, modules: list[str] | None = None, **forms: Any) -> dict[str, Any]:
    """A site at ``base/www`` with forms authentication and the test rule."""
    keys = write_keys(base / "keys", new_key())
    users = write_users(base / "users")
    settings: dict[str, Any] = {"key_file": str(keys), "users_file": str(users)}
    settings.update(forms)
    return {
        "server": {
            "modules": modules
            or ["auth.forms", "authz.url", "static.directory_listing", "handler.static"]
        },
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "forms_authentication": settings,
        "url_authorization": SIGN_IN_FIRST,
    }


def form(**fields: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


WSGI_APP = """
from urllib.parse import parse_qs

from colonnade import auth


def app(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path == "/login" and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        fields = parse_qs(environ["wsgi.input"].read(size).decode())
        name = fields["user"][0]
        if fields["password"][0] != "app-secret":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"wrong password"]
        auth.set_auth_cookie(environ, name, roles=["staff", "wsgi"])
        start_response("303 See Other", [("Location", auth.redirect_url(environ))])
        return [b""]
    if path == "/login":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the WSGI login page"]
    if path == "/signout":
        auth.sign_out(environ)
        start_response("303 See Other", [("Location", "/wsgi/login")])
        return [b""]
    if path == "/deny":
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"the app says no"]
    ctx = environ["colonnade.context"]
    roles = ",".join(sorted(ctx.user.roles)) if ctx.user else ""
    text = (
        f"wsgi user={environ.get('REMOTE_USER')} type={environ.get('AUTH_TYPE')} "
        f"api={auth.user_name(environ)} roles={roles}"
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text.encode()]
"""

ASGI_APP = (
    """
from urllib.parse import parse_qs

from colonnade import auth


async def reply(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):"""
    + ASGI_LIFESPAN
    + """
    path = scope["path"][len(scope["root_path"]):]
    if path == "/login" and scope["method"] == "POST":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        fields = parse_qs(body.decode())
        auth.set_auth_cookie(scope, fields["user"][0], roles=["asgi"], persistent=True)
        target = auth.redirect_url(scope).encode()
        await reply(send, 303, b"", [(b"location", target)])
        return
    if path == "/deny-streamed":
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"no, ", "more_body": True})
        await send({"type": "http.response.body", "body": b"streamed"})
        return
    if path == "/signout":
        auth.sign_out(scope)
        await reply(send, 303, b"", [(b"location", b"/asgi/login")])
        return
    user = scope["extensions"]["colonnade"]["user"]
    assert scope.get("user") is user  # Starlette's place for it too
    text = f"asgi user={user.name if user else None} type={user.auth_type if user else None}"
    await reply(send, 200, f"{text} api={auth.user_name(scope)}".encode())
"""
)


def protected_site(base: Path) -> dict[str, Any]:
    """A site at ``base``: protected static files and a listing under /private, a
    WSGI app at /wsgi and an ASGI app at /asgi with their own login pages, the
    server's login page at /login and sign-out at /logout; configured partly in
    web.toml files, with a [lock] that keeps a web.toml from switching forms
    authentication off."""
    www = base / "www"
    (www / "private" / "docs").mkdir(parents=True)
    (www / "private" / "a.txt").write_text("the protected file")
    (www / "private" / "docs" / "report.txt").write_text("report")
    code = base / "code"
    code.mkdir()
    # Names of their own: an application module is imported once per process,
    # and another test's "wsgi_app" would be this one's.
    (code / "forms_wsgi_app.py").write_text(WSGI_APP)
    (code / "forms_asgi_app.py").write_text(ASGI_APP)
    for name in ("wsgi", "asgi"):
        (base / name).mkdir()
    config: dict[str, Any] = forms_site(
        base,
        modules=[
            "auth.forms",
            "auth.anonymous",
            "authz.url",
            "static.directory_listing",
            "handler.static",
        ],
        logout_url="/logout",
    )
    config["directory_browse"] = {"enabled": True}
    config["sites"][0]["applications"] = [
        {"path": "/wsgi", "root": "wsgi", "app": "forms_wsgi_app:app", "app_dir": "code"},
        {"path": "/asgi", "root": "asgi", "app": "forms_asgi_app:app", "app_dir": "code"},
    ]
    # The applications serve their own login pages (no users_file there): the
    # WSGI application says so in its web.toml, the ASGI one in a location.
    (base / "wsgi" / "web.toml").write_text(
        '[forms_authentication]\nusers_file = ""\nlogin_url = "/wsgi/login"\n'
    )
    config["locations"] = [
        {"path": "/asgi", "forms_authentication": {"users_file": "", "login_url": "/asgi/login"}},
    ]
    # No web.toml may switch forms authentication off: one that tries is refused
    # (its folder answers 500.19), its content stays out of reach.
    config["lock"] = {"forms_authentication.enabled": "deny"}
    (www / "private" / "unlocked").mkdir()
    (www / "private" / "unlocked" / "b.txt").write_text("still protected")
    (www / "private" / "unlocked" / "web.toml").write_text(
        "[forms_authentication]\nenabled = false\n"
    )
    return config
