"""Response heads as a mature server writes them, read as raw bytes off a socket:
one case for every header name, one Vary field, Accept-Ranges where ranges are
served."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import PATIENCE, wait_for

from .conftest import LiveServer
from .wire import Conn, Wire

pytestmark = pytest.mark.e2e

TEXT = b"".join(b"line %d of a text that compresses well\n" % i for i in range(400))
BIG = TEXT * 40  # above the static handler's in-memory limit: served from disk

WSGI = """
import json

def app(environ, start_response):
    body = json.dumps({"lines": ["a line of application output"] * 40}).encode()
    headers = [("Content-Type", "application/json"), ("X-Made-By", "Hand")]
    if environ["PATH_INFO"] == "/cookie":
        headers.append(("Vary", "Cookie"))
    if environ["PATH_INFO"] == "/two":
        headers += [("Vary", "Cookie"), ("vary", "accept-encoding, Origin")]
    start_response("200 OK", headers)
    return [body]
"""

ASGI = """
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"Content-Type", b"text/plain"), (b"X-Made-By", b"Hand")]})
    await send({"type": "http.response.body", "body": b"streamed", "more_body": True})
    await send({"type": "http.response.body", "body": b""})
"""


def tree(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """Static files at /, a WSGI app at /wsgi, an ASGI app at /asgi."""
    www = tmp_path / "www"
    (www / "folder").mkdir(parents=True)
    (www / "text.txt").write_bytes(TEXT)
    (www / "big.txt").write_bytes(BIG)
    (www / "data.bin").write_bytes(bytes(range(256)) * 40)
    (www / "pre.css").write_bytes(TEXT)
    (www / "pre.css.gz").write_bytes(gzip.compress(TEXT))  # newer than pre.css
    code = tmp_path / "code"
    code.mkdir()
    (code / "wsgi_app.py").write_text(WSGI)
    (code / "asgi_app.py").write_text(ASGI)
    modules = [
        "http.compression",
        "http.custom_headers",
        "static.directory_listing",
        "handler.static",
    ]
    return {
        "server": {"modules": modules},
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [
                    {"path": "/wsgi", "root": "code", "app": "wsgi_app:app", "app_dir": "code"},
                    {"path": "/asgi", "root": "code", "app": "asgi_app:app", "app_dir": "code"},
                ],
            }
        ],
        "compression": {"dynamic": True},
        "directory_browse": {"enabled": True},
        **sections,
    }


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tree(tmp_path), tmp_path).start() as server:
        yield server


def exchange(port: int, request: bytes, *, head_only: bool = False) -> Wire:
    with Conn(port) as c:
        c.send(request)
        return c.response(head_only=head_only)


def get(port: int, path: str, *headers: str, method: str = "GET") -> Wire:
    lines = "".join(f"{h}\r\n" for h in headers)
    request = f"{method} {path} HTTP/1.1\r\nHost: t\r\n{lines}\r\n".encode()
    return exchange(port, request, head_only=method == "HEAD")


def fields(wire: Wire) -> list[tuple[bytes, bytes]]:
    """The header lines as sent: (name, value), names untouched."""
    out = []
    for line in wire.raw_head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out.append((name, value.strip()))
    return out


def varies(wire: Wire) -> list[bytes]:
    return [value for name, value in fields(wire) if name.lower() == b"vary"]


# -- one case for every header name ---------------------------------------------------


def test_every_header_name_goes_out_in_lower_case(live: LiveServer) -> None:
    port = live.port
    answers = {
        "static": get(port, "/text.txt"),
        "static from disk": get(port, "/big.txt"),
        "compressed": get(port, "/text.txt", "Accept-Encoding: gzip"),
        "partial": get(port, "/data.bin", "Range: bytes=0-9,20-29"),
        "not modified": get(port, "/text.txt", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"),
        "error page": get(port, "/missing.txt"),
        "redirect": get(port, "/folder"),
        "listing": get(port, "/folder/"),
        "wsgi": get(port, "/wsgi/x", "Accept-Encoding: gzip"),
        "asgi, chunked": get(port, "/asgi/x"),
        "HTTP/1.0 keep-alive": exchange(
            port, b"GET /text.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ),
        "HEAD": get(port, "/text.txt", method="HEAD"),
        "protocol error": exchange(port, b"GET / HTTP/1.1\r\n\r\n"),  # no Host: 400
    }
    assert answers["asgi, chunked"].chunked
    assert answers["HTTP/1.0 keep-alive"].headers["connection"] == "keep-alive"
    assert answers["protocol error"].status == 400
    for what, wire in answers.items():
        names = [name for name, _ in fields(wire)]
        assert {b"date", b"server"} <= set(names), what
        assert names == [name.lower() for name in names], (what, wire.raw_head)
    # An application's names too, whatever case it wrote them in; values as written.
    for app in ("wsgi", "asgi, chunked"):
        assert (b"x-made-by", b"Hand") in fields(answers[app])


# -- one Vary field --------------------------------------------------------------------


def test_one_vary_field_names_every_reason_once(tmp_path: Path) -> None:
    config = tree(tmp_path, custom_headers={"add": {"Vary": "Origin"}})
    with LiveServer(config, tmp_path).start() as server:
        port = server.port
        # custom headers + compression, on a static file, a 304 and a listing
        static = get(port, "/text.txt", "Accept-Encoding: gzip")
        assert static.headers["content-encoding"] == "gzip"
        assert varies(static) == [b"Origin, Accept-Encoding"]
        etag = static.headers["etag"]
        revalidated = get(port, "/text.txt", "Accept-Encoding: gzip", f"If-None-Match: {etag}")
        assert revalidated.status == 304
        assert varies(revalidated) == [b"Origin, Accept-Encoding"]
        listing = get(port, "/folder/", "Accept-Encoding: gzip")
        assert varies(listing) == [b"Accept, Origin, Accept-Encoding"]
        # + an application's own Vary
        app = get(port, "/wsgi/cookie", "Accept-Encoding: gzip")
        assert app.headers["content-encoding"] == "gzip"
        assert varies(app) == [b"Cookie, Origin, Accept-Encoding"]
        # an application's two fields, one naming what compression names: merged
        two = get(port, "/wsgi/two", "Accept-Encoding: gzip")
        assert varies(two) == [b"Cookie, accept-encoding, Origin"]
        # and where nothing is compressed, the reasons still travel in one field
        plain = get(port, "/wsgi/cookie")
        assert "content-encoding" not in plain.headers
        assert varies(plain) == [b"Cookie, Origin, Accept-Encoding"]


def test_vary_star_absorbs_every_other_name(tmp_path: Path) -> None:
    config = tree(tmp_path, custom_headers={"add": {"Vary": "*"}})
    with LiveServer(config, tmp_path).start() as server:
        for path in ("/text.txt", "/wsgi/cookie", "/folder/"):
            assert varies(get(server.port, path, "Accept-Encoding: gzip")) == [b"*"], path


# -- Accept-Ranges where ranges are served ---------------------------------------------


def test_static_answers_say_they_take_ranges(live: LiveServer) -> None:
    port = live.port
    for path in ("/data.bin", "/big.txt"):  # from memory, from disk
        assert get(port, path).headers["accept-ranges"] == "bytes"
        assert get(port, path, method="HEAD").headers["accept-ranges"] == "bytes"
        part = get(port, path, "Range: bytes=10-19")
        assert part.status == 206 and len(part.body) == 10
        assert part.headers["content-range"].startswith("bytes 10-19/")
        assert part.headers["accept-ranges"] == "bytes"
        parts = get(port, path, "Range: bytes=0-1,10-11")
        assert parts.status == 206
        assert parts.headers["content-type"].startswith("multipart/byteranges")
        assert parts.headers["accept-ranges"] == "bytes"


def test_no_accept_ranges_where_no_range_is_served(live: LiveServer) -> None:
    port = live.port
    etag = get(port, "/data.bin").headers["etag"]
    not_modified = get(port, "/data.bin", f"If-None-Match: {etag}")
    assert not_modified.status == 304
    unsatisfiable = get(port, "/data.bin", "Range: bytes=99999-")
    assert unsatisfiable.status == 416
    missing = get(port, "/missing.bin")
    assert missing.status == 404
    app = get(port, "/wsgi/x")
    assert app.status == 200  # the application decides; it said nothing
    for wire in (not_modified, unsatisfiable, missing, app):
        assert "accept-ranges" not in wire.headers, wire.raw_head


def test_compressed_variants_are_whole_and_ranges_come_from_the_file(live: LiveServer) -> None:
    port = live.port

    def cached() -> Wire | None:  # the static-level copy, once it is made
        wire = get(port, "/text.txt", "Accept-Encoding: gzip")
        return None if wire.headers["etag"].startswith("W/") else wire

    variants = {
        "made now": get(port, "/big.txt", "Accept-Encoding: gzip"),
        "cached copy": wait_for(cached, PATIENCE, "the cached gzip copy"),
        "precompressed": get(port, "/pre.css", "Accept-Encoding: gzip"),
        "HEAD": get(port, "/pre.css", "Accept-Encoding: gzip", method="HEAD"),
    }
    for what, wire in variants.items():
        assert wire.headers["content-encoding"] == "gzip", what
        # Sent whole, always: no ranges of the coded bytes are offered, and no
        # "none" either, since the file itself does take ranges (below).
        assert "accept-ranges" not in wire.headers, (what, wire.raw_head)
        if what != "HEAD":
            assert gzip.decompress(wire.body) in (TEXT, BIG), what
    for path in ("/text.txt", "/pre.css", "/big.txt"):
        part = get(port, path, "Accept-Encoding: gzip", "Range: bytes=0-9")
        assert part.status == 206 and part.body == TEXT[:10], path
        assert "content-encoding" not in part.headers
        assert part.headers["accept-ranges"] == "bytes"
