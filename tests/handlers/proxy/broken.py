"""A deliberately broken upstream for the proxy tests: it answers each request
as its path says — well (``/ok``), or by resetting, stalling, trickling, half
answering or sending garbage. It runs its own event loop in a thread and counts
the connections it accepted."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class BrokenUpstream:
    """``with BrokenUpstream() as up: ... up.port``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self.open = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> BrokenUpstream:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if not await self._answer(path, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            self.open -= 1

    async def _answer(
        self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        # Returns whether the connection goes on.
        kind = path.strip("/").split("?")[0]
        if kind == "ok":
            writer.write(OK)
        elif kind == "reset":
            sock: Any = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        elif kind == "close":
            return False
        elif kind == "half":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
            await writer.drain()
            return False
        elif kind == "bodystall":
            # The head and part of a small body, then nothing (the connection open).
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"abc")
            await writer.drain()
            await reader.read()
            return False
        elif kind == "pieces":
            # A small body in pieces after its head, each written on its own
            # (``/pieces?S``: S seconds apart, else 0.05).
            pause = float(path.partition("?")[2] or 0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n")
            for piece in (b"one ", b"two ", b"three", b"!"):
                await writer.drain()
                await asyncio.sleep(pause)
                writer.write(piece)
        elif kind == "halfhead":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
            await writer.drain()
            return False
        elif kind == "halfbig":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
            writer.write(b"x" * 1_000_000)
            await writer.drain()
            return False
        elif kind == "garbage":
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        elif kind == "status":
            writer.write(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n")
        elif kind == "hugehead":
            writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 200_000 + b"\r\n\r\n")
        elif kind == "badchunk":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        elif kind == "extra":
            writer.write(OK + b"HTTP/1.1 200 OK\r\n\r\n")  # more than was asked
        elif kind == "stall":
            await reader.read()  # never answers
            return False
        elif kind == "trickle":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(1000):
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.02)
            return False
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return True
