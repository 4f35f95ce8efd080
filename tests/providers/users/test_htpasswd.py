"""htpasswd files as a user store: parsing, change detection, unknown names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from colonnade.providers.users import Logon, UserStoreError, htpasswd
from colonnade.providers.users.htpasswd import RECHECK, HtpasswdFile, parse


def test_parse_follows_apache() -> None:
    data = b"# comment\n\nalice:{SHA}x:extra:fields\r\nbob:pw\nalice:second\n:nouser\nnocolon\n"
    assert parse(data, "f") == {b"alice": b"{SHA}x", b"bob": b"pw"}


def test_check_answers_logons_and_none_for_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"alice:secret\n")
    store = HtpasswdFile(str(path))
    assert store.check("alice", "secret") == Logon(True, "alice")
    assert store.check("alice", "Secret") == Logon(False, "alice", reason="wrong password")
    assert store.check("carol", "secret") is None


def test_a_change_is_seen_at_the_next_look_and_read_on_the_next_check(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"alice:one\n")
    store = HtpasswdFile(str(path))
    assert store.changed(0.0)  # the first look
    assert store.check("alice", "one") is not None and store.check("alice", "one").ok
    path.write_bytes(b"alice:two-and-longer\n")
    os.utime(path, ns=(1, 1))  # another mtime whatever the clock's resolution
    assert not store.changed(RECHECK / 2)  # too soon: no stat at all
    assert store.check("alice", "one") == Logon(True, "alice")  # still the old file
    assert store.changed(RECHECK)
    assert store.check("alice", "two-and-longer") == Logon(True, "alice")


def test_a_missing_or_odd_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(UserStoreError, match="No such file"):
        HtpasswdFile(str(tmp_path / "missing")).check("a", "b")
    with pytest.raises(UserStoreError, match="Is a directory"):
        HtpasswdFile(str(tmp_path)).check("a", "b")
    os.mkfifo(tmp_path / "fifo")  # no writer: a plain open() would wait forever
    with pytest.raises(UserStoreError, match="not a regular file"):
        HtpasswdFile(str(tmp_path / "fifo")).check("a", "b")


def test_an_unusable_entry_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"eve:{MD5}abc\n")
    with pytest.raises(UserStoreError, match="the entry of 'eve' is unusable"):
        HtpasswdFile(str(path)).check("eve", "x")


@pytest.mark.parametrize("equalize", [True, False])
def test_an_unknown_name_costs_a_check_unless_another_store_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, equalize: bool
) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"alice:$apr1$salt$abcdefghijklmnopqrstuv\n")
    checked: list[bytes] = []
    real = htpasswd.verify

    def counting(stored: bytes, password: bytes) -> bool:
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(htpasswd, "verify", counting)
    assert HtpasswdFile(str(path), equalize=equalize).check("mallory", "guess") is None
    assert checked == ([b"$apr1$salt$abcdefghijklmnopqrstuv"] if equalize else [])
