"""config/bindings.py: a plain binding is read without urllib.parse, as urlsplit reads it."""

from __future__ import annotations

import re

import pytest

from colonnade.config import bindings
from colonnade.config.bindings import Binding, parse_binding
from colonnade.errors import ConfigError

TEXTS = (
    "http://127.0.0.1:8080",
    "https://0.0.0.0:8443/",
    "127.0.0.1:80",
    "localhost:0",
    "http://Example.COM:080",
    "http://host.example:65535",
    "http://host.example:65536",
    "http://host.example:99999",
    "http://host.example:",
    "http://host.example",
    "http://:8080",
    "http://host.example:8080/path",
    "http://host.example:8080?q",
    "http://user@host.example:8080",
    "HTTP://host.example:8080",
    "ftp://host.example:21",
    "http://[::1]:8080",
    "https://[fe80::1%25eth0]:8443",
    "http://[::1:8080",
    "http://host.example:80a",
    " http://host.example:8080",
    "http://host.example:8080 ",
    "http://host\t.example:8080",
    "http://hôst.example:8080",
    "http://host_name:8080",
)


def read(text: str) -> Binding | str:
    try:
        return parse_binding(text, file="colonnade.toml", key="sites[0].bindings[0]")
    except ConfigError as exc:
        return str(exc)


@pytest.mark.parametrize("text", TEXTS)
def test_a_binding_reads_the_same_with_or_without_urlsplit(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = read(text)
    monkeypatch.setattr(bindings, "_PLAIN", re.compile(r"(?!)"))  # urlsplit for all
    assert fast == read(text)


def test_a_plain_binding_is_read_without_urllib() -> None:
    assert bindings._PLAIN.fullmatch("http://Example.COM:080")
    assert parse_binding("http://Example.COM:080") == Binding("http", "example.com", 80)
    assert parse_binding("[::1]:8080") == Binding("http", "::1", 8080)  # through urlsplit
