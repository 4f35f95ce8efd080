"""auth.forms through the real pipeline, in process: the login redirect, the
login page and its post, the ticket on later requests, sliding renewal, sign-out,
bad cookies, per-folder settings, web.toml and [lock], and keys kept out of
logs and `colonnade config show`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade import Context, Handler, Stage
from colonnade.core.auth import AUTH_FAILURE, FORMS, LOGIN_PAGE
from colonnade.errors import ConfigError
from colonnade.management.effective import effective_config
from colonnade.modules.forms_auth.module import MAX_FORM_BYTES, FormsAuthentication
from colonnade.modules.forms_auth.ticket import KeyRing, Ticket, parse_keys
from colonnade.testing import Client, TestResponse, build_engine, make_context, run_stage
from tests.modules.forms_auth.support import (
    USERS,
    form,
    forms_site,
    new_key,
    write_keys,
)
from tests.support.wait import PATIENCE, wait_for

FORM = {"content-type": "application/x-www-form-urlencoded"}
SAME_ORIGIN = {**FORM, "origin": "http://localhost"}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    www = tmp_path / "www"
    (www / "private").mkdir(parents=True)
    (www / "private" / "a.txt").write_text("secret file")
    (www / "open").mkdir()
    (www / "open" / "b.txt").write_text("open file")
    return tmp_path


@pytest.fixture
def make(base: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(config: dict[str, Any] | None = None, **forms: Any) -> Client:
        cfg = config or forms_site(base, **forms)
        client = Client(build_engine(cfg, base_dir=str(base)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def cookie_of(response: TestResponse) -> str:
    value = response.header("set-cookie")
    assert value is not None, response.headers
    return value.split(";", 1)[0]


def sign_in(client: Client, user: str = "alice", target: str = "/login") -> TestResponse:
    return client.post(target, form(username=user, password=USERS[user]), headers=SAME_ORIGIN)


def test_anonymous_is_sent_to_the_login_page_with_return_url(make: Any) -> None:
    client = make()
    response = client.get("/private/a.txt?x=1&y=%20z")
    assert response.status == 302
    assert response.header("location") == "/login?ReturnUrl=/private/a.txt%3Fx%3D1%26y%3D%2520z"
    assert response.header("cache-control") == "no-store"
    assert b"secret" not in response.body
    assert response.header("www-authenticate") is None


def test_login_page_is_reachable_and_accessible(make: Any) -> None:
    client = make()
    response = client.get("/login?ReturnUrl=/private/a.txt")
    assert response.status == 200
    page = response.text
    assert '<html lang="en">' in page
    assert '<form method="post" action="/login?ReturnUrl=/private/a.txt">' in page
    assert '<label for="username">' in page and 'id="username"' in page
    assert '<label for="password">' in page and 'type="password"' in page
    assert 'autocomplete="current-password"' in page
    assert "<script" not in page
    assert "frame-ancestors 'none'" in (response.header("content-security-policy") or "")
    assert response.context.items[LOGIN_PAGE] is True


@pytest.mark.parametrize("user", ["alice", "bob", "carol", "dave"])  # every htpasswd format
def test_sign_in_then_the_file_is_served(make: Any, user: str) -> None:
    client = make()
    response = sign_in(client, user, "/login?ReturnUrl=%2Fprivate%2Fa.txt")
    assert response.status == 303
    assert response.header("location") == "/private/a.txt"
    set_cookie = response.header("set-cookie") or ""
    attributes = [a.strip() for a in set_cookie.split(";")[1:]]
    assert attributes == ["Path=/", "HttpOnly", "SameSite=Lax"]  # a session cookie
    got = client.get("/private/a.txt", headers={"cookie": "x=1; " + cookie_of(response)})
    assert got.status == 200
    assert got.body == b"secret file"
    assert got.context.user.name == user
    assert got.context.user.auth_type == "Forms"


def test_wrong_password_shows_the_form_again_and_logs_no_password(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make()
    with caplog.at_level(logging.INFO, logger="colonnade.auth"):
        response = client.post(
            "/login?ReturnUrl=/private/a.txt",
            form(username="alice", password="Tr0ub4dor&3"),
            headers=SAME_ORIGIN,
        )
        unknown = client.post(
            "/login", form(username="mallory", password="Tr0ub4dor&3"), headers=SAME_ORIGIN
        )
    for answer in (response, unknown):
        assert answer.status == 200
        assert answer.header("set-cookie") is None
        assert 'role="alert"' in answer.text
        assert "incorrect" in answer.text
    assert 'action="/login?ReturnUrl=/private/a.txt"' in response.text
    assert 'value="alice"' in response.text
    assert "alice" in response.context.items[AUTH_FAILURE]
    assert "Tr0ub4dor" not in caplog.text
    assert "'alice'" in caplog.text and "'mallory'" in caplog.text


@pytest.mark.parametrize(
    "return_url",
    [
        "//evil.example/",
        "https://evil.example/",
        "http:/evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\r\nSet-Cookie:x=1",
        "/ é",
        "javascript:alert(1)",
        "evil.example",
        "",
        # More from the review: decoded once by the query parser, these are what
        # /%2F%2Fevil, /%5Cevil, %E2%88%95 and the like become.
        "///evil.example",
        "/\\/evil.example",
        "/\u2215evil.example",  # division slash
        "/\uff0f/evil.example",  # fullwidth solidus
        "/\x0b/evil.example",
        "/\u3000/evil.example",
        "/" + "a" * 3000,  # longer than MAX_RETURN_URL
    ],
)
def test_return_url_never_leaves_the_site(make: Any, return_url: str) -> None:
    from urllib.parse import quote

    client = make()
    response = sign_in(client, "alice", "/login?ReturnUrl=" + quote(return_url, safe=""))
    assert response.status == 303
    assert response.header("location") == "/"
    page = client.get("/login?ReturnUrl=" + quote(return_url, safe=""))
    assert 'action="/login"' in page.text


def test_cross_site_posts_are_refused(make: Any) -> None:
    client = make()
    body = form(username="alice", password=USERS["alice"])
    for headers in (
        {**FORM, "origin": "http://evil.example"},
        {**FORM, "origin": "null"},
        {**FORM, "sec-fetch-site": "cross-site", "origin": "http://localhost"},
        {**FORM, "sec-fetch-site": "same-site"},
        {**FORM, "referer": "http://evil.example/login"},
        {**FORM, "referer": "http://localhost.evil.example/"},
    ):
        response = client.post("/login", body, headers=headers)
        assert response.status == 403, headers
        assert response.header("set-cookie") is None
        assert "cross-site" in response.context.items[AUTH_FAILURE]
    for headers in (
        FORM,  # no browser
        {**FORM, "sec-fetch-site": "same-origin"},
        {**FORM, "referer": "http://localhost/login?ReturnUrl=/x"},
    ):
        assert client.post("/login", body, headers=headers).status == 303, headers


def test_form_body_is_bounded_and_checked(make: Any) -> None:
    client = make()
    big = form(username="alice", password="x" * MAX_FORM_BYTES)
    assert client.post("/login", big, headers=SAME_ORIGIN).status == 413
    assert client.post("/login", b"{}", headers={"content-type": "application/json"}).status == 415
    assert client.post("/login", b"username=%ff&password=x", headers=SAME_ORIGIN).status == 400
    missing = client.post("/login", form(username="alice"), headers=SAME_ORIGIN)
    assert missing.status == 200 and "Enter your user name" in missing.text
    assert client.request("PUT", "/login", body=b"x").status == 405


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        "",
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w",
        "x" * 5000,
        "%00%ff",
    ],
)
def test_bad_cookies_are_anonymous_never_an_error(make: Any, cookie: str) -> None:
    client = make()
    response = client.get("/private/a.txt", headers={"cookie": f".COLONNADEAUTH={cookie}"})
    assert response.status == 302
    assert (response.header("location") or "").startswith("/login?ReturnUrl=")
    assert client.get("/open/b.txt", headers={"cookie": f".COLONNADEAUTH={cookie}"}).status == 302


def test_tampered_cookie_is_logged_with_the_reason(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make()
    value = cookie_of(sign_in(client)).split("=", 1)[1]
    tampered = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
    with caplog.at_level(logging.INFO, logger="colonnade.auth"):
        response = client.get("/private/a.txt", headers={"cookie": f".COLONNADEAUTH={tampered}"})
    assert response.status == 302
    assert "tampered" in response.context.items[AUTH_FAILURE]
    assert "ticket refused" in caplog.text
    assert value not in caplog.text and tampered not in caplog.text


def ring_of(base: Path) -> KeyRing:
    return KeyRing(parse_keys((base / "keys").read_text(), "", lines=True))


def test_expired_ticket_is_anonymous(make: Any, base: Path) -> None:
    client = make()
    now = int(time.time())
    value = ring_of(base).seal(Ticket("alice", (), now - 4000, now - 10), ".COLONNADEAUTH")
    response = client.get("/private/a.txt", headers={"cookie": f".COLONNADEAUTH={value}"})
    assert response.status == 302
    assert AUTH_FAILURE not in response.context.items  # routine, not an attack


def test_sliding_renewal_reissues_past_half_life(make: Any, base: Path) -> None:
    client = make(timeout=30)
    now = int(time.time())
    ring = ring_of(base)
    young = ring.seal(Ticket("alice", ("staff",), now - 60, now + 1740), ".COLONNADEAUTH")
    old = ring.seal(Ticket("alice", ("staff",), now - 1000, now + 800), ".COLONNADEAUTH")
    response = client.get("/private/a.txt", headers={"cookie": f".COLONNADEAUTH={young}"})
    assert response.status == 200 and response.header("set-cookie") is None
    response = client.get("/private/a.txt", headers={"cookie": f".COLONNADEAUTH={old}"})
    assert response.status == 200
    renewed = ring.open(cookie_of(response).split("=", 1)[1].encode(), ".COLONNADEAUTH", now)
    assert renewed.name == "alice" and renewed.roles == ("staff",)
    assert renewed.expires - renewed.issued == 1800
    assert renewed.issued >= now
    assert response.context.user.roles == frozenset({"staff"})
    assert response.header("cache-control") == "private"  # a ticket: no shared cache


def test_no_sliding_no_renewal(make: Any, base: Path) -> None:
    client = make(sliding_expiration=False)
    now = int(time.time())
    old = ring_of(base).seal(Ticket("alice", (), now - 1000, now + 800), ".COLONNADEAUTH")
    response = client.get("/private/a.txt", headers={"cookie": f".COLONNADEAUTH={old}"})
    assert response.status == 200 and response.header("set-cookie") is None


def test_sign_out_clears_the_cookie(make: Any) -> None:
    client = make(logout_url="/logout")
    cookie = cookie_of(sign_in(client))
    page = client.get("/logout", headers={"cookie": cookie})
    assert page.status == 200
    assert "signed in as <strong>alice</strong>" in page.text
    assert '<form method="post" action="/logout">' in page.text
    response = client.post("/logout", headers={"cookie": cookie, "origin": "http://localhost"})
    assert response.status == 303
    assert response.header("location") == "/login"
    cleared = response.header("set-cookie") or ""
    assert cleared.startswith(".COLONNADEAUTH=;")
    assert "Max-Age=0" in cleared and "Expires=Thu, 01 Jan 1970" in cleared
    refused = client.post("/logout", headers={"cookie": cookie, "origin": "http://evil.example"})
    assert refused.status == 403 and refused.header("set-cookie") is None


def test_logout_url_is_off_by_default(make: Any) -> None:
    client = make()
    assert client.get("/logout").status == 302  # just another protected URL


class Refuse(Handler):
    """An application's own 401, with a challenge and a cookie of its own."""

    id = "test.refuse"

    def execute(self, ctx: Context) -> None:
        ctx.response.status = 401
        ctx.response.headers.append((b"set-cookie", b"seen=1"))
        ctx.response.headers.append((b"www-authenticate", b'Basic realm="x"'))
        ctx.response.body = b"nope"


