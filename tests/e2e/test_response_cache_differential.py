"""A response cache hit is the pipeline's answer, for every shape of request the
cache answers: two servers on the same files, one with the response cache and one
without, each asked the same request (GET or HEAD, HTTP/1.1 or 1.0, Connection
absent, close, keep-alive, both listed, or naming other options; Accept-Encoding
absent, gzip or "br, gzip"; Expect: 100-continue; a body joined with its head or
sent beside it; alone or pipelined twice) must send the same bytes, Date aside
(a hit's framed answer is kept per Date second: h1.start_again), and keep or
close the connection alike. Whether the connection stays open is read by asking
once more after the answers: answered, or the end of the connection."""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.test_response_cache import PAGE, make_config
from tests.modules.basic_auth.support import needs_htpasswd
from tests.support.wait import PATIENCE, wait_for

pytestmark = [pytest.mark.e2e, needs_htpasswd]

DATE = re.compile(rb"\r\ndate: [^\r]*", re.IGNORECASE)
LENGTH = re.compile(rb"\r\ncontent-length: (\d+)", re.IGNORECASE)

CONNECTION = [None, "close", "keep-alive", "close, keep-alive", "upgrade", "TE"]
ENCODING = [None, "gzip", "br, gzip"]
#: A page compression applies to, a body sent beside its head (over 16 KiB: the
#: hit's writev, not the framed answer), and a small one compression leaves alone.
PATHS = ["/page.txt", "/20k.bin", "/p.html"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    base = tmp_path_factory.mktemp("differential")
    www = base / "www"
    (www / "secret").mkdir(parents=True)
    (www / "page.txt").write_bytes(PAGE)
    (www / "20k.bin").write_bytes(os.urandom(20 * 1024))
    (www / "p.html").write_bytes(b"<p>hi</p>" * 10)
    (base / "users").write_text("")
    # Files changed less than 2 s ago are not kept (engine/respcache.py RACY_NS).
    time.sleep(2.1)
    cached = make_config(base)
    plain = make_config(base)
    plain["server"]["response_cache"] = {"enabled": False}
    with LiveServer(cached, base).start() as on, LiveServer(plain, base).start() as off:
        yield on, off


def _ask(port: int, data: bytes, count: int, head_only: bool) -> tuple[list[bytes], bool]:
    """The ``count`` answers to ``data`` (Date lines cut out), and whether the
    connection then carries another request."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        buf = b""
        eof = False

        def fill() -> bool:
            nonlocal buf, eof
            got = sock.recv(65536)
            buf += got
            eof = not got
            return bool(got)

        answers = []
        for _ in range(count):
            while b"\r\n\r\n" not in buf and fill():
                pass
            head, found, buf = buf.partition(b"\r\n\r\n")
            if not found:
                break
            length = LENGTH.search(head)
            size = 0 if head_only or length is None else int(length.group(1))
            while len(buf) < size and fill():
                pass
            answers.append(DATE.sub(b"", head) + b"\r\n\r\n" + buf[:size])
            buf = buf[size:]
        if eof or buf:
            return answers, False
        # Asked once more: an answer says the connection was kept, its end that not.
        try:
            sock.sendall(b"GET /p.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
            kept = fill()
        except OSError:  # reset: closed under the probe
            kept = False
        return answers, kept


def _settled(server: LiveServer, request: bytes, head_only: bool) -> None:
    # Compression answers on the fly (a weak ETag) until its background thread
    # has made the file's compressed copy (a strong one); only then are both
    # servers' answers the same: asked until it is there.
    wait_for(
        lambda: b"etag: W/" not in _ask(server.port, request, 1, head_only)[0][0],
        PATIENCE,
        f"the compressed copy for {request!r}",
    )


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_a_hit_answers_every_request_shape_as_the_pipeline(
    servers: tuple[LiveServer, LiveServer], method: str, version: str
) -> None:
    on, off = servers
    differences = []
    for connection, encoding, path, expect in itertools.product(
        CONNECTION, ENCODING, PATHS, (False, True)
    ):
        fields = "Host: localhost\r\n"
        if connection:
            fields += f"Connection: {connection}\r\n"
        if encoding:
            fields += f"Accept-Encoding: {encoding}\r\n"
        if expect:
            fields += "Expect: 100-continue\r\n"
        request = f"{method} {path} HTTP/{version}\r\n{fields}\r\n".encode()
        head_only = method == "HEAD"
        for server in (on, off):
            _settled(server, request, head_only)
        for count in (1, 2):
            hit = _ask(on.port, request * count, count, head_only)
            pipeline = _ask(off.port, request * count, count, head_only)
            if hit != pipeline:
                differences.append((request * count, hit, pipeline))
    assert differences == []
    stored, hits = on.look(lambda state: (state.respcache.stored, state.respcache.hits))  # type: ignore[union-attr]
    assert stored and hits > stored  # the cache answered most of them


def test_one_connection_asking_for_one_thing_after_another(
    servers: tuple[LiveServer, LiveServer],
) -> None:
    # A connection remembers the entry of its last hit (Entry.answers): each
    # request after it differs from it in one field or several (method, version,
    # Accept-Encoding, target), and is answered as the pipeline answers it.
    on, off = servers
    dimensions = (["GET", "HEAD"], ["1.1", "1.0"], ENCODING, [*PATHS, "/page.txt?q"])
    shapes = list(itertools.product(*dimensions))
    # Each dimension in turn the innermost: one request after another that differs
    # from it in that field only (and each shape asked twice in a row: stored, then
    # hit, before the next one remembers it).
    order: list[tuple[str, str, str | None, str]] = []
    for inner in range(4):
        nesting = [i for i in range(4) if i != inner] + [inner]
        for values in itertools.product(*(dimensions[i] for i in nesting)):
            shape = tuple(values[nesting.index(i)] for i in range(4))
            order += [shape, shape]  # type: ignore[list-item]

    def request(shape: tuple[str, str, str | None, str]) -> bytes:
        method, version, encoding, path = shape
        fields = "Host: localhost\r\nConnection: keep-alive\r\n"
        if encoding:
            fields += f"Accept-Encoding: {encoding}\r\n"
        return f"{method} {path} HTTP/{version}\r\n{fields}\r\n".encode()

    def answers(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            got = []
            buf = b""
            for shape in order:
                sock.sendall(request(shape))
                while b"\r\n\r\n" not in buf:
                    buf += sock.recv(65536)
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = LENGTH.search(head)
                size = 0 if shape[0] == "HEAD" or length is None else int(length.group(1))
                while len(buf) < size:
                    buf += sock.recv(65536)
                got.append(DATE.sub(b"", head) + b"\r\n\r\n" + buf[:size])
                buf = buf[size:]
            return got

    for server in (on, off):  # compression's copies made on both
        for shape in shapes:
            _settled(server, request(shape), shape[0] == "HEAD")
    hits = on.look(lambda state: state.respcache.hits)  # type: ignore[union-attr]
    cached = answers(on.port)
    assert on.look(lambda state: state.respcache.hits) > hits  # type: ignore[union-attr]
    pipeline = answers(off.port)
    assert [
        (request(shape), a, b)
        for shape, a, b in zip(order, cached, pipeline, strict=True)
        if a != b
    ] == []
