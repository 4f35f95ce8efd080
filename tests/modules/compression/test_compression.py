"""``http.compression`` through the real pipeline (in-process client and stage harness)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import zlib
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import brotli
import pytest
import zstandard

from colonnade import Context, Handler, Module, Priority, Stage, hook
from colonnade.modules.compression import cache as cache_mod
from colonnade.modules.compression.codings import Coding, load
from colonnade.modules.compression.module import Compression
from colonnade.testing import (
    Client,
    RecordingWriter,
    TestResponse,
    build_engine,
    make_context,
    run_stage,
)
from tests.support.wait import PATIENCE

MODULES = ["http.compression", "test.json", "test.stream", "test.after", "handler.static"]
# Application output is compressed only when asked for (the default is static files only).
DYNAMIC = {"compression": {"dynamic": True}}
TEXT = b"".join(
    b'{"id": %d, "name": "widget %d", "tags": ["red", "blue"]},\n' % (i, i) for i in range(2000)
)


def decode(coding: str | None, data: bytes) -> bytes:
    if coding == "br":
        return bytes(brotli.decompress(data))
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if coding == "gzip":
        return zlib.decompress(data, 47)
    assert coding is None
    return data


def query(ctx: Context) -> dict[str, str]:
    pairs = ctx.request.query.decode().split("&")
    return dict(p.split("=", 1) if "=" in p else (p, "1") for p in pairs if p)


class Json(Handler):
    """A buffered application answer: ``?n=`` bytes of JSON, with knobs for the skips."""

    id = "test.json"

    def execute(self, ctx: Context) -> None:
        q = query(ctx)
        response = ctx.response
        body = TEXT[: int(q.get("n", "10240"))]
        response.headers.append((b"content-type", q.get("type", "application/json").encode()))
        if "type2" in q:  # a second Content-Type: malformed, but an application may send it
            response.headers.append((b"content-type", q["type2"].encode()))
        if "noetag" not in q:
            response.headers.append((b"etag", b'"v1"'))
        if "nt" in q:
            response.headers.append((b"cache-control", b"public, no-transform"))
        if "ce" in q:
            response.headers.append((b"content-encoding", b"gzip"))
            body = zlib.compress(body, 6, 31)
        if "vary" in q:
            response.headers.append((b"vary", q["vary"].encode()))
        if "status" in q:
            response.status = int(q["status"])
        response.body = b"" if response.status in (204, 304) else body


class Stream(Handler):
    """Streams ``?n=`` events; records what the client had received after each."""

    id = "test.stream"
    seen: list[int] = []

    async def execute(self, ctx: Context) -> None:
        q = query(ctx)
        ctx.response.headers.append((b"content-type", b"text/event-stream"))
        if "length" in q:
            ctx.response.headers.append((b"content-length", q["length"].encode()))
        Stream.seen = []
        for i in range(int(q.get("n", "4"))):
            await ctx.write(b"data: event %d %s\n\n" % (i, b"x" * 40))
            Stream.seen.append(ctx.writer.bytes_sent)


class After(Module):
    """A SEND_RESPONSE hook that runs after compression's (FIRST), like custom errors."""

    id = "test.after"

    @hook(Stage.SEND_RESPONSE, priority=Priority.FIRST)
    def replace(self, ctx: Context) -> None:
        action = query(ctx).get("after")
        response = ctx.response
        if action == "page":  # same status, another body: the custom-errors way
            response.headers = [(b"content-type", b"text/html")]
            response.body = b"<p>replaced</p>" * 100
        elif action == "status":  # another status and a short page
            response.clear()
            response.status = 500
            response.headers.append((b"content-type", b"text/html"))
            response.body = b"<p>oops</p>" * 100
        elif action == "encoded":  # the response became encoded after all
            response.headers.append((b"content-encoding", b"identity-ish"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "small.js").write_bytes(TEXT[:20000])  # kept in the static handler's memory
    (site / "big.txt").write_bytes(TEXT * 3)  # over the file cache: sent from disk (sendfile)
    (site / "tiny.css").write_bytes(b"a{color:red}")
    (site / "pic.png").write_bytes(b"\x89PNG" + bytes(5000))
    (site / "app.css").write_bytes(TEXT[:30000])
    return site


def engine_config(root: Path, **sections: Any) -> dict[str, Any]:
    """The test site; ``compression`` settings go on top of ``dynamic = true``."""
    sections["compression"] = {**DYNAMIC["compression"], **sections.get("compression", {})}
    return {
        "server": {"modules": MODULES},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [
            {"path": "/json*", "handler": "test.json"},
            {"path": "/stream*", "handler": "test.stream"},
            {"path": "*", "handler": "handler.static"},
        ],
        **sections,
    }


@pytest.fixture
def serve(root: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def make(**sections: Any) -> Client:
        engine = build_engine(engine_config(root, **sections), modules=[Json, Stream, After])
        client = Client(engine).__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(serve: Any) -> Client:
    return serve()  # type: ignore[no-any-return]


def module_of(client: Client) -> Compression:
    for module in client.engine.runtimes[0].modules:
        if isinstance(module, Compression):
            return module
    raise AssertionError("http.compression is not enabled")


def settle(client: Client) -> None:
    client.loop.run_until_complete(module_of(client).cache.settle())


def get(client: Client, target: str, ae: str | None = None, **headers: str) -> TestResponse:
    sent = dict(headers)
    if ae is not None:
        sent["accept-encoding"] = ae
    return client.get(target, headers=sent)


def body_of(response: TestResponse) -> bytes:
    return decode(response.header("content-encoding"), response.body)


# -- application output ---------------------------------------------------------------


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip"])
def test_buffered_output_round_trips_in_each_coding(client: Client, coding: str) -> None:
    r = get(client, "/json", f"{coding}, identity;q=0.5")
    assert r.status == 200
    assert r.header("content-encoding") == coding
    assert r.header("vary") == "Accept-Encoding"
    assert r.header("etag") == f'"v1-{coding}"'
    assert len(r.body) < 10240 / 4
    assert decode(coding, r.body) == TEXT[:10240]
    # The header list the log and later modules see describes what was sent.
    assert r.context.response.header(b"content-encoding") == coding.encode()


def test_the_client_q_values_decide_then_the_server_order(client: Client) -> None:
    assert get(client, "/json", "gzip;q=1, br;q=0.5").header("content-encoding") == "gzip"
    assert get(client, "/json", "gzip, zstd, br").header("content-encoding") == "br"
    assert get(client, "/json", "*").header("content-encoding") == "br"
    assert get(client, "/json", "br;q=0, *").header("content-encoding") == "zstd"
    assert get(client, "/json", "gzip;q=0.5, identity").header("content-encoding") is None


def test_the_preference_order_is_configurable(serve: Any) -> None:
    client = serve(compression={"codings": ["gzip", "br"]})
    assert get(client, "/json", "br, gzip, zstd").header("content-encoding") == "gzip"
    assert get(client, "/json", "zstd").header("content-encoding") is None


def test_nothing_acceptable_still_gets_the_plain_response(client: Client) -> None:
    # RFC 9110 lets the server send identity here instead of a 406; it does.
    r = get(client, "/json", "identity;q=0, *;q=0")
    assert r.status == 200
    assert r.header("content-encoding") is None
    assert r.body == TEXT[:10240]
    assert r.header("vary") == "Accept-Encoding"


def test_no_accept_encoding_is_identity_with_vary(client: Client) -> None:
    r = get(client, "/json")
    assert r.header("content-encoding") is None and r.body == TEXT[:10240]
    assert r.header("vary") == "Accept-Encoding"
    assert r.header("etag") == '"v1"'


def test_several_accept_encoding_lines_are_one_list(client: Client) -> None:
    headers = [(b"accept-encoding", b"gzip;q=0.5"), (b"accept-encoding", b"zstd")]
    r = client.get("/json", headers=headers)
    assert r.header("content-encoding") == "zstd"


def test_vary_is_merged_not_repeated(client: Client) -> None:
    r = get(client, "/json?vary=Cookie", "br")
    assert [v for k, v in r.headers if k == b"vary"] == [b"Cookie, Accept-Encoding"]
    r = get(client, "/json?vary=Cookie&status=304", "br")  # a 304 the same way
    assert r.status == 304
    assert [v for k, v in r.headers if k == b"vary"] == [b"Cookie, Accept-Encoding"]
    r = get(client, "/json?vary=accept-encoding", "br")
    assert [v for k, v in r.headers if k == b"vary"] == [b"accept-encoding"]
    r = get(client, "/json?vary=*", "br")
    assert [v for k, v in r.headers if k == b"vary"] == [b"*"]


def test_small_bodies_are_sent_as_they_are(client: Client, serve: Any) -> None:
    r = get(client, "/json?n=255", "br")
    assert r.header("content-encoding") is None and r.header("vary") is None
    assert r.body == TEXT[:255]
    assert get(client, "/json?n=256", "br").header("content-encoding") == "br"
    zero = serve(compression={"min_size": 0})
    assert get(zero, "/json?n=120", "br").header("content-encoding") == "br"
    # Unless coding would not make it smaller.
    assert get(zero, "/json?n=20", "br").header("content-encoding") is None


@pytest.mark.parametrize(
    ("content_type", "compressed"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Text/HTML; charset=utf-8", True),
        ("application/vnd.api+json", True),
        ("application/atom+xml", True),
        ("image/svg+xml", True),
        ("image/png", False),
        ("application/octet-stream", False),
        ("application/zip", False),
        ("font/woff2", False),
        ("nonsense", False),
    ],
)
def test_media_types(client: Client, content_type: str, compressed: bool) -> None:
    r = get(client, f"/json?type={content_type}", "br")
    assert (r.header("content-encoding") == "br") is compressed
    assert (r.header("vary") is not None) is compressed


def test_media_types_are_configurable(serve: Any) -> None:
    client = serve(compression={"mime_types": ["application/octet-stream"]})
    assert get(client, "/json?type=application/octet-stream", "br").header("content-encoding")
    assert get(client, "/json", "br").header("content-encoding") is None
    anything = serve(compression={"mime_types": ["*/*"]})
    assert get(anything, "/json?type=image/png", "br").header("content-encoding") == "br"


@pytest.mark.parametrize(
    ("first", "second", "compressed"),
    [
        ("image/png", "text/html", False),
        ("text/html", "image/png", False),
        ("text/html", "application/json", True),
    ],
)
def test_two_content_types_are_compressed_only_if_both_may_be(
    client: Client, first: str, second: str, compressed: bool
) -> None:
    # Content-Type holds one value, so which of two the client heeds is anyone's
    # guess: any type that must not be compressed keeps the body as it is.
    r = get(client, f"/json?type={first}&type2={second}", "br")
    assert (r.header("content-encoding") == "br") is compressed
    assert (r.header("vary") is not None) is compressed


def test_no_content_type_is_not_compressed(client: Client) -> None:
    r = get(client, "/json?type=", "br")
    assert r.header("content-encoding") is None


@pytest.mark.parametrize(
    "target",
    ["/json?nt", "/json?ce", "/json?status=204", "/json?status=206", "/json?status=101"],
)
def test_responses_that_must_stay_as_they_are(client: Client, target: str) -> None:
    r = get(client, target, "br")
    encoding = r.header("content-encoding")
    assert encoding in (None, "gzip")  # ?ce: the handler's own gzip is left alone
    if encoding == "gzip":
        assert zlib.decompress(r.body, 47) == TEXT[:10240]


def test_error_responses_are_compressed_too(client: Client) -> None:
    r = get(client, "/json?status=404", "gzip")
    assert r.status == 404 and r.header("content-encoding") == "gzip"
    assert zlib.decompress(r.body, 47) == TEXT[:10240]


def test_head_has_the_headers_of_get(client: Client) -> None:
    got = get(client, "/json", "br")
    head = client.head("/json", headers={"accept-encoding": "br"})
    assert head.body == b""
    assert head.header("content-encoding") == "br"
    assert head.header("etag") == got.header("etag")
    assert head.header("vary") == got.header("vary")
    # The in-process writer frames like the wire: by the (compressed) body length.
    assert head.context.writer.bytes_sent == len(got.body)


def test_the_compressed_variant_revalidates(client: Client) -> None:
    r = get(client, "/json", "br", **{"if-none-match": '"v1-br"'})
    assert r.status == 304 and r.body == b""
    assert r.header("etag") == '"v1-br"'
    assert r.header("vary") == "Accept-Encoding"
    assert r.header("content-length") is None and r.header("content-type") is None
    # The tag of another coding, or of the original, is another representation.
    assert get(client, "/json", "br", **{"if-none-match": '"v1-gzip"'}).status == 200
    assert get(client, "/json", "br", **{"if-none-match": 'W/"v1-br"'}).status == 304


def test_a_handler_304_says_vary(client: Client) -> None:
    r = get(client, "/json?status=304", "br")
    assert r.status == 304 and r.header("vary") == "Accept-Encoding"


def test_range_requests_are_not_compressed(client: Client, serve: Any) -> None:
    r = get(client, "/json", "br", range="bytes=0-99")
    assert r.header("content-encoding") is None and r.header("vary") == "Accept-Encoding"
    allowed = serve(compression={"no_compression_for_range": False})
    assert get(allowed, "/json", "br", range="bytes=0-99").header("content-encoding") == "br"


def test_static_files_by_default_application_output_when_asked(root: Path) -> None:
    config = engine_config(root)
    del config["compression"]  # the defaults, as IIS installs them
    with Client(build_engine(config, modules=[Json, Stream, After])) as client:
        static = get(client, "/big.txt", "gzip")
        assert static.header("content-encoding") == "gzip"
        assert static.header("vary") == "Accept-Encoding"
        dynamic = get(client, "/json", "gzip")
        assert dynamic.status == 200 and len(dynamic.body) == 10240
        assert dynamic.header("content-encoding") is None and dynamic.header("vary") is None
        # Application output is let through in one test, but a 304 still says
        # Vary: the 200 it stands for could be a compressed static file.
        revalidated = get(client, "/json?status=304", "gzip")
        assert revalidated.status == 304 and revalidated.header("vary") == "Accept-Encoding"


def test_switches_and_locations(serve: Any) -> None:
    client = serve(
        compression={"static": False},
        locations=[{"path": "/json/plain", "compression": {"dynamic": False}}],
    )
    assert get(client, "/json", "br").header("content-encoding") == "br"
    assert get(client, "/small.js", "br").header("content-encoding") is None
    assert get(client, "/big.txt", "br").header("content-encoding") is None
    plain = get(client, "/json/plain", "br")
    assert plain.header("content-encoding") is None and plain.header("vary") is None
    off = serve(compression={"codings": []})
    r = get(off, "/json", "br")
    assert r.header("content-encoding") is None and r.header("vary") is None


def test_responses_alternating_between_locations_keep_their_own_setting(serve: Any) -> None:
    # The hook remembers the last response's settings and their answer: a response
    # under other settings must not take that answer.
    client = serve(
        compression={"static": False},
        locations=[{"path": "/json/plain", "compression": {"dynamic": False}}],
    )
    order = ["/json"] * 3 + ["/json/plain"] * 3 + ["/json"] * 3
    got = [get(client, target, "br").header("content-encoding") for target in order]
    assert got == ["br"] * 3 + [None] * 3 + ["br"] * 3


def test_static_files_alternating_between_locations_keep_their_own_setting(
    serve: Any, root: Path
) -> None:
    # The hook decides a static file's 200 itself where its settings leave it alone
    # (static compression off, the file under min_size, a type not to compress),
    # remembering the last response's settings and each type's answer under them:
    # a file under other settings must not take those answers.
    (root / "other.txt").write_bytes(TEXT)
    client = serve(
        compression={"min_size": 100},
        locations=[
            {"path": "/small.js", "compression": {"static": False}},
            {"path": "/app.css", "compression": {"min_size": 50000}},
            {"path": "/big.txt", "compression": {"mime_types": ["text/css"]}},
        ],
    )
    order = ["/small.js", "/app.css", "/big.txt", "/tiny.css", "/other.txt"]
    expected = [None, None, None, None, "br"]
    for _ in range(2):
        got = [get(client, target, "br").header("content-encoding") for target in order]
        assert got == expected
    varies = [get(client, target).header("vary") for target in order]
    assert varies == [None, None, None, None, "Accept-Encoding"]


# -- hooks that run after this one ------------------------------------------------------


def test_a_page_replaced_later_is_compressed_as_it_finally_is(client: Client) -> None:
    r = get(client, "/json?after=page", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert zlib.decompress(r.body, 47) == b"<p>replaced</p>" * 100
    assert r.header("etag") is None  # the later hook dropped it


def test_a_response_replaced_with_another_status_goes_as_it_is(client: Client) -> None:
    r = get(client, "/json?after=status", "gzip")
    assert r.status == 500 and r.header("content-encoding") is None
    assert r.body == b"<p>oops</p>" * 100


def test_a_response_encoded_later_is_not_encoded_twice(client: Client) -> None:
    r = get(client, "/json?after=encoded", "gzip")
    assert r.header("content-encoding") == "identity-ish" and r.body == TEXT[:10240]


# -- streaming --------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip"])
def test_a_stream_is_compressed_chunk_by_chunk(client: Client, coding: str) -> None:
    r = get(client, "/stream?n=5", coding)
    assert r.header("content-encoding") == coding
    assert r.header("content-length") is None
    assert r.header("etag") is None and r.header("vary") == "Accept-Encoding"
    writer = r.context.writer._inner
    assert isinstance(writer, RecordingWriter)
    events = [b"data: event %d %s\n\n" % (i, b"x" * 40) for i in range(5)]
    # One compressed write per application write, each decodable on arrival, then
    # the end of the compressed stream.
    chunks = writer.chunks
    assert len(chunks) == 6
    if coding == "br":
        d: Any = brotli.Decompressor()
        feed = d.process
    elif coding == "zstd":
        d = zstandard.ZstdDecompressor().decompressobj()
        feed = d.decompress
    else:
        d = zlib.decompressobj(47)
        feed = d.decompress
    for event, chunk in zip(events, chunks, strict=False):
        assert feed(chunk) == event
    assert feed(chunks[-1]) == b""
    assert decode(coding, r.body) == b"".join(events)
    # The client had bytes after every write, not only at the end.
    assert all(b > a for a, b in zip(Stream.seen, Stream.seen[1:], strict=False))


def test_a_stream_with_etag_gets_a_weak_tagged_one(client: Client) -> None:
    module = module_of(client)
    ctx = make_context("GET", "/s", headers={"accept-encoding": "gzip"}, settings=DYNAMIC)
    ctx.response.headers += [(b"content-type", b"text/plain"), (b"etag", b'"s1"')]
    run_stage(module, Stage.SEND_RESPONSE, ctx)

    async def stream() -> None:
        ctx.writer.start(200, None, ctx.response.headers, None)
        await ctx.writer.write(b"hello " * 100)
        await ctx.writer.end()

    asyncio.run(stream())
    assert ctx.response.header(b"etag") == b'W/"s1-gzip"'


def test_a_stream_declaring_a_small_length_is_left_alone(client: Client) -> None:
    r = get(client, "/stream?n=1&length=51", "br")
    assert r.header("content-encoding") is None and r.header("content-length") == "51"


def test_an_empty_answer_is_not_encoded(client: Client) -> None:
    r = get(client, "/stream?n=0", "gzip")  # wrote nothing: a buffered, empty body
    assert r.complete and r.body == b"" and r.header("content-encoding") is None


def test_a_stream_that_writes_only_empty_chunks_ends_cleanly() -> None:
    module = Compression()
    ctx = make_context("GET", "/s", headers={"accept-encoding": "gzip"}, settings=DYNAMIC)
    ctx.response.headers.append((b"content-type", b"text/plain"))
    run_stage(module, Stage.SEND_RESPONSE, ctx)

    async def stream() -> None:
        ctx.writer.start(200, None, ctx.response.headers, None)
        await ctx.writer.write(b"")
        await ctx.writer.end()

    asyncio.run(stream())
    inner = ctx.writer._inner  # type: ignore[attr-defined]
    assert inner.ended and zlib.decompress(b"".join(inner.chunks), 47) == b""


# -- static files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small.js", "big.txt"])
@pytest.mark.parametrize("coding", ["br", "zstd", "gzip"])
def test_static_files_round_trip(client: Client, root: Path, name: str, coding: str) -> None:
    original = (root / name).read_bytes()
    first = get(client, f"/{name}", coding)
    assert first.header("content-encoding") == coding
    assert first.header("etag").startswith("W/")  # made on the fly this once
    assert first.header("accept-ranges") is None
    assert decode(coding, first.body) == original
    settle(client)
    cached = get(client, f"/{name}", coding)
    assert cached.header("content-encoding") == coding
    etag = cached.header("etag")
    assert etag is not None and not etag.startswith("W/") and etag.endswith(f'-{coding}"')
    assert cached.header("content-type") == first.header("content-type")
    assert decode(coding, cached.body) == original
    # The cached copy is the static level's work.
    level = {"br": 11, "zstd": 19, "gzip": 9}[coding]
    assert cached.body == load(coding).compress(original, level)  # type: ignore[union-attr]


def test_a_static_file_is_compressed_once(client: Client, root: Path) -> None:
    module = module_of(client)
    calls: list[tuple[str, int]] = []
    real = module.cache.compressor
    go_on = threading.Event()

    def counting(source: bytes | str, version: Hashable, coding: Coding, level: int) -> bytes:
        calls.append((coding.name, level))
        # The first job still runs while the next requests come in.
        assert go_on.wait(PATIENCE), "the test never let the compression finish"
        return real(source, version, coding, level)

    module.cache.compressor = counting
    for _ in range(3):
        assert body_of(get(client, "/big.txt", "br")) == (root / "big.txt").read_bytes()
    go_on.set()
    settle(client)
    for _ in range(3):
        assert body_of(get(client, "/big.txt", "br")) == (root / "big.txt").read_bytes()
    assert calls == [("br", 11)]
    stats = module.cache.stats
    assert (stats.compressions, stats.hits) == (1, 3)
    # Another coding is another copy; HEAD never starts one.
    client.head("/big.txt", headers={"accept-encoding": "gzip"})
    get(client, "/big.txt", "gzip")
    settle(client)
    assert calls == [("br", 11), ("gzip", 9)]

    # A changed file misses and replaces its stale copy.
    path = root / "big.txt"
    path.write_bytes(TEXT[:50000] + b"changed")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert body_of(get(client, "/big.txt", "br")) == TEXT[:50000] + b"changed"
    settle(client)
    assert calls[-1] == ("br", 11) and len(calls) == 3
    r = get(client, "/big.txt", "br")
    assert not r.header("etag").startswith("W/")
    assert body_of(r) == TEXT[:50000] + b"changed"


def test_a_small_static_file_is_cached_by_its_validator(client: Client, root: Path) -> None:
    module = module_of(client)
    get(client, "/small.js", "zstd")
    settle(client)
    hit = get(client, "/small.js", "zstd")
    assert module.cache.stats.hits == 1
    assert body_of(hit) == (root / "small.js").read_bytes()
    assert hit.header("etag").endswith('-zstd"')


def test_the_cache_is_bounded_by_bytes(serve: Any, root: Path) -> None:
    for i in range(6):
        (root / f"f{i}.txt").write_bytes(os.urandom(3000).hex().encode())
    client = serve(compression={"cache_max_bytes": 8000})
    cache = module_of(client).cache
    for i in range(6):
        get(client, f"/f{i}.txt", "gzip")
        settle(client)
    assert cache.size <= 8000 and cache.stats.evictions > 0
    assert 0 < len(cache) < 6


def test_files_over_the_limit_are_not_compressed_on_the_fly(serve: Any) -> None:
    client = serve(compression={"static_max_size": 1000})
    r = get(client, "/big.txt", "br")
    assert r.header("content-encoding") is None and r.header("vary") == "Accept-Encoding"


def test_tiny_and_binary_files_are_sent_as_they_are(client: Client) -> None:
    for target in ("/tiny.css", "/pic.png"):
        r = get(client, target, "br")
        assert r.header("content-encoding") is None and r.header("vary") is None


@pytest.mark.parametrize(
    ("target", "varies"),
    [("/tiny.css", False), ("/pic.png", False), ("/small.js", True), ("/big.txt", True)],
)
def test_without_accept_encoding_a_file_says_vary_if_it_could_be_compressed(
    client: Client, target: str, varies: bool
) -> None:
    # Size and type are decided before the request's headers are read: the same
    # answer for a client that sends no Accept-Encoding.
    r = get(client, target)
    assert r.status == 200 and r.header("content-encoding") is None
    assert (r.header("vary") == "Accept-Encoding") is varies
    assert get(client, target, "br").header("vary") == r.header("vary")


def test_static_head_matches_get(client: Client) -> None:
    get(client, "/big.txt", "br")
    settle(client)
    got = get(client, "/big.txt", "br")
    head = client.head("/big.txt", headers={"accept-encoding": "br"})
    assert head.body == b""
    for name in ("content-encoding", "etag", "vary", "content-type"):
        assert head.header(name) == got.header(name)
    assert head.context.writer.bytes_sent == len(got.body)


def test_a_static_variant_revalidates(client: Client) -> None:
    first = get(client, "/small.js", "br")
    settle(client)
    etag = get(client, "/small.js", "br").header("etag")
    assert etag is not None
    r = get(client, "/small.js", "br", **{"if-none-match": etag})
    assert r.status == 304 and r.header("etag") == etag and r.body == b""
    # The weak tag of the first answer names the same file version.
    weak = first.header("etag")
    assert get(client, "/small.js", "br", **{"if-none-match": weak}).status == 304
    # The original's tag gets the handler's own 304, which still says Vary.
    plain = get(client, "/small.js").header("etag")
    r = get(client, "/small.js", "br", **{"if-none-match": plain})
    assert r.status == 304 and r.header("vary") == "Accept-Encoding"


def test_static_range_requests_get_the_original_bytes(client: Client, root: Path) -> None:
    r = get(client, "/big.txt", "br", range="bytes=10-19")
    assert r.status == 206 and r.header("content-encoding") is None
    assert r.body == (root / "big.txt").read_bytes()[10:20]


# -- precompressed siblings -------------------------------------------------------------


@pytest.mark.parametrize(("coding", "ext"), [("br", ".br"), ("zstd", ".zst"), ("gzip", ".gz")])
def test_a_precompressed_sibling_is_served(
    client: Client, root: Path, coding: str, ext: str
) -> None:
    original = (root / "app.css").read_bytes()
    packed = {
        "br": lambda: brotli.compress(original, quality=5),
        "zstd": lambda: zstandard.ZstdCompressor(level=5).compress(original),
        "gzip": lambda: zlib.compress(original, 1, 31),
    }[coding]()
    (root / f"app.css{ext}").write_bytes(packed)
    module = module_of(client)
    r = get(client, "/app.css", f"{coding}, gzip;q=0.1")
    assert r.header("content-encoding") == coding
    assert r.body == packed  # the sibling's own bytes, not a compression of ours
    assert r.header("content-type") == "text/css; charset=utf-8"
    assert r.header("content-length") == str(len(packed))
    assert r.header("etag").endswith(f'-{coding}"') and not r.header("etag").startswith("W/")
    assert r.context.response.file is not None  # still sendfile
    assert module.cache.stats.misses == 0
    # HEAD: the same head.
    head = client.head("/app.css", headers={"accept-encoding": coding})
    assert head.header("content-length") == str(len(packed))
    # A range request gets the original file.
    ranged = get(client, "/app.css", coding, range="bytes=0-9")
    assert ranged.status == 206 and ranged.body == original[:10]


def test_the_best_accepted_sibling_wins(client: Client, root: Path) -> None:
    original = (root / "app.css").read_bytes()
    (root / "app.css.gz").write_bytes(zlib.compress(original, 9, 31))
    (root / "app.css.br").write_bytes(brotli.compress(original))
    assert get(client, "/app.css", "gzip, br").header("content-encoding") == "br"
    assert get(client, "/app.css", "gzip, br;q=0.5").header("content-encoding") == "gzip"


def test_a_sibling_beats_compressing_only_when_it_fits(serve: Any, root: Path) -> None:
    original = (root / "app.css").read_bytes()
    (root / "app.css.gz").write_bytes(zlib.compress(original, 9, 31))
    client = serve()
    # br is preferred and the file is small enough: made (and cached) in br.
    assert get(client, "/app.css", "br, gzip").header("content-encoding") == "br"
    # Too big to compress here: the gzip sibling is the best there is.
    limited = serve(compression={"static_max_size": 100})
    assert get(limited, "/app.css", "br, gzip").header("content-encoding") == "gzip"
    without = serve(compression={"precompressed": False, "static_max_size": 100})
    assert get(without, "/app.css", "br, gzip").header("content-encoding") is None


def test_stale_or_symlinked_siblings_are_ignored(client: Client, root: Path) -> None:
    original = (root / "app.css").read_bytes()
    stale = root / "app.css.br"
    stale.write_bytes(brotli.compress(b"old contents"))
    old = time.time_ns() - 3600 * 10**9
    os.utime(stale, ns=(old, old))
    r = get(client, "/app.css", "br")
    assert body_of(r) == original
    stale.unlink()
    outside = root.parent / "elsewhere.br"
    outside.write_bytes(brotli.compress(b"not this"))
    (root / "app.css.br").symlink_to(outside)
    assert body_of(get(client, "/app.css", "br")) == original


def test_a_sibling_revalidates(client: Client, root: Path) -> None:
    (root / "app.css.br").write_bytes(brotli.compress((root / "app.css").read_bytes()))
    etag = get(client, "/app.css", "br").header("etag")
    r = get(client, "/app.css", "br", **{"if-none-match": etag})
    assert r.status == 304 and r.header("etag") == etag


# -- the per-request cost when nothing applies ------------------------------------------


def run_hook(headers: dict[str, str], response: list[tuple[bytes, bytes]], **kw: Any) -> Context:
    ctx = make_context("GET", "/x", headers=headers, **{"settings": DYNAMIC, **kw})
    ctx.response.headers = response
    ctx.response.body = TEXT[:5000]
    run_stage(Compression(), Stage.SEND_RESPONSE, ctx)
    return ctx


def test_no_adapter_when_nothing_is_compressed() -> None:
    json_type = [(b"content-type", b"application/json")]
    png = run_hook({"accept-encoding": "br"}, [(b"content-type", b"image/png")])
    assert isinstance(png.writer, RecordingWriter) and png.response.headers == [
        (b"content-type", b"image/png")
    ]
    plain = run_hook({}, list(json_type))
    assert isinstance(plain.writer, RecordingWriter)
    assert plain.response.headers == [*json_type, (b"vary", b"Accept-Encoding")]
    compressed = run_hook({"accept-encoding": "br"}, list(json_type))
    assert not isinstance(compressed.writer, RecordingWriter)
    # The hook only decides: the body and its headers change when they go out.
    assert compressed.response.body == TEXT[:5000]


def test_http10_requests_are_not_compressed() -> None:
    json_type = [(b"content-type", b"application/json")]
    ctx = make_context("GET", "/x", headers={"accept-encoding": "br"}, settings=DYNAMIC)
    ctx.request.version = "1.0"
    ctx.response.headers = list(json_type)
    ctx.response.body = TEXT[:5000]
    run_stage(Compression(), Stage.SEND_RESPONSE, ctx)
    assert isinstance(ctx.writer, RecordingWriter)
    assert ctx.response.header(b"vary") == b"Accept-Encoding"
    ctx = make_context(
        "GET",
        "/x",
        headers={"accept-encoding": "br"},
        settings={"compression": {"dynamic": True, "no_compression_for_http10": False}},
    )
    ctx.request.version = "1.0"
    ctx.response.headers = list(json_type)
    ctx.response.body = TEXT[:5000]
    run_stage(Compression(), Stage.SEND_RESPONSE, ctx)
    assert not isinstance(ctx.writer, RecordingWriter)


def test_failed_background_jobs_are_counted_and_retried(client: Client, root: Path) -> None:
    module = module_of(client)

    def failing(source: bytes | str, version: Hashable, coding: Coding, level: int) -> bytes:
        raise cache_mod.FileChangedError("moved under our feet")

    module.cache.compressor = failing
    assert body_of(get(client, "/big.txt", "gzip")) == (root / "big.txt").read_bytes()
    settle(client)
    assert module.cache.stats.failures == 1 and len(module.cache) == 0
    module.cache.compressor = cache_mod.compress_source
    get(client, "/big.txt", "gzip")
    settle(client)
    assert module.cache.stats.compressions == 1