def test_every_401_redirects_and_its_cookies_survive(base: Path) -> None:
    # ASP.NET turns every final 401 into the redirect, whoever produced it.
    config = forms_site(base, modules=["auth.forms", "test.refuse", "handler.static"])
    del config["url_authorization"]
    config["handlers"] = [{"path": "/app/*", "handler": "test.refuse"}]
    with Client(build_engine(config, base_dir=str(base), modules=[Refuse])) as client:
        response = client.get("/app/page")
    assert response.status == 302
    assert response.header("location") == "/login?ReturnUrl=/app/page"
    assert response.header("set-cookie") == "seen=1"
    assert response.header("www-authenticate") is None  # forms and challenges do not mix
    assert b"nope" not in response.body


def test_settings_per_location(make: Any, base: Path) -> None:
    config = forms_site(base)
    config["locations"] = [
        {"path": "/api", "forms_authentication": {"redirect_to_login": False}},
        {"path": "/off", "forms_authentication": {"enabled": False}},
        {"path": "/open", "url_authorization": {"rules": [{"access": "allow", "users": ["*"]}]}},
    ]
    client = make(config)
    api = client.get("/api/x")
    assert api.status == 401 and api.header("location") is None
    assert client.get("/off/x").status == 401
    assert FORMS not in client.get("/off/x").context.items
    assert client.get("/open/b.txt").status == 200
    cookie = cookie_of(sign_in(client))
    assert client.get("/api/x", headers={"cookie": cookie}).context.user.name == "alice"
    assert client.get("/off/x", headers={"cookie": cookie}).context.user is None


