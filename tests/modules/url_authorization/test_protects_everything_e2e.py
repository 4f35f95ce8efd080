"""One site over real sockets whose URL authorization protects a static folder, a WSGI
app and an ASGI (Starlette) app alike, with rules at the server level, in locations
and in web.toml files, roles from a group file, anonymous access switched off for
one application, and what the applications and the access log learn of the user.
A [lock] keeps web.toml files from adding rules or switching anonymous access on.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.support.header_auth import HeaderAuth, credentials
from tests.support.wait import PATIENCE, wait_for

pytest.importorskip("starlette")

pytestmark = pytest.mark.e2e

WSGI_APP = """
import json

def app(environ, start_response):
    body = json.dumps({
        "remote_user": environ.get("REMOTE_USER"),
        "auth_type": environ.get("AUTH_TYPE"),
        "path": environ["SCRIPT_NAME"] + environ["PATH_INFO"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""

ASGI_APP = """
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.responses import JSONResponse
from starlette.routing import Route


async def me(request):
    server = request.scope["extensions"]["colonnade"]["user"]
    return JSONResponse({
        "name": request.user.display_name,
        "authenticated": request.user.is_authenticated,
        "scopes": request.auth.scopes,
        "auth_type": server.auth_type,
    })


@requires("admins")
async def admin(request):
    return JSONResponse({"admin": request.user.display_name})


@requires("auditors")
async def audit(request):
    return JSONResponse({"auditor": request.user.display_name})


app = Starlette(routes=[Route("/me", me), Route("/admin", admin), Route("/audit", audit)])
"""

GROUPS = "admins: bob\nstaff: alice bob\n"


def deny(**who: Any) -> dict[str, Any]:
    return {"access": "deny", **who}


def allow(**who: Any) -> dict[str, Any]:
    return {"access": "allow", **who}


def tree(tmp_path: Path, lock: dict[str, str] | None = None) -> dict[str, Any]:
    www = tmp_path / "www"
    for folder in ("files/staff", "files/admin", "files/open", "public"):
        (www / folder).mkdir(parents=True, exist_ok=True)
    (www / "files" / "a.txt").write_text("files a")
    (www / "files" / "staff" / "a.txt").write_text("staff a")
    (www / "files" / "admin" / "a.txt").write_text("admin a")
    (www / "files" / "open" / "a.txt").write_text("open a")
    (www / "public" / "a.txt").write_text("public a")
    # Folder rules: staff only (added to the inherited ones), admins only (replacing).
    (www / "files" / "staff" / "web.toml").write_text(
        '[url_authorization]\nrules = { add = [{ access = "deny", users = ["mallory"] }] }\n'
    )
    (www / "files" / "admin" / "web.toml").write_text(
        '[url_authorization]\nrules = [{ access = "allow", roles = ["admins"] }]\n'
    )
    for name, source in (("wsgi", WSGI_APP), ("asgi", ASGI_APP)):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        # Module names of their own: an app module is imported once per process.
        (folder / f"authz_{name}_app.py").write_text(source)
    # The WSGI application's own web.toml: mallory is refused there.
    (tmp_path / "wsgi" / "web.toml").write_text(
        '[url_authorization]\nrules = { add = [{ access = "deny", users = ["mallory"] }] }\n'
    )
    (tmp_path / "private").mkdir(exist_ok=True)
    (tmp_path / "private" / "groups").write_text(GROUPS)
    config: dict[str, Any] = {
        "server": {
            "modules": [
                "test.header_auth",
                "auth.anonymous",
                "auth.roles",
                "authz.url",
                "log.http",
                "static.default_document",
                "static.directory_listing",
                "handler.static",
            ]
        },
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [
                    {
                        "path": "/wsgi",
                        "root": "wsgi",
                        "app": "authz_wsgi_app:app",
                        "app_dir": "wsgi",
                    },
                    {
                        "path": "/asgi",
                        "root": "asgi",
                        "app": "authz_asgi_app:app",
                        "app_dir": "asgi",
                    },
                ],
            }
        ],
        "roles": {"group_file": str(tmp_path / "private" / "groups")},
        # The server level: every request must be authenticated, POSTs even then
        # only by staff.
        "url_authorization": {
            "rules": {"add": [deny(users=["?"]), deny(users=["*"], verbs=["POST"])]}
        },
        "directory_browse": {"enabled": True},
        "http_logging": {
            "target": str(tmp_path / "access.log"),
            "buffer_size": 0,
            "fields": ["cs-method", "cs-uri-stem", "cs-username", "sc-status", "sc-substatus"],
        },
        "locations": [
            # /public clears the inherited rules: open to everyone.
            {"path": "/public", "url_authorization": {"rules": [allow(users=["*"])]}},
            # The ASGI app's admin page: admins only, as the server sees it.
            {"path": "/asgi/admin", "url_authorization": {"rules": [allow(roles=["admins"])]}},
            # No anonymous access at all to the WSGI app (401.2 from auth.anonymous),
            # nor to /files/open.
            {"path": "/wsgi", "anonymous_authentication": {"enabled": False}},
            {"path": "/files/open", "anonymous_authentication": {"enabled": False}},
        ],
    }
    if lock is not None:
        config["lock"] = lock
    return config


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.getheaders()
        self.body = response.read()

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def fetch() -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(tmp_path: Path, **kw: Any) -> Any:
        server = LiveServer(tree(tmp_path, **kw), tmp_path, modules=[HeaderAuth]).start()
        servers.append(server)

        def get(path: str, user: dict[str, str] | None = None, method: str = "GET") -> Answer:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PATIENCE)
            try:
                conn.request(
                    method, path, body=b"x" if method == "POST" else None, headers=user or {}
                )
                return Answer(conn.getresponse())
            finally:
                conn.close()

        return get

    yield start
    for server in servers:
        server.stop()


