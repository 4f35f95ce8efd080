"""auth.forms over real sockets: a site whose static files, directory listing,
WSGI app and ASGI app are all protected by one forms ticket.

The server's own login page signs users in at /login (htpasswd users made by the
real htpasswd); the WSGI and ASGI applications serve their own login pages and
issue the ticket through ``colonnade.auth`` (ASP.NET's SetAuthCookie). URL
authorization (``authz.url``) refuses the content to anonymous users.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import pytest

from tests.e2e.conftest import LiveServer, Process
from tests.modules.forms_auth.support import (
    USERS,
    form,
    forms_site,
    protected_site,
)
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("forms")
    server = LiveServer(protected_site(base), base)
    yield server.start()
    server.stop()


class Port(NamedTuple):
    """A server's port, for a server that is not a LiveServer."""

    port: int


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.getheaders()
        self.body = response.read()

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


def call(
    live: LiveServer | Port,
    method: str,
    target: str,
    *,
    cookie: str = "",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        sent = dict(headers or {})
        if cookie:
            sent["Cookie"] = cookie
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, target, body=body, headers=sent)
        return Answer(conn.getresponse())
    finally:
        conn.close()


def ticket(answer: Answer) -> str:
    found = [c for c in answer.cookies() if c.startswith(".COLONNADEAUTH=")]
    assert len(found) == 1, answer.headers
    return found[0].split(";", 1)[0]


def origin(live: LiveServer | Port) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{live.port}"}


def sign_in(live: LiveServer | Port, user: str = "alice", target: str = "/login") -> Answer:
    body = form(username=user, password=USERS[user])
    return call(live, "POST", target, body=body, headers=origin(live))


def test_anonymous_gets_the_login_redirect(live: LiveServer) -> None:
    for path, expected in (
        ("/private/a.txt", "/login?ReturnUrl=/private/a.txt"),
        ("/private/docs/?sort=name", "/login?ReturnUrl=/private/docs/%3Fsort%3Dname"),
        ("/wsgi/page", "/wsgi/login?ReturnUrl=/wsgi/page"),
        ("/asgi/page", "/asgi/login?ReturnUrl=/asgi/page"),
    ):
        answer = call(live, "GET", path)
        assert answer.status == 302, path
        assert answer.header("location") == expected
        assert b"protected" not in answer.body


def test_sign_in_and_see_everything_as_the_same_user(live: LiveServer) -> None:
    page = call(live, "GET", "/login?ReturnUrl=/private/a.txt")
    assert page.status == 200 and b'<label for="password">' in page.body
    answer = sign_in(live, "alice", "/login?ReturnUrl=" + quote("/private/a.txt", safe=""))
    assert answer.status == 303
    assert answer.header("location") == "/private/a.txt"
    raw = next(c for c in answer.cookies() if c.startswith(".COLONNADEAUTH="))
    assert [a.strip() for a in raw.split(";")[1:]] == ["Path=/", "HttpOnly", "SameSite=Lax"]
    cookie = ticket(answer)
    got = call(live, "GET", "/private/a.txt", cookie=cookie)
    assert (got.status, got.body) == (200, b"the protected file")
    listing = call(live, "GET", "/private/docs/", cookie=cookie)
    assert listing.status == 200 and b"report.txt" in listing.body
    wsgi = call(live, "GET", "/wsgi/page", cookie=cookie)
    assert wsgi.body == b"wsgi user=alice type=Forms api=alice roles="
    asgi = call(live, "GET", "/asgi/page", cookie=cookie)
    assert asgi.body == b"asgi user=alice type=Forms api=alice"


def test_sign_out_then_refused_again(live: LiveServer) -> None:
    cookie = ticket(sign_in(live, "bob"))
    assert call(live, "GET", "/private/a.txt", cookie=cookie).status == 200
    page = call(live, "GET", "/logout", cookie=cookie)
    assert page.status == 200 and b"<strong>bob</strong>" in page.body
    out = call(live, "POST", "/logout", cookie=cookie, body=b"", headers=origin(live))
    assert out.status == 303 and out.header("location") == "/login"
    cleared = [c for c in out.cookies() if c.startswith(".COLONNADEAUTH=;")]
    assert cleared and "Max-Age=0" in cleared[0]
    # The browser drops the cookie: the next request is anonymous again.
    assert call(live, "GET", "/private/a.txt").status == 302


@pytest.mark.parametrize(
    "return_url",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/\t/evil.example"],
)
def test_open_redirects_are_refused(live: LiveServer, return_url: str) -> None:
    answer = sign_in(live, "alice", "/login?ReturnUrl=" + quote(return_url, safe=""))
    assert answer.status == 303
    assert answer.header("location") == "/"


def test_cross_site_login_post_is_refused(live: LiveServer) -> None:
    body = form(username="alice", password=USERS["alice"])
    answer = call(live, "POST", "/login", body=body, headers={"Origin": "http://evil.example"})
    assert answer.status == 403 and not answer.cookies()


def test_oversized_login_post_is_refused(live: LiveServer) -> None:
    body = form(username="alice", password="x" * 20000)
    answer = call(live, "POST", "/login", body=body, headers=origin(live))
    assert answer.status == 413 and not answer.cookies()


def test_tampered_cookie_is_anonymous(live: LiveServer) -> None:
    cookie = ticket(sign_in(live))
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    for value in (tampered, ".COLONNADEAUTH=" + "x" * 3000, ".COLONNADEAUTH===="):
        answer = call(live, "GET", "/private/a.txt", cookie=value)
        assert answer.status == 302


