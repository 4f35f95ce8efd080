"""A static site served through the real engine and transport protocols over an
in-memory socket, for the transport targets (shared, like ``requests.py``).

One engine, loop and server state per fuzzing process. :func:`serve` makes a
connection with ``protocol`` (an HTTP/1.1 or HTTP/2 protocol class), feeds it the
pieces, lets the requests run for a few loop turns (a static file is served in a
few; a request waiting for its body waits until the connection is lost), loses
the connection and reports what went wrong: anything logged at ERROR or handed
to the loop's exception handler, a stream or connection left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from colonnade.testing import build_engine
from colonnade.transport.server import ServerState

_ROOT = tempfile.mkdtemp(prefix="colonnade-fuzz-site-")
atexit.register(shutil.rmtree, _ROOT, True)
(Path(_ROOT) / "index.html").write_text("<p>home</p>" * 50)
(Path(_ROOT) / "big.bin").write_bytes(bytes(200_000))
(Path(_ROOT) / "docs").mkdir()
(Path(_ROOT) / "docs" / "a.txt").write_text("a")
_ENGINE = build_engine(
    {
        "server": {
            "modules": ["security.request_filtering", "static.default_document", "handler.static"]
        },
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": _ROOT}],
        "handlers": [{"path": "*", "handler": "handler.static"}],
    }
)
_ENGINE.start()
LOOP = asyncio.new_event_loop()
LOOP.run_until_complete(_ENGINE.startup())
STATE = ServerState(_ENGINE)
_PROBLEMS: list[str] = []


def _stop() -> None:
    LOOP.run_until_complete(_ENGINE.shutdown())
    _ENGINE.close()
    LOOP.close()


atexit.register(_stop)


class _Errors(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _PROBLEMS.append(self.format(record))


logging.getLogger("colonnade").addHandler(_Errors(logging.ERROR))
LOOP.set_exception_handler(lambda loop, context: _PROBLEMS.append(repr(context)))


class Wire(asyncio.Transport):
    """What the protocols need of a socket's transport, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # HTTP/1.1 handing over to HTTP/2 (prior knowledge)

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(self.sent) < 1 << 20:
            self.sent += data

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # everything written is kept at once: the buffer never fills

    def get_write_buffer_size(self) -> int:
        return 0


async def _session(make: Callable[[], asyncio.Protocol], pieces: list[bytes]) -> Wire:
    wire = Wire()
    wire.protocol = make()
    wire.protocol.connection_made(wire)
    for piece in pieces:
        protocol = wire.protocol
        if piece and not wire.closed and isinstance(protocol, asyncio.Protocol):
            protocol.data_received(piece)
        for _ in range(30):
            await asyncio.sleep(0)
    wire.protocol.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)
    return wire


def serve(make: Callable[[], asyncio.Protocol], pieces: list[bytes]) -> Wire:
    """Serve ``pieces`` on a new connection made by ``make``; fail on what went wrong."""
    wire = LOOP.run_until_complete(_session(make, pieces))
    problems = list(_PROBLEMS)
    _PROBLEMS.clear()
    assert not problems, problems
    protocol: object = wire.protocol
    assert not getattr(protocol, "streams", None), "streams left after the connection was lost"
    assert all(conn is not protocol for conn in STATE.connections), "the server still counts it"
    return wire
