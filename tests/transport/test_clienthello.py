"""The SNI name out of real ClientHellos (made by Python's ssl), whole, split and bad."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from colonnade.transport.clienthello import NotTlsError, peek_server_name, server_name


def client_hello(name: str | None, *, alpn: list[str] | None = None) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.test", "www.example.test"),
        ("WWW.Example.TEST", "www.example.test"),
        ("a." + "b" * 60 + ".test", "a." + "b" * 60 + ".test"),
        (None, None),
    ],
)
def test_the_name_is_read_from_a_real_client_hello(name: str | None, expected: str | None) -> None:
    assert server_name(client_hello(name, alpn=["h2", "http/1.1"])) == expected


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x02\x00\x00\x05hello", b"\x16\x03\x01\x00\x00"],
)
def test_bytes_that_are_no_client_hello_are_refused(data: bytes) -> None:
    with pytest.raises(NotTlsError):
        server_name(data)


def test_a_truncated_client_hello_is_refused() -> None:
    hello = bytearray(client_hello("x.test"))
    # The record claims its real length but the ClientHello inside claims less
    # than its session id needs.
    hello[5 + 1 : 5 + 4] = (40).to_bytes(3, "big")
    with pytest.raises(NotTlsError):
        server_name(bytes(hello))


@pytest.mark.parametrize("split", [0, 3, 5, 100])
def test_peeking_waits_for_the_whole_record_and_consumes_nothing(split: int) -> None:
    hello = client_hello("split.test")

    async def run() -> tuple[str | None, bytes]:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            loop = asyncio.get_running_loop()
            task = loop.create_task(peek_server_name(a, 5))
            if split:
                b.sendall(hello[:split])
                await asyncio.sleep(0)
                assert not task.done()
            b.sendall(hello[split:])
            name = await task
            return name, a.recv(len(hello) + 10)

    name, left = asyncio.run(run())
    assert name == "split.test"
    assert left == hello  # every byte still there for the handshake


def test_peeking_a_plain_http_client_and_a_silent_one() -> None:
    async def run(data: bytes, within: float) -> str | None:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.sendall(data)
            return await peek_server_name(a, within)

    with pytest.raises(NotTlsError):
        asyncio.run(run(b"GET / HTTP/1.1\r\n", 5))
    with pytest.raises(TimeoutError):
        asyncio.run(run(b"\x16\x03", 0.05))
