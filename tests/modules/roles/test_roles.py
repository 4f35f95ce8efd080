"""Roles from an Apache-format group file: parsing, the roles reaching URL authorization,
re-reading a changed file (no more often than check_interval), and keeping the
previous content when the file goes bad."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.errors import ConfigError
from colonnade.modules.roles import groups as groups_module
from colonnade.modules.roles.groups import GroupFile, parse_groups
from colonnade.testing import Client, build_engine
from tests.support.header_auth import HeaderAuth, clients, credentials

GROUPS = """\
# Apache AuthGroupFile format
admins: bob carol
staff: alice bob

staff: dave
"""


def test_parse_groups() -> None:
    parsed = parse_groups(GROUPS + "\tops:\tcarol  eve \nempty:\n", "g")
    assert parsed == {
        "bob": {"admins", "staff"},
        "carol": {"admins", "ops"},
        "alice": {"staff"},
        "dave": {"staff"},
        "eve": {"ops"},
    }
    assert parsed["bob"] is not parsed["carol"]
    shared = parse_groups("a: x y\nb: x y\n", "g")
    assert shared["x"] is shared["y"]  # users in the same groups share one set


@pytest.mark.parametrize("line", ["admins bob", ": bob", "two words: bob"])
def test_a_bad_line_is_an_error_naming_it(line: str) -> None:
    with pytest.raises(ValueError, match=r"^groups:3: expected 'group: user1 user2 \.\.\.'"):
        parse_groups(f"a: x\n# c\n{line}\n", "groups")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    for folder in ("admin", "staff", "open"):
        (root / folder).mkdir(parents=True)
        (root / folder / "a.txt").write_text(f"{folder} a")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "groups").write_text(GROUPS)
    return root


def config(site: Path, **roles: Any) -> dict[str, Any]:
    return {
        "server": {"modules": ["test.header_auth", "auth.roles", "authz.url", "handler.static"]},
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(site)}],
        "roles": {"group_file": "../private/groups", **roles},
        "locations": [
            {
                "path": "/admin",
                "url_authorization": {"rules": [{"access": "allow", "roles": ["admins"]}]},
            },
            {
                "path": "/staff",
                "url_authorization": {"rules": [{"access": "allow", "roles": ["staff"]}]},
            },
        ],
    }


@pytest.fixture
def serve(site: Path) -> Iterator[Any]:
    with clients(HeaderAuth) as start:
        yield lambda cfg=None, **roles: start(cfg or config(site, **roles))


def test_the_groups_become_roles_for_url_authorization(serve: Any) -> None:
    client = serve()
    bob = client.get("/admin/a.txt", headers=credentials("bob"))
    assert bob.text == "admin a"
    assert bob.context.user.roles == {"admins", "staff"}
    assert client.get("/admin/a.txt", headers=credentials("alice")).status == 403
    assert client.get("/staff/a.txt", headers=credentials("alice")).status == 200
    assert client.get("/staff/a.txt", headers=credentials("dave")).status == 200
    # The roles a scheme gave are kept beside the file's.
    both = client.get("/admin/a.txt", headers=credentials("alice", "admins"))
    assert both.status == 200 and both.context.user.roles == {"admins", "staff"}
    nobody = client.get("/open/a.txt", headers=credentials("zoe"))
    assert nobody.status == 200 and nobody.context.user.roles == frozenset()
    assert client.get("/admin/a.txt").status == 401


def test_per_location_group_files(serve: Any, site: Path) -> None:
    (site / ".groups").write_text("admins: alice\n")
    cfg = config(site)
    cfg["locations"].append({"path": "/admin", "roles": {"group_file": ".groups"}})
    client = serve(cfg)
    assert client.get("/admin/a.txt", headers=credentials("alice")).status == 200
    assert client.get("/admin/a.txt", headers=credentials("bob")).status == 403
    assert client.get("/staff/a.txt", headers=credentials("bob")).status == 200


def test_a_web_toml_names_its_own_group_file(serve: Any, site: Path) -> None:
    # Relative to the application's root folder, whichever folder's web.toml says so.
    (site / ".admins").write_text("admins: alice\n")
    (site / "admin" / "web.toml").write_text('[roles]\ngroup_file = ".admins"\n')
    client = serve()
    assert client.get("/admin/a.txt", headers=credentials("alice")).status == 200
    assert client.get("/admin/a.txt", headers=credentials("bob")).status == 403
    # Lockable like any section: the folder is then refused, not served with
    # the roles the web.toml asked for.
    cfg = config(site)
    cfg["lock"] = {"roles": "deny"}
    locked = serve(cfg).get("/admin/a.txt", headers=credentials("alice"))
    assert (locked.status, locked.context.response.substatus) == (500, 19)


def test_a_missing_or_bad_file_refuses_the_start(site: Path) -> None:
    for name, content in (("none", None), ("bad", "admins bob\n"), ("bin", b"a: \xff\n")):
        path = site.parent / "private" / name
        if isinstance(content, str):
            path.write_text(content)
        elif content is not None:
            path.write_bytes(content)
        engine = build_engine(config(site, group_file=str(path)), modules=[HeaderAuth])
        with pytest.raises(ConfigError, match=r"roles\.group_file") as info:
            Client(engine).__enter__()
        assert name in str(info.value)


class Clock:
    """The monotonic clock the group file reads, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(groups_module.time, "monotonic", fake)
    return fake


