"""The forms ticket: sealing and opening, tampering, expiry, the key ring and its
rotation, and key files read again when they change."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
from pathlib import Path

import pytest

from colonnade.errors import ConfigError
from colonnade.modules.forms_auth.files import RECHECK, WatchedFile
from colonnade.modules.forms_auth.ticket import (
    MAX_COOKIE,
    BadTicketError,
    KeyRing,
    Ticket,
    key_source,
    new_ticket,
    parse_keys,
)

NAME = ".COLONNADEAUTH"


def key() -> bytes:
    return secrets.token_bytes(32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_roundtrip_keeps_every_field() -> None:
    ring = KeyRing([key()])
    ticket = new_ticket("alice", ["staff", "admins"], 1800, persistent=True)
    opened = ring.open(ring.seal(ticket, NAME).encode(), NAME, time.time())
    assert opened == ticket
    assert opened.roles == ("staff", "admins")
    assert opened.persistent
    assert opened.expires - opened.issued == 1800


def test_seal_is_randomised_and_hides_the_name() -> None:
    ring = KeyRing([key()])
    ticket = new_ticket("alice-the-user", [], 60)
    one, two = ring.seal(ticket, NAME), ring.seal(ticket, NAME)
    assert one != two  # a fresh nonce each time
    for value in (one, two):
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        assert b"alice" not in raw  # encrypted, not just signed


@pytest.mark.parametrize("position", [0, 1, 5, 17, 30, -1])
def test_every_flipped_bit_is_refused(position: int) -> None:
    ring = KeyRing([key()])
    value = ring.seal(new_ticket("alice", [], 60), NAME)
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[position] ^= 0x01
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=")
    with pytest.raises(BadTicketError):
        ring.open(tampered, NAME, time.time())


@pytest.mark.parametrize(
    "garbage",
    [b"", b"x", b"!!!!", b"%%%===", b"A" * 40, b"\xff\xfe", b"A" * (MAX_COOKIE + 1)],
)
def test_garbage_is_refused_with_a_reason(garbage: bytes) -> None:
    ring = KeyRing([key()])
    with pytest.raises(BadTicketError) as caught:
        ring.open(garbage, NAME, time.time())
    assert str(caught.value)


def test_another_cookie_name_does_not_open_it() -> None:
    ring = KeyRing([key()])
    value = ring.seal(new_ticket("alice", [], 60), NAME)
    with pytest.raises(BadTicketError, match="tampered"):
        ring.open(value.encode(), ".OTHERAPP", time.time())


def test_expiry_and_future_tickets() -> None:
    ring = KeyRing([key()])
    now = int(time.time())
    value = ring.seal(Ticket("alice", (), now - 100, now + 60), NAME).encode()
    assert ring.open(value, NAME, now + 59).name == "alice"
    with pytest.raises(BadTicketError, match="expired"):
        ring.open(value, NAME, now + 60)
    future = ring.seal(Ticket("alice", (), now + 3600, now + 7200), NAME).encode()
    with pytest.raises(BadTicketError, match="future"):
        ring.open(future, NAME, now)


def test_sliding_renewal_past_half_life() -> None:
    ticket = Ticket("alice", ("r",), 1000, 1000 + 1800)
    assert not ticket.renewable(1000 + 899)
    assert ticket.renewable(1000 + 900)  # time left == time elapsed, as ASP.NET
    renewed = ticket.renewed(2000)
    assert (renewed.issued, renewed.expires) == (2000, 2000 + 1800)
    assert (renewed.name, renewed.roles) == ("alice", ("r",))


def test_rotation_old_tickets_open_new_ones_use_the_new_key() -> None:
    old, new = key(), key()
    before = KeyRing([old])
    issued_before = before.seal(new_ticket("alice", [], 60), NAME).encode()
    rotated = KeyRing([new, old])
    assert rotated.open(issued_before, NAME, time.time()).name == "alice"
    issued_after = rotated.seal(new_ticket("bob", [], 60), NAME).encode()
    assert KeyRing([new]).open(issued_after, NAME, time.time()).name == "bob"
    with pytest.raises(BadTicketError, match="not in the ring"):
        before.open(issued_after, NAME, time.time())
    with pytest.raises(BadTicketError, match="not in the ring"):
        KeyRing([new]).open(issued_before, NAME, time.time())


def test_ring_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="empty"):
        KeyRing([])
    with pytest.raises(ValueError, match="16 bytes"):
        KeyRing([b"k" * 16])
    same = key()
    with pytest.raises(ValueError, match="twice"):
        KeyRing([same, same])


def test_names_and_roles_are_bounded() -> None:
    with pytest.raises(ValueError):
        new_ticket("", [], 60)
    with pytest.raises(ValueError):
        new_ticket("a\r\nSet-Cookie: x", [], 60)
    with pytest.raises(ValueError):
        new_ticket("a" * 257, [], 60)
    with pytest.raises(ValueError):
        new_ticket("a", ["r"] * 65, 60)
    ring = KeyRing([key()])
    with pytest.raises(ValueError, match="over"):
        ring.seal(new_ticket("a" * 256, ["r" * 256] * 64, 60), NAME)


def test_parse_keys_never_quotes_a_key() -> None:
    good = key()
    text = f"# current\n{b64(good)}\n\n{base64.urlsafe_b64encode(key()).decode().rstrip('=')}\n"
    assert parse_keys(text, "f: ", lines=True)[0] == good
    secret_looking = "c2VjcmV0LWJ1dC10b28tc2hvcnQ="
    with pytest.raises(ValueError) as caught:
        parse_keys(f"{b64(good)}\n{secret_looking}\n", "f: ", lines=True)
    assert "line 2" in str(caught.value)
    assert secret_looking not in str(caught.value)
    assert b64(good) not in str(caught.value)
    with pytest.raises(ValueError, match="no key"):
        parse_keys("# nothing\n", "f: ", lines=True)
    assert len(parse_keys(f" {b64(key())}, {b64(key())} ", "E: ", lines=False)) == 2


def test_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = key(), key()
    monkeypatch.setenv("FORMS_TEST_KEYS", f"{b64(first)} {b64(second)}")
    ring = key_source(env="FORMS_TEST_KEYS")
    assert isinstance(ring, KeyRing) and len(ring) == 2
    assert KeyRing([first]).open(
        ring.seal(new_ticket("a", [], 60), NAME).encode(), NAME, time.time()
    )
    monkeypatch.setenv("FORMS_TEST_KEYS", "not-a-key")
    with pytest.raises(ConfigError) as caught:
        key_source(env="FORMS_TEST_KEYS")
    assert caught.value.key == "forms_authentication.key_env"
    assert "not-a-key" not in str(caught.value)
    monkeypatch.delenv("FORMS_TEST_KEYS")
    with pytest.raises(ConfigError, match="not set"):
        key_source(env="FORMS_TEST_KEYS")
    with pytest.raises(ConfigError, match="key_file or key_env"):
        key_source()


def bump(path: Path) -> None:
    # A new modification time even on a file system with coarse timestamps.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_key_file_is_read_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = key(), key()
    path = tmp_path / "keys"
    path.write_text(b64(old) + "\n")
    path.chmod(0o600)
    clock = [1000.0]
    monkeypatch.setattr("colonnade.modules.forms_auth.files.time.monotonic", lambda: clock[0])
    source = key_source(path=str(path))
    assert isinstance(source, WatchedFile)
    issued_old = source.current().seal(new_ticket("a", [], 60), NAME).encode()
    path.write_text(f"{b64(new)}\n{b64(old)}\n")
    bump(path)
    assert len(source.current()) == 1  # not checked again within RECHECK
    clock[0] += RECHECK
    ring = source.current()
    assert len(ring) == 2
    assert ring.open(issued_old, NAME, time.time()).name == "a"
    assert KeyRing([new]).open(ring.seal(new_ticket("b", [], 60), NAME).encode(), NAME, time.time())
    # A broken version keeps the ring in force, logged once and without the key.
    path.write_text(f"{b64(new)}\nc2hvcnQ=\n")
    bump(path)
    with caplog.at_level(logging.ERROR, logger="colonnade.auth"):
        for _ in range(3):
            clock[0] += RECHECK
            assert source.current() is ring
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "line 2" in errors[0].getMessage()
    assert b64(new) not in caplog.text and "c2hvcnQ" not in caplog.text


def test_key_file_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        key_source(path=str(tmp_path / "missing"))
    shared = tmp_path / "shared"
    shared.write_text(b64(key()) + "\n")
    shared.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="colonnade.auth"):
        key_source(path=str(shared))
    assert "chmod 600" in caplog.text
