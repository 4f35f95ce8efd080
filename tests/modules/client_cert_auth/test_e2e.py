"""auth.client_certificate over real sockets: certificates mapped one-to-one and
many-to-one reach WSGI and ASGI applications as the user (AUTH_TYPE SSL/PCT); a
deny mapping is 403.12, an unmapped certificate 401.2 where anonymous access is
off; an expired certificate logs nobody on; mappings per folder in web.toml."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.e2e.conftest import LiveServer
from tests.support.ports import free_port
from tests.support.tls import client_context, issue, request

pytestmark = pytest.mark.e2e

WSGI_APP = """
import json


def app(environ, start_response):
    body = {"user": environ.get("REMOTE_USER"), "auth_type": environ.get("AUTH_TYPE")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
"""

ASGI_APP = """
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    user = scope.get("user")
    body = {"user": user.name if user else None, "auth_type": user.auth_type if user else None,
            "roles": sorted(scope["auth"].scopes) if user else []}
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
"""


def fingerprint(leaf: trustme.LeafCert) -> str:
    """The SHA-256 fingerprint of ``leaf``'s certificate (hex)."""
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return hashlib.sha256(der).hexdigest()


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = trustme.CA(organization_name="Example CA")
        www = root / "www"
        (www / "team").mkdir(parents=True)
        (www / "open").mkdir()
        (www / "hello.txt").write_text("hello")
        (www / "team" / "t.txt").write_text("team")
        (www / "open" / "o.txt").write_text("open")
        for name, source in (("wsgi", WSGI_APP), ("asgi", ASGI_APP)):
            (root / name).mkdir()
            (root / name / f"ccmap_{name}_app.py").write_text(source)
        self.ca.cert_pem.write_to_path(str(root / "clients.pem"))
        self.server = issue(self.ca, root / "certs", "www", "www.test")
        self.port = free_port()

    def leaf(self, cn: str, org: str = "Example", unit: str | None = None, **more: Any) -> Any:
        return self.ca.issue_cert(
            f"{cn}@example.test",
            common_name=cn,
            organization_name=org,
            organization_unit_name=unit,
            **more,
        )

    def get(self, path: str, leaf: Any = None) -> tuple[int, int | None, bytes]:
        """``GET path`` with ``leaf``'s certificate (None: none): status, substatus, body."""
        ctx = client_context(self.ca, alpn=["http/1.1"])
        if leaf is not None:
            leaf.configure_cert(ctx)
        head, body = request(self.port, "www.test", ctx, path)
        status = int(head.split(b" ")[1])
        # The error page names the substatus: "401.2".
        found = re.search(rb"\b%d\.(\d+)\b" % status, body) if status >= 400 else None
        return status, int(found.group(1)) if found else None, body

    def config(self, mapping: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {
            "server": {
                "modules": [
                    "security.ssl",
                    "auth.client_certificate",
                    "auth.anonymous",
                    "handler.static",
                ]
            },
            "sites": [
                {
                    "name": "main",
                    "root": "www",
                    "bindings": [f"https://127.0.0.1:{self.port}"],
                    "tls": {
                        "certificate": str(self.server.cert),
                        "key": str(self.server.key),
                        "client_certificates": "accept",
                        "client_ca": "clients.pem",
                    },
                    "applications": [
                        {
                            "path": "/wsgi",
                            "root": "wsgi",
                            "app": "ccmap_wsgi_app:app",
                            "app_dir": "wsgi",
                        },
                        {
                            "path": "/asgi",
                            "root": "asgi",
                            "app": "ccmap_asgi_app:app",
                            "app_dir": "asgi",
                        },
                    ],
                }
            ],
            "anonymous_authentication": {"enabled": False},
            "client_certificate_mapping_authentication": {"enabled": True, **mapping},
            **more,
        }


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_mapped_certificates_log_on_and_reach_the_apps(setup: Setup) -> None:
    alice = setup.leaf("alice")
    expired = setup.leaf(
        "old",
        not_before=datetime.datetime(2019, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
    )
    mapping = {
        "one_to_one": [
            {"fingerprint": fingerprint(alice), "user": "alice", "roles": ["staff"]},
            {"fingerprint": fingerprint(expired), "user": "old"},
        ],
        "many_to_one": [
            {
                "name": "contractors",
                "permission": "deny",
                "rules": [{"field": "subject", "sub_field": "OU", "match": "Contractors"}],
            },
            {
                "name": "partners",
                "user": "partner",
                "rules": [
                    {"field": "subject", "sub_field": "O", "match": "Partner *"},
                    {"field": "issuer", "sub_field": "O", "match": "Example CA"},
                ],
            },
        ],
    }
    # /open: the ssl settings do not look at certificates (an expired one is not
    # answered 403.17 there, and still maps to nobody).
    locations = [{"path": "main/open", "ssl_settings": {"client_certificates": "ignore"}}]
    with LiveServer(
        setup.config(mapping, locations=locations), setup.root, port=setup.port
    ).start():
        status, _, body = setup.get("/wsgi/", alice)
        assert status == 200
        assert json.loads(body) == {"user": "alice", "auth_type": "SSL/PCT"}
        status, _, body = setup.get("/asgi/", alice)
        assert json.loads(body) == {"user": "alice", "auth_type": "SSL/PCT", "roles": ["staff"]}
        partner = setup.leaf("pat", "Partner Alpha")
        assert json.loads(setup.get("/wsgi/", partner)[2])["user"] == "partner"
        assert setup.get("/hello.txt", alice)[:2] == (200, None)
        # A deny mapping: 403.12 (even for a partner who is also a contractor).
        assert setup.get("/hello.txt", setup.leaf("eve", "Partner Beta", "Contractors"))[:2] == (
            403,
            12,
        )
        # Unmapped, or no certificate: nobody logged on; anonymous is off: 401.2.
        assert setup.get("/hello.txt", setup.leaf("carol"))[:2] == (401, 2)
        assert setup.get("/hello.txt")[:2] == (401, 2)
        # Expired: 403.17 where the ssl settings look, and never a user anywhere.
        assert setup.get("/hello.txt", expired)[:2] == (403, 17)
        assert setup.get("/open/o.txt", expired)[:2] == (401, 2)
        assert setup.get("/open/o.txt", alice)[:2] == (200, None)


def test_web_toml_sets_mappings_for_a_folder_where_unlocked(setup: Setup) -> None:
    (setup.root / "www" / "team" / "web.toml").write_text(
        """
[client_certificate_mapping_authentication]
many_to_one = { add = [
  { name = "team", user = "teammate", rules = [
    { field = "subject", sub_field = "OU", match = "Team" } ] } ] }
"""
    )
    teammate = setup.leaf("tim", unit="Team")
    # Locked by default, as IIS locks it: the folder's web.toml is refused (500.19).
    with LiveServer(setup.config({}), setup.root, port=setup.port).start():
        status, sub, body = setup.get("/team/t.txt", teammate)
        assert (status, sub) == (500, 19)
        assert b"locked by the server configuration" in body
    cfg = setup.config({}, lock={"client_certificate_mapping_authentication": "allow"})
    with LiveServer(cfg, setup.root, port=setup.port).start():
        assert setup.get("/team/t.txt", teammate)[:2] == (200, None)
        assert setup.get("/hello.txt", teammate)[:2] == (401, 2)
