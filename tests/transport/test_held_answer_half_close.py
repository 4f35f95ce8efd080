"""A keep-alive answer held for the loop's next turn (``WriteBatch``) reaches a client
whose half-close (a TCP FIN, or TLS's close_notify) the server reads before that
turn, over real sockets, in plain TCP and TLS.

Made deterministic, not left to timing: a module's END_REQUEST hook (which runs right
after the answer is made, in the same step of the connection's task) blocks the
server's loop until the client has half-closed, so the FIN is waiting in the socket
when the loop next polls: after the answer was made and held, before the batch
writes it. Another connection is open meanwhile, so the answer is held (also
without ``COLONNADE_TEST_FORCE_BATCH``).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from colonnade import Context, Module, Stage, hook
from tests.e2e.conftest import LiveServer, site_config
from tests.support.ports import free_port
from tests.support.tls import client_context, issue
from tests.support.wait import PATIENCE

pytestmark = pytest.mark.e2e


class Hold(Module):
    """Blocks the server's loop after the answer to a ``?hold`` request is made, until
    the test says go (``started``, then ``go``)."""

    id = "test.hold"
    started = threading.Event()
    go = threading.Event()

    @hook(Stage.END_REQUEST)
    def hold(self, ctx: Context) -> None:
        if ctx.request.query.startswith(b"hold"):
            Hold.started.set()
            Hold.go.wait(PATIENCE)


@pytest.fixture
def hold() -> Iterator[type[Hold]]:
    Hold.started.clear()
    Hold.go.clear()
    yield Hold
    Hold.go.set()  # never leave the server's loop blocked


def _plain_config(port: int) -> dict[str, Any]:
    cfg = site_config(modules=["test.hold", "handler.static"])
    cfg["sites"][0]["bindings"] = [f"http://127.0.0.1:{port}"]
    cfg["handlers"] = [{"path": "*", "handler": "handler.static"}]
    return cfg


def _tls_config(port: int, cert: Path, key: Path) -> dict[str, Any]:
    cfg = _plain_config(port)
    site = cfg["sites"][0]
    site["bindings"] = [f"https://127.0.0.1:{port}"]
    site["tls"] = {"certificate": str(cert), "key": str(key)}
    cfg["server"]["http2"] = {"enabled": False}
    return cfg


REQUEST = b"GET /hello.txt?hold HTTP/1.1\r\nHost: www.example.test\r\n\r\n"


def _answered(data: bytes) -> bool:
    return data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nHello, world!")


class TlsClient:
    """A TLS client over a plain socket (``ssl.SSLObject`` over memory BIOs): unlike
    ``SSLSocket``, it can shut the socket's sending side (a FIN without close_notify)
    and still decrypt what comes back."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="www.example.test")
        self._step(self.tls.do_handshake)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _step(self, action: Callable[[], object]) -> None:
        while True:
            try:
                action()
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake") from None
                self.incoming.write(data)
                continue
            self._flush()
            return

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def close_notify(self) -> None:
        """TLS's half-close: a close_notify alert (the socket stays open both ways)."""
        with contextlib.suppress(ssl.SSLWantReadError):  # (its answer: not awaited)
            self.tls.unwrap()
        self._flush()

    def read_to_end(self) -> bytes:
        """What the server sends until it closes (its close_notify, or the socket)."""
        got = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    return got
                if not data:
                    return got
                self.incoming.write(data)
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return got
            if not chunk:
                return got
            got += chunk

    def close(self) -> None:
        self.sock.close()


def _other_connection(port: int, ctx: ssl.SSLContext | None) -> Any:
    """A second connection, open and known to the server (it was answered)."""
    if ctx is None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        sock.sendall(b"GET /hello.txt?other HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        return sock
    client = TlsClient(port, ctx)
    client.send(b"GET /hello.txt?other HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
    got = b""
    while b"Hello, world!" not in got:
        try:
            got += client.tls.read(65536)
        except ssl.SSLWantReadError:
            data = client.sock.recv(65536)
            assert data, got
            client.incoming.write(data)
    return client


def test_a_plain_request_then_a_fin_read_before_the_batch_gets_its_answer(
    www: Path, hold: type[Hold]
) -> None:
    port = free_port()
    server = LiveServer(_plain_config(port), www, modules=[Hold], port=port).start()
    try:
        other = _other_connection(port, None)
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as s:
            s.sendall(REQUEST)
            assert hold.started.wait(PATIENCE)  # the answer is made (held)
            s.shutdown(socket.SHUT_WR)
            hold.go.set()
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        other.close()
    finally:
        server.stop()
    assert _answered(got), got


@pytest.mark.parametrize("how", ["fin", "close_notify"])
def test_a_tls_request_then_a_half_close_read_before_the_batch_gets_its_answer(
    www: Path, ca: trustme.CA, hold: type[Hold], how: str
) -> None:
    # TLS has no half-close a server's transport honours: uvloop's TLS transport
    # closes the connection on the client's FIN (no close_notify) without telling
    # the protocol, and starts its own shutdown on a close_notify (after
    # eof_received). An answer held then must still get out: found lost on a FIN
    # before the fix (HttpConnection.cork: no answer is held over TLS).
    port = free_port()
    issued = issue(ca, www / "certs", "www", "www.example.test")
    cfg = _tls_config(port, issued.cert, issued.key)
    server = LiveServer(cfg, www, modules=[Hold], port=port).start()
    ctx = client_context(ca)
    try:
        other = _other_connection(port, ctx)
        client = TlsClient(port, ctx)
        try:
            client.send(REQUEST)
            assert hold.started.wait(PATIENCE)  # the answer is made
            if how == "fin":
                client.sock.shutdown(socket.SHUT_WR)
            else:
                client.close_notify()
            hold.go.set()
            got = client.read_to_end()
        finally:
            client.close()
        other.close()
    finally:
        server.stop()
    assert _answered(got), got
