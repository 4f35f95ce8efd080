"""colonnade.auth, the applications' API, called as an application would call it:
with a WSGI environ or an ASGI scope, before and after the response starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from colonnade import Stage, auth
from colonnade.core.context import Context
from colonnade.modules.forms_auth.module import FormsAuthentication
from colonnade.modules.forms_auth.ticket import KeyRing, parse_keys
from colonnade.testing import make_context, run_stage
from tests.modules.forms_auth.support import new_key, write_keys


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Any]:
    keys = write_keys(tmp_path / "keys", new_key())
    return {"forms_authentication": {"key_file": str(keys), "default_url": "/home"}}


def context(settings: dict[str, Any], target: str = "/app/page") -> tuple[Context, Any]:
    module = FormsAuthentication()
    ctx = make_context("GET", target, settings=settings)
    module.provision(ctx.app)
    run_stage(module, Stage.AUTHENTICATE_REQUEST, ctx)
    return ctx, module


def environ(ctx: Context) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "colonnade.context": ctx}


def scope(ctx: Context) -> dict[str, Any]:
    return {"type": "http", "extensions": {"colonnade": {"context": ctx, "user": ctx.user}}}


@pytest.mark.parametrize("request_of", [environ, scope])
def test_sign_in_and_out(settings: dict[str, Any], request_of: Any) -> None:
    ctx, module = context(settings)
    assert auth.user_name(request_of(ctx)) == ""
    auth.set_auth_cookie(request_of(ctx), "alice", roles=["staff"])
    run_stage(module, Stage.SEND_RESPONSE, ctx)
    set_cookie = ctx.response.header(b"set-cookie") or b""
    value = set_cookie.split(b";")[0].split(b"=", 1)[1]
    ring = KeyRing(
        parse_keys(Path(settings["forms_authentication"]["key_file"]).read_text(), "", lines=True)
    )
    ticket = ring.open(value, ".COLONNADEAUTH", time.time())
    assert (ticket.name, ticket.roles, ticket.persistent) == ("alice", ("staff",), False)
    assert b"Max-Age" not in set_cookie
    ctx, module = context(settings)
    auth.sign_out(request_of(ctx))
    run_stage(module, Stage.SEND_RESPONSE, ctx)
    assert (ctx.response.header(b"set-cookie") or b"").startswith(b".COLONNADEAUTH=;")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/login?ReturnUrl=%2Fapp%2Fx%3Fa%3D1", "/app/x?a=1"),
        ("/login?ReturnUrl=%2F%2Fevil.example", "/home"),
        ("/login?ReturnUrl=https%3A%2F%2Fevil.example", "/home"),
        ("/login", "/home"),
    ],
)
def test_redirect_url(settings: dict[str, Any], target: str, expected: str) -> None:
    ctx, _ = context(settings, target)
    assert auth.redirect_url(environ(ctx)) == expected


def test_refusals(settings: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="not a request served by Colonnade"):
        auth.set_auth_cookie({"REQUEST_METHOD": "GET"}, "alice")
    off = make_context("GET", "/x")  # forms authentication not enabled here
    with pytest.raises(RuntimeError, match="not enabled"):
        auth.set_auth_cookie(environ(off), "alice")
    ctx, _ = context(settings)
    for name, roles in (("", ()), ("a\nb", ()), ("a" * 300, ()), ("alice", ("",))):
        with pytest.raises(ValueError):
            auth.set_auth_cookie(environ(ctx), name, roles=roles)
    ctx.response.headers_sent = True
    with pytest.raises(RuntimeError, match="started"):
        auth.set_auth_cookie(environ(ctx), "alice")
    with pytest.raises(RuntimeError, match="started"):
        auth.sign_out(environ(ctx))
