"""Client caching (IIS clientCache): Cache-Control and Expires per location, and the
section's validation and documentation."""

from __future__ import annotations

import ast
import inspect
import textwrap
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade.errors import ConfigError
from colonnade.handlers.static.config import StaticContentSection
from colonnade.testing import Client, build_engine
from tests.handlers.static.test_static import config

EXPIRES = "Fri, 01 Jan 2027 00:00:00 GMT"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    (site / "a.txt").write_text("a" * 100)
    (site / "assets" / "app.js").write_text("let a")
    return site


@pytest.mark.parametrize(
    ("settings", "cache_control", "expires"),
    [
        ({}, None, None),
        ({"cache_control": "no-cache"}, "no-cache", None),
        ({"cache_control": "max-age", "max_age": 3600}, "max-age=3600", None),
        ({"cache_control": "max-age"}, "max-age=86400", None),
        (
            {"cache_control": "max-age", "max_age": 31536000, "cache_control_custom": "immutable"},
            "max-age=31536000, immutable",
            None,
        ),
        ({"cache_control_custom": "private"}, "private", None),
        ({"cache_control": "expires", "expires": EXPIRES}, None, EXPIRES),
        (
            {"cache_control": "expires", "expires": "Friday, 01-Jan-27 00:00:00 GMT"},
            None,
            EXPIRES,  # normalised to an IMF-fixdate
        ),
        (
            {"cache_control": "expires", "expires": EXPIRES, "cache_control_custom": "public"},
            "public",
            EXPIRES,
        ),
        ({"expires": EXPIRES}, None, None),  # a date alone does nothing
    ],
)
def test_cache_control_modes(
    root: Path, settings: dict[str, Any], cache_control: str | None, expires: str | None
) -> None:
    with Client(build_engine(config(root, static_content=settings))) as client:
        full = client.get("/a.txt")
        etag = full.header("etag")
        assert etag is not None
        partial = client.get("/a.txt", headers={"range": "bytes=0-1,5-6"})
        not_modified = client.get("/a.txt", headers={"if-none-match": etag})
        assert (full.status, partial.status, not_modified.status) == (200, 206, 304)
        for response in (full, partial, not_modified):
            assert response.header("cache-control") == cache_control
            assert response.header("expires") == expires


def test_max_age_with_expires_moves_with_the_clock(root: Path) -> None:
    settings = {"cache_control": "max-age", "max_age": 600, "send_expires": True}
    with Client(build_engine(config(root, static_content=settings))) as client:
        for _ in range(2):  # the second from the file cache
            response = client.get("/a.txt")
            expires = response.header("expires")
            assert expires is not None
            delta = parsedate_to_datetime(expires).timestamp() - time.time()
            assert 598 <= delta <= 601
            assert response.header("cache-control") == "max-age=600"
        etag = response.header("etag")
        assert etag is not None
        assert client.get("/a.txt", headers={"if-none-match": etag}).header("expires")


def test_policy_per_location(root: Path) -> None:
    cfg = config(root)
    cfg["locations"] = [
        {
            "path": "/assets",
            "static_content": {
                "cache_control": "max-age",
                "max_age": 31536000,
                "cache_control_custom": "immutable",
            },
        }
    ]
    with Client(build_engine(cfg)) as client:
        for _ in range(2):
            assert client.get("/a.txt").header("cache-control") is None
            assert (
                client.get("/assets/app.js").header("cache-control")
                == "max-age=31536000, immutable"
            )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cache_control": "expires"}, "needs an `expires` date"),
        ({"expires": "next tuesday"}, "not an HTTP date"),
        ({"cache_control": "sometimes"}, "is not one of: 'none', 'no-cache', 'max-age'"),
        ({"max_age": -1}, ">= 0"),
        ({"cache_control_custom": "public\r\nx-injected: 1"}, "expected Cache-Control directives"),
        ({"max_ranges": -1}, ">= 0"),
        ({"cache_max_file_size": -5}, ">= 0"),
        ({"cache_check_interval": -0.5}, ">= 0"),
        ({"cache_max_bytes": "32M"}, "Expected `int`"),
    ],
)
def test_invalid_settings_fail_at_load(root: Path, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_engine(config(root, static_content=raw))
    assert message in str(caught.value)
    assert "static_content" in str(caught.value)


def test_a_location_breaking_the_expires_rule_fails_at_load(root: Path) -> None:
    cfg = config(root)
    cfg["locations"] = [{"path": "/assets", "static_content": {"cache_control": "expires"}}]
    with pytest.raises(ConfigError):
        build_engine(cfg)


def test_defaults() -> None:
    section = msgspec.convert({}, StaticContentSection, strict=True)
    assert section.cache_control == "none"
    assert section.max_age == 86400
    assert section.max_ranges == 16
    assert section.cache_max_file_size == 256 * 1024
    assert section.cache_max_bytes == 32 * 1024 * 1024
    assert section.cache_check_interval == 1.0
    assert section.cache_control_value is None


def test_every_field_has_an_attribute_docstring() -> None:
    # `colonnade config docs` builds the reference from these strings.
    source = textwrap.dedent(inspect.getsource(StaticContentSection))
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    documented = set()
    for node, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
            and len(following.value.value.split()) >= 5
        ):
            documented.add(node.target.id)
    assert documented == set(StaticContentSection.__struct_fields__)