ALICE = credentials("alice")
BOB = credentials("bob")
MALLORY = credentials("mallory")

#: Every kind of content, protected alike by the server-level rules.
CONTENT = [
    ("/files/a.txt", b"files a"),
    ("/files/", None),  # a directory listing
    ("/wsgi/hello", None),
    ("/asgi/me", None),
]


def test_static_wsgi_and_asgi_protected_alike(tmp_path: Path, fetch: Any) -> None:
    get = fetch(tmp_path)
    for path, body in CONTENT:
        refused = get(path)
        assert refused.status == 401, path
        assert refused.values("www-authenticate") == ['Test realm="test"'], path
        served = get(path, ALICE)
        assert served.status == 200, path
        if body is not None:
            assert served.body == body
        # The server-level verb rule applies to every kind of content too.
        assert get(path, ALICE, "POST").status == 403, path
    assert b"a.txt" in get("/files/", ALICE).body  # the listing, as alice
    assert get("/public/a.txt").body == b"public a"


def test_folder_and_application_rules(tmp_path: Path, fetch: Any) -> None:
    get = fetch(tmp_path)
    # web.toml that adds a deny: mallory is out of /files/staff, not out of /files.
    assert get("/files/staff/a.txt", MALLORY).status == 403
    assert get("/files/a.txt", MALLORY).status == 200
    assert get("/files/staff/a.txt", ALICE).status == 200
    # web.toml that replaces the rules: admins (bob, from the group file) only;
    # the replaced list no longer denies anonymous requests, but nothing allows them.
    assert get("/files/admin/a.txt", BOB).body == b"admin a"
    assert get("/files/admin/a.txt", ALICE).status == 403
    assert get("/files/admin/a.txt").status == 401
    # The WSGI application's web.toml.
    assert get("/wsgi/x", MALLORY).status == 403
    assert get("/wsgi/x", ALICE).status == 200
    # A location in the ASGI app's URL space, judged by the server before the app.
    assert get("/asgi/admin", ALICE).status == 403
    assert get("/asgi/admin", BOB).json() == {"admin": "bob"}


def test_the_applications_see_the_user(tmp_path: Path, fetch: Any) -> None:
    get = fetch(tmp_path)
    assert get("/wsgi/hello", BOB).json() == {
        "remote_user": "bob",
        "auth_type": "Test",
        "path": "/wsgi/hello",
    }
    assert get("/asgi/me", BOB).json() == {
        "name": "bob",
        "authenticated": True,
        "scopes": ["admins", "staff"],
        "auth_type": "Test",
    }
    # Starlette's own @requires reads the roles the server gave (scope["auth"]).
    assert get("/asgi/audit", BOB).status == 403  # Starlette's own refusal
    # Anonymous access switched off for the WSGI app: anonymous_authentication's
    # 401.2 with the challenge, before any rule is looked at.
    refused = get("/wsgi/hello")
    assert refused.status == 401 and refused.values("www-authenticate") == ['Test realm="test"']


def test_the_access_log_names_the_user(tmp_path: Path, fetch: Any) -> None:
    get = fetch(tmp_path)
    get("/public/a.txt")
    get("/files/a.txt", ALICE)
    get("/files/a.txt")
    get("/wsgi/hello", BOB)
    log = tmp_path / "access.log"
    expected = [
        "GET /public/a.txt - 200 0",
        "GET /files/a.txt alice 200 0",
        "GET /files/a.txt - 401 2",
        "GET /wsgi/hello bob 200 0",
    ]

    def lines() -> list[str] | None:
        found = [line for line in log.read_text().splitlines() if line and not line.startswith("#")]
        return found if len(found) >= len(expected) else None

    assert wait_for(lines, PATIENCE, "four access log lines") == expected


def test_the_lock_keeps_web_toml_files_from_changing_the_rules(tmp_path: Path, fetch: Any) -> None:
    # A web.toml that would switch anonymous access back on in /files/open: that
    # section is locked by default (as IIS locks it), so the folder is refused
    # (500.19) rather than served openly.
    (tmp_path / "www" / "files" / "open").mkdir(parents=True)
    (tmp_path / "www" / "files" / "open" / "web.toml").write_text(
        "[anonymous_authentication]\nenabled = true\n"
    )
    get = fetch(tmp_path, lock={"url_authorization": "deny"})
    refused = get("/files/open/a.txt")
    assert refused.status == 500
    assert b"anonymous_authentication" in refused.body  # the page names it (local client)
    # The rules are locked too: every folder whose web.toml adds rules is refused.
    for path in ("/files/staff/a.txt", "/files/admin/a.txt", "/wsgi/x"):
        for user in (None, ALICE, BOB):
            locked = get(path, user)
            assert locked.status == 500, (path, user)
            assert b"locked by the server configuration" in locked.body
    # The rest of the site is served under the server's rules.
    assert get("/files/a.txt").status == 401
    assert get("/files/a.txt", ALICE).body == b"files a"
    assert get("/asgi/me", ALICE).status == 200