def test_web_toml_sets_it_unless_locked(make: Any, base: Path) -> None:
    (base / "www" / "api").mkdir()
    (base / "www" / "api" / "web.toml").write_text(
        "[forms_authentication]\nredirect_to_login = false\n"
    )
    client = make()
    assert client.get("/api/x").status == 401
    assert client.get("/private/x").status == 302
    locked = forms_site(base)
    locked["lock"] = {"forms_authentication": "deny"}
    client = make(locked)
    answer = client.get("/api/x")
    assert answer.status == 500 and answer.context.response.substatus == 19
    assert client.get("/private/x").status == 302


def test_ticket_settings_only_per_application(make: Any, base: Path) -> None:
    (base / "www" / "private" / "web.toml").write_text(
        '[forms_authentication]\ncookie_name = "OTHER"\n'
    )
    client = make()
    answer = client.get("/private/a.txt")
    assert (answer.status, answer.context.response.substatus) == (500, 19)


def test_keys_never_in_config_show(base: Path) -> None:
    config = forms_site(base)
    engine = build_engine(config, base_dir=str(base))
    shown = json.dumps(effective_config(engine, None, "/private/a.txt"))
    assert str(base / "keys") in shown  # a path is no secret
    for line in (base / "keys").read_text().splitlines():
        if not line.startswith("#"):
            assert line not in shown


