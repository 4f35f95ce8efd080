"""The SNI name of a TLS connection, read from its ClientHello without consuming it.

What routes a TLS connection to a pool before any handshake (see
``pools/routing.py``): the master and the workers of a port that several pools
serve look at the first TLS record with ``MSG_PEEK``, take the ``server_name``
extension (RFC 6066 3) out of the ClientHello, and hand the socket, unread, to the
pool of the site that name belongs to. The handshake then happens there.

:func:`server_name` parses (no sockets); :func:`peek_server_name` waits for the
whole first record with ``SO_RCVLOWAT`` (so a ClientHello split over TCP
segments is waited for without spinning) and gives up after a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

#: A TLS record header: type (22: handshake), version (2), length (2).
_HEADER = 5
#: The largest record payload (RFC 8446 5.1), and so the most read here.
_MAX_RECORD = 16384
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0
_HOST_NAME = 0


class NotTlsError(ValueError):
    """The bytes do not start a TLS handshake (a plain HTTP client, say)."""


def record_length(data: bytes) -> int:
    """The size of the first record (header included), from its first 5 bytes."""
    if data[0] != _HANDSHAKE or data[1] != 3:
        raise NotTlsError("not a TLS handshake record")
    length = int.from_bytes(data[3:5], "big")
    if not 0 < length <= _MAX_RECORD:
        raise NotTlsError(f"a TLS record of {length} bytes")
    return _HEADER + length


def server_name(record: bytes) -> str | None:
    """The host name in the ClientHello that ``record`` (the first TLS record, whole)
    carries; None without one, or when the ClientHello does not fit in the record.

    Raises :class:`NotTlsError` for bytes that are no ClientHello.
    """
    body = memoryview(record)[_HEADER : record_length(record)]
    if len(body) < 4 or body[0] != _CLIENT_HELLO:
        raise NotTlsError("the first handshake message is not a ClientHello")
    end = 4 + int.from_bytes(body[1:4], "big")
    if end > len(body):
        return None  # continued in a later record: rare, and routed as no SNI
    hello = body[:end]  # nothing read past the message's own end
    at = 4 + 2 + 32  # version, random
    try:
        at += 1 + hello[at]  # session id
        at += 2 + int.from_bytes(hello[at : at + 2], "big")  # cipher suites
        at += 1 + hello[at]  # compression methods
        if at > end:
            raise IndexError
        if at + 2 > end:
            return None  # no extensions at all
        stop = min(at + 2 + int.from_bytes(hello[at : at + 2], "big"), end)
        at += 2
        while at + 4 <= stop:
            kind = int.from_bytes(hello[at : at + 2], "big")
            size = int.from_bytes(hello[at + 2 : at + 4], "big")
            at += 4
            if kind == _SERVER_NAME:
                return _host_name(hello[at : min(at + size, stop)])
            at += size
    except IndexError:
        raise NotTlsError("a truncated ClientHello") from None
    return None


def _host_name(ext: memoryview) -> str | None:
    at = 2  # the list's length
    while at + 3 <= len(ext):
        kind = ext[at]
        size = int.from_bytes(ext[at + 1 : at + 3], "big")
        name = bytes(ext[at + 3 : at + 3 + size])
        if kind == _HOST_NAME:
            try:
                return name.decode("ascii").lower().rstrip(".") or None
            except UnicodeDecodeError:
                return None
        at += 3 + size
    return None


async def peek_server_name(sock: socket.socket, within: float) -> str | None:
    """The SNI name of the TLS connection ``sock`` (non-blocking), read without
    consuming a byte. None: no SNI, or the ClientHello did not fit its record.

    Raises :class:`NotTlsError` for a client that does not speak TLS, ``TimeoutError``
    when the record is not complete ``within`` seconds, ``ConnectionError``
    when the client closes first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    need = _HEADER
    try:
        while True:
            try:
                data = sock.recv(need, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                data = None
            if data is not None:
                if not data:
                    raise ConnectionError("the client closed the connection")
                if data[0] != _HANDSHAKE:
                    raise NotTlsError("not a TLS handshake record")
                if len(data) >= _HEADER and need == _HEADER:
                    need = record_length(data)
                if len(data) >= need:
                    return server_name(data)
                # Readable only once the whole record is there: no spinning on
                # the bytes already waiting.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
            await _readable(loop, sock, deadline - loop.time())
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, left: float) -> None:
    if left <= 0:
        raise TimeoutError("the ClientHello did not arrive in time")
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await asyncio.wait_for(ready, left)
    finally:
        loop.remove_reader(sock.fileno())
