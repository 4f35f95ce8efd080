"""Helpers for the Basic authentication tests: user files, headers, test modules."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from colonnade import FINISH, Context, Handler, Module, Outcome, Priority, Stage, hook
from colonnade.modules.basic_auth.module import BasicAuthentication
from colonnade.testing import Client

HTPASSWD = shutil.which("htpasswd")
needs_htpasswd = pytest.mark.skipif(
    HTPASSWD is None, reason="htpasswd (apache2-utils) is not installed: make sysdeps"
)


def htpasswd(path: Path, user: str, password: str, flag: str = "-B") -> None:
    """Add ``user`` to ``path`` with the real htpasswd (creating the file)."""
    assert HTPASSWD is not None
    args = [HTPASSWD, "-b" + ("c" if not path.exists() else "") + flag.lstrip("-")]
    if flag == "-B":
        args += ["-C", "4"]
    subprocess.run([*args, str(path), user, password], check=True, capture_output=True)


def basic(user: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header of these credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class RequireUser(Module):
    """Stands in for anonymous authentication switched off: no user, 401.2.

    (The real one is another module; this keeps these tests about Basic.)
    """

    id = "test.require_user"

    @hook(Stage.AUTHENTICATE_REQUEST, priority=Priority.LAST)
    def require(self, ctx: Context) -> Outcome | None:
        if ctx.user is None and ctx.request.path.startswith("/private"):
            ctx.error_response(401, 2, "Unauthorized")
            return FINISH
        return None


class WhoAmI(Handler):
    """Answers with the user the server decided on."""

    id = "test.whoami"

    def execute(self, ctx: Context) -> None:
        user = ctx.user
        if ctx.request.path.endswith("/app401"):
            ctx.response.status = 401
            ctx.response.body = b"the application says no"
            return
        ctx.response.body = (
            b"anonymous"
            if user is None
            else f"{user.name}|{user.auth_type}|{','.join(sorted(user.roles))}".encode()
        )


MODULES = [RequireUser, WhoAmI]


def site(root: Path, settings: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One site at ``root`` with Basic, the stand-in for anonymous off, and WhoAmI."""
    modules = extra.pop("modules", ["auth.basic", "test.require_user", "test.whoami"])
    out: dict[str, Any] = {
        "server": {"modules": modules},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [{"path": "*", "handler": "test.whoami"}],
        **extra,
    }
    if settings is not None:
        out["basic_authentication"] = settings
    return out


def basic_module(client: Client, path: str = "/") -> BasicAuthentication:
    """The application's instance of ``auth.basic``."""
    runtime = client.engine.sites[0].app_for(path)
    assert runtime is not None
    return next(m for m in runtime.modules if isinstance(m, BasicAuthentication))


def challenges(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The ``WWW-Authenticate`` values of a response."""
    return [v.decode() for k, v in headers if k == b"www-authenticate"]
