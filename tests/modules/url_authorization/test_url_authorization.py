"""URL authorization through the real pipeline: IIS's native order (deny rules of every
level first, then allow rules, else deny), merging across server, locations and
web.toml, verbs, roles, the default document's final URL, and locking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade import Context, Module, Stage, hook
from colonnade.core.auth import LOGIN_PAGE
from colonnade.errors import ConfigError
from colonnade.modules.url_authorization.config import Rule, UrlAuthorizationSection
from colonnade.testing import Client, TestResponse, build_engine
from tests.support.header_auth import HeaderAuth, clients, credentials

ALICE = credentials("alice")
BOB_ADMIN = credentials("bob", "admins")
MALLORY = credentials("mallory")


class MarksLoginPage(Module):
    """Stands in for forms authentication: marks its login page as such."""

    id = "test.login_page"

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate_request(self, ctx: Context) -> None:
        if ctx.request.path == "/private/login.txt":
            ctx.items[LOGIN_PAGE] = True


MODULES = [
    "test.header_auth",
    "test.login_page",
    "auth.anonymous",
    "authz.url",
    "static.default_document",
    "handler.static",
]


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    for folder in ("public", "private", "admin", "docs", "api", "api/deep", "verbs"):
        (root / folder).mkdir(parents=True)
        (root / folder / "a.txt").write_text(f"{folder} a")
    (root / "private" / "login.txt").write_text("login page")
    (root / "docs" / "index.html").write_text("docs index")
    (root / "index.html").write_text("home")
    return root


def config(www: Path, *, lock: dict[str, str] | None = None, **sections: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": MODULES},
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(www)}],
        **sections,
    }
    if lock is not None:
        out["lock"] = lock
    return out


@pytest.fixture
def serve(www: Path) -> Iterator[Any]:
    with clients(HeaderAuth, MarksLoginPage) as start:
        yield lambda **sections: start(config(www, **sections))


def code(response: TestResponse) -> tuple[int, int]:
    return response.status, response.context.response.substatus


def allow(**who: Any) -> dict[str, Any]:
    return {"access": "allow", **who}


def deny(**who: Any) -> dict[str, Any]:
    return {"access": "deny", **who}


def location(path: str, rules: Any, **settings: Any) -> dict[str, Any]:
    return {"path": path, "url_authorization": {"rules": rules, **settings}}


def test_by_default_everyone_is_allowed_and_nothing_is_checked(serve: Any) -> None:
    client = serve()
    assert UrlAuthorizationSection().policy is None  # the hook returns at once
    assert client.get("/private/a.txt").status == 200
    assert client.get("/private/a.txt", headers=ALICE).status == 200


def test_anonymous_refused_is_401_2_with_the_challenge_authenticated_is_403(serve: Any) -> None:
    client = serve(locations=[location("/private", {"add": [deny(users=["?"])]})])
    anonymous = client.get("/private/a.txt")
    assert code(anonymous) == (401, 2)
    assert "access is denied due to server configuration" in anonymous.text
    assert anonymous.header("www-authenticate") == 'Test realm="test"'
    assert client.get("/private/a.txt", headers=ALICE).text == "private a"
    assert client.get("/public/a.txt").status == 200  # the location only

    # Only bob may: alice is authenticated and refused with 403, no challenge.
    client = serve(locations=[location("/private", [allow(users=["bob"])])])
    refused = client.get("/private/a.txt", headers=ALICE)
    assert code(refused) == (403, 0)
    assert refused.header("www-authenticate") is None
    assert client.get("/private/a.txt", headers=credentials("bob")).status == 200
    assert code(client.get("/private/a.txt")) == (401, 2)


def test_authenticated_status_401_answers_as_iis_does(serve: Any) -> None:
    client = serve(
        locations=[location("/private", [allow(users=["bob"])], authenticated_status=401)]
    )
    refused = client.get("/private/a.txt", headers=ALICE)
    assert code(refused) == (401, 2)
    assert refused.header("www-authenticate") == 'Test realm="test"'  # asked to sign in again


def test_deny_rules_win_whatever_the_order_within_a_level(serve: Any) -> None:
    # IIS: every deny rule is checked before any allow rule, so the allow written
    # first does not let mallory in.
    client = serve(url_authorization={"rules": [allow(users=["*"]), deny(users=["mallory"])]})
    assert code(client.get("/public/a.txt", headers=MALLORY)) == (403, 0)
    client = serve(url_authorization={"rules": [allow(users=["mallory"]), deny(users=["mallory"])]})
    assert code(client.get("/public/a.txt", headers=MALLORY)) == (403, 0)
    assert client.get("/public/a.txt", headers=ALICE).status == 403  # no rule allows her


def test_a_deeper_level_cannot_allow_what_a_level_above_denies(serve: Any, www: Path) -> None:
    (www / "private" / "web.toml").write_text(
        '[url_authorization]\nrules = { add = [{ access = "allow", users = ["mallory"] }] }\n'
    )
    client = serve(
        url_authorization={"rules": {"add": [deny(users=["mallory"])]}},
        locations=[location("/private", {"add": [allow(users=["mallory"])]})],
    )
    assert code(client.get("/private/a.txt", headers=MALLORY)) == (403, 0)
    assert client.get("/private/a.txt", headers=ALICE).status == 200


def test_a_plain_list_replaces_the_inherited_rules_like_clear(serve: Any) -> None:
    # The server's deny of mallory and its allow-everyone are gone below /admin:
    # only the admins role may, and mallory with that role is let in there.
    client = serve(
        url_authorization={"rules": {"add": [deny(users=["mallory"])]}},
        locations=[location("/admin", [allow(roles=["admins"])])],
    )
    assert client.get("/admin/a.txt", headers=BOB_ADMIN).text == "admin a"
    assert code(client.get("/admin/a.txt", headers=ALICE)) == (403, 0)
    assert code(client.get("/admin/a.txt")) == (401, 2)
    assert client.get("/admin/a.txt", headers=credentials("mallory", "admins")).status == 200
    assert code(client.get("/public/a.txt", headers=MALLORY)) == (403, 0)


def test_remove_drops_one_inherited_rule(serve: Any) -> None:
    client = serve(
        locations=[
            location(
                "/admin",
                {"remove": [allow(users=["*"])], "add": [allow(roles=["admins", "ops"])]},
            )
        ]
    )
    assert client.get("/admin/a.txt", headers=credentials("carol", "ops")).status == 200
    assert code(client.get("/admin/a.txt", headers=ALICE)) == (403, 0)


def test_rules_of_three_levels_apply_together(serve: Any, www: Path) -> None:
    # server: deny anonymous POSTs; location /api: deny mallory; web.toml in
    # /api/deep: deny anonymous requests altogether.
    (www / "api" / "deep" / "web.toml").write_text(
        '[url_authorization]\nrules = { add = [{ access = "deny", users = ["?"] }] }\n'
    )
    client = serve(
        url_authorization={"rules": {"add": [deny(users=["?"], verbs=["POST"])]}},
        locations=[location("/api", {"add": [deny(users=["mallory"])]})],
    )
    assert client.get("/api/a.txt").status == 200
    assert code(client.post("/api/a.txt", b"x")) == (401, 2)
    assert code(client.get("/api/a.txt", headers=MALLORY)) == (403, 0)
    assert code(client.get("/api/deep/a.txt")) == (401, 2)
    assert code(client.get("/api/deep/a.txt", headers=MALLORY)) == (403, 0)
    assert client.get("/api/deep/a.txt", headers=ALICE).text == "api/deep a"
    assert client.get("/public/a.txt", headers=MALLORY).status == 200


def test_verbs(serve: Any) -> None:
    client = serve(
        locations=[
            location("/verbs", {"add": [deny(users=["*"], verbs=["delete", "POST"])]}),
            location("/docs", {"add": [deny(users=["?"], verbs=["GET"])]}),
        ]
    )
    assert client.get("/verbs/a.txt").status == 200
    assert code(client.post("/verbs/a.txt", b"x")) == (401, 2)
    assert code(client.post("/verbs/a.txt", b"x", headers=ALICE)) == (403, 0)
    assert code(client.request("DELETE", "/verbs/a.txt", headers=ALICE)) == (403, 0)
    # GET covers HEAD: denying one and serving the other's headers would leak.
    assert code(client.head("/docs/a.txt")) == (401, 2)
    assert code(client.get("/docs/a.txt")) == (401, 2)
    assert client.head("/docs/a.txt", headers=ALICE).status == 200


def test_a_star_verb_is_every_method(serve: Any) -> None:
    client = serve(locations=[location("/verbs", {"add": [deny(users=["?"], verbs=["*"])]})])
    for method in ("GET", "POST", "PROPFIND"):
        assert code(client.request(method, "/verbs/a.txt")) == (401, 2), method
    assert client.get("/verbs/a.txt", headers=ALICE).status == 200
    assert (
        UrlAuthorizationSection(rules=[Rule(access="allow", users=["*"], verbs=["*"])]).policy
        is None
    )


def test_roles_and_users_in_one_rule(serve: Any) -> None:
    client = serve(
        locations=[location("/admin", [allow(users=["carol"], roles=["admins"])])],
    )
    assert client.get("/admin/a.txt", headers=credentials("carol")).status == 200
    assert client.get("/admin/a.txt", headers=credentials("dave", "ops", "admins")).status == 200
    assert client.get("/admin/a.txt", headers=credentials("dave", "ops")).status == 403
    # Names match exactly: Linux user names are case-sensitive.
    assert client.get("/admin/a.txt", headers=credentials("Carol")).status == 403


def test_the_default_documents_url_is_authorized_too(serve: Any) -> None:
    # /docs/ is allowed; the document it is served as is not: IIS authorizes the
    # child request, and so do we.
    client = serve(locations=[location("/docs/index.html", [deny(users=["*"])])])
    assert code(client.get("/docs/")) == (401, 2)
    assert code(client.get("/docs/", headers=ALICE)) == (403, 0)
    assert code(client.get("/docs/index.html", headers=ALICE)) == (403, 0)
    assert client.get("/docs/a.txt").text == "docs a"
    assert client.get("/").text == "home"  # remapped, allowed


def test_the_folders_own_rules_still_apply_before_the_remap(serve: Any) -> None:
    client = serve(locations=[location("/docs", {"add": [deny(users=["?"])]})])
    assert code(client.get("/docs/")) == (401, 2)
    assert client.get("/docs/", headers=ALICE).text == "docs index"


def test_without_any_authentication_module_requests_are_anonymous(www: Path) -> None:
    cfg = config(www, locations=[location("/private", {"add": [deny(users=["?"])]})])
    cfg["server"]["modules"] = ["authz.url", "handler.static"]
    with Client(build_engine(cfg)) as client:
        refused = client.get("/private/a.txt")
        assert refused.context.user is None
        assert code(refused) == (401, 2)
        assert client.get("/public/a.txt").status == 200


def test_a_login_page_is_let_through(serve: Any) -> None:
    client = serve(locations=[location("/private", [deny(users=["?"])])])
    assert client.get("/private/login.txt").text == "login page"
    assert code(client.get("/private/a.txt")) == (401, 2)
    client = serve(locations=[location("/private", [deny(users=["?"])], bypass_login_pages=False)])
    assert code(client.get("/private/login.txt")) == (401, 2)


def test_the_refusal_says_which_rule_to_local_clients(serve: Any) -> None:
    client = serve(locations=[location("/private", {"add": [deny(users=["?"])]})])
    refused = client.get("/private/a.txt")  # the test client is 127.0.0.1: local
    assert "refused by the url_authorization rule" in refused.text
    assert "users = [&#x27;?&#x27;]" in refused.text or "users = ['?']" in refused.text
    client = serve(locations=[location("/private", [allow(users=["bob"])])])
    assert (
        "no url_authorization rule allows this user here"
        in client.get("/private/a.txt", headers=ALICE).text
    )


def test_web_toml_rules_and_the_lock(serve: Any, www: Path) -> None:
    (www / "api" / "web.toml").write_text(
        '[url_authorization]\nrules = { add = [{ access = "deny", users = ["?"] }] }\n'
    )
    client = serve()
    assert code(client.get("/api/a.txt")) == (401, 2)
    assert client.get("/api/a.txt", headers=ALICE).status == 200

    # Locked: the web.toml may not add rules; its folder is refused (500.19)
    # rather than served without them.
    client = serve(lock={"url_authorization": "deny"})
    for headers in ({}, ALICE):
        locked = client.get("/api/a.txt", headers=headers)
        assert code(locked) == (500, 19)
        assert "locked by the server configuration" in locked.text
    assert client.get("/public/a.txt").status == 200

    client = serve(lock={"url_authorization.rules": "deny"})
    assert code(client.get("/api/a.txt")) == (500, 19)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"access": "allow"}, "applies to nobody without users or roles"),
        ({"access": "allow", "users": ["alice, bob"]}, "a user or role name"),
        ({"access": "allow", "users": ["*"], "verbs": ["GET POST"]}, "an HTTP method"),
        ({"access": "permit", "users": ["*"]}, "allow"),
        ({"access": "allow", "user": ["*"]}, "user"),
    ],
)
def test_bad_rules_are_refused_naming_the_key(www: Path, rule: Any, message: str) -> None:
    cfg = config(www, url_authorization={"rules": [rule]})
    with pytest.raises(ConfigError) as info:
        build_engine(cfg, modules=[HeaderAuth, MarksLoginPage])
    text = str(info.value)
    assert "url_authorization.rules[0]" in text and message in text, text


def test_a_bad_rule_in_a_web_toml_confines_its_folder_naming_file_and_line(
    serve: Any, www: Path
) -> None:
    (www / "api" / "web.toml").write_text(
        '[url_authorization]\n\nrules = [{ access = "allow", users = [] }]\n'
    )
    client = serve()
    refused = client.get("/api/a.txt", headers=ALICE)
    assert code(refused) == (500, 19)
    assert "api/web.toml:3: url_authorization.rules[0]" in refused.text
    assert "applies to nobody" in refused.text
    assert client.get("/public/a.txt").status == 200


def test_a_policy_keeps_its_verdicts_per_user_and_method() -> None:
    from colonnade.core.principal import Principal
    from colonnade.modules.url_authorization.config import Policy

    policy = Policy(
        [
            Rule(access="allow", users=["*"]),
            Rule(access="deny", users=["?"]),
            Rule(access="deny", roles=["blocked"], verbs=["POST"]),
        ]
    )
    ann = Principal("ann", "Basic")
    assert policy.refusal(ann, "GET") is None
    assert policy.refusal(None, "GET") is not None  # anonymous: the deny rule
    blocked = Principal("bob", "Basic", frozenset({"blocked"}))
    assert policy.refusal(blocked, "GET") is None
    assert policy.refusal(blocked, "POST") is not None  # same user, other method
    assert policy.refusal(ann, "POST") is None  # same method, other user
    # Kept: asking again answers the same without walking the rules.
    policy.deny = ()
    policy.allow = ()
    assert policy.refusal(blocked, "POST") is not None
    assert policy.refusal(ann, "GET") is None
