"""The text side of a configuration write: what changes in the file, and what is masked."""

from __future__ import annotations

import tomllib
from types import SimpleNamespace
from typing import Any

import pytest

from colonnade.errors import ConfigError
from colonnade.pools.configwrite import HIDDEN, edit, mask, version_of

FILE = b"""\
# Site settings, by hand.
[auth_thing]   # the section's own comment
# the realm users see
realm = "Staff"  # keep this
password = "hunter2"
old_key = 1

[other]
x = [1, 2]  # untouched
"""


def write(values: dict[str, Any] | None, *, delete: bool = False, data: bytes = FILE) -> str:
    new, _ = edit(data, "/srv/www/web.toml", "auth_thing", values, delete)
    return new.decode()


def test_a_changed_value_keeps_its_line_comments_and_the_rest_of_the_file() -> None:
    text = write({"realm": "Everyone", "password": HIDDEN, "new_key": {"a": "b"}})
    assert text == FILE.decode().replace('"Staff"', '"Everyone"').replace(
        "old_key = 1\n", 'new_key = {a = "b"}\n'
    )
    assert tomllib.loads(text)["auth_thing"]["password"] == "hunter2"


def test_the_old_table_is_returned_and_the_version_is_the_bytes_hash() -> None:
    _, before = edit(FILE, "f", "auth_thing", {"realm": "x"}, False)
    assert before == {"realm": "Staff", "password": "hunter2", "old_key": 1}
    assert version_of(FILE) == version_of(bytes(FILE)) != version_of(FILE + b"\n")


def test_a_new_section_and_a_new_file() -> None:
    text = write({"on": True}, data=b"")
    assert tomllib.loads(text) == {"auth_thing": {"on": True}}
    _, before = edit(b"[a]\nb = 1\n", "f", "auth_thing", {"on": True}, False)
    assert before == {}


def test_delete() -> None:
    text = write(None, delete=True)
    assert "auth_thing" not in tomllib.loads(text) and "# untouched" in text
    with pytest.raises(ConfigError, match=r"no \[nothing\] to delete"):
        edit(FILE, "f", "nothing", None, True)


def test_hidden_only_stands_for_a_secret_that_is_set() -> None:
    with pytest.raises(ConfigError, match=r"auth_thing\.token has none here") as caught:
        write({"token": HIDDEN})
    assert caught.value.key == "auth_thing.token"


def test_not_toml_is_a_located_error() -> None:
    with pytest.raises(ConfigError) as caught:
        edit(b"[a]\nb = \n", "/srv/web.toml", "a", {"b": 1}, False)
    assert caught.value.line == 2 and caught.value.file == "/srv/web.toml"


def test_mask_hides_secrets_not_the_files_they_are_in() -> None:
    master: Any = SimpleNamespace(loaded=None)
    shown = mask(
        master,
        "auth_thing",
        {"password": "p", "password_file": "f", "client_secret": "s", "n": {"api_key": "k"}},
    )
    assert shown == {
        "password": HIDDEN,
        "password_file": "f",
        "client_secret": HIDDEN,
        "n": {"api_key": HIDDEN},
    }


SERVER_FILE = b"""\
# The server file, by hand.
[server]
server_header = "x"  # the Server header
[server.limits]
max_request_body = 5  # bytes

[pools.default]
workers = 1  # one

[[sites]]
name = "main"  # the main site
bindings = ["http://127.0.0.1:80"]  # port 80
  [[sites.applications]]
  path = "/"  # the root application
"""


def test_server_file_sections_keep_their_lines_and_sub_tables() -> None:
    new, before = edit(
        SERVER_FILE,
        "colonnade.toml",
        "server",
        {"server_header": "y", "limits": {"max_request_body": 6}},
        False,
    )
    assert before == {"server_header": "x", "limits": {"max_request_body": 5}}
    assert new.decode() == SERVER_FILE.decode().replace('"x"', '"y"').replace("= 5", "= 6")
    new, _ = edit(SERVER_FILE, "colonnade.toml", "pools.default", {"workers": 2}, False)
    assert new.decode() == SERVER_FILE.decode().replace("workers = 1", "workers = 2")
    new, _ = edit(SERVER_FILE, "colonnade.toml", "pools.api", {"workers": 3}, False)
    assert tomllib.loads(new.decode())["pools"] == {
        "default": {"workers": 1},
        "api": {"workers": 3},
    }
    assert "workers = 1  # one" in new.decode()


def test_a_site_is_written_by_its_name() -> None:
    values = {"bindings": ["http://127.0.0.1:81"], "applications": [{"path": "/"}]}
    new, before = edit(SERVER_FILE, "colonnade.toml", "sites.main", values, False)
    assert before["bindings"] == ["http://127.0.0.1:80"]
    # The array of applications kept its entry (and its comment); the name stays.
    assert new.decode() == SERVER_FILE.decode().replace(":80", ":81")
    new, _ = edit(SERVER_FILE, "colonnade.toml", "sites.other", {"bindings": []}, False)
    assert [s["name"] for s in tomllib.loads(new.decode())["sites"]] == ["main", "other"]
    new, _ = edit(SERVER_FILE, "colonnade.toml", "sites.main", None, True)
    assert tomllib.loads(new.decode()).get("sites", []) == []


def test_which_sections_a_write_may_name() -> None:
    from colonnade.pools.configwrite import writable

    for ok in ("server", "pools", "pools.api", "sites.main", "custom_headers"):
        assert writable(ok, True), ok
    for refused in ("lock", "admin", "handlers", "locations", "sites", "pools.a/b"):
        assert not writable(refused, True), refused
    assert not writable("modules", False) and not writable("pools.api", False)
