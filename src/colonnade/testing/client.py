"""An in-process client: requests go through the engine's real pipeline, no sockets."""

from __future__ import annotations

import asyncio
import tempfile
import tomllib
from collections.abc import Iterable
from typing import Any

from colonnade.config.load import embedded_default, from_dict
from colonnade.core.module import Module
from colonnade.core.registry import Registry
from colonnade.core.request import BytesBody, Headers, Request, TlsInfo
from colonnade.core.urlpath import decode_path
from colonnade.engine import Engine
from colonnade.errors import HttpError
from colonnade.modules.standard import BUILTIN


class RecordingWriter:
    """A :class:`~colonnade.core.context.ResponseWriter` that keeps what was sent."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.reason: bytes | None = None
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.content_length: int | None = None
        self.ended = False
        self.aborted = False
        self.bytes_sent = 0

    def send_all(self, status: int, reason: bytes | None, headers: Headers, body: bytes) -> None:
        """Record a whole response."""
        self.start(status, reason, headers, len(body))
        self.chunks.append(body)
        self.bytes_sent += len(body)
        self.ended = True

    def start(
        self, status: int, reason: bytes | None, headers: Headers, content_length: int | None
    ) -> None:
        """Record the head."""
        if self.status is not None:
            raise AssertionError("response head sent twice")
        self.status, self.reason, self.headers = status, reason, list(headers)
        self.content_length = content_length

    async def write(self, data: bytes) -> None:
        """Record body bytes."""
        self.chunks.append(data)
        self.bytes_sent += len(data)

    async def sendfile(self, path: str, offset: int, count: int) -> None:
        """Record a file range as bytes."""
        with open(path, "rb") as f:  # noqa: ASYNC230 - a test double, files are small
            f.seek(offset)
            await self.write(f.read(count))

    async def end(self) -> None:
        """Record the end of the body."""
        self.ended = True

    def abort(self) -> None:
        """Record that the connection was dropped."""
        self.aborted = True

    def upgrade(self) -> None:
        """In-process requests cannot switch protocols (use a live server)."""
        return


class TestResponse:
    """What a client would have received."""

    __test__ = False  # not a pytest test class

    def __init__(self, writer: RecordingWriter, method: str, context: Any) -> None:
        self.status = writer.status or 0
        self.headers = writer.headers
        body = b"".join(writer.chunks)
        self.body = b"" if method == "HEAD" else body
        self.aborted = writer.aborted
        self.complete = writer.ended
        self.context = context

    def header(self, name: str) -> str | None:
        """The first value of response header ``name`` (any case)."""
        key = name.lower().encode()
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode()


_EMPTY: list[str] = []


def _empty_dir() -> str:
    # Tests that give no folder get an empty one, never the working folder (whose
    # web.toml files would otherwise become part of their configuration).
    if not _EMPTY:
        _EMPTY.append(tempfile.mkdtemp(prefix="colonnade-test-"))
    return _EMPTY[0]


def build_engine(
    config: str | dict[str, Any] | None = None,
    *,
    root: str | None = None,
    modules: Iterable[type[Module]] = (),
    base_dir: str | None = None,
    with_entry_points: bool = False,
) -> Engine:
    """An engine for tests: TOML text or a dict, or the embedded default at ``root``.

    ``modules`` are registered as well (in addition to the built-in list), so a test
    can enable its own module classes by id.
    """
    registry = Registry.standard(BUILTIN, with_entry_points=with_entry_points)
    for cls in modules:
        registry.add(cls.id, cls, origin="test")
    if config is None:
        cfg = embedded_default(root or _empty_dir(), ["http://127.0.0.1:8080"])
    else:
        data = tomllib.loads(config) if isinstance(config, str) else config
        cfg = from_dict(data, source="<test>", base_dir=base_dir or root or _empty_dir())
    return Engine(cfg, registry)


class Client:
    """Send requests through ``engine`` on a private event loop.

    Use as a context manager so modules are provisioned and cleaned up.
    """

    __test__ = False

    def __init__(
        self,
        engine: Engine,
        *,
        client_addr: tuple[str, int] = ("127.0.0.1", 50000),
        port: int = 8080,
    ) -> None:
        self.engine = engine
        self.client_addr = client_addr
        self.port = port
        self.loop = asyncio.new_event_loop()

    def __enter__(self) -> Client:
        try:
            self.engine.start()
            self.loop.run_until_complete(self.engine.startup())
        except BaseException:
            self.engine.close()
            self.loop.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.loop.run_until_complete(self.engine.shutdown())
        finally:
            self.engine.close()
            self.loop.close()

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | Headers | None = None,
        body: bytes = b"",
        host: str = "localhost",
        tls: TlsInfo | None = None,
    ) -> TestResponse:
        """Run one request through the pipeline; return what was sent. ``tls``: as
        if it came over a TLS connection that negotiated that (scheme ``https``)."""
        return self.loop.run_until_complete(
            self.arequest(method, target, headers=headers, body=body, host=host, tls=tls)
        )

    async def arequest(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | Headers | None = None,
        body: bytes = b"",
        host: str = "localhost",
        tls: TlsInfo | None = None,
    ) -> TestResponse:
        """The coroutine behind :meth:`request`."""
        # Not urlsplit: a target such as "//../x" is a path, never a host.
        path_part, _, query = target.partition("#")[0].partition("?")
        raw_path = (path_part or "/").encode()
        hdrs: Headers
        if isinstance(headers, dict):
            hdrs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        else:
            hdrs = list(headers or [])
        hdrs.insert(0, (b"host", host.encode()))
        if body:
            hdrs.append((b"content-length", str(len(body)).encode()))
        writer = RecordingWriter()
        try:
            path = decode_path(raw_path)
        except HttpError as exc:  # what the transport does before the pipeline
            writer.send_all(exc.status, None, [], exc.message.encode())
            return TestResponse(writer, method, None)
        request = Request(
            method,
            path,
            raw_path=raw_path,
            query=query.encode(),
            headers=hdrs,
            host=host,
            client=self.client_addr,
            server=("127.0.0.1", self.port),
            body=BytesBody(body),
            tls=tls,
            scheme="https" if tls is not None else "http",
        )
        ctx = await self.engine.handle(request, writer)
        return TestResponse(writer, method, ctx)

    def get(self, target: str, **kw: Any) -> TestResponse:
        """A GET request."""
        return self.request("GET", target, **kw)

    def head(self, target: str, **kw: Any) -> TestResponse:
        """A HEAD request."""
        return self.request("HEAD", target, **kw)

    def post(self, target: str, body: bytes = b"", **kw: Any) -> TestResponse:
        """A POST request."""
        return self.request("POST", target, body=body, **kw)
