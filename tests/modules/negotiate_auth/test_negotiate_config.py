"""windows_authentication: decoding, start-up errors, web.toml and [lock], and how
the scheme meets the rest of the server (custom error pages, the access log)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from colonnade.errors import ConfigError
from colonnade.testing import build_engine
from tests.e2e.conftest import LiveServer
from tests.support.wait import PATIENCE, wait_for

from .conftest import HOST, REALM, USER, NoAnonymous
from .kdc import Realm


def config(tmp_path: Path, modules: list[str] | None = None, **section: Any) -> dict[str, Any]:
    (tmp_path / "www").mkdir(exist_ok=True)
    (tmp_path / "www" / "hello.txt").write_text("hello")
    return {
        "server": {"modules": modules or ["auth.negotiate", "handler.static"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "windows_authentication": section,
    }


def start_error(tmp_path: Path, **section: Any) -> ConfigError:
    engine = build_engine(config(tmp_path, **section), base_dir=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        engine.start()
    return info.value


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ({"keytab": "http.keytab"}, "keytab", "not an absolute path"),
        ({"service_principal": "HTTP/"}, "service_principal", "is not a service name"),
        ({"service_principal": "HTTP@bad host"}, "service_principal", "is not a service name"),
        ({"realms": ["A.TEST", "A.TEST"]}, "realms", "listed twice"),
        ({"realms": ["user@A.TEST"]}, "realms", "Kerberos realm"),
        ({"replay_cache": " dfl:"}, "replay_cache", "without spaces"),
        # Stripped from any realm the KDC trusts, a partner's alice would be ours.
        ({"strip_realm": True}, "strip_realm", "list the one realm"),
        ({"strip_realm": True, "realms": ["A.TEST", "B.TEST"]}, "strip_realm", "the one realm"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    tmp_path: Path, section: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_engine(config(tmp_path, enabled=True, **section), base_dir=str(tmp_path))
    error = info.value
    # The key in error.key, or (a rule across fields) first in the message.
    assert f"{error.key}.{error.message}".startswith(f"windows_authentication.{key}")
    assert words in error.message


def test_without_gssapi_the_module_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the package were absent: an import of it fails.
    monkeypatch.setitem(sys.modules, "gssapi", None)
    monkeypatch.delitem(sys.modules, "colonnade.modules.negotiate_auth.gss", raising=False)
    error = start_error(tmp_path, enabled=True)
    assert error.key == "windows_authentication"
    assert "pip install 'colonnade[kerberos]'" in error.message
    assert "libkrb5-dev" in error.message
    # Installed but enabled nowhere: nothing needs the library, the server runs.
    engine = build_engine(config(tmp_path, enabled=False), base_dir=str(tmp_path))
    engine.start()
    engine.close()


def test_a_missing_keytab_fails_at_start_up(tmp_path: Path, realm: Realm) -> None:
    error = start_error(tmp_path, enabled=True, keytab=str(tmp_path / "none.keytab"))
    assert error.key == "windows_authentication.keytab"
    assert "no such file" in error.message
    assert error.file == "<test>"


def test_a_keytab_without_the_service_key_fails_at_start_up(tmp_path: Path, realm: Realm) -> None:
    error = start_error(
        tmp_path, enabled=True, keytab=str(realm.keytab), service_principal="HTTP@elsewhere.test"
    )
    assert error.key == "windows_authentication.service_principal"
    assert "HTTP@elsewhere.test" in error.message
    assert str(realm.keytab) in error.message
    assert "No key table entry found matching HTTP/elsewhere.test@" in error.message


def test_a_bad_replay_cache_fails_at_start_up(tmp_path: Path, realm: Realm) -> None:
    error = start_error(
        tmp_path, enabled=True, keytab=str(realm.keytab), replay_cache="no-such-type:x"
    )
    assert error.key == "windows_authentication.replay_cache"
    assert "'no-such-type:x' cannot be used" in error.message
    assert error.message.isprintable()
    error = start_error(
        tmp_path, enabled=True, keytab=str(realm.keytab), replay_cache="file2:/nonexistent/rc"
    )
    assert error.key == "windows_authentication.replay_cache"
    assert "/nonexistent is missing or not writable" in error.message


def test_the_replay_cache_file_is_checked_for_the_pools_user(tmp_path: Path) -> None:
    from colonnade.modules.negotiate_auth.config import WindowsAuthenticationSection as S

    assert S(enabled=True, replay_cache="file2:/var/lib/c/rc").written_paths() == ("/var/lib/c/rc",)
    assert S(enabled=True, replay_cache="dfl:").written_paths() == ()
    assert S(enabled=False, replay_cache="file2:/var/lib/c/rc").written_paths() == ()


# -- web.toml and [lock] -------------------------------------------------------------

WSGI = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [(environ.get("REMOTE_USER") or "-").encode()]
"""


