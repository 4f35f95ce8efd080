"""Accept-Encoding negotiation (RFC 9110 12.5.3): q-values, refusal, ``*``, identity."""

from __future__ import annotations

import pytest

from colonnade.modules.compression import negotiate as negotiate_mod
from colonnade.modules.compression.negotiate import Negotiator, negotiate

OFFER = ("br", "zstd", "gzip")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # Plain lists: the server's order breaks the tie.
        ("gzip, deflate, br, zstd", ("br", "zstd", "gzip")),
        ("gzip, deflate, br", ("br", "gzip")),
        ("gzip", ("gzip",)),
        ("deflate, compress", ()),
        # q-values decide before the server's order.
        ("gzip;q=1, br;q=0.5", ("gzip", "br")),
        ("br;q=0.2, zstd;q=0.9, gzip;q=0.5", ("zstd", "gzip", "br")),
        ("br; q=0.8 , gzip ; Q=0.9", ("gzip", "br")),
        # q=0 refuses a coding, also one that * would allow.
        ("br;q=0, gzip", ("gzip",)),
        ("*, br;q=0", ("zstd", "gzip")),
        ("br;q=0.000, gzip;q=0", ()),
        # * stands for every coding not named.
        ("*", ("br", "zstd", "gzip")),
        ("gzip, *;q=0.5", ("gzip", "br", "zstd")),
        ("*;q=0", ()),
        # identity: an explicit preference above a coding drops the coding.
        ("gzip;q=0.5, identity", ()),
        ("gzip, identity;q=0.5", ("gzip",)),
        ("br;q=0.5, gzip;q=0.5, identity;q=0.5", ("br", "gzip")),
        ("gzip;q=0.4, *;q=0.5", ("br", "zstd")),  # * covers identity at 0.5 too
        ("identity", ()),
        ("identity;q=0", ()),  # nothing acceptable: identity is sent anyway
        ("identity;q=0, gzip;q=0.1", ("gzip",)),
        # Spelling: case, x-gzip, stray commas and spaces.
        ("GZIP, Br", ("br", "gzip")),
        ("x-gzip", ("gzip",)),
        (" , gzip ,, ", ("gzip",)),
        ("", ()),
        # Malformed q-values make their element say nothing.
        ("br;q=abc, gzip", ("gzip",)),
        ("br;q=2, gzip", ("gzip",)),
        ("br;q=-1", ()),
        ("br;q=nan", ()),
        ("br;q, gzip", ("gzip",)),
        ("br;level=1", ("br",)),  # other parameters are ignored
    ],
)
def test_negotiate(header: str, expected: tuple[str, ...]) -> None:
    assert negotiate(header, OFFER) == expected


def test_the_offer_limits_and_orders_the_answer() -> None:
    assert negotiate("br, gzip, zstd", ("gzip", "br")) == ("gzip", "br")
    assert negotiate("br", ("gzip",)) == ()
    assert Negotiator(()).choose(b"br, gzip") == ()


def test_answers_are_cached_per_value_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = negotiate_mod.negotiate

    def counting(header: str, offered: tuple[str, ...]) -> tuple[str, ...]:
        calls.append(header)
        return real(header, offered)

    monkeypatch.setattr(negotiate_mod, "negotiate", counting)
    monkeypatch.setattr(negotiate_mod, "CACHE_SIZE", 4)
    negotiator = Negotiator(OFFER)
    for _ in range(3):
        assert negotiator.choose(b"gzip, br") == ("br", "gzip")
    assert calls == ["gzip, br"]
    for i in range(10):
        negotiator.choose(b"gzip;q=0.%d" % i)
    assert len(negotiator._cache) <= 4
