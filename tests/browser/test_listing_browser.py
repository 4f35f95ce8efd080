"""A directory listing as a person sees it: headless Chromium renders the page of a
live server; the test reads the DOM Chromium built and checks the screenshot.

Needs Debian's ``chromium`` (``apt-get install -y chromium``). Without it the test
is skipped on a developer's machine, but it fails under CI (``CI`` set): there the
browser must be installed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer

HOSTILE = '<img src=x onerror="alert(1)">.txt'
WIDTH, HEIGHT = 1000, 700
FILES = {
    "alpha.txt": b"a" * 11,  # "11 B"
    "beta.bin": b"b" * 2048,  # "2.0 KiB"
    "gamma.html": b"<p>gamma</p>" * 1000,  # 12000 bytes: "11.7 KiB"
    HOSTILE: b"x" * 5,  # "5 B"
}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    pytest.skip("chromium is not installed")


@pytest.fixture(scope="module")
def browser() -> str:
    return chromium()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("listing")
    www = base / "www"
    (www / "docs").mkdir(parents=True)
    for name, data in FILES.items():
        (www / name).write_bytes(data)
    (www / "docs" / "inner.txt").write_text("inner")
    (www / ".hidden").write_text("never listed")
    config = {
        "server": {
            "modules": ["security.request_filtering", "static.directory_listing", "handler.static"]
        },
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "directory_browse": {"enabled": True},
    }
    server = LiveServer(config, base).start()
    yield server
    server.stop()


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    env = dict(os.environ, HOME=str(profile))
    return subprocess.run(command, capture_output=True, timeout=90, env=env, check=False)


class Page(HTMLParser):
    """The text a person reads and the elements the browser created."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self.links: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("style", "script"):
            self._skip += 1
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(data.strip())


def test_listing_dom(browser: str, live: LiveServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{live.port}/"
    done = run_chromium(browser, tmp_path / "profile", "--dump-dom", url)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    page = Page()
    page.feed(done.stdout.decode())
    text = page.text
    assert "Index of /" in text
    for name in ("alpha.txt", "beta.bin", "gamma.html", "docs/", HOSTILE):
        assert name in text, name
    for size in ("11 B", "2.0 KiB", "11.7 KiB", "5 B"):
        assert size in text, size
    assert ".hidden" not in " ".join(text)
    # The hostile name is text: the browser created no element from it.
    assert "img" not in page.tags
    assert "script" not in page.tags
    assert "%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E.txt" in page.links


def test_listing_screenshot(browser: str, live: LiveServer, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    url = f"http://127.0.0.1:{live.port}/"
    done = run_chromium(browser, tmp_path / "profile", f"--screenshot={shot}", url)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert shot.is_file()
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    background = most_common(pixels)
    inked = sum(1 for p in pixels if p != background)
    # Text, rules and links cover a few percent of the page; a blank (or error-
    # free but empty) page covers none.
    assert inked / len(pixels) > 0.01
    assert len(set(pixels)) > 16  # anti-aliased text, more than a flat fill
    if os.environ.get("COLONNADE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["COLONNADE_KEEP_SCREENSHOT"])


def most_common(pixels: list[tuple[int, ...]]) -> tuple[int, ...]:
    counts: dict[tuple[int, ...], int] = {}
    for p in pixels[:: max(1, len(pixels) // 20000)]:
        counts[p] = counts.get(p, 0) + 1
    return max(counts, key=lambda p: counts[p])


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, pixels) of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos = 8
    idat = []
    width = height = 0
    channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and interlace == 0, (depth, interlace)
            channels = {2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        unfilter(kind, line, previous, channels)
        pixels.extend(tuple(line[x : x + 3]) for x in range(0, stride, channels))
        previous = line
    return width, height, pixels


def unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    """Undo one scanline's PNG filter in place."""
    if kind == 0:
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            upper_left = previous[i - bpp] if i >= bpp else 0
            p = left + up - upper_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else upper_left
            line[i] = (line[i] + predictor) & 0xFF
        else:
            raise AssertionError(f"unknown PNG filter {kind}")
