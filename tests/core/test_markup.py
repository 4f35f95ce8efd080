"""core.markup.escape gives html.escape's output (without importing html.entities)."""

from __future__ import annotations

import html
import random

import pytest

from colonnade.core.markup import escape

SAMPLES = [
    "",
    "plain",
    "<script>alert('x') & \"y\"</script>",
    "&amp; already escaped &lt;",
    "a'b\"c<d>e&f",
    "日本語 <tag attr='v'>",
    "\x00\n\t&#x27;",
]


@pytest.mark.parametrize("text", SAMPLES)
@pytest.mark.parametrize("quote", [True, False])
def test_escape_is_html_escape(text: str, quote: bool) -> None:
    assert escape(text, quote) == html.escape(text, quote)


def test_escape_matches_on_random_text() -> None:
    rng = random.Random(24)
    alphabet = "<>&\"'ab ;#x27\u00e9\u65e5"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        assert escape(text) == html.escape(text)
        assert escape(text, quote=False) == html.escape(text, quote=False)
