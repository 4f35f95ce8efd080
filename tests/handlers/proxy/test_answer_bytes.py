"""The bytes of a proxied answer, over real sockets: for a set of upstream heads
(repeated fields, Set-Cookie and Location rewritten, chunked, Content-Length,
204, 304, HEAD, fields not in their canonical form), what the client receives is
pinned byte for byte. The expected bytes are those the front end sent before the
proxy handed the HTTP/1 writer its field block (session 22): the block must not
change a byte. And a module that changes a proxied response's head still has its
way, whichever way it changes it."""

from __future__ import annotations

import asyncio
import gc
import gzip
import re
import socket
from collections.abc import Iterator
from typing import ClassVar

import httpx
import pytest

from colonnade import Context, Module, Stage, hook
from tests.e2e.conftest import LiveServer
from tests.handlers.proxy.broken import BrokenUpstream
from tests.handlers.proxy.kit import front_config
from tests.support.wait import PATIENCE

pytestmark = pytest.mark.e2e

#: Each path's canned answer (``{port}``: the upstream's own port).
ANSWERS: dict[str, bytes] = {
    # The usual answer: canonical lines, Date and Server of the upstream's own.
    "plain": b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
    b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello",
    # uvicorn's order: the length before the type.
    "uvicorn": b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-length: 5\r\ncontent-type: text/plain\r\n\r\nhello",
    # No Date or Server: the front end adds its own.
    "bare": b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok",
    # Names in any case, spaces around values, an empty value, an empty Server.
    "ragged": b"HTTP/1.1 200 OK\r\nContent-Type:text/html \r\nX-A: \t b\t\r\nX-Empty:\r\n"
    b"Server:\r\nDATE: Mon, 07 Dec 2026 00:00:00 GMT\r\nContent-Length:  2 \r\n\r\nok",
    # Repeated fields, kept apart and in order.
    "repeated": b"HTTP/1.1 200 OK\r\nx-v: 1\r\nvary: accept\r\nx-v: 2\r\nvary: origin\r\n"
    b"server: up\r\ncontent-length: 2\r\n\r\nok",
    # A reason of the upstream's own, and none at all.
    "reason": b"HTTP/1.1 200 Fine Thanks\r\nserver: up\r\ncontent-length: 2\r\n\r\nok",
    "noreason": b"HTTP/1.1 201\r\nserver: up\r\ncontent-length: 2\r\n\r\nok",
    # HTTP/1.0, keep-alive asked.
    "http10": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nserver: up\r\n"
    b"content-length: 2\r\n\r\nok",
    # Hop-by-hop fields and those Connection names stay behind.
    "hop": b"HTTP/1.1 200 OK\r\nConnection: x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\n"
    b"x-kept: 2\r\ncontent-length: 2\r\n\r\nok",
    # The upstream's host in Location, Content-Location and a cookie's Domain.
    "moved": b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/target?x=1\r\n"
    b"Content-Location: http://127.0.0.1:{port}/here\r\n"
    b"Set-Cookie: s=1; Domain=127.0.0.1; Path=/\r\nSet-Cookie: t=2\r\ncontent-length: 2\r\n\r\nok",
    # Chunked: a small body handed on whole, with its length.
    "chunked": b"HTTP/1.1 200 OK\r\nserver: up\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    # Longer than buffer_size (32 KiB): streamed with the upstream's length.
    "large": b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-type: application/octet-stream\r\n"
    b"content-length: 40000\r\n\r\n" + b"x" * 40000,
    "no-content": b"HTTP/1.1 204 No Content\r\nserver: up\r\nx-a: 1\r\n\r\n",
    "not-modified": b'HTTP/1.1 304 Not Modified\r\nserver: up\r\netag: "abc"\r\n'
    b"content-length: 5\r\n\r\n",
    # An answer to HEAD: the length of the body it does not carry.
    "head": (
        b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n"
    ),
    # A text body long enough to compress.
    "text": b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-type: text/plain\r\n"
    b"content-length: 600\r\n\r\n" + b"compress me " * 50,
    # Sent as it came (see test_no_idle_connection_keeps_an_answer).
    "marked": b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
    b"content-type: text/plain\r\ncontent-length: 26\r\n\r\nheld-by-no-idle-connection",
    # An empty body.
    "empty": b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-length: 0\r\n\r\n",
    # A long head (past what the writer keeps of a head shape).
    "long": b"HTTP/1.1 200 OK\r\nserver: up\r\n"
    + b"".join(b"x-f%d: %s\r\n" % (i, b"v" * 40) for i in range(40))
    + b"content-length: 2\r\n\r\nok",
}

