"""HTTP/2 as the server runs it: the transport's protocol (transport/h2connection.py,
with its fast path for plain requests, ``_receive_fast``) over an in-memory
transport, serving a static site through the real engine.

The input follows the connection preface and is fed in two pieces cut at
``data[0]``; the requests it makes run until they finish or wait for the client,
then the connection is lost. Properties: nothing raises out of the protocol's
callbacks, no request ends in an exception (nothing logged at ERROR, nothing
reaches the loop's exception handler), and after the connection is lost it holds
no stream and the server no connection.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from colonnade.http.h2 import PREFACE
from colonnade.testing import build_engine
from colonnade.transport.h2connection import H2Connection
from colonnade.transport.server import ServerState

_ROOT = tempfile.mkdtemp(prefix="colonnade-fuzz-h2-")
atexit.register(shutil.rmtree, _ROOT, True)
(Path(_ROOT) / "index.html").write_text("<p>home</p>" * 50)
(Path(_ROOT) / "big.bin").write_bytes(bytes(200_000))
_ENGINE = build_engine(
    {
        "server": {"modules": ["static.default_document", "handler.static"]},
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


class _Wire(asyncio.Transport):
    """What the protocol needs of a socket's transport, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += len(data)

    def writelines(self, list_of_data: Any) -> None:
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

    def get_write_buffer_size(self) -> int:
        return 0


async def _session(data: bytes) -> H2Connection:
    protocol = H2Connection(STATE, PREFACE)
    wire = _Wire()
    protocol.connection_made(wire)
    cut = data[0]
    for piece in (data[1 : 1 + cut], data[1 + cut :]):
        if piece and not wire.closed:
            protocol.data_received(piece)
        # Let the requests run: a static file is served within a few turns; a
        # request that waits for its body waits until the connection is lost.
        for _ in range(30):
            await asyncio.sleep(0)
    protocol.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)
    return protocol


def one_input(data: bytes) -> None:
    """See the module docstring."""
    if not data:
        return
    protocol = LOOP.run_until_complete(_session(data))
    problems = list(_PROBLEMS)
    _PROBLEMS.clear()
    assert not problems, problems
    assert not protocol.streams, "streams left after the connection was lost"
    assert protocol not in STATE.connections, "the server still counts the connection"
