"""The web console's sign-in and sessions: the cookie, its checks, CSRF on writes;
in-process for the session's rules, then over a real master's admin binding."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from colonnade.http.events import RequestHead
from colonnade.pools.console import COOKIE, SESSION_SECONDS, Console
from tests.support.ports import free_port
from tests.support.wait import PATIENCE

from .conftest import MODULES, Master, wait_for

StartMaster = Callable[..., Master]


def head(method: str, path: str, *headers: tuple[str, str]) -> RequestHead:
    return RequestHead(
        method=method.encode(),
        target=path.encode(),
        path=path.encode(),
        query=b"",
        version=b"1.1",
        headers=[(k.lower().encode(), v.encode()) for k, v in headers],
        host=b"admin",
        keep_alive=True,
        expect_continue=False,
        content_length=None,
        chunked=False,
    )


def with_cookie(value: str, method: str = "GET", *more: tuple[str, str]) -> RequestHead:
    return head(method, "/api/pools", ("Cookie", f"other=1; {COOKIE}={value}"), *more)


def test_a_session_is_signed_expires_and_guards_writes() -> None:
    now = [1_000_000.0]
    console = Console(secure=False, clock=lambda: now[0])
    value, issued = console.issue("token ops")
    session = console.session(with_cookie(value))
    assert session == issued and session.name == "token ops"
    # Any change to the cookie, or another binding's key, signs nobody in.
    expires, nonce, label, mac = value.split(".")
    forged = [
        f"{int(expires) + 999}.{nonce}.{label}.{mac}",
        f"{expires}.{nonce}.{label}.{mac[:-1]}{'B' if mac.endswith('A') else 'A'}",
        f"{expires}.{nonce}.{label}",
        "",
    ]
    for bad in forged:
        assert console.session(with_cookie(bad)) is None, bad
    assert Console(secure=False, clock=lambda: now[0]).session(with_cookie(value)) is None
    # A write needs the session's CSRF token as well; a read does not.
    assert console.csrf_ok(with_cookie(value), session)
    assert not console.csrf_ok(with_cookie(value, "POST"), session)
    assert not console.csrf_ok(with_cookie(value, "POST", ("X-Colonnade-CSRF", "x")), session)
    assert console.csrf_ok(with_cookie(value, "POST", ("X-Colonnade-CSRF", session.csrf)), session)
    now[0] += SESSION_SECONDS
    assert console.session(with_cookie(value)) is None


def test_sign_in_sets_a_strict_http_only_cookie() -> None:
    console = Console(secure=True)

    def check(token: bytes) -> str | None:
        return "ops" if token == b"right" else None

    refused = console.answer(head("POST", "/console/sign-in"), b"token=wrong", check)
    assert refused.status == 303
    assert (b"location", b"/console/sign-in?failed=1") in refused.headers
    assert not any(k == b"set-cookie" for k, _ in refused.headers)
    # A sign-in form posted from another site is refused (login CSRF).
    elsewhere = head("POST", "/console/sign-in", ("Origin", "https://evil.example"))
    assert console.answer(elsewhere, b"token=right", check).status == 403
    here = head("POST", "/console/sign-in", ("Origin", "https://admin"))
    assert console.answer(here, b"token=right", check).status == 303
    answer = console.answer(head("POST", "/console/sign-in"), b"token=right", check)
    cookie = dict(answer.headers)[b"set-cookie"].decode()
    assert cookie.startswith(COOKIE + "=")
    for flag in ("HttpOnly", "SameSite=Strict", "Secure", f"Max-Age={SESSION_SECONDS}"):
        assert flag in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert console.session(with_cookie(value)).name == "token ops"  # type: ignore[union-attr]
    # Pages need the session; the sign-in page does not.
    page = console.answer(head("GET", "/console/"), b"", check)
    assert page.status == 303 and dict(page.headers)[b"location"] == b"/console/sign-in"
    signed = console.answer(with_cookie(value), b"", check)  # /api/pools: not a page
    assert signed.status == 404
    index = console.answer(head("GET", "/console/", ("Cookie", f"{COOKIE}={value}")), b"", check)
    assert index.status == 200 and b"Colonnade Manager" in index.body
    policy = dict(index.headers)[b"content-security-policy"]
    assert b"script-src 'self'" in policy and b"frame-ancestors 'none'" in policy
    assert console.answer(head("GET", "/console/sign-in"), b"", check).status == 200


def test_the_console_on_a_real_admin_binding(start_master: StartMaster, tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("ops s3cret-token-1\n")
    (tmp_path / "tokens").chmod(0o600)
    admin = free_port()
    master = start_master(
        {"default": {"start": "always"}},
        modules=MODULES,
        extra=f'[admin]\nbind = "127.0.0.1:{admin}"\ntoken_file = "tokens"\n'
        'audit_log = "audit.jsonl"\n',
    )
    wait_for(lambda: "admin API on" in master.log(), PATIENCE, "the admin binding")
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=PATIENCE)
    try:

        def call(
            method: str, path: str, body: bytes | None = None, **headers: str
        ) -> http.client.HTTPResponse:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response

        assert call("GET", "/console/").getheader("location") == "/console/sign-in"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        refused = call("POST", "/console/sign-in", b"token=nope", **form)
        assert refused.getheader("location") == "/console/sign-in?failed=1"
        signed = call(
            "POST",
            "/console/sign-in",
            urllib.parse.urlencode({"token": "s3cret-token-1"}).encode(),
            **form,
        )
        assert signed.status == 303 and signed.getheader("location") == "/console/"
        cookie = signed.getheader("set-cookie", "").split(";")[0]
        assert "SameSite=Strict" in signed.getheader("set-cookie", "")
        conn.request("GET", "/console/session", headers={"Cookie": cookie})
        session = json.loads(conn.getresponse().read())
        assert session["name"] == "token ops"
        # The API takes the cookie for reads; a write needs the CSRF header too.
        conn.request("GET", "/api/pools", headers={"Cookie": cookie})
        pools = conn.getresponse()
        assert pools.status == 200 and json.loads(pools.read())["pools"][0]["name"] == "default"
        assert call("POST", "/api/pools/default/recycle", Cookie=cookie).status == 403
        done = call(
            "POST",
            "/api/pools/default/recycle",
            Cookie=cookie,
            **{"X-Colonnade-CSRF": session["csrf"]},
        )
        assert done.status == 200
        audit = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
        assert audit["who"].startswith("console token ops (127.0.0.1:")
        log = master.log()
        assert "a sign-in with a wrong token" in log and "signed in as token ops" in log
        assert "s3cret-token-1" not in log and "nope" not in log
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/console/console.js", "/console/console.css"])
def test_assets_are_in_the_package(path: str) -> None:
    console = Console(secure=False)
    value, _ = console.issue("t")
    answer = console.answer(head("GET", path, ("Cookie", f"{COOKIE}={value}")), b"", lambda t: None)
    assert answer.status == 200 and len(answer.body) > 1000
    # Nothing is fetched from elsewhere at run time.
    assert b"http://" not in answer.body and b"https://" not in answer.body
