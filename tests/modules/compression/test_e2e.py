"""Compression over real sockets: a real HTTP client decodes every coding."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
import zstandard

from tests.e2e.conftest import LiveServer, site_config
from tests.e2e.wire import Conn
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

TEXT = b"".join(b"line %d of a text file that compresses well\n" % i for i in range(3000))
CODINGS = ["br", "zstd", "gzip"]


def decoder(coding: str) -> Any:
    """An incremental decoder: ``feed(bytes) -> bytes``."""
    if coding == "br":
        return brotli.Decompressor().process
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress
    return zlib.decompressobj(47).decompress


def decode(coding: str, data: bytes) -> bytes:
    return bytes(decoder(coding)(data))


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    www = tmp_path / "www"
    www.mkdir()
    (www / "small.js").write_bytes(TEXT[:30000])  # from the static handler's memory
    (www / "big.txt").write_bytes(TEXT)  # from disk
    config = site_config(modules=["http.compression", "acme.stamp", "acme.slow", "handler.static"])
    config["compression"] = {"dynamic": True}  # acme.slow's output is application output
    server = LiveServer(config, tmp_path).start()
    yield server
    server.stop()


def url(live: LiveServer, path: str) -> str:
    return f"http://127.0.0.1:{live.port}{path}"


def raw_get(
    http: httpx.Client, target: str, coding: str, **kw: Any
) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent (still encoded)."""
    headers = {"accept-encoding": coding, **kw.pop("headers", {})}
    with http.stream(kw.pop("method", "GET"), target, headers=headers, **kw) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("name", ["small.js", "big.txt"])
def test_static_files_decode_in_a_real_client(live: LiveServer, name: str, coding: str) -> None:
    original = TEXT[:30000] if name == "small.js" else TEXT
    with httpx.Client() as http:
        # httpx decodes br, zstd and gzip itself; we decode the raw bytes as well.
        r = http.get(url(live, f"/{name}"), headers={"accept-encoding": coding})
        assert r.status_code == 200 and r.content == original
        assert r.headers["content-encoding"] == coding
        assert r.headers["vary"] == "Accept-Encoding"

        # The cached static-level copy arrives once the background job is done.
        def cached() -> tuple[httpx.Response, bytes] | None:
            response, raw = raw_get(http, url(live, f"/{name}"), coding)
            return None if response.headers["etag"].startswith("W/") else (response, raw)

        response, raw = wait_for(cached, PATIENCE, "the compressed copy cached")
        assert response.headers["content-length"] == str(len(raw))
        assert decode(coding, raw) == original


@pytest.mark.parametrize("coding", CODINGS)
def test_application_output_decodes_in_a_real_client(live: LiveServer, coding: str) -> None:
    with httpx.Client() as http:
        # acme.slow echoes the request body after "slow:", as text/plain.
        response, raw = raw_get(http, url(live, "/slow"), coding, method="POST", content=TEXT)
        assert response.headers["content-encoding"] == coding
        assert response.headers["content-length"] == str(len(raw))
        assert response.headers["x-acme"] == "acme"  # hooks before ours still ran
        assert decode(coding, raw) == b"slow:" + TEXT
        r = http.post(url(live, "/slow"), content=TEXT, headers={"accept-encoding": coding})
        assert r.content == b"slow:" + TEXT


@pytest.mark.parametrize("coding", CODINGS)
def test_a_stream_arrives_decodable_chunk_by_chunk(live: LiveServer, coding: str) -> None:
    pad = b"." * 200
    with Conn(live.port) as conn:
        conn.send(
            b"GET /slow?stream=5&pad=200 HTTP/1.1\r\nHost: x\r\n"
            b"Accept-Encoding: " + coding.encode() + b"\r\n\r\n"
        )
        head = conn._line()
        assert head.startswith(b"HTTP/1.1 200")
        headers = {}
        while line := conn._line():
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        assert headers[b"content-encoding"] == coding.encode()
        assert headers[b"transfer-encoding"] == b"chunked"
        feed = decoder(coding)
        frames = []
        while (size := int(conn._line(), 16)) != 0:
            frames.append(conn._exact(size))
            assert conn._exact(2) == b"\r\n"
        assert conn._line() == b""
    # Every application write is one frame that decodes on its own, in order.
    assert [bytes(feed(frame)) for frame in frames] == [
        *(b"chunk%d;" % i + pad for i in range(5)),
        b"",
    ]


def test_http10_and_range_requests_get_the_original(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(b"GET /big.txt HTTP/1.0\r\nAccept-Encoding: br\r\n\r\n")
        r = conn.response()
        assert r.status == 200 and "content-encoding" not in r.headers
        assert r.headers["vary"] == "Accept-Encoding" and r.body == TEXT
    with httpx.Client() as http:
        response, raw = raw_get(
            http, url(live, "/big.txt"), "br", headers={"range": "bytes=100-199"}
        )
        assert response.status_code == 206 and raw == TEXT[100:200]


def test_head_over_the_wire(live: LiveServer) -> None:
    with httpx.Client() as http:
        got = http.get(url(live, "/small.js"), headers={"accept-encoding": "br"})
        assert got.headers["content-encoding"] == "br"
    with Conn(live.port) as conn:
        conn.send(b"HEAD /small.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\n\r\n")
        r = conn.response(head_only=True)
        assert r.headers["content-encoding"] == "br"
        assert r.headers["vary"] == "Accept-Encoding"
        # Followed at once by another request on the same connection: nothing stray.
        conn.send(b"GET /small.js HTTP/1.1\r\nHost: x\r\n\r\n")
        plain = conn.response()
        assert plain.status == 200 and plain.body == TEXT[:30000]


def test_head_has_the_heads_of_get_for_a_file_from_memory(live: LiveServer) -> None:
    """Once the static-level copy is made, a HEAD gets what the GET gets: the same
    strong ETag, Content-Length, Content-Encoding and Vary (it got the weak ETag
    of an on-the-fly compression, with no length, before)."""
    fields = ("etag", "content-length", "content-encoding", "vary")
    deadline = time.monotonic() + 20.0
    with httpx.Client() as http:
        # The first GET is compressed on the fly (weak ETag) while the copy is made.
        while (
            (got := http.get(url(live, "/small.js"), headers={"accept-encoding": "br"}))
            .headers["etag"]
            .startswith("W/")
        ):
            assert time.monotonic() < deadline, "the static-level copy was never made"
        head = http.head(url(live, "/small.js"), headers={"accept-encoding": "br"})
    assert head.status_code == 200 and head.content == b""
    assert {f: head.headers.get(f) for f in fields} == {f: got.headers.get(f) for f in fields}
    assert int(head.headers["content-length"]) < len(TEXT[:30000])