def test_wsgi_app_issues_and_clears_the_ticket(live: LiveServer) -> None:
    assert call(live, "GET", "/wsgi/login").body == b"the WSGI login page"  # reachable
    body = form(user="carol", password="app-secret")
    answer = call(live, "POST", "/wsgi/login?ReturnUrl=%2Fprivate%2Fa.txt", body=body)
    assert answer.status == 303
    assert answer.header("location") == "/private/a.txt"
    cookie = ticket(answer)
    # One ticket for all content: the static file and the other application too.
    assert call(live, "GET", "/private/a.txt", cookie=cookie).status == 200
    assert call(live, "GET", "/asgi/page", cookie=cookie).body.startswith(b"asgi user=carol")
    page = call(live, "GET", "/wsgi/page", cookie=cookie)
    assert page.body == b"wsgi user=carol type=Forms api=carol roles=staff,wsgi"
    wrong = call(live, "POST", "/wsgi/login", body=form(user="carol", password="nope"))
    assert wrong.body == b"wrong password" and not wrong.cookies()
    out = call(live, "GET", "/wsgi/signout", cookie=cookie)
    assert out.status == 303
    assert any(c.startswith(".COLONNADEAUTH=;") for c in out.cookies())


def test_asgi_app_issues_a_persistent_ticket(live: LiveServer) -> None:
    body = form(user="dave")
    answer = call(live, "POST", "/asgi/login?ReturnUrl=%2F%2Fevil.example", body=body)
    assert answer.status == 303
    assert answer.header("location") == "/"  # the open redirect refused by the API too
    raw = next(c for c in answer.cookies() if c.startswith(".COLONNADEAUTH="))
    assert "Max-Age=1800" in raw or "Max-Age=1799" in raw
    cookie = ticket(answer)
    assert call(live, "GET", "/asgi/page", cookie=cookie).body == (
        b"asgi user=dave type=Forms api=dave"
    )
    assert call(live, "GET", "/private/docs/", cookie=cookie).status == 200
    out = call(live, "GET", "/asgi/signout", cookie=cookie)
    assert any(c.startswith(".COLONNADEAUTH=;") for c in out.cookies())


def test_an_application_401_becomes_the_login_redirect(live: LiveServer) -> None:
    cookie = ticket(sign_in(live))
    answer = call(live, "GET", "/wsgi/deny", cookie=cookie)
    assert answer.status == 302
    assert answer.header("location") == "/wsgi/login?ReturnUrl=/wsgi/deny"


def test_a_streamed_401_becomes_the_redirect(live: LiveServer) -> None:
    # The head goes out before the body is known: only the head changes.
    answer = call(live, "GET", "/asgi/deny-streamed", cookie=ticket(sign_in(live)))
    assert answer.status == 302
    assert answer.header("location") == "/asgi/login?ReturnUrl=/asgi/deny-streamed"
    assert answer.body == b"no, streamed"


def two_workers(tmp_path: Path, extra: str = "") -> tuple[Process, Port]:
    """A master with two workers (real processes) serving the forms site;
    ``extra``: more lines of ``[forms_authentication]``."""
    (tmp_path / "www").mkdir()
    settings = forms_site(tmp_path)["forms_authentication"]
    port = free_port()
    (tmp_path / "colonnade.toml").write_text(
        f"""
[server]
modules = ["auth.forms", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[forms_authentication]
key_file = "{settings["key_file"]}"
users_file = "{settings["users_file"]}"
{extra}
"""
    )
    server = Process(["-c", "colonnade.toml", "--workers", "2"], cwd=tmp_path, port=port)
    return server, Port(port)


def test_every_worker_opens_every_ticket(tmp_path: Path) -> None:
    # The key ring comes from the key file, so a ticket sealed by one worker opens
    # in the other (an auto-generated key per process, ASP.NET's AutoGenerate,
    # would sign users out at random).
    server, target = two_workers(tmp_path)
    try:
        cookies = [ticket(sign_in(target)) for _ in range(6)]  # new connections each
        for cookie in cookies:
            for _ in range(4):
                answer = call(target, "GET", "/login", cookie=cookie)
                assert answer.status == 200
                assert b"You are signed in as <strong>alice</strong>" in answer.body
    finally:
        server.kill()


def test_a_sign_out_in_one_worker_revokes_the_ticket_in_every_worker(tmp_path: Path) -> None:
    # The sign-out lands in one of the two workers; a copy of the cookie is then
    # refused by both (the revoked sign-in is in the server's shared memory).
    server, target = two_workers(tmp_path, 'logout_url = "/logout"')
    signed_in = b"You are signed in as <strong>alice</strong>"
    try:
        copy, other = ticket(sign_in(target)), ticket(sign_in(target))
        # New connections each: both workers answer, and both know the user.
        assert all(signed_in in call(target, "GET", "/login", cookie=copy).body for _ in range(6))
        out = call(target, "POST", "/logout", cookie=copy, body=b"", headers=origin(target))
        assert out.status == 303
        for _ in range(6):
            assert signed_in not in call(target, "GET", "/login", cookie=copy).body
            assert signed_in in call(target, "GET", "/login", cookie=other).body
    finally:
        server.kill()


def test_a_web_toml_cannot_switch_it_off(live: LiveServer) -> None:
    # [lock] forms_authentication.enabled = "deny": the web.toml that tries is
    # refused and its folder answers 500.19, signed in or not; nothing leaks.
    for cookie in ("", ticket(sign_in(live))):
        answer = call(live, "GET", "/private/unlocked/b.txt", cookie=cookie)
        assert answer.status == 500
        assert b"500.19" in answer.body and b"locked" in answer.body
        assert b"still protected" not in answer.body
