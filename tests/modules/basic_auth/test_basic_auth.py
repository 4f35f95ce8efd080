"""Basic authentication through the real pipeline (in process): credentials, the
challenge, bad input, the cache, the user file's reload, web.toml and locks."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError
from colonnade.modules.basic_auth import module as basic_module_code
from colonnade.modules.standard import BUILTIN
from colonnade.providers.users import pam
from colonnade.testing import Client, build_engine
from tests.modules.basic_auth.support import (
    MODULES,
    basic,
    basic_module,
    challenges,
    htpasswd,
    needs_htpasswd,
    site,
)
from tests.support.wait import PATIENCE, wait_for

pytestmark = needs_htpasswd

CHALLENGE = 'Basic realm="localhost", charset="UTF-8"'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    www = tmp_path / "www"
    (www / "private").mkdir(parents=True)
    (www / "public").mkdir()
    htpasswd(www / "users", "alice", "wonder-land")
    htpasswd(www / "users", "bob", "builder", "-m")
    return www


@pytest.fixture
def serve(root: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(settings: dict[str, Any] | None = None, **extra: Any) -> Client:
        if settings is None:
            settings = {"enabled": True, "user_file": "users"}
        client = Client(build_engine(site(root, settings, **extra), modules=MODULES))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def test_right_credentials_make_the_user(serve: Any) -> None:
    client = serve()
    for user, password in (("alice", "wonder-land"), ("bob", "builder")):
        response = client.get("/private/x", headers=basic(user, password))
        assert response.status == 200
        assert response.text == f"{user}|Basic|"
        assert challenges(response.headers) == []


def test_no_credentials_get_the_challenge(serve: Any) -> None:
    response = serve().get("/private/x")
    assert (response.status, response.context.response.substatus) == (401, 2)
    assert challenges(response.headers) == [CHALLENGE]


def test_anonymous_stays_anonymous_where_allowed(serve: Any) -> None:
    response = serve().get("/public/x")
    assert response.status == 200 and response.text == "anonymous"


def test_wrong_password_is_401_1_with_the_reason_logged_and_never_the_password(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = serve()
    with caplog.at_level(logging.DEBUG):
        response = client.get("/private/x", headers=basic("alice", "Wonder-land-typo"))
        unknown = client.get("/public/x", headers=basic("carol", "Wonder-land-typo"))
    assert (response.status, response.context.response.substatus) == (401, 1)
    assert challenges(response.headers) == [CHALLENGE]
    assert response.context.items["auth.failure"] == "user 'alice': wrong password (user file)"
    # Wrong credentials are refused also where anonymous access is allowed (as IIS).
    assert (unknown.status, unknown.context.response.substatus) == (401, 1)
    assert unknown.context.items["auth.failure"] == "user 'carol': unknown user"
    assert "wrong password" in caplog.text and "unknown user" in caplog.text
    assert "Wonder-land-typo" not in caplog.text


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Basic", "empty or oversized credentials"),
        ("Basic !!!!", "credentials are not valid base64"),
        ("Basic YWxpY2U6d29uZGVyLWxhbmQ", "credentials are not valid base64"),  # no padding
        ("Basic " + _b64(b"alice"), "credentials without ':' between user and password"),
        ("Basic " + _b64(b"\xffalice:x"), "credentials are not UTF-8"),
        ("Basic " + _b64(b":wonder-land"), "an empty user name"),
        ("Basic " + _b64(b"ali\nce:x"), "a control character in the user name"),
        ("Basic " + _b64(b"alice:wonder-land\x00junk"), "a NUL character in the password"),
        ("Basic " + "QUFB" * 600, "credentials longer than 2048 characters"),
        ("Basic " + "QUFB" * 5000, "empty or oversized credentials"),
        ("Basic " + _b64(b"u" * 300 + b":x"), "a user name longer than 256 bytes"),
        ("Basic " + _b64(b"alice:" + b"p" * 513), "a password longer than 512 bytes"),
    ],
)
def test_malformed_credentials_are_401_1_never_500(serve: Any, value: str, reason: str) -> None:
    response = serve().get("/private/x", headers={"Authorization": value})
    assert (response.status, response.context.response.substatus) == (401, 1)
    assert response.context.items["auth.failure"] == reason
    assert challenges(response.headers) == [CHALLENGE]


def test_scheme_is_case_insensitive_and_other_schemes_are_left_alone(serve: Any) -> None:
    client = serve()
    token = _b64(b"alice:wonder-land")
    assert client.get("/private/x", headers={"Authorization": f"bAsIc  {token} "}).status == 200
    other = client.get("/private/x", headers={"Authorization": "Bearer abc"})
    assert (other.status, other.context.response.substatus) == (401, 2)
    assert "auth.failure" not in other.context.items


def test_disabled_basic_ignores_credentials_and_sends_no_challenge(serve: Any) -> None:
    client = serve({"enabled": False, "user_file": "users"})
    assert client.get("/public/x", headers=basic("alice", "nope")).text == "anonymous"
    response = client.get("/private/x")
    assert response.status == 401 and challenges(response.headers) == []


def test_every_401_gets_the_challenge_once(serve: Any) -> None:
    client = serve({"enabled": True, "user_file": "users", "realm": 'Staff "only" \\ area'})
    response = client.get("/public/app401")  # a 401 the application made
    assert response.text == "the application says no"
    assert challenges(response.headers) == [
        'Basic realm="Staff \\"only\\" \\\\ area", charset="UTF-8"'
    ]


def test_realm_defaults_to_the_host_name(serve: Any) -> None:
    response = serve().get("/private/x", host="www.example.com:8443")
    assert challenges(response.headers) == ['Basic realm="www.example.com", charset="UTF-8"']


def test_challenge_survives_a_custom_error_page(serve: Any) -> None:
    client = serve(
        modules=["http.custom_errors", "auth.basic", "test.require_user", "test.whoami"],
        custom_errors={
            "error_mode": "custom",
            "errors": [{"status": 401, "page": "<p>Please sign in</p>"}],
        },
    )
    response = client.get("/private/x")
    assert response.status == 401 and response.text == "<p>Please sign in</p>"
    assert challenges(response.headers) == [CHALLENGE]


def test_verified_credentials_are_cached(serve: Any) -> None:
    client = serve()
    module = basic_module(client)
    for _ in range(3):
        assert client.get("/private/x", headers=basic("alice", "wonder-land")).status == 200
    assert module.verifications == 1
    # Another password is another key: checked (and refused), not served from memory.
    assert client.get("/private/x", headers=basic("alice", "wrong")).status == 401
    assert client.get("/private/x", headers=basic("alice", "wrong")).status == 401
    assert module.verifications == 3


def test_cache_off_checks_every_time(serve: Any) -> None:
    client = serve({"enabled": True, "user_file": "users", "cache_seconds": 0})
    module = basic_module(client)
    for _ in range(3):
        assert client.get("/private/x", headers=basic("alice", "wonder-land")).status == 200
    assert module.verifications == 3


def test_concurrent_requests_with_new_credentials_share_one_check(serve: Any) -> None:
    client = serve()
    module = basic_module(client)

    async def burst() -> list[int]:
        answers = await asyncio.gather(
            *(
                client.arequest("GET", "/private/x", headers=basic("alice", "wonder-land"))
                for _ in range(8)
            )
        )
        return [a.status for a in answers]

    assert client.loop.run_until_complete(burst()) == [200] * 8
    assert module.verifications == 1


def test_the_user_file_is_read_again_when_it_changes(serve: Any, root: Path) -> None:
    client = serve()
    assert client.get("/private/x", headers=basic("alice", "wonder-land")).status == 200
    htpasswd(root / "users", "alice", "looking-glass", "-5")
    htpasswd(root / "users", "dave", "new-user", "-s")

    def new_file_used() -> bool:
        return client.get("/private/x", headers=basic("alice", "looking-glass")).status == 200

    wait_for(new_file_used, PATIENCE, "the changed user file read again")
    # The old password is no longer remembered: the cache went with the old file.
    assert client.get("/private/x", headers=basic("alice", "wonder-land")).status == 401
    assert client.get("/private/x", headers=basic("dave", "new-user")).text == "dave|Basic|"


def test_a_missing_user_file_is_a_server_error_not_a_refusal(serve: Any) -> None:
    client = serve({"enabled": True, "user_file": "no-such-file"})
    response = client.get("/private/x", headers=basic("alice", "wonder-land"))
    assert response.status == 500
    # Only credentials reach the store: a request without any is challenged as usual.
    assert client.get("/private/x").status == 401


def test_web_toml_enables_basic_for_a_folder(serve: Any, root: Path) -> None:
    htpasswd(root / "private" / "staff.htpasswd", "erin", "folder-pw", "-2")
    (root / "private" / "web.toml").write_text(
        '[basic_authentication]\nenabled = true\nuser_file = "staff.htpasswd"\nrealm = "Staff"\n'
    )
    client = serve({})
    # The user file is relative to the web.toml that names it.
    ok = client.get("/private/x", headers=basic("erin", "folder-pw"))
    assert ok.status == 200 and ok.text == "erin|Basic|"
    refused = client.get("/private/x", headers=basic("alice", "wonder-land"))
    assert refused.status == 401
    assert challenges(refused.headers) == ['Basic realm="Staff", charset="UTF-8"']
    # Outside the folder Basic is off: credentials are ignored, 401s carry no challenge.
    assert client.get("/public/x", headers=basic("erin", "folder-pw")).text == "anonymous"
    assert challenges(client.get("/public/app401").headers) == []


def test_a_lock_keeps_web_toml_from_switching_basic_off(serve: Any, root: Path) -> None:
    (root / "private" / "web.toml").write_text("[basic_authentication]\nenabled = false\n")
    client = serve({"enabled": True, "user_file": "users"}, lock={"basic_authentication": "deny"})
    response = client.get("/private/x", headers=basic("alice", "wonder-land"))
    assert response.status == 500 and response.context.response.substatus == 19
    assert client.get("/public/x", headers=basic("alice", "wonder-land")).text == "alice|Basic|"


def test_per_location_settings(serve: Any, root: Path) -> None:
    htpasswd(root / "admins", "root-ish", "admin-pw")
    client = serve(
        {"enabled": True, "user_file": "users"},
        locations=[{"path": "/private/admin", "basic_authentication": {"user_file": "admins"}}],
    )
    assert client.get("/private/admin/x", headers=basic("root-ish", "admin-pw")).status == 200
    assert client.get("/private/admin/x", headers=basic("alice", "wonder-land")).status == 401
    assert client.get("/private/x", headers=basic("alice", "wonder-land")).status == 200


def test_user_file_relative_to_the_server_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    www = tmp_path / "www"
    (conf / "auth").mkdir(parents=True)
    (www / "private").mkdir(parents=True)
    htpasswd(conf / "auth" / "users", "frank", "server-file-pw", "-m")
    config = conf / "colonnade.toml"
    config.write_text(
        '[server]\nmodules = ["auth.basic", "test.require_user", "test.whoami"]\n'
        '[[sites]]\nname = "t"\nbindings = ["http://127.0.0.1:8080"]\nroot = "../www"\n'
        '[[handlers]]\npath = "*"\nhandler = "test.whoami"\n'
        '[basic_authentication]\nenabled = true\nuser_file = "auth/users"\n'
        '[[locations]]\npath = "/private/inner"\n'
        'basic_authentication = { user_file = "auth/inner" }\n'
    )
    htpasswd(conf / "auth" / "inner", "gina", "location-pw", "-5")
    registry = Registry.standard(BUILTIN)
    for cls in MODULES:
        registry.add(cls.id, cls, origin="test")
    with Client(Engine(load_file(str(config)), registry)) as client:
        response = client.get("/private/x", headers=basic("frank", "server-file-pw"))
        assert response.text == "frank|Basic|"
        inner = client.get("/private/inner/x", headers=basic("gina", "location-pw"))
        assert inner.text == "gina|Basic|"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"enabled": True}, "needs a user store"),
        ({"realm": "Ré"}, "printable ASCII"),
        ({"pam": "../etc/passwd"}, "PAM service name"),
        ({"cache_seconds": -1}, ">= 0"),
    ],
)
def test_bad_settings_are_config_errors(root: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="basic_authentication") as info:
        build_engine(site(root, settings), modules=MODULES)
    assert message in str(info.value)


def test_a_pam_check_that_hangs_is_answered_503_in_time(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def hang(*args: Any) -> pam.PamResult:
        release.wait(PATIENCE)
        return pam.PamResult(False, "x", pam.PAM_AUTH_ERR, "late", 0.0)

    # The real PAM call is replaced by one that hangs: PAM itself cannot be made to.
    monkeypatch.setattr(pam, "authenticate", hang)
    client = serve({"enabled": True, "pam": "login", "pam_timeout": 0.2})
    try:
        response = client.get("/private/x", headers=basic("nobody", "x"))
    finally:
        release.set()
    assert response.status == 503
    assert response.header("retry-after") == "1"


def test_an_unusable_entry_is_a_server_error_and_bad_lines_are_skipped(
    serve: Any, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (root / "users").open("a") as f:
        f.write("# a comment\n\nno-colon-line\neve:{MD5}abcdef\n")
    client = serve()
    with caplog.at_level(logging.INFO):
        response = client.get("/private/x", headers=basic("eve", "secret-eve"))
        assert client.get("/private/x", headers=basic("alice", "wonder-land")).status == 200
    assert response.status == 500
    assert "the entry of 'eve' is unusable: an unknown hash form" in caplog.text
    assert "1 line(s) without 'user:hash' ignored" in caplog.text
    assert "secret-eve" not in caplog.text


def test_too_many_checks_at_once_are_answered_503(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = serve()
    monkeypatch.setattr(basic_module_code, "MAX_CHECKS", 0)
    response = client.get("/private/x", headers=basic("alice", "wonder-land"))
    assert response.status == 503 and response.header("retry-after") == "1"
    assert basic_module(client).verifications == 0


def test_a_512_byte_password_for_a_crypt_user_is_401_1_not_500(serve: Any, root: Path) -> None:
    # Basic lets passwords of up to 512 bytes through; crypt(3) (libxcrypt) takes
    # 511. The longer one is a wrong password, not an "unusable entry" 500.
    htpasswd(root / "users", "carol", "sea-shell", "-5")
    client = serve()
    response = client.get("/private/x", headers=basic("carol", "s" * 512))
    assert (response.status, response.context.response.substatus) == (401, 1)
    assert client.get("/private/x", headers=basic("carol", "sea-shell")).status == 200


def test_a_path_cannot_forge_a_log_line(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    # The path is decoded (%0A is a newline): written raw, the failure line would
    # end there and the rest would read as a line of its own.
    client = serve()
    forged = "colonnade.auth: forms authentication: admin signed in"
    with caplog.at_level(logging.INFO, logger="colonnade.auth"):
        response = client.get(
            "/private/x%0D%0A" + forged.replace(" ", "%20") + "%1b[0m",
            headers=basic("alice", "typo"),
        )
    assert response.status == 401
    lines = caplog.text.splitlines()
    assert not any(line.startswith("colonnade.auth:") for line in lines)
    assert any("logon failed for /private/x\\r\\ncolonnade.auth" in line for line in lines)
    assert "\x1b" not in caplog.text
