"""The confinement walk (``core.confine.lstat_inside``) that script and file lookups use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from colonnade.core.app import root_prefixes
from colonnade.core.confine import lstat_inside


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "dir").mkdir(parents=True)
    (site / "dir" / "x.php").write_text("<?php")
    (tmp_path / "outside.php").write_text("<?php")
    (site / "out.php").symlink_to(tmp_path / "outside.php")
    (site / "linked").symlink_to(site / "dir")
    return site


def test_a_plain_path_below_the_root_is_vouched_for(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    st = lstat_inside(prefixes, f"{root}/dir/x.php")
    assert st is not None and st.st_ino == os.stat(root / "dir" / "x.php").st_ino
    folder = lstat_inside(prefixes, f"{root}/dir/")
    assert folder is not None and folder.st_ino == os.stat(root / "dir").st_ino
    itself = lstat_inside(prefixes, f"{root}/")
    assert itself is not None and itself.st_ino == os.stat(root).st_ino


def test_what_the_walk_cannot_vouch_for_is_left_to_realpath(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    assert lstat_inside(prefixes, f"{root}/out.php") is None  # a symlink, even leading out
    assert lstat_inside(prefixes, f"{root}/linked/x.php") is None  # a symlinked folder
    assert lstat_inside(prefixes, f"{root}/dir/../out.php") is None  # an odd segment
    assert lstat_inside(prefixes, f"{root}/dir//x.php") is None
    assert lstat_inside(prefixes, str(root.parent / "outside.php")) is None  # not below a root


def test_missing_paths_and_files_used_as_folders_raise(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    with pytest.raises(FileNotFoundError):
        lstat_inside(prefixes, f"{root}/dir/missing.php")
    with pytest.raises(NotADirectoryError):
        lstat_inside(prefixes, f"{root}/dir/x.php/more.php")  # /evil.jpg/x.php
    with pytest.raises(NotADirectoryError):
        lstat_inside(prefixes, f"{root}/dir/x.php/")
    with pytest.raises(ValueError):
        lstat_inside(prefixes, f"{root}/dir/x\x00.php")
