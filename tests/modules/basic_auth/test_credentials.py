"""The credential parser and the cache of verified credentials, alone."""

from __future__ import annotations

import base64
import types

import pytest

from colonnade.core.principal import Principal
from colonnade.modules.basic_auth import credentials
from colonnade.modules.basic_auth.credentials import CredentialCache, Credentials, parse

ALICE = Principal("alice", "Basic")


def test_parse_keeps_colons_in_the_password_and_unicode_everywhere() -> None:
    value = base64.b64encode("Zoë:pa:ss wörd".encode())
    assert parse(value) == Credentials("Zoë", "pa:ss wörd")
    assert parse(base64.b64encode(b"bob:")) == Credentials("bob", "")


def test_cache_entries_expire() -> None:
    cache = CredentialCache()
    key = cache.key(b"Basic YWxpY2U6eA==")
    cache.put(key, ALICE, expires=100.0)
    assert cache.get(key, 99.9) == ALICE
    assert cache.get(key, 100.0) is None
    assert len(cache) == 0  # an expired entry is dropped when met


def test_cache_is_bounded_and_drops_the_oldest() -> None:
    cache = CredentialCache(limit=3)
    keys = [cache.key(f"Basic {i}".encode()) for i in range(5)]
    for key in keys:
        cache.put(key, ALICE, expires=10.0)
    assert len(cache) == 3
    assert [cache.get(k, 0.0) for k in keys] == [None, None, ALICE, ALICE, ALICE]


@pytest.mark.parametrize("randomized", [1, 0])
def test_keys_are_keyed_per_process(monkeypatch: pytest.MonkeyPatch, randomized: int) -> None:
    # With hash randomization off (PYTHONHASHSEED=0) Python's own hash is known to
    # everyone: the cache then uses a keyed BLAKE2b with a secret of its own.
    fake_sys = types.SimpleNamespace(flags=types.SimpleNamespace(hash_randomization=randomized))
    monkeypatch.setattr(credentials, "sys", fake_sys)
    one, two = CredentialCache(), CredentialCache()
    header = b"Basic YWxpY2U6d29uZGVyLWxhbmQ="
    key = one.key(header)
    assert key == one.key(bytes(header))
    assert key != one.key(header + b"=")
    assert b"wonder" not in repr(key).encode()
    if randomized:
        assert key == hash(header)
    else:
        assert isinstance(key, bytes) and len(key) == 16
        assert key != two.key(header)  # another secret, another key
