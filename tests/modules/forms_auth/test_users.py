"""The login page's user store: htpasswd files written by the real htpasswd tool."""

from __future__ import annotations

import logging
import subprocess

import bcrypt
import pytest

from colonnade.modules.forms_auth.users import parse_users


def htpasswd(flag: str, name: str, password: str) -> str:
    done = subprocess.run(
        ["htpasswd", "-n", "-b", flag, name, password], check=True, capture_output=True, text=True
    )
    return done.stdout.strip() + "\n"


def test_bcrypt_and_sha_lines_verify() -> None:
    users = parse_users(
        "# staff\n\n"
        + htpasswd("-B", "alice", "correct horse")
        + htpasswd("-s", "bob", "battery staple")
        + htpasswd("-B", "carol", "pässwörd")
    )
    assert len(users) == 3
    assert users.verify("alice", "correct horse")
    assert not users.verify("alice", "correct horse ")
    assert users.verify("bob", "battery staple")
    assert not users.verify("bob", "battery")
    assert users.verify("carol", "pässwörd")
    assert not users.verify("Alice", "correct horse")  # names are exact
    assert not users.verify("nobody", "correct horse")


def test_long_passwords_count_72_bytes_as_htpasswd_does() -> None:
    users = parse_users(htpasswd("-B", "alice", "a" * 100))
    assert users.verify("alice", "a" * 100)
    assert users.verify("alice", "a" * 72 + "b" * 28)  # bcrypt reads 72 bytes
    assert not users.verify("alice", "a" * 71)


def test_other_formats_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="colonnade.auth"):
        users = parse_users(htpasswd("-m", "dave", "pw") + htpasswd("-B", "alice", "pw"))
    assert len(users) == 1
    assert not users.verify("dave", "pw")
    assert "'dave'" in caplog.text and "htpasswd -B" in caplog.text


def test_malformed_lines_name_their_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_users(htpasswd("-B", "alice", "pw") + "no colon here\n")


def test_a_damaged_hash_refuses(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="colonnade.auth"):
        users = parse_users("alice:$2y$05$broken\n")
        assert not users.verify("alice", "pw")
    assert "damaged" in caplog.text


def test_an_unknown_name_costs_a_real_check(monkeypatch: pytest.MonkeyPatch) -> None:
    users = parse_users(htpasswd("-s", "bob", "pw") + htpasswd("-B", "alice", "pw"))
    checked: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr("colonnade.modules.forms_auth.users.bcrypt.checkpw", counting)
    assert not users.verify("mallory", "pw")
    # Checked against alice's bcrypt hash (the same cost), the answer dropped.
    assert len(checked) == 1 and checked[0].startswith(b"$2")
