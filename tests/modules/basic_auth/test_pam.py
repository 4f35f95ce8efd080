"""System accounts through the real PAM stack: a user the test creates logs on.

These tests create a Unix user and group (useradd, chpasswd) and remove them
afterwards; they need root. The service is Debian's ``login`` (pam_unix via
common-auth and common-account).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from colonnade.providers.users import pam
from colonnade.testing import Client, build_engine
from tests.e2e.conftest import LiveServer
from tests.hosting.support import EXTRA
from tests.modules.basic_auth.support import (
    MODULES,
    RequireUser,
    basic,
    basic_module,
    htpasswd,
    needs_htpasswd,
    site,
)
from tests.support.wait import PATIENCE

_TOOLS = ("useradd", "userdel", "groupadd", "groupdel", "chpasswd", "chage", "passwd")
_missing = [tool for tool in _TOOLS if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason=f"creating a Unix user (useradd) needs root; running as uid {os.geteuid()}",
    ),
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {', '.join(_missing)}"),
    pytest.mark.skipif(not pam.available(), reason="libpam cannot be loaded (libpam0g)"),
]

SERVICE = "login"


class Account(NamedTuple):
    user: str
    password: str
    group: str


def _run(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, input=stdin, text=True, check=True, capture_output=True)


@pytest.fixture
def account() -> Iterator[Account]:
    tag = secrets.token_hex(4)
    user, group = f"colb{tag}", f"colg{tag}"
    password = f"Pw-{secrets.token_urlsafe(9)}"
    _run("groupadd", group)
    try:
        _run("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", group, user)
        try:
            _run("chpasswd", stdin=f"{user}:{password}\n")
            yield Account(user, password, group)
        finally:
            _run("userdel", user)
    finally:
        subprocess.run(["groupdel", group], capture_output=True, check=False)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(settings: dict[str, Any]) -> Client:
        client = Client(build_engine(site(tmp_path, settings), modules=MODULES))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def test_a_system_account_logs_on_with_its_unix_groups_as_roles(
    serve: Any, account: Account
) -> None:
    client = serve({"enabled": True, "pam": SERVICE})
    response = client.get("/private/x", headers=basic(account.user, account.password))
    assert response.status == 200
    name, auth_type, roles = response.text.split("|")
    assert (name, auth_type) == (account.user, "Basic")
    # Its own group (useradd's user private group) and the supplementary one.
    assert account.group in roles.split(",")
    assert set(roles.split(",")) == pam.unix_groups(account.user)
    # Cached: a second request asks PAM nothing.
    module = basic_module(client)
    assert client.get("/private/x", headers=basic(account.user, account.password)).status == 200
    assert module.verifications == 1


def test_wrong_password_is_refused_with_pams_reason(serve: Any, account: Account) -> None:
    client = serve({"enabled": True, "pam": SERVICE})
    response = client.get("/private/x", headers=basic(account.user, account.password + "x"))
    assert (response.status, response.context.response.substatus) == (401, 1)
    assert response.context.items["auth.failure"] == (
        f"user {account.user!r}: PAM service 'login': Authentication failure"
    )


def test_an_expired_account_is_refused(serve: Any, account: Account) -> None:
    _run("chage", "-E", "0", account.user)  # the account expired on 1 January 1970
    client = serve({"enabled": True, "pam": SERVICE})
    response = client.get("/private/x", headers=basic(account.user, account.password))
    assert (response.status, response.context.response.substatus) == (401, 1)


def test_a_password_that_must_be_changed_is_refused_by_account_management(
    serve: Any, account: Account
) -> None:
    # The password is right (pam_authenticate succeeds); pam_acct_mgmt says a new
    # one is required, which a web logon cannot give: refused.
    _run("chage", "-d", "0", account.user)
    client = serve({"enabled": True, "pam": SERVICE})
    response = client.get("/private/x", headers=basic(account.user, account.password))
    assert (response.status, response.context.response.substatus) == (401, 1)
    assert response.context.items["auth.failure"].endswith("new one required")


def test_an_account_without_a_password_never_logs_on(serve: Any, account: Account) -> None:
    # Debian's pam_unix says "nullok"; PAM_DISALLOW_NULL_AUTHTOK overrides it.
    _run("passwd", "--delete", account.user)
    client = serve({"enabled": True, "pam": SERVICE})
    assert client.get("/private/x", headers=basic(account.user, "")).status == 401


@needs_htpasswd
def test_the_user_file_first_then_pam(serve: Any, account: Account, tmp_path: Path) -> None:
    htpasswd(tmp_path / "users", "alice", "wonder-land")
    # A file entry for the system user with another password: the file decides.
    htpasswd(tmp_path / "users", "shadowed", "file-pw")
    client = serve({"enabled": True, "user_file": "users", "pam": SERVICE})
    assert client.get("/private/x", headers=basic("alice", "wonder-land")).text == "alice|Basic|"
    from_pam = client.get("/private/x", headers=basic(account.user, account.password))
    assert from_pam.status == 200 and from_pam.text.startswith(f"{account.user}|Basic|")
    refused = client.get("/private/x", headers=basic("shadowed", account.password))
    assert refused.context.items["auth.failure"] == "user 'shadowed': wrong password (user file)"


def test_the_fail_delay_is_handed_back_not_slept_in_the_thread(account: Account) -> None:
    # Debian's login service asks for a 3 s delay after a failure (pam_faildelay);
    # the PAM call returns at once and the module waits the delay on the loop.
    started = time.monotonic()
    result = pam.authenticate(SERVICE, account.user, "wrong", "192.0.2.1")
    took = time.monotonic() - started
    assert not result.ok and result.refused
    assert result.delay > 1.0
    assert took < result.delay


def test_a_wsgi_app_sees_the_system_user_over_a_real_socket(
    account: Account, tmp_path: Path
) -> None:
    (tmp_path / "www").mkdir()
    config = {
        "server": {"modules": ["auth.basic", "test.require_user", "handler.static"]},
        "sites": [
            {
                "name": "s",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [
                    {"path": "/private", "app": "tests.hosting.apps.wsgi_apps:environ_app"}
                ],
            }
        ],
        "basic_authentication": {"enabled": True, "pam": SERVICE},
    }
    with LiveServer(config, tmp_path, modules=[*EXTRA, RequireUser]).start() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PATIENCE)
        try:
            conn.request("GET", "/private/env", headers=basic(account.user, account.password))
            response = conn.getresponse()
            environ = json.loads(response.read())
        finally:
            conn.close()
    assert response.status == 200
    assert (environ["REMOTE_USER"], environ["AUTH_TYPE"]) == (account.user, "Basic")