def test_provision_refusals(base: Path) -> None:
    inside = write_keys(base / "www" / "keys.txt", new_key())
    for settings, message in (
        ({"key_file": str(inside)}, "inside the served folders"),
        ({}, "key_file or key_env"),
        ({"key_env": "FORMS_TEST_NOT_SET"}, "not set"),
        ({"key_file": str(base / "keys"), "users_file": str(base / "nobody")}, "cannot read"),
    ):
        config = forms_site(base)
        config["forms_authentication"] = settings
        engine = build_engine(config, base_dir=str(base))
        with pytest.raises(ConfigError, match=message):
            engine.start()
        engine.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"login_url": "//evil/login"}, "login_url"),
        ({"default_url": "https://evil.example/"}, "default_url"),
        ({"same_site": "None"}, "require_ssl"),
        ({"key_env": "X", "key_file": "/k"}, "not both"),
        ({"cookie_name": "bad name"}, "cookie name"),
        ({"timeout": 0}, "timeout"),
        ({"cookie_path": "no-slash"}, "cookie_path"),
        ({"logout_url": "/login"}, "differ"),
    ],
)
def test_bad_settings_name_their_key(base: Path, settings: dict[str, Any], message: str) -> None:
    config = forms_site(base)
    config["forms_authentication"].update(settings)
    with pytest.raises(ConfigError, match=message):
        build_engine(config, base_dir=str(base))


