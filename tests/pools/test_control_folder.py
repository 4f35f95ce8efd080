"""Where a control socket may live: a folder of the master's owner that no other
user may write to; a refusal says what to do."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

from colonnade.errors import ConfigError
from colonnade.pools.control import _private_folder, _private_group


def test_a_missing_folder_is_created_private(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _private_folder(str(folder))
    assert folder.stat().st_mode & 0o777 == 0o700


def test_an_own_folder_others_may_not_write_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    folder.chmod(0o755)
    _private_folder(str(folder))


def test_a_world_writable_folder_is_refused_with_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(ConfigError) as info:
        _private_folder(str(folder))
    message = info.value.message
    assert "others may write in it (mode 0777" in message
    assert "--control ./run/control.sock" in message
    assert info.value.key == "server.control_socket"


def test_group_write_is_fine_for_the_owners_private_group(tmp_path: Path) -> None:
    # Debian and Ubuntu give each user a group of their own and umask 002: the
    # folders of a project are group-writable, and nobody else is in the group.
    folder = tmp_path / "project"
    folder.mkdir()
    folder.chmod(0o775)
    gid = folder.stat().st_gid
    if not _private_group(gid, os.geteuid()):
        pytest.skip(f"group {gid} is not this user's private group here")
    _private_folder(str(folder))


def test_group_write_for_a_shared_group_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a folder another group needs root")
    shared = next((g for g in grp.getgrall() if g.gr_name == "users"), None)
    if shared is None:
        pytest.skip("no group named 'users' on this machine")
    folder = tmp_path / "team"
    folder.mkdir()
    os.chown(folder, 0, shared.gr_gid)
    folder.chmod(0o775)
    with pytest.raises(ConfigError, match="others may write in it"):
        _private_folder(str(folder))