def web_toml_site(tmp_path: Path, realm: Realm, lock: str | None) -> dict[str, Any]:
    app = tmp_path / "app"
    app.mkdir()
    (app / "negotiate_remote_user.py").write_text(WSGI)  # a module name of its own
    (app / "web.toml").write_text(
        f'[windows_authentication]\nenabled = true\nkeytab = "{realm.keytab}"\n'
        f'replay_cache = "file2:{tmp_path}/rcache"\n'
    )
    site = config(tmp_path, modules=["auth.negotiate", "handler.static"])
    del site["windows_authentication"]
    site["sites"][0]["applications"] = [
        {"path": "/app", "root": "app", "app": "negotiate_remote_user:app", "app_dir": "app"}
    ]
    if lock is not None:
        site["lock"] = {"windows_authentication": lock}
    return site


def get(port: int, path: str, authorization: str | None = None) -> httpx.Response:
    headers = {"Host": f"{HOST}:{port}"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=PATIENCE)


def test_a_web_toml_enables_it_where_the_lock_allows(tmp_path: Path, realm: Realm) -> None:
    site = web_toml_site(tmp_path, realm, lock="allow")
    with LiveServer(site, tmp_path).start() as server:
        app = get(server.port, "/app/", realm.negotiate())
        assert (app.status_code, app.text) == (200, f"{USER}@{REALM}")
        # Outside the application's web.toml the scheme is off: the token is ignored.
        static = get(server.port, "/hello.txt", realm.negotiate())
        assert static.status_code == 200
        assert "www-authenticate" not in static.headers


def test_a_locked_section_in_a_web_toml_is_refused(tmp_path: Path, realm: Realm) -> None:
    site = web_toml_site(tmp_path, realm, lock=None)  # locked by default, as in IIS
    with LiveServer(site, tmp_path).start() as server:
        assert get(server.port, "/app/", realm.negotiate()).status_code == 500  # 500.19
        assert get(server.port, "/hello.txt").status_code == 200  # confined to its folder


# -- the rest of the server ----------------------------------------------------------


def test_a_custom_401_page_keeps_the_challenge(tmp_path: Path, realm: Realm) -> None:
    site = config(
        tmp_path,
        modules=["auth.negotiate", "tests.no_anonymous", "http.custom_errors", "handler.static"],
        enabled=True,
        keytab=str(realm.keytab),
    )
    site["custom_errors"] = {
        "error_mode": "custom",
        "errors": [{"status": 401, "page": "<p>Sign in with your domain account.</p>"}],
    }
    with LiveServer(site, tmp_path, modules=[NoAnonymous]).start() as server:
        response = get(server.port, "/hello.txt")
        assert response.status_code == 401
        assert response.text == "<p>Sign in with your domain account.</p>"
        assert response.headers.get_list("www-authenticate") == ["Negotiate"]


def test_the_access_log_names_the_user_and_failures_keep_the_reason(
    tmp_path: Path, realm: Realm, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "access.log"
    site = config(
        tmp_path,
        modules=["auth.negotiate", "log.http", "handler.static"],
        enabled=True,
        keytab=str(realm.keytab),
        replay_cache=f"file2:{tmp_path}/rcache",
    )
    site["http_logging"] = {"target": str(log), "buffer_size": 0}
    token = realm.negotiate()
    with LiveServer(site, tmp_path).start() as server:
        assert get(server.port, "/hello.txt", token).status_code == 200
        assert get(server.port, "/hello.txt", token).status_code == 401  # a replay
        lines = wait_for(
            lambda: (
                [line for line in log.read_text().splitlines() if "/hello.txt" in line][1:]
                and log.read_text().splitlines()
            ),
            PATIENCE,
            "two access log lines",
        )
    mine = [line for line in lines if "/hello.txt" in line]
    assert f" {USER}@{REALM} " in mine[0]
    assert " 401 1 " in mine[1]
    refusals = [r.getMessage() for r in caplog.records if r.name == "colonnade.auth"]
    assert any("Negotiate logon failed" in m and "replay" in m for m in refusals)
    assert all(token.split()[1][:40] not in m for m in refusals)  # never the token


def test_a_location_enables_it_for_its_subtree_only(tmp_path: Path, realm: Realm) -> None:
    site = config(tmp_path)
    del site["windows_authentication"]
    (tmp_path / "www" / "private").mkdir()
    (tmp_path / "www" / "private" / "plan.txt").write_text("plan")
    site["locations"] = [
        {
            "path": "/private",
            "windows_authentication": {
                "enabled": True,
                "keytab": str(realm.keytab),
                "replay_cache": f"file2:{tmp_path}/rcache",
            },
        }
    ]
    with LiveServer(site, tmp_path).start() as server:
        bad = "Negotiate AAAA"
        refused = get(server.port, "/private/plan.txt", bad)
        assert refused.status_code == 401
        assert refused.headers.get_list("www-authenticate") == ["Negotiate"]
        assert get(server.port, "/hello.txt", bad).status_code == 200  # not Negotiate's here
        good = get(server.port, "/private/plan.txt", realm.negotiate())
        assert (good.status_code, good.text) == (200, "plan")
        assert good.headers["www-authenticate"].startswith("Negotiate ")