def test_require_ssl(base: Path) -> None:
    config = forms_site(base, require_ssl=True)
    settings = config["forms_authentication"]
    module = FormsAuthentication()
    ctx = make_context("GET", "/x", settings={"forms_authentication": settings})
    module.provision(ctx.app)
    ring = ring_of(base)
    now = int(time.time())
    value = ring.seal(Ticket("alice", (), now, now + 600), ".COLONNADEAUTH")
    headers = {"cookie": f".COLONNADEAUTH={value}"}
    plain = make_context("GET", "/x", headers=headers, settings={"forms_authentication": settings})
    run_stage(module, Stage.AUTHENTICATE_REQUEST, plain)
    assert plain.user is None  # a Secure ticket over plain HTTP is ignored
    with pytest.raises(RuntimeError, match="HTTPS"):
        module.sign_in(plain, "alice", (), False)
    secure = make_context("GET", "/x", headers=headers, settings={"forms_authentication": settings})
    secure.request.scheme = "https"
    run_stage(module, Stage.AUTHENTICATE_REQUEST, secure)
    assert secure.user is not None and secure.user.name == "alice"
    module.sign_in(secure, "alice", (), True)
    run_stage(module, Stage.SEND_RESPONSE, secure)
    set_cookie = secure.response.header(b"set-cookie") or b""
    assert b"; Secure" in set_cookie and b"; HttpOnly" in set_cookie
    assert b"Max-Age=1800" in set_cookie or b"Max-Age=1799" in set_cookie  # persistent
    post = make_context(
        "POST",
        "/login",
        headers=SAME_ORIGIN,
        body=form(username="alice", password=USERS["alice"]),
        settings={"forms_authentication": settings},
    )
    run_stage(module, Stage.AUTHENTICATE_REQUEST, post)
    assert post.handler is module
    module.execute(post)
    assert (post.response.status, post.response.substatus) == (403, 4)


def test_cookie_among_others_and_only_by_its_whole_name(make: Any) -> None:
    client = make()
    value = cookie_of(sign_in(client)).split("=", 1)[1]
    for header in (
        f"a=1; .COLONNADEAUTH={value}; b=2",
        f".COLONNADEAUTH={value}",
        f"a=1;.COLONNADEAUTH={value}",
        f".COLONNADEAUTH=stale; .COLONNADEAUTH={value}",  # two paths: the good one counts
    ):
        answer = client.get("/private/a.txt", headers={"cookie": header})
        assert answer.status == 200, header
    for header in (f"x.COLONNADEAUTH={value}", f"COLONNADEAUTH={value}"):
        assert client.get("/private/a.txt", headers={"cookie": header}).status == 302, header


def test_a_remembered_ticket_still_expires(make: Any, base: Path) -> None:
    client = make(sliding_expiration=False)
    now = int(time.time())
    value = ring_of(base).seal(Ticket("alice", (), now - 10, now + 2), ".COLONNADEAUTH")
    headers = {"cookie": f".COLONNADEAUTH={value}"}
    assert client.get("/private/a.txt", headers=headers).status == 200
    assert client.get("/private/a.txt", headers=headers).status == 200  # remembered
    wait_for(lambda: time.time() >= now + 2, PATIENCE, "the ticket's expiry")
    assert client.get("/private/a.txt", headers=headers).status == 302


