"""The confinement walk (``core.confine.lstat_inside``) that script and file lookups use."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from colonnade.core.app import root_prefixes
from colonnade.core.confine import FileChecks, lstat_inside


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


# -- FileChecks: the walk's answers kept a short while ---------------------------------------


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_kept_answer_is_used_until_it_expires_then_a_change_is_seen(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    clock = Clock()
    checks = FileChecks(validity=1.0, clock=clock)
    script = root / "dir" / "x.php"
    first = checks.lstat_inside(prefixes, str(script))
    assert first is not None
    script.unlink()
    script.mkdir()  # replaced: a folder now
    clock.now += 0.5
    assert checks.lstat_inside(prefixes, str(script)) is first  # within the validity
    clock.now += 0.6
    again = checks.lstat_inside(prefixes, str(script))
    assert again is not None and stat.S_ISDIR(again.st_mode)  # noticed after it


def test_a_deleted_file_is_noticed_once_its_answer_expired(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    clock = Clock()
    checks = FileChecks(validity=2.0, clock=clock)
    script = root / "dir" / "x.php"
    assert checks.lstat_inside(prefixes, str(script)) is not None
    script.unlink()
    clock.now += 2.0
    with pytest.raises(FileNotFoundError):
        checks.lstat_inside(prefixes, str(script))
    assert len(checks) == 0  # the expired answer went with it


def test_a_missing_file_is_never_kept_so_a_new_one_is_found_at_once(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    checks = FileChecks(validity=60.0, clock=Clock())
    new = root / "dir" / "new.php"
    with pytest.raises(FileNotFoundError):
        checks.lstat_inside(prefixes, str(new))
    new.write_text("<?php")
    assert checks.lstat_inside(prefixes, str(new)) is not None


def test_a_file_replaced_by_a_symlink_out_is_refused_once_its_answer_expired(
    root: Path, tmp_path: Path
) -> None:
    prefixes = root_prefixes([str(root)])
    clock = Clock()
    checks = FileChecks(validity=1.0, clock=clock)
    script = root / "dir" / "x.php"
    assert checks.lstat_inside(prefixes, str(script)) is not None
    script.unlink()
    script.symlink_to(tmp_path / "outside.php")
    clock.now += 1.0
    assert checks.lstat_inside(prefixes, str(script)) is None  # the caller resolves it


def test_a_file_used_as_a_folder_fails_every_time_with_the_cache_warm(root: Path) -> None:
    # /uploads/evil.jpg/x.php: never kept, never a script, however warm the cache.
    prefixes = root_prefixes([str(root)])
    checks = FileChecks(validity=60.0, clock=Clock())
    assert checks.lstat_inside(prefixes, f"{root}/dir/x.php") is not None
    for _ in range(3):
        with pytest.raises(NotADirectoryError):
            checks.lstat_inside(prefixes, f"{root}/dir/x.php/y.php")
    assert len(checks) == 1


def test_answers_are_kept_per_root(root: Path) -> None:
    # The same path, asked from other roots (another application): its own answer.
    checks = FileChecks(validity=60.0, clock=Clock())
    path = f"{root}/dir/x.php"
    assert checks.lstat_inside(root_prefixes([str(root)]), path) is not None
    # Outside these roots: the walk cannot vouch for it, whatever was kept.
    assert checks.lstat_inside(root_prefixes([str(root / "other")]), path) is None
    assert checks.lstat_inside(root_prefixes([str(root)]), path) is not None


def test_the_cache_holds_at_most_its_size(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    clock = Clock()
    checks = FileChecks(validity=60.0, size=8, clock=clock)
    for i in range(20):
        (root / f"f{i}.txt").write_text("x")
        checks.lstat_inside(prefixes, f"{root}/f{i}.txt")
        assert len(checks) <= 8
    # The newest are the ones kept: the oldest went first.
    (root / "f19.txt").unlink()
    assert checks.lstat_inside(prefixes, f"{root}/f19.txt") is not None
    (root / "f0.txt").unlink()
    with pytest.raises(FileNotFoundError):
        checks.lstat_inside(prefixes, f"{root}/f0.txt")


def test_expired_answers_make_room_before_live_ones(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    clock = Clock()
    checks = FileChecks(validity=1.0, size=4, clock=clock)
    for i in range(3):
        (root / f"old{i}.txt").write_text("x")
        checks.lstat_inside(prefixes, f"{root}/old{i}.txt")
    clock.now += 0.5
    (root / "live.txt").write_text("x")
    checks.lstat_inside(prefixes, f"{root}/live.txt")
    clock.now += 0.6  # the three old ones expired, live.txt did not
    (root / "new.txt").write_text("x")
    checks.lstat_inside(prefixes, f"{root}/new.txt")
    assert len(checks) == 2
    (root / "live.txt").unlink()
    assert checks.lstat_inside(prefixes, f"{root}/live.txt") is not None  # still kept


def test_validity_zero_keeps_nothing(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    checks = FileChecks(validity=0.0, clock=Clock())
    script = root / "dir" / "x.php"
    assert checks.lstat_inside(prefixes, str(script)) is not None
    assert len(checks) == 0
    script.unlink()
    with pytest.raises(FileNotFoundError):
        checks.lstat_inside(prefixes, str(script))


def test_configure_forgets_what_was_kept(root: Path) -> None:
    prefixes = root_prefixes([str(root)])
    checks = FileChecks(validity=60.0, clock=Clock())
    checks.lstat_inside(prefixes, f"{root}/dir/x.php")
    checks.configure(2.0)
    assert len(checks) == 0 and checks.validity == 2.0
