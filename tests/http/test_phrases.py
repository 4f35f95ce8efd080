"""The reason phrases: Python 3.11's http.HTTPStatus, as plain data."""

from __future__ import annotations

import sys
from http import HTTPStatus

import pytest

from colonnade.core.errorpage import reason
from colonnade.http.h1 import reason_phrase
from colonnade.http.phrases import PHRASES


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the table is 3.11's")
def test_the_table_is_httpstatus_of_python_3_11() -> None:
    assert {s.value: s.phrase for s in HTTPStatus} == PHRASES


def test_every_status_has_its_phrase_where_it_is_used() -> None:
    for status in HTTPStatus:
        assert reason_phrase(status.value) == PHRASES[status.value].encode("ascii")
        assert reason(status.value) == PHRASES[status.value]
    assert reason_phrase(599) == b""
    assert reason(599) == "Error"