def rewrite(path: Path, text: str) -> None:
    """Change the file so that its stamp changes even within one clock tick."""
    before = path.stat()
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def test_a_changed_file_is_read_again_after_the_interval(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "groups"
    path.write_text("admins: bob\n")
    groups = GroupFile(str(path), 5.0)
    assert groups.roles_of("bob") == {"admins"}
    rewrite(path, "admins: alice\n")
    clock.now += 4.9
    assert groups.roles_of("bob") == {"admins"}  # not looked at yet
    assert groups.roles_of("alice") == frozenset()
    clock.now += 0.2
    assert groups.roles_of("bob") == frozenset()
    assert groups.roles_of("alice") == {"admins"}


def test_stat_is_bounded_by_the_interval(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "groups"
    path.write_text("admins: bob\n")
    groups = GroupFile(str(path), 2.0)
    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(p: Any, *a: Any, **kw: Any) -> os.stat_result:
        stats.append(str(p))
        return real_stat(p, *a, **kw)

    monkeypatch.setattr(groups_module.os, "stat", counting_stat)
    for _ in range(100):
        groups.roles_of("bob")
    assert stats == []
    clock.now += 2.0
    for _ in range(100):
        groups.roles_of("bob")
    assert stats == [str(path)]


def test_through_the_pipeline_the_file_is_re_read(serve: Any, site: Path) -> None:
    client = serve(check_interval=0)
    assert client.get("/admin/a.txt", headers=credentials("alice")).status == 403
    rewrite(site.parent / "private" / "groups", "admins: alice\n")
    assert client.get("/admin/a.txt", headers=credentials("alice")).status == 200
    assert client.get("/admin/a.txt", headers=credentials("bob")).status == 403


def test_a_broken_or_vanished_file_keeps_the_previous_content(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "groups"
    path.write_text("admins: bob\n")
    groups = GroupFile(str(path), 1.0)
    rewrite(path, "admins: bob\nhalf-written line")
    with caplog.at_level(logging.WARNING, logger="colonnade.auth"):
        for _ in range(3):
            clock.now += 1.0
            assert groups.roles_of("bob") == {"admins"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "expected 'group: user1 user2 ...'" in warnings[0]
    assert "previous content stays in use" in warnings[0]
    path.unlink()
    clock.now += 1.0
    assert groups.roles_of("bob") == {"admins"}
    path.write_text("admins: carol\n")
    clock.now += 1.0
    assert groups.roles_of("bob") == frozenset() and groups.roles_of("carol") == {"admins"}


def test_a_too_large_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(groups_module, "MAX_GROUP_FILE", 64)
    path = tmp_path / "groups"
    path.write_text("admins: " + "u " * 40 + "\n")
    with pytest.raises(ConfigError, match="larger than 64 bytes"):
        GroupFile(str(path), 1.0)
