"""The ``[compression]`` section: defaults and strict validation."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from colonnade.config.sections import decode_section
from colonnade.errors import ConfigError
from colonnade.modules.compression.config import CompressionSection
from colonnade.modules.compression.module import Compression, Policy


def decode(raw: dict[str, Any]) -> CompressionSection:
    return decode_section(CompressionSection, raw)


def test_defaults() -> None:
    section = CompressionSection()
    assert section.codings == ["br", "zstd", "gzip"]
    assert section.min_size == 256
    # Static files by default, application output when asked (IIS's default install).
    assert section.static and not section.dynamic
    assert section.no_compression_for_range and section.no_compression_for_http10
    assert section.static_levels == {"br": 11, "zstd": 19, "gzip": 9}
    assert section.dynamic_levels == {"br": 4, "zstd": 3, "gzip": 5}
    assert "text/*" in section.mime_types and "image/svg+xml" in section.mime_types


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"codings": ["br", "deflate"]}, "'deflate' is not one of: 'br', 'zstd', 'gzip'"),
        ({"codings": ["br", "br"]}, "listed twice"),
        ({"static_levels": {"br": 12}}, "outside 0..11"),
        ({"dynamic_levels": {"gzip": 0}}, "outside 1..9"),
        ({"static_levels": {"zstd": 22}}, "outside 1..19"),
        ({"dynamic_levels": {"lzma": 1}}, "unknown coding"),
        ({"mime_types": ["text"]}, "'text': expected a media type pattern"),
        ({"mime_types": ["*/json"]}, "wildcard type"),
        ({"mime_types": ["application/x*"]}, "`*+suffix` only"),
        ({"mime_types": ["application/*+*"]}, "`*+suffix` only"),
        ({"min_size": -1}, ">= 0"),
        ({"min_sise": 10}, "unknown key"),
    ],
)
def test_invalid_settings_are_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode(raw)
    assert message in str(info.value)


def test_levels_left_out_keep_their_defaults() -> None:
    section = decode({"static_levels": {"br": 9}, "dynamic_levels": {"zstd": 1}})
    policy = Policy(section, {})
    assert policy.static_levels == {"br": 9, "zstd": 19, "gzip": 9}
    assert policy.dynamic_levels == {"br": 4, "zstd": 1, "gzip": 5}


def test_every_field_is_documented() -> None:
    from colonnade.management.docgen import field_notes

    notes = field_notes(CompressionSection)
    for name in msgspec.structs.fields(CompressionSection):
        assert notes.get(name.name), f"{name.name} has no attribute docstring"


def test_a_missing_library_takes_its_coding_off_the_offer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from colonnade.modules.compression import codings, module

    real = codings.load
    monkeypatch.setattr(codings, "load", lambda name: None if name == "br" else real(name))
    monkeypatch.setattr(module, "_MISSING_REPORTED", set())
    policy = Compression().policy(CompressionSection())
    assert policy.negotiator.offered == ("zstd", "gzip")
    assert "'br' is configured but its library is not installed" in caplog.text
    monkeypatch.setattr(codings, "load", lambda name: None)
    off = Compression().policy(CompressionSection())
    assert not off.static and not off.dynamic


def test_an_installed_library_is_imported_when_first_used() -> None:
    """br and zstd are offered as soon as their libraries are found, and imported
    only when a response is compressed with them (a worker that never sends them
    keeps them out of its memory)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from colonnade.modules.compression import codings\n"
        "br, zstd = codings.load('br'), codings.load('zstd')\n"
        "loaded = 'brotli' in sys.modules, 'zstandard' in sys.modules\n"
        "print(br is not None, zstd is not None, *loaded)\n"
        "assert codings.load('br') is br\n"
        "data = b'colonnade ' * 100\n"
        "import brotli, zstandard\n"
        "assert brotli.decompress(br.compress(data, 5)) == data\n"
        "assert zstandard.ZstdDecompressor().decompress(zstd.compress(data, 3)) == data\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["True", "True", "False", "False"]


def test_a_library_that_does_not_import_fails_where_it_is_used() -> None:
    from colonnade.modules.compression.codings import _Library

    assert _Library.find("colonnade_no_such_library") is None
    broken = _Library(("colonnade_no_such_library",))
    with pytest.raises(ImportError, match="colonnade_no_such_library"):
        broken.compress(b"x")
