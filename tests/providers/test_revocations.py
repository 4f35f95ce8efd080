"""The server's revoked sign-ins (providers/revocations.py): one zone of shared
memory, seen by every process that maps it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest

from colonnade.core import shared
from colonnade.providers.revocations import RevocationList


class Arena:
    """A fresh arena, and the lists opened on it (closed before it)."""

    def __init__(self) -> None:
        self.memory = shared.create(4 * 1024 * 1024)
        self.opened: list[RevocationList] = []

    def list(self, *args: object, **kwargs: object) -> RevocationList:
        made = RevocationList(self.memory, *args, **kwargs)  # type: ignore[arg-type]
        self.opened.append(made)
        return made


@pytest.fixture
def arena() -> Iterator[Arena]:
    made = Arena()
    yield made
    for opened in made.opened:
        opened.close()
    made.memory.close()


def ids(n: int) -> list[bytes]:
    return [os.urandom(16) for _ in range(n)]


def test_a_revocation_is_seen_by_every_process_mapping_the_zone(
    arena: Arena,
) -> None:
    one, two = arena.list(), arena.list()  # two workers' views
    signed_out, kept = ids(2)
    now = time.time()
    assert not two.revoked(signed_out, now)
    one.revoke(signed_out, now + 60)
    assert two.revoked(signed_out, now) and one.revoked(signed_out, now)
    assert not two.revoked(kept, now)
    # Until the last ticket of that sign-in has expired, and not after.
    assert two.revoked(signed_out, now + 59)
    assert not two.revoked(signed_out, now + 62)


def test_a_forked_worker_sees_revocations_made_after_it_started(
    arena: Arena,
) -> None:
    revocations = arena.list()
    sign_in = os.urandom(16)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other worker: waits for the word, then revokes
        os.read(read, 1)
        arena.list().revoke(sign_in, time.time() + 60)
        os._exit(0)
    assert not revocations.revoked(sign_in, time.time())
    os.write(write, b"!")
    assert os.waitpid(pid, 0)[1] == 0
    assert revocations.revoked(sign_in, time.time())
    os.close(read)
    os.close(write)


def test_the_ring_is_bounded_and_says_so_when_it_forgets_too_early(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    small = arena.list("test:small", capacity=4)
    later = arena.list("test:small", capacity=4)  # looks only at the end
    now = time.time()
    first, *rest = ids(6)
    small.revoke(first, now + 60)
    assert small.revoked(first, now)  # this process has seen it
    with caplog.at_level(logging.WARNING, logger="colonnade.auth"):
        for sign_in in rest:
            small.revoke(sign_in, now + 60)
    assert "the oldest revoked sign-in is forgotten" in caplog.text
    # A process that saw it keeps it; one that looks only now has the last 4.
    assert small.revoked(first, now)
    assert not later.revoked(first, now) and not later.revoked(rest[0], now)
    assert all(later.revoked(s, now) for s in rest[1:])


def test_expired_revocations_are_overwritten_without_a_warning(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    small = arena.list("test:quiet", capacity=2)
    past = time.time() - 10
    with caplog.at_level(logging.WARNING, logger="colonnade.auth"):
        for sign_in in ids(5):
            small.revoke(sign_in, past)
    assert caplog.text == ""
