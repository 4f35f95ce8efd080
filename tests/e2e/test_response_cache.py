"""The response cache (the kernel-cache analog) over real sockets: a hit is byte for
byte the pipeline's answer (Date aside), an authentication module enabled for a path
switches it off there and nowhere else, a changed file is seen, and a hit is logged
and counted."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.config.schema import DEFAULT_MODULES
from colonnade.engine import Engine
from colonnade.modules.http_logging.config import IIS_DEFAULT_FIELDS
from colonnade.testing import build_engine
from colonnade.transport.server import ServerState
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn, Wire
from tests.modules.basic_auth.support import htpasswd, needs_htpasswd
from tests.support.wait import PATIENCE, wait_for

pytestmark = needs_htpasswd

PAGE = b"".join(b"line %04d of a page worth compressing\n" % i for i in range(28))  # ~1 KiB
MODULES = [*DEFAULT_MODULES, "auth.anonymous", "auth.basic"]
HUNDRED_K = os.urandom(100 * 1024)  # in the file cache, so kept by the response cache


def make_config(base: Path, protected: tuple[str, ...] = ("/secret",)) -> dict[str, Any]:
    return {
        "server": {"modules": MODULES},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "static_content": {"cache_check_interval": 0.3},
        "http_logging": {
            "target": str(base / "access.log"),
            "buffer_size": 0,
            "fields": [*IIS_DEFAULT_FIELDS, "sc-bytes", "cs-bytes", "cs-host", "s-sitename"],
        },
        "locations": [
            {
                "path": path,
                "anonymous_authentication": {"enabled": False},
                "basic_authentication": {
                    "enabled": True,
                    "realm": "r",
                    "user_file": str(base / "users"),
                },
            }
            for path in protected
        ],
    }


@pytest.fixture
def base(tmp_path: Path) -> Path:
    www = tmp_path / "www"
    for folder in ("secret", "open"):
        (www / folder).mkdir(parents=True)
    (www / "page.txt").write_bytes(PAGE)
    (www / "secret" / "file.txt").write_bytes(PAGE)
    (www / "open" / "file.txt").write_bytes(PAGE)
    (www / "big.bin").write_bytes(os.urandom(300 * 1024))
    (www / "100k.bin").write_bytes(HUNDRED_K)
    htpasswd(tmp_path / "users", "alice", "wonder-land", "-B")
    return tmp_path


@pytest.fixture
def live(base: Path) -> Iterator[LiveServer]:
    with LiveServer(make_config(base), base).start() as server:
        yield server


def counters(server: LiveServer) -> tuple[int, int]:
    """(entries stored, hits) of the server's response cache."""

    def read(state: ServerState) -> tuple[int, int]:
        cache = state.respcache
        assert cache is not None
        return cache.stored, cache.hits

    return server.look(read)


def fetch(
    conn: Conn, target: str, *headers: str, method: str = "GET", version: str = "1.1"
) -> tuple[Wire, bytes]:
    """One response on ``conn`` and its bytes without the Date line."""
    extra = "".join(f"{h}\r\n" for h in headers)
    conn.send(f"{method} {target} HTTP/{version}\r\nHost: localhost\r\n{extra}\r\n".encode())
    wire = conn.response(head_only=method == "HEAD")
    lines = [ln for ln in wire.raw_head.split(b"\r\n") if not ln.lower().startswith(b"date:")]
    return wire, b"\r\n".join(lines) + b"\r\n\r\n" + wire.body


def stored_then_hit(
    server: LiveServer, conn: Conn, target: str, *headers: str, method: str = "GET"
) -> tuple[tuple[Wire, bytes], tuple[Wire, bytes]]:
    """The pipeline's answer that the cache stored, then the next one (a hit)."""

    def stored() -> tuple[Wire, bytes] | None:
        before = counters(server)
        got = fetch(conn, target, *headers, method=method)
        after = counters(server)
        # A hit of an earlier entry expired since, or an answer not kept yet (a
        # file changed less than 2 s ago, compression's first on-the-fly copy):
        # ask again, until the pipeline answers and the cache keeps it.
        return got if after[0] > before[0] and after[1] == before[1] else None

    pipeline = wait_for(stored, PATIENCE, f"{method} {target} stored")
    stored_count, hits = counters(server)
    hit = fetch(conn, target, *headers, method=method)
    assert counters(server) == (stored_count, hits + 1), "the second answer came from the cache"
    return pipeline, hit


