"""The accept loop of a listening socket, plain or TLS.

Why not ``loop.create_server`` for plain ports: when ``accept()`` fails for want
of descriptors (EMFILE, ENFILE), libuv (under uvloop) accepts the waiting
connections on a spare descriptor and closes them at once, so their clients are
reset although the pool's other workers, which accept from the same socket,
could have served them. Here listening pauses instead (as nginx does, and
asyncio's own servers): the connections wait in the backlog for whichever worker
has descriptors, and nothing spins on a ready socket meanwhile. A plain port
whose worker has room enough for descriptors takes ``create_server`` all the
same, which is cheaper per connection (``server.native_accept_is_safe``).
"""

from __future__ import annotations

import abc
import asyncio
import errno
import logging
import socket

log = logging.getLogger("colonnade.transport")

# After accept() fails for want of descriptors or memory, listening pauses this long.
ACCEPT_PAUSE = 1.0
_ACCEPT_BATCH = 64


class Listener(abc.ABC):
    """Accepts on a listening socket and gives each connection to :meth:`accepted`."""

    def __init__(self, sock: socket.socket, port: int) -> None:
        self.sock = sock
        sock.setblocking(False)  # another worker may take the connection first
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.listening = False
        self.closed = False
        self._listen()

    @abc.abstractmethod
    def accepted(self, conn: socket.socket) -> None:
        """Serve ``conn`` (non-blocking already): each kind of port says how."""

    def _listen(self) -> None:
        if not self.closed and not self.listening:  # (a pause may outlive a close)
            self.listening = True
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _pause(self) -> None:
        if self.listening:
            self.listening = False
            self.loop.remove_reader(self.sock.fileno())

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # that client gave up already
                log.warning("accept on port %d failed: %s; pausing", self.port, exc)
                self._pause()
                self.loop.call_later(ACCEPT_PAUSE, self._listen)
                return
            conn.setblocking(False)
            self.accepted(conn)

    def close(self) -> None:
        """Stop accepting and close the listening socket (as ``asyncio.Server`` does)."""
        if not self.closed:
            self.closed = True
            self._pause()
            self.sock.close()

    async def wait_closed(self) -> None:  # noqa: B027 - concrete: nothing to wait for
        """Nothing to wait for: connections in flight are the server's to end."""
