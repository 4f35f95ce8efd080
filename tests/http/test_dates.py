"""The Date header's IMF-fixdate, formatted without email.utils."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from colonnade.core.httputil import format_http_date as from_core
from colonnade.http import h1
from colonnade.http.dates import format_http_date


@pytest.mark.parametrize(
    "seconds",
    [0, 784111777, 951782400, 1709164800, 2147483647, 4102444799, int(time.time())],
)
def test_it_is_what_email_utils_formats(seconds: int) -> None:
    # 1994-11-06 08:49:37 (RFC 9110's example), 2000-02-29, 2024-02-29, 2038, 2099
    assert format_http_date(seconds) == formatdate(seconds, usegmt=True).encode("ascii")


def test_core_and_the_h1_date_line_use_it() -> None:
    assert from_core is format_http_date
    line = h1.date_header_value()
    assert line == format_http_date(int(time.time())) or line == format_http_date(
        int(time.time()) - 1
    )  # the second may have turned between the two reads