#: What the client receives for each (the front end's own Date: DATE; "large" is
#: followed by its 40,000 bytes).
EXPECTED: dict[str, bytes] = {
    "bare": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
        b"date: DATE\r\nserver: colonnade\r\n\r\nok"
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-length: 11\r\ndate: DATE\r\n\r\nhello world"
    ),
    "empty": b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-length: 0\r\ndate: DATE\r\n\r\n",
    "head": (
        b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-type: text/plain\r\n"
        b"content-length: 5\r\ndate: DATE\r\n\r\n"
    ),
    "hop": (
        b"HTTP/1.1 200 OK\r\nx-kept: 2\r\ncontent-length: 2\r\ndate: DATE\r\n"
        b"server: colonnade\r\n\r\nok"
    ),
    "http10": b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-length: 2\r\ndate: DATE\r\n\r\nok",
    "large": (
        b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-type: application/octet-stream\r\n"
        b"content-length: 40000\r\ndate: DATE\r\n\r\n"
    ),
    "long": b"HTTP/1.1 200 OK\r\nserver: up\r\n"
    + b"".join(b"x-f%d: %s\r\n" % (i, b"v" * 40) for i in range(40))
    + b"content-length: 2\r\ndate: DATE\r\n\r\nok",
    "marked": ANSWERS["marked"],
    "moved": (
        b"HTTP/1.1 302 Found\r\nlocation: http://www.example.com/target?x=1\r\n"
        b"content-location: http://www.example.com/here\r\n"
        b"set-cookie: s=1; Domain=www.example.com; Path=/\r\nset-cookie: t=2\r\n"
        b"content-length: 2\r\ndate: DATE\r\nserver: colonnade\r\n\r\nok"
    ),
    "no-content": b"HTTP/1.1 204 No Content\r\nserver: up\r\nx-a: 1\r\ndate: DATE\r\n\r\n",
    "noreason": b"HTTP/1.1 201 Created\r\nserver: up\r\ncontent-length: 2\r\ndate: DATE\r\n\r\nok",
    "not-modified": (
        b'HTTP/1.1 304 Not Modified\r\nserver: up\r\netag: "abc"\r\ncontent-length: 5\r\n'
        b"date: DATE\r\n\r\n"
    ),
    "plain": (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "ragged": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nx-a: b\r\nx-empty: \r\n"
        b"date: Mon, 07 Dec 2026 00:00:00 GMT\r\ncontent-length: 2\r\n\r\nok"
    ),
    "reason": (
        b"HTTP/1.1 200 Fine Thanks\r\nserver: up\r\ncontent-length: 2\r\ndate: DATE\r\n\r\nok"
    ),
    "repeated": (
        b"HTTP/1.1 200 OK\r\nx-v: 1\r\nvary: accept\r\nx-v: 2\r\nvary: origin\r\n"
        b"server: up\r\ncontent-length: 2\r\ndate: DATE\r\n\r\nok"
    ),
    "uvicorn": (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "text": (
        b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-type: text/plain\r\n"
        b"content-length: 600\r\ndate: DATE\r\n\r\n" + b"compress me " * 50
    ),
}
#: What the client receives for /plain?QUERY, changed by the Changer module.
CHANGED: dict[str, bytes] = {
    "replace": (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: changed\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "append": (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
        b"content-type: text/plain\r\nx-added: 1\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "swap": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nserver: up\r\n"
        b"date: Mon, 07 Dec 2026 00:00:00 GMT\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "drop-add": (
        b"HTTP/1.1 200 OK\r\nserver: up\r\ncontent-type: text/plain\r\n"
        b"date: Mon, 07 Dec 2026 00:00:00 GMT\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "status": (
        b"HTTP/1.1 203 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "reason": (
        b"HTTP/1.1 200 Changed\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
    ),
    "set": (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
        b"content-type: text/x-changed\r\ncontent-length: 5\r\n\r\nhello"
    ),
    # Another body of the same length, the head untouched: not the answer as it came.
    "body": (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
        b"content-type: text/plain\r\ncontent-length: 5\r\n\r\nHELLO"
    ),
}


class CannedUpstream(BrokenUpstream):
    """Answers each path with its canned bytes from ANSWERS."""

    async def _answer(
        self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        answer = ANSWERS.get(path.strip("/").split("?")[0])
        if answer is None:
            return await super()._answer(path, reader, writer)
        writer.write(answer.replace(b"{port}", str(self.port).encode()))
        await writer.drain()
        return True


@pytest.fixture(scope="module")
def upstream() -> Iterator[CannedUpstream]:
    with CannedUpstream() as up:
        yield up


class Changer(Module):
    """Changes the head of an answer as its query says, as a module may, just
    before the head goes out (SEND_RESPONSE): in place, or by a new list."""

    id = "test.changer"
    seen: ClassVar[list[list[tuple[bytes, bytes]]]] = []

    @hook(Stage.SEND_RESPONSE)
    def send(self, ctx: Context) -> None:
        response = ctx.response
        self.seen.append(list(response.headers))
        query = ctx.request.query
        headers = response.headers
        if query == b"replace":  # a field's value replaced in place
            for i, (name, _) in enumerate(headers):
                if name == b"server":
                    headers[i] = (b"server", b"changed")
        elif query == b"append":
            headers.append((b"x-added", b"1"))
        elif query == b"swap":  # the same fields in another order
            headers.reverse()
        elif query == b"drop-add":  # one dropped and the same one added again
            field = headers.pop(0)
            headers.append(field)
        elif query == b"status":
            response.status = 203
        elif query == b"reason":
            response.reason = b"Changed"
        elif query == b"set":
            response.set_header(b"content-type", b"text/x-changed")
        elif query == b"body":
            response.body = response.body.upper()


def raw_answer(port: int, target: str, method: str = "GET", host: str = "www.example.com") -> bytes:
    """The bytes of the one answer to ``method target`` (read by its framing)."""

    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            assert more, data
            data += more
        end = data.index(b"\r\n\r\n") + 4
        head = data[:end].lower()
        status = int(data[9:12])
        found = re.search(rb"\r\ncontent-length: (\d+)\r\n", head)
        if method == "HEAD" or status in (204, 304):
            want = end
        elif found is not None:
            want = end + int(found.group(1))
        else:
            assert b"\r\ntransfer-encoding: chunked\r\n" in head, head
            while not data.endswith(b"0\r\n\r\n"):
                more = sock.recv(65536)
                assert more, data
                data += more
            want = len(data)
        while len(data) < want:
            more = sock.recv(65536)
            assert more, data
            data += more
        assert len(data) == want, data
        return data


#: The front end's own Date line (the only line that changes from run to run).
_DATE = re.compile(rb"\r\ndate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


def normal(data: bytes) -> bytes:
    """``data`` with a Date the front end made (not the upstream's) as DATE."""
    return _DATE.sub(
        lambda m: m.group(0) if b"2026 00:00:00" in m.group(0) else b"\r\ndate: DATE\r\n", data
    )


@pytest.fixture(scope="module")
def proxy(
    upstream: CannedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    config = front_config(f"http://127.0.0.1:{upstream.port}")
    config["server"]["modules"].append("test.changer")
    server = LiveServer(config, tmp_path_factory.mktemp("front"), modules=[Changer]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("path", sorted(ANSWERS))
def test_the_answer_bytes(proxy: LiveServer, upstream: CannedUpstream, path: str) -> None:
    method = "HEAD" if path == "head" else "GET"
    got = normal(raw_answer(proxy.port, f"/{path}", method))
    want = EXPECTED[path].replace(b"{port}", str(upstream.port).encode())
    if path == "large":
        want += b"x" * 40000
    assert got == want


def test_twice_on_one_connection(proxy: LiveServer) -> None:
    # The same answer twice on a kept connection (the second finds what the first
    # left: the writer's head shapes, the upstream connection), then another.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=PATIENCE) as sock:
        for path in ("uvicorn", "uvicorn", "bare", "uvicorn"):
            sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: www.example.com\r\n\r\n".encode())
            want = EXPECTED[path]
            data = b""
            while len(normal(data)) < len(want):
                more = sock.recv(65536)
                assert more, data
                data += more
            assert normal(data) == want


#: The body of /marked: bytes no other answer nor any field carries.
MARK = b"held-by-no-idle-connection"


#: The upstream's own Date value: the head's lines the block keeps carry it.
UPSTREAM_DATE = b"Mon, 07 Dec 2026 00:00:00 GMT"


def holding(mark: bytes) -> list[str]:
    """Where the server's own objects hold bytes objects that contain ``mark``:
    each holder's type and attribute. Run on the server's loop: every object of
    a ``colonnade`` type the collector tracks is read, each attribute its type
    describes (slots interpreted, a native class's attributes compiled), and the
    lists, tuples and dicts among them a level down."""

    def has(value: object) -> bool:
        # Bytes objects only: a pool's read buffer (a bytearray, and views of it)
        # is one for all its connections, made once and read into again.
        return type(value) is bytes and mark in value

    found: list[str] = []
    for obj in gc.get_objects():
        kind = type(obj)
        module = kind.__dict__.get("__module__")
        if type(module) is not str or not module.startswith("colonnade"):
            continue
        names = [
            name
            for cls in kind.__mro__
            for name, described in vars(cls).items()
            if type(described).__name__ in ("member_descriptor", "getset_descriptor")
            and not name.startswith("__")
        ]
        names += list(getattr(obj, "__dict__", {}))
        for name in names:
            try:
                value = getattr(obj, name, None)
            except Exception:  # (a native attribute may refuse to be read alone)
                continue
            inner: list[object] = [value]
            if type(value) in (list, tuple):
                inner += list(value)  # type: ignore[call-overload]
            elif type(value) is dict:
                inner += list(value.values())  # type: ignore[union-attr]
            if any(has(item) for item in inner):
                found.append(f"{kind.__qualname__}.{name}")
    return found


def held() -> tuple[list[str], list[str]]:
    """Where the marked answer's bytes are held, and where the upstream's Date
    value is (which the block keeps with the head's lines: the scan reads what it
    means to read, in either build)."""
    return holding(MARK), holding(UPSTREAM_DATE)


@pytest.mark.parametrize("way", ["whole", "http2", "changed"])
def test_no_idle_connection_keeps_an_answer(
    proxy: LiveServer, dressed: LiveServer, way: str
) -> None:
    # review16, proxy23: the upstream's whole answer is a request's, never a
    # connection's: once it is sent, neither the idle upstream connection (pooled)
    # nor the idle client connection holds its bytes, whether the answer went out
    # as it came (whole), to an HTTP/2 client, or changed by modules (custom
    # headers, an outbound rewrite: the dressed front end).
    server = dressed if way == "changed" else proxy
    if way == "http2":
        with httpx.Client(http1=False, http2=True, timeout=PATIENCE) as client:
            got = client.get(f"http://127.0.0.1:{server.port}/marked")
            assert got.http_version == "HTTP/2" and got.content == MARK
            # The client's connection is still open: both idle now.
            answer, date = server.look(lambda _: held(), turns=2)
    else:
        with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
            sock.sendall(b"GET /marked HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
            data = b""
            while not data.endswith(MARK):
                more = sock.recv(65536)
                assert more, data
                data += more
            if way == "whole":
                assert data == ANSWERS["marked"]  # sent as it came
            else:
                assert b"\r\nx-frame-options: DENY\r\n" in data
            # Both connections idle now (the client's kept open, the upstream's pooled).
            answer, date = server.look(lambda _: held(), turns=2)
    assert "FieldBlock.lines" in date
    assert answer == [], "\n".join(answer)


@pytest.mark.parametrize("query", sorted(CHANGED))
def test_a_module_changes_a_proxied_head(proxy: LiveServer, query: str) -> None:
    Changer.seen.clear()
    got = normal(raw_answer(proxy.port, f"/plain?{query}"))
    assert got == CHANGED[query]
    # The module saw the upstream's fields, less the length the engine writes.
    assert Changer.seen == [
        [
            (b"date", b"Mon, 07 Dec 2026 00:00:00 GMT"),
            (b"server", b"up"),
            (b"content-type", b"text/plain"),
        ]
    ]


@pytest.fixture(scope="module")
def dressed(
    upstream: CannedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A front end whose answers pass custom headers, an outbound rewrite rule and
    compression on their way out."""
    config = front_config(f"http://127.0.0.1:{upstream.port}")
    config["server"]["modules"] += ["http.custom_headers", "rewrite", "http.compression"]
    config["custom_headers"] = {"set": {"X-Frame-Options": "DENY"}, "remove": ["X-A"]}
    config["rewrite"] = {
        "outbound_rules": [
            {
                "name": "type",
                "server_variable": "RESPONSE_Content_Type",
                "pattern": "^text/plain$",
                "action": {"type": "rewrite", "value": "text/plain; charset=utf-8"},
            }
        ]
    }
    config["compression"] = {"dynamic": True}
    server = LiveServer(config, tmp_path_factory.mktemp("dressed")).start()
    try:
        yield server
    finally:
        server.stop()


def test_modules_change_a_proxied_answer(dressed: LiveServer) -> None:
    # The block of a head written as the writer writes it is not what goes out:
    # each module's change does.
    got = normal(raw_answer(dressed.port, "/plain"))
    assert got == (
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: up\r\n"
        b"content-type: text/plain; charset=utf-8\r\nx-frame-options: DENY\r\n"
        b"content-length: 5\r\n\r\nhello"
    )
    got = normal(raw_answer(dressed.port, "/no-content"))
    assert got == (
        b"HTTP/1.1 204 No Content\r\nserver: up\r\nx-frame-options: DENY\r\ndate: DATE\r\n\r\n"
    )


def test_compression_of_a_proxied_answer(dressed: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", dressed.port), timeout=PATIENCE) as sock:
        sock.sendall(b"GET /text HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"\r\ncontent-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
    assert b"\r\ncontent-encoding: gzip\r\n" in head
    assert b"\r\nvary: Accept-Encoding\r\n" in head
    assert b"\r\ncontent-type: text/plain; charset=utf-8\r\n" in head
    assert gzip.decompress(body) == b"compress me " * 50
