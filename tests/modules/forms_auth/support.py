"""What the forms authentication tests share: a key ring and a user store made
with the real tools, and a stand-in for the module that refuses anonymous users.

``DenyAnonymous`` is test-only: URL authorization (``authz.url``) and anonymous
authentication (``auth.anonymous``) are built in parallel by other helpers; until
they land, this is the rule that makes content need a signed-in user. It honours
``LOGIN_PAGE`` as URL authorization will (IIS ``bypassLoginPages``).
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path
from typing import Any

from colonnade import FINISH, Context, Module, Outcome, Section, Stage, hook
from colonnade.core.auth import LOGIN_PAGE

USERS = {"alice": "correct horse", "bob": "battery staple"}


class DenySection(Section, frozen=True):
    """``[deny_anonymous]``: refuse anonymous users in this subtree."""

    key = "deny_anonymous"
    enabled: bool = True


class DenyAnonymous(Module):
    """``test.deny_anonymous``: 401.2 for an anonymous request (not for login pages)."""

    id = "test.deny_anonymous"
    section = DenySection

    @hook(Stage.AUTHORIZE_REQUEST)
    def authorize_request(self, ctx: Context) -> Outcome | None:
        if not ctx.section(DenySection).enabled or ctx.items.get(LOGIN_PAGE):
            return None
        if ctx.user is None or ctx.user.anonymous:
            ctx.error_response(401, 2, "Unauthorized: sign in")
            return FINISH
        return None


def new_key() -> str:
    """A key as `openssl rand -base64 32` prints it."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write_keys(path: Path, *keys: str) -> Path:
    path.write_text("# forms keys\n" + "".join(k + "\n" for k in keys))
    path.chmod(0o600)
    return path


def write_users(path: Path) -> Path:
    """An htpasswd file made by the real htpasswd tool: alice in bcrypt, bob in {SHA}."""
    path.unlink(missing_ok=True)
    for (name, password), flag in zip(USERS.items(), ("-B", "-s"), strict=True):
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
            or ["auth.forms", "test.deny_anonymous", "static.directory_listing", "handler.static"]
        },
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "forms_authentication": settings,
    }


def form(**fields: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()