def test_rotating_the_key_file_signs_nobody_out(
    make: Any, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make()
    cookie = cookie_of(sign_in(client))
    old = (base / "keys").read_text().split()[-1]
    new = new_key()
    # The key file is looked at once a second (and what was opened trusted as
    # long): the clocks move on 5 s at each change instead of the test waiting.
    skew = [0.0]
    monotonic, wall = time.monotonic, time.time
    monkeypatch.setattr(time, "monotonic", lambda: monotonic() + skew[0])
    monkeypatch.setattr(time, "time", lambda: wall() + skew[0])
    write_keys(base / "keys", new, old)
    skew[0] += 5
    assert client.get("/private/a.txt", headers={"cookie": cookie}).status == 200
    issued = cookie_of(sign_in(client))
    assert KeyRing(parse_keys(new, "", lines=True)).open(
        issued.split("=", 1)[1].encode(), ".COLONNADEAUTH", time.time()
    )
    # The old key dropped: its tickets (remembered or not) no longer open.
    write_keys(base / "keys", new)
    skew[0] += 5
    assert client.get("/private/a.txt", headers={"cookie": cookie}).status == 302
    assert client.get("/private/a.txt", headers={"cookie": issued}).status == 200


def test_custom_error_pages_do_not_hide_the_redirect(make: Any, base: Path) -> None:
    # http.custom_errors runs last in SEND_RESPONSE; by then the 401 is a 302,
    # which it leaves alone. Its page for 401 still serves where forms is off.
    config = forms_site(
        base,
        modules=["auth.forms", "authz.url", "http.custom_errors", "handler.static"],
    )
    config["custom_errors"] = {
        "error_mode": "custom",
        "errors": [{"status": 401, "page": "<p>custom 401</p>"}],
    }
    config["locations"] = [{"path": "/api", "forms_authentication": {"redirect_to_login": False}}]
    client = make(config)
    answer = client.get("/private/a.txt")
    assert answer.status == 302
    assert answer.header("location") == "/login?ReturnUrl=/private/a.txt"
    api = client.get("/api/x")
    assert api.status == 401 and b"custom 401" in api.body


def test_relative_files_are_taken_from_the_configuration_files_folder(
    base: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colonnade.config.load import load_file
    from colonnade.core.registry import Registry
    from colonnade.engine import Engine
    from colonnade.modules.standard import BUILTIN

    (base / "secret").mkdir()
    write_keys(base / "secret" / "keys", new_key())
    (base / "colonnade.toml").write_text(
        '[server]\nmodules = ["auth.forms", "handler.static"]\n'
        '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:8080"]\nroot = "www"\n'
        '[forms_authentication]\nkey_file = "secret/keys"\n'
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    engine = Engine(load_file(str(base / "colonnade.toml")), Registry.standard(BUILTIN))
    with Client(engine) as client:
        assert client.get("/private/a.txt").status == 200  # started: the keys were read


def test_too_many_sign_ins_at_once_are_503(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make()
    monkeypatch.setattr("colonnade.modules.forms_auth.module.MAX_CHECKS", 0)
    answer = sign_in(client)
    assert answer.status == 503
    assert answer.header("retry-after") == "1"
    assert answer.header("set-cookie") is None
    monkeypatch.setattr("colonnade.modules.forms_auth.module.MAX_CHECKS", 32)
    assert sign_in(client).status == 303


def test_anonymous_authentication_off_for_a_folder(make: Any, base: Path) -> None:
    # auth.anonymous answers 401.2 for a request no scheme authenticated, at the
    # end of AUTHENTICATE_REQUEST: after the forms ticket was read. Its 401 becomes
    # the login redirect like any other; the login page (anonymous on) serves.
    config = forms_site(base, modules=["auth.forms", "auth.anonymous", "handler.static"])
    del config["url_authorization"]
    config["locations"] = [{"path": "/private", "anonymous_authentication": {"enabled": False}}]
    client = make(config)
    refused = client.get("/private/a.txt")
    assert refused.status == 302
    assert refused.header("location") == "/login?ReturnUrl=/private/a.txt"
    assert client.get("/open/b.txt").status == 200
    cookie = cookie_of(sign_in(client, "alice", "/login?ReturnUrl=/private/a.txt"))
    answer = client.get("/private/a.txt", headers={"cookie": cookie})
    assert (answer.status, answer.body) == (200, b"secret file")
    # Where anonymous access is off for the login page itself, nobody can sign in
    # (as in IIS): its 401 stays a 401 rather than redirecting to itself forever.
    config["locations"].append({"path": "/login", "anonymous_authentication": {"enabled": False}})
    client = make(config)
    login = client.get("/login")
    assert login.status == 401 and login.header("location") is None


def test_a_user_file_gone_while_serving_is_a_500_that_says_why(
    make: Any, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make()
    assert sign_in(client).status == 303
    (base / "users").unlink()
    monkeypatch.setattr("colonnade.providers.users.htpasswd.RECHECK", 0.0)
    answer = sign_in(client)
    assert answer.status == 500
    assert answer.header("set-cookie") is None
    assert b"forms_authentication.users_file" in answer.body  # a local client sees why


def test_wrong_passwords_lock_the_address_out_with_dynamic_ip(make: Any, base: Path) -> None:
    # Each failed sign-in is a failed logon (auth.failure) for dynamic IP
    # restrictions, as a 401.1 of Basic is: a password guesser is shut out.
    config = forms_site(
        base, modules=["security.dynamic_ip", "auth.forms", "authz.url", "handler.static"]
    )
    config["dynamic_ip_security"] = {"deny_by_auth_failures": True, "max_auth_failures": 3}
    client = make(config)
    wrong = form(username="alice", password="guess")
    for _ in range(3):
        assert client.post("/login", wrong, headers=SAME_ORIGIN).status == 200
    refused = sign_in(client)  # the right password, too late
    assert refused.status == 403
    assert refused.header("set-cookie") is None


@pytest.mark.parametrize(
    "modules",
    [
        ["auth.basic", "auth.forms", "authz.url", "handler.static"],
        ["auth.forms", "auth.basic", "authz.url", "handler.static"],
    ],
)
def test_with_basic_on_the_same_url_the_redirect_wins(
    make: Any, base: Path, modules: list[str]
) -> None:
    # IIS: forms and challenge schemes do not mix; the forms module turns every
    # 401 into its redirect, which carries no challenge, whichever order the
    # modules are listed in (their SEND_RESPONSE hooks share a priority).
    config = forms_site(base, modules=modules)
    config["basic_authentication"] = {"enabled": True, "user_file": str(base / "users")}
    client = make(config)
    answer = client.get("/private/a.txt")
    assert answer.status == 302
    assert answer.header("www-authenticate") is None
    # Basic credentials still authenticate (a script, say), forms cookie or not.
    import base64

    basic = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
    got = client.get("/private/a.txt", headers={"authorization": f"Basic {basic}"})
    assert got.status == 200 and got.context.user.auth_type == "Basic"


@pytest.mark.parametrize("user", ["alice", "bob", "carol", "dave"])
def test_a_nul_in_the_password_is_a_wrong_password_not_a_500(
    make: Any, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    # crypt(3) would end the password at the NUL: the user store refuses to hash
    # it, which must not read as an unusable entry (a 500 any client could cause).
    client = make()
    with caplog.at_level(logging.INFO, logger="colonnade.auth"):
        response = client.post(
            "/login", form(username=user, password=USERS[user] + "\0x"), headers=SAME_ORIGIN
        )
    assert response.status == 200, response.text
    assert "incorrect" in response.text
    assert response.header("set-cookie") is None
    assert "unusable" not in caplog.text


def test_a_ticket_kept_after_sign_out_no_longer_signs_in(
    make: Any, base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A copy of the cookie taken before the sign-out (a stolen cookie, a shared
    # computer) is refused afterwards, and so is a renewal of it: every ticket of
    # that sign-in carries its id, which the sign-out revoked.
    client = make(logout_url="/logout")
    cookie = cookie_of(sign_in(client))
    value = cookie.split("=", 1)[1]
    ticket = ring_of(base).open(value.encode(), ".COLONNADEAUTH", time.time())
    assert len(ticket.sign_in) == 16
    renewed = ring_of(base).seal(ticket.renewed(int(time.time())), ".COLONNADEAUTH")
    other = cookie_of(sign_in(client))  # the same user elsewhere: another sign-in
    signed_out = client.post("/logout", headers={"cookie": cookie, "origin": "http://localhost"})
    assert signed_out.status == 303
    assert "Max-Age=0" in (signed_out.header("set-cookie") or "")
    with caplog.at_level(logging.INFO, logger="colonnade.auth"):
        for kept in (cookie, f".COLONNADEAUTH={renewed}"):
            replayed = client.get("/private/a.txt", headers={"cookie": kept})
            assert replayed.status == 302, replayed.text  # to the login page
            assert replayed.context.user is None
    assert "its sign-in was signed out" in caplog.text
    still = client.get("/private/a.txt", headers={"cookie": other})
    assert still.status == 200 and still.context.user.name == "alice"


def test_a_ticket_from_before_sign_in_ids_still_opens(make: Any, base: Path) -> None:
    # Tickets issued before sign-in ids existed decode without one and open.
    client = make(logout_url="/logout")
    now = int(time.time())
    old = ring_of(base).seal(Ticket("alice", (), now, now + 600), ".COLONNADEAUTH")
    cookie = f".COLONNADEAUTH={old}"
    assert client.get("/private/a.txt", headers={"cookie": cookie}).status == 200
    client.post("/logout", headers={"cookie": cookie, "origin": "http://localhost"})
    assert client.get("/private/a.txt", headers={"cookie": cookie}).status == 200


def test_without_revocation_a_kept_ticket_opens_until_it_expires(make: Any) -> None:
    # revoke_on_sign_out = false: ASP.NET's behaviour, sign-out only clears the
    # browser's cookie.
    client = make(logout_url="/logout", revoke_on_sign_out=False)
    cookie = cookie_of(sign_in(client))
    signed_out = client.post("/logout", headers={"cookie": cookie, "origin": "http://localhost"})
    assert signed_out.status == 303
    replayed = client.get("/private/a.txt", headers={"cookie": cookie})
    assert replayed.status == 200
    assert replayed.context.user.name == "alice"


def test_a_web_toml_cannot_open_a_url_through_its_login_page(make: Any, base: Path) -> None:
    # The server locks url_authorization: web.toml files must not change who
    # reads what. Naming a protected file the (application's) login page would
    # let anonymous users through to it (bypass_login_pages) if the mark were
    # honoured. (The server's own login and logout pages are the module's
    # answers, whatever file the URL names: nothing to open there.)
    key = "login_url"
    (base / "www" / "private" / "web.toml").write_text(
        f'[forms_authentication]\n{key} = "/private/a.txt"\n'
    )
    config = forms_site(base, users_file="")
    config["lock"] = {"url_authorization": "deny"}
    client = make(config)
    answer = client.get("/private/a.txt")
    assert answer.status == 401, answer.text  # refused; no redirect to itself
    assert answer.body != b"secret file"
    assert LOGIN_PAGE not in answer.context.items
    # Set by the server file, the same URL is a login page as before.
    config = forms_site(base, users_file="")
    config["lock"] = {"url_authorization": "deny"}
    config["locations"] = [{"path": "/private", "forms_authentication": {key: "/private/a.txt"}}]
    (base / "www" / "private" / "web.toml").unlink()
    assert make(config).get("/private/a.txt").status == 200


def test_a_ticket_of_a_retired_key_is_no_failed_logon(
    make: Any, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Browsers keep sending a stale ticket after its key left the ring (a
    # rotation done as the docs say, or another application's ticket under the
    # same cookie name and path). Counted as failed logons, it would lock every
    # such user (and everyone behind the same proxy) out through dynamic IP
    # restrictions' deny_by_auth_failures, the login page included: a page and
    # its images are ten requests. It is a stale ticket, as an expired one is.
    client = make()
    cookie = cookie_of(sign_in(client))
    skew = [0.0]
    monotonic, wall = time.monotonic, time.time
    monkeypatch.setattr(time, "monotonic", lambda: monotonic() + skew[0])
    monkeypatch.setattr(time, "time", lambda: wall() + skew[0])
    write_keys(base / "keys", new_key())
    skew[0] += 5
    response = client.get("/private/a.txt", headers={"cookie": cookie})
    assert response.status == 302  # anonymous: the ticket does not open
    assert AUTH_FAILURE not in response.context.items
    login = client.get("/login", headers={"cookie": cookie})
    assert login.status == 200 and AUTH_FAILURE not in login.context.items
