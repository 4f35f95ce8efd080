"""Response.add_vary: one Vary field, each name once, ``*`` absorbing the rest."""

from __future__ import annotations

import pytest

from colonnade.core.response import Response


def varied(before: list[bytes], names: bytes) -> list[bytes]:
    response = Response()
    response.headers = [(b"content-type", b"text/plain")]
    response.headers += [(b"vary", value) for value in before]
    response.headers.append((b"etag", b'"x"'))
    response.add_vary(names)
    assert response.headers[0] == (b"content-type", b"text/plain")
    return [value for name, value in response.headers if name == b"vary"]


@pytest.mark.parametrize(
    ("before", "names", "after"),
    [
        ([], b"Accept-Encoding", [b"Accept-Encoding"]),
        ([b"Cookie"], b"Accept-Encoding", [b"Cookie, Accept-Encoding"]),
        ([b"Cookie", b"Origin"], b"Accept-Encoding", [b"Cookie, Origin, Accept-Encoding"]),
        ([b"accept-encoding"], b"Accept-Encoding", [b"accept-encoding"]),  # already said
        ([b"Cookie, Accept-Encoding"], b"accept-encoding", [b"Cookie, Accept-Encoding"]),
        ([b"Cookie", b"cookie"], b"Accept", [b"Cookie, Accept"]),  # duplicates go
        ([b"Cookie,,  Origin"], b"Origin , Accept", [b"Cookie, Origin, Accept"]),
        ([b"*"], b"Accept-Encoding", [b"*"]),
        ([b"Cookie", b"*"], b"Accept-Encoding", [b"*"]),
        ([b"Cookie"], b"*", [b"*"]),
    ],
)
def test_add_vary(before: list[bytes], names: bytes, after: list[bytes]) -> None:
    assert varied(before, names) == after


def test_the_merged_field_takes_the_first_ones_place() -> None:
    response = Response()
    shared = [(b"vary", b"Cookie"), (b"x", b"1"), (b"vary", b"Origin")]
    response.headers = shared
    response.add_vary(b"Accept")
    assert response.headers == [(b"vary", b"Cookie, Origin, Accept"), (b"x", b"1")]
    assert shared == [(b"vary", b"Cookie"), (b"x", b"1"), (b"vary", b"Origin")]  # not edited