@pytest.mark.parametrize(
    ("method", "headers", "coding"),
    [
        ("GET", (), None),
        ("GET", ("Accept-Encoding: gzip",), "gzip"),
        ("GET", ("Accept-Encoding: br, gzip",), "br"),
        ("HEAD", (), None),
    ],
)
def test_a_hit_is_the_pipelines_answer_byte_for_byte(
    live: LiveServer, method: str, headers: tuple[str, ...], coding: str | None
) -> None:
    with Conn(live.port) as conn:
        (pipeline, pipeline_bytes), (hit, hit_bytes) = stored_then_hit(
            live, conn, "/page.txt", *headers, method=method
        )
    assert pipeline.status == hit.status == 200
    assert hit.headers.get("content-encoding") == coding
    assert "date" in hit.headers and "etag" in hit.headers
    assert hit_bytes == pipeline_bytes
    if method == "GET" and coding is None:
        assert hit.body == PAGE


def test_conditional_and_range_requests_take_the_pipeline(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        (_, _), (hit, _) = stored_then_hit(live, conn, "/page.txt")
        etag = hit.headers["etag"]
        before = counters(live)
        not_modified, first = fetch(conn, "/page.txt", f"If-None-Match: {etag}")
        partial, _ = fetch(conn, "/page.txt", "Range: bytes=0-9")
        assert not_modified.status == 304 and not_modified.body == b""
        assert partial.status == 206 and partial.body == PAGE[:10]
        assert counters(live) == before  # neither stored nor answered from the cache
        again, second = fetch(conn, "/page.txt", f"If-None-Match: {etag}")
        assert again.status == 304 and second == first


def test_a_path_with_basic_authentication_is_never_answered_from_the_cache(
    live: LiveServer,
) -> None:
    with Conn(live.port) as conn:
        stored_then_hit(live, conn, "/open/file.txt")
        before = counters(live)
        for _ in range(3):
            denied, _ = fetch(conn, "/secret/file.txt")
            assert denied.status == 401
            assert denied.headers["www-authenticate"].startswith("Basic")
        allowed, _ = fetch(
            conn, "/secret/file.txt", "Authorization: Basic YWxpY2U6d29uZGVyLWxhbmQ="
        )
        assert allowed.status == 200 and allowed.body == PAGE
        denied, _ = fetch(conn, "/secret/file.txt")
        assert denied.status == 401  # the authorized answer was not kept for others
        assert counters(live) == before
        # Other paths keep it.
        hit, _ = fetch(conn, "/open/file.txt")
        assert hit.status == 200 and counters(live) == (before[0], before[1] + 1)


def test_enabling_basic_authentication_for_a_cached_path_switches_it_off(
    base: Path, live: LiveServer
) -> None:
    with Conn(live.port) as conn:
        stored_then_hit(live, conn, "/open/file.txt")
        stored_then_hit(live, conn, "/page.txt")
    # A new configuration enables Basic for /open too: the reload's engine takes over.
    engine: Engine = build_engine(
        make_config(base, ("/secret", "/open")), base_dir=str(base), with_entry_points=True
    )
    engine.start()
    try:
        live.look(lambda state: state.switch(engine))
        with Conn(live.port) as conn:
            for _ in range(3):
                denied, _ = fetch(conn, "/open/file.txt")
                assert denied.status == 401
            assert counters(live)[1] == 0
            (_, pipeline), (_, hit) = stored_then_hit(live, conn, "/page.txt")
            assert hit == pipeline
    finally:
        live.look(lambda state: state.switch(live.engine))
        engine.close()


@pytest.mark.parametrize(
    ("target", "changed"),
    [
        ("/page.txt", PAGE.upper() + b"and longer\n"),
        ("/100k.bin", os.urandom(100 * 1024 + 7)),
    ],
)
def test_a_changed_file_is_served_after_the_check_interval(
    base: Path, live: LiveServer, target: str, changed: bytes
) -> None:
    with Conn(live.port) as conn:
        stored_then_hit(live, conn, target)
        (base / "www" / target[1:]).write_bytes(changed)
        wait_for(
            lambda: fetch(conn, target)[0].body == changed,
            PATIENCE,
            "the changed file served",
        )
        # Once settled, the new version is kept and answered from the cache.
        (_, _), (hit, _) = stored_then_hit(live, conn, target)
        assert hit.body == changed and hit.headers["content-length"] == str(len(changed))


def test_the_cache_is_bounded_in_entries_and_bytes(base: Path) -> None:
    config = make_config(base)
    # ~1 KiB answers, each charged twice (the body, and the framed answer a hit
    # sends: Entry.framed) with its head and overhead: ~2.8 KiB an entry.
    config["server"]["response_cache"] = {"max_entries": 2, "max_bytes": 6144}
    with LiveServer(config, base).start() as server, Conn(server.port) as conn:
        for target in ("/page.txt", "/open/file.txt"):
            stored_then_hit(server, conn, target)
        # A third entry pushes the oldest out: two kept, within the byte budget.
        stored_then_hit(server, conn, "/page.txt", "Accept-Encoding: identity")

        def kept(state: ServerState) -> tuple[int, int, list[bytes]]:
            cache = state.respcache
            assert cache is not None
            return len(cache.entries), cache.bytes, [key[4] for key in cache.entries]

        count, size, targets = server.look(kept)
        assert count == 2 and 0 < size <= 6144
        assert targets == [b"/open/file.txt", b"/page.txt"]


def test_a_connection_never_reuses_an_entry_the_cache_dropped(base: Path) -> None:
    # A connection remembers the entry of its last hit (HttpConnection._memo); once
    # the cache drops it (here: pushed out by another connection's entry), the
    # connection's next request for it takes the pipeline again.
    config = make_config(base)
    config["server"]["response_cache"] = {"max_entries": 1}
    with LiveServer(config, base).start() as server, Conn(server.port) as conn:
        stored_then_hit(server, conn, "/page.txt")
        with Conn(server.port) as other:
            stored_then_hit(server, other, "/open/file.txt")
        stored, hits = counters(server)
        wire, _ = fetch(conn, "/page.txt")
        assert wire.body == PAGE
        assert counters(server) == (stored + 1, hits), "answered by the pipeline, and kept"


def test_the_cache_can_be_switched_off(base: Path) -> None:
    config = make_config(base)
    config["server"]["response_cache"] = {"enabled": False}
    with LiveServer(config, base).start() as server, Conn(server.port) as conn:
        assert server.look(lambda state: state.respcache) is None
        for _ in range(3):
            assert fetch(conn, "/page.txt")[0].body == PAGE


def test_large_files_stay_on_the_pipeline(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        stored_then_hit(live, conn, "/page.txt")
        before = counters(live)
        for _ in range(3):
            big, _ = fetch(conn, "/big.bin")
            assert big.status == 200 and len(big.body) == 300 * 1024
        assert counters(live) == before


def _log_lines(base: Path, stem: str) -> list[dict[str, str]]:
    text = (base / "access.log").read_text()
    names = next(ln for ln in text.splitlines() if ln.startswith("#Fields:")).split()[1:]
    rows = [ln.split() for ln in text.splitlines() if ln[:1] != "#"]
    return [
        row
        for row in (dict(zip(names, r, strict=True)) for r in rows)
        if row["cs-uri-stem"] == stem
    ]


def _hit_logged_as_stored(base: Path, back: int) -> dict[str, str]:
    """The line of /page.txt's hit, ``back`` lines from the end of them, once logged:
    the line before it (the stored answer's) says the same, date and time aside."""
    lines = wait_for(
        lambda: (found := _log_lines(base, "/page.txt")) and len(found) >= back and found,
        PATIENCE,
        "the access log lines",
    )
    stored_line, hit_line = lines[-back], lines[-back + 1]
    varying = {"date", "time", "time-taken"}
    assert {k: v for k, v in hit_line.items() if k not in varying} == {
        k: v for k, v in stored_line.items() if k not in varying
    }
    return hit_line


def test_a_hit_is_logged_and_counted_as_the_pipeline_would(base: Path, live: LiveServer) -> None:
    def requests(state: ServerState) -> int:
        runtime = state.engine.sites[0].app_for("/page.txt")
        assert runtime is not None
        return sum(runtime.app.metrics.requests)

    with Conn(live.port) as conn:
        (pipeline, _), (hit, _) = stored_then_hit(live, conn, "/page.txt", "User-Agent: probe/1")
        counted = live.look(requests)
        fetch(conn, "/page.txt", "User-Agent: probe/1")
        assert live.look(requests) == counted + 1
    hit_line = _hit_logged_as_stored(base, 3)
    assert hit_line["sc-status"] == "200" and hit_line["cs(User-Agent)"] == "probe/1"
    assert int(hit_line["sc-bytes"]) == len(hit.raw_head) + 4 + len(hit.body)
    assert pipeline.body == hit.body


def test_a_hit_calls_its_entrys_access_log_capture_and_logs_the_pipelines_line(
    base: Path,
) -> None:
    # The default field list (the compiled DefaultW3cLine): the stored entry calls the
    # log's capture for its settings, found once when it was stored, not the hook
    # that looks it up per request; the line it writes is the pipeline's, time aside.
    config = make_config(base)
    del config["http_logging"]["fields"]

    def captures(state: ServerState) -> list[str]:
        cache = state.respcache
        assert cache is not None
        return [
            type(getattr(fn, "__self__", fn)).__name__
            for entry in cache.entries.values()
            for fn in entry.log
        ]

    with LiveServer(config, base).start() as server, Conn(server.port) as conn:
        headers = ("User-Agent: probe/2", "Referer: http://example.test/")
        stored_then_hit(server, conn, "/page.txt?x=1", *headers)
        assert server.look(captures) == ["DefaultW3cLine"]
    hit_line = _hit_logged_as_stored(base, 2)
    assert hit_line["cs-method"] == "GET" and hit_line["cs-uri-query"] == "x=1"
    assert hit_line["sc-status"] == "200" and hit_line["cs(User-Agent)"] == "probe/2"


@pytest.mark.parametrize("keep_alive", [0.5, 1.3], ids=["armed", "lazy"])
def test_the_keep_alive_timeout_runs_from_a_hits_end(base: Path, keep_alive: float) -> None:
    # A hit starts the keep-alive timer from the clock reading its log line took
    # (HttpConnection._finish): the idle connection closes at that timeout, not
    # at once nor never. 1.3 s is armed by the lazy timers' sweep (_LAZY_FROM 1 s).
    config = make_config(base)
    config["server"]["timeouts"] = {"keep_alive": keep_alive}
    config["static_content"]["cache_check_interval"] = 30  # the entry outlives the test
    # Settled (not changed within 2 s): stored at its first answer, so the connection
    # never waits between requests for the cache to keep it.
    past = time.time() - 60
    os.utime(base / "www" / "page.txt", (past, past))
    with LiveServer(config, base).start() as server, Conn(server.port) as conn:
        stored_then_hit(server, conn, "/page.txt")
        _, hits = counters(server)
        # Read before the request is sent: the hit's end, where the server's timer
        # starts, comes after it (a reading after the answer came could be later).
        asked = time.monotonic()
        fetch(conn, "/page.txt")
        assert conn.closed()
        took = time.monotonic() - asked
        assert counters(server)[1] == hits + 1, "the last answer was a hit"
    assert took >= keep_alive - 0.01  # uvloop's clock: whole milliseconds


# -- a 100 KiB file (issue #24): kept, answered in one writev, never buffered per request --


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_100k_hit_is_the_pipelines_answer_byte_for_byte(live: LiveServer, method: str) -> None:
    with Conn(live.port) as conn:
        (pipeline, pipeline_bytes), (hit, hit_bytes) = stored_then_hit(
            live, conn, "/100k.bin", method=method
        )
        _, again_bytes = fetch(conn, "/100k.bin", method=method)
    assert pipeline.status == hit.status == 200
    assert hit.headers["content-length"] == str(len(HUNDRED_K))
    assert hit_bytes == pipeline_bytes == again_bytes
    assert hit.body == (HUNDRED_K if method == "GET" else b"")


def test_100k_ranges_and_conditionals_take_the_pipeline(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        (_, _), (hit, _) = stored_then_hit(live, conn, "/100k.bin")
        before = counters(live)
        etag = hit.headers["etag"]
        not_modified, _ = fetch(conn, "/100k.bin", f"If-None-Match: {etag}")
        assert not_modified.status == 304 and not_modified.body == b""
        one, _ = fetch(conn, "/100k.bin", "Range: bytes=1000-70999")
        assert one.status == 206 and one.body == HUNDRED_K[1000:71000]
        assert one.headers["content-range"] == f"bytes 1000-70999/{len(HUNDRED_K)}"
        multi, _ = fetch(conn, "/100k.bin", "Range: bytes=0-9,-20")
        assert multi.status == 206
        assert multi.headers["content-type"].startswith("multipart/byteranges; boundary=")
        assert HUNDRED_K[:10] in multi.body and HUNDRED_K[-20:] in multi.body
        assert counters(live) == before  # none stored, none answered from the cache


def test_100k_entries_are_held_within_the_byte_and_entry_size_bounds(base: Path) -> None:
    www = base / "www"
    for name in ("a", "b", "c"):
        (www / f"{name}.bin").write_bytes(os.urandom(100 * 1024))
    config = make_config(base)
    config["server"]["response_cache"] = {"max_bytes": 250 * 1024}
    with LiveServer(config, base).start() as server, Conn(server.port) as conn:
        for name in ("a", "b", "c"):
            stored_then_hit(server, conn, f"/{name}.bin")

        def kept(state: ServerState) -> tuple[int, list[bytes]]:
            cache = state.respcache
            assert cache is not None
            return cache.bytes, [key[4] for key in cache.entries]

        size, targets = server.look(kept)
        # Two 100 KiB answers fit in 250 KiB, a third pushed the oldest out.
        assert targets == [b"/b.bin", b"/c.bin"] and 200 * 1024 < size <= 250 * 1024
    # An entry larger than max_entry_size is never kept, whatever the byte budget.
    config["server"]["response_cache"] = {"max_entry_size": 64 * 1024}
    with LiveServer(config, base).start() as server, Conn(server.port) as conn:
        stored_then_hit(server, conn, "/page.txt")
        before = counters(server)
        for _ in range(3):
            assert fetch(conn, "/100k.bin")[0].body == HUNDRED_K
        assert counters(server) == before


def _held(state: ServerState) -> tuple[int, int]:
    """(bytes the server's one connection still holds for its client, requests queued)."""
    held = queued = 0
    for conn in state.connections:
        held += conn.buffered()  # type: ignore[attr-defined]
        queued += len(conn.queue)  # type: ignore[attr-defined]
    return held, queued


def test_a_client_pipelining_100k_requests_without_reading_is_held_back(
    live: LiveServer,
) -> None:
    with Conn(live.port, rcvbuf=4096) as conn:
        stored_then_hit(live, conn, "/100k.bin")
        count = 100
        conn.send(b"GET /100k.bin HTTP/1.1\r\nHost: localhost\r\n\r\n" * count)
        # The server answers what the sockets take, then holds the rest back: the
        # requests queue (its reading pauses) instead of 10 MiB of answers piling
        # up in memory for a client that reads nothing.
        wait_for(
            lambda: (held := live.look(_held))[0] > 0 and held[1] > 0,
            PATIENCE,
            "the server holding back",
        )
        held, _ = live.look(_held)
        assert held <= 2 * (len(HUNDRED_K) + 512)
        for _ in range(count):
            wire = conn.response()
            assert wire.status == 200 and wire.body == HUNDRED_K


def test_an_http10_client_is_never_sent_an_http11_clients_answer(live: LiveServer) -> None:
    # Compression leaves HTTP/1.0 clients alone by default: the gzip answer kept for
    # an HTTP/1.1 client must not answer an HTTP/1.0 one with the same Accept-Encoding
    # (the version is part of the key).
    with Conn(live.port) as conn:
        (_, _), (hit, _) = stored_then_hit(live, conn, "/page.txt", "Accept-Encoding: gzip")
    assert hit.headers["content-encoding"] == "gzip"
    for _ in range(3):
        with Conn(live.port) as conn:
            wire, _ = fetch(conn, "/page.txt", "Accept-Encoding: gzip", version="1.0")
        assert wire.status == 200 and "content-encoding" not in wire.headers
        assert wire.body == PAGE


def test_a_connections_last_hit_answers_only_the_same_request(live: LiveServer) -> None:
    # The entry a connection remembers (HttpConnection._memo, Entry.answers) is
    # for its key alone: the same target with another Accept-Encoding, method or
    # version on that connection gets its own answer.
    with Conn(live.port) as conn:
        stored_then_hit(live, conn, "/page.txt", "Accept-Encoding: gzip")
        wire, _ = fetch(conn, "/page.txt")
        assert "content-encoding" not in wire.headers and wire.body == PAGE
        stored_then_hit(live, conn, "/page.txt", "Accept-Encoding: gzip")
        wire, _ = fetch(conn, "/page.txt", "Accept-Encoding: gzip", method="HEAD")
        assert wire.headers["content-encoding"] == "gzip" and wire.body == b""
        stored_then_hit(live, conn, "/page.txt", "Accept-Encoding: gzip")
        wire, _ = fetch(conn, "/page.txt", "Accept-Encoding: gzip", version="1.0")
        assert "content-encoding" not in wire.headers and wire.body == PAGE
