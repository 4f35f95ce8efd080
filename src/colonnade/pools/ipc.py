"""The control channel between the master and one worker: typed messages, bytes and fds.

How this works: each worker gets one end of a ``SOCK_SEQPACKET`` Unix socket pair
(inherited as a file descriptor); the master keeps the other. A message is one
packet, so boundaries survive and a descriptor attached with ``SCM_RIGHTS``
arrives together with the message that explains it. A packet is::

    b"M" | u32 header length | header (JSON, a tagged msgspec struct) | payload bytes

The payload carries raw bytes that belong to a passed connection (what was read
of it before the hand-off) or the configuration text. A packet that would exceed
``INLINE_MAX`` is written to a ``memfd`` instead and sent as ``b"F"`` with that
memfd as its last descriptor, so no message is ever too large for the socket
buffer. Descriptors given to :meth:`Channel.send` belong to the channel from then
on: it closes them once the kernel holds its own reference (after ``sendmsg``).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Callable, Sequence

import msgspec

from colonnade.pipeline.monitor import ExecutingRequest
from colonnade.pools.config import ConfigSource

log = logging.getLogger("colonnade.pools")

INLINE_MAX = 60 * 1024
MAX_FDS = 8
_LEN = struct.Struct("!I")
_ANC = socket.CMSG_SPACE(MAX_FDS * 4)


# -- messages ---------------------------------------------------------------------------


class Listener(msgspec.Struct, frozen=True):
    """An inherited listening socket."""

    fd: int
    host: str
    port: int


class Start(msgspec.Struct, tag="start", kw_only=True):
    """Master → new worker, first message: what to serve; the payload is the config text."""

    pool: str
    generation: int
    source: ConfigSource
    listeners: list[Listener]
    log_level: str = "INFO"
    temp_dir: str | None = None  # the pool's private temp folder (sandboxed pools)
    shared_fd: int | None = None  # the server's shared memory (inherited descriptor)
    #: The operator's farm member states (farm -> member -> "draining" | "disabled").
    farm_admin: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    #: The third-party modules the master's registry found, (id, ``module:attr``,
    #: origin): the worker registers these rather than read entry points itself.
    entry_points: list[tuple[str, str, str]] = msgspec.field(default_factory=list)


class Ping(msgspec.Struct, tag="ping"):
    """Master → worker: answer with :class:`Pong`."""

    id: int


class Adopt(msgspec.Struct, tag="adopt"):
    """Master → worker: serve this connection (fd attached; payload: bytes already read)."""

    port: int


class Drain(msgspec.Struct, tag="drain", kw_only=True):
    """Master → worker: stop accepting, finish requests within ``deadline``, then exit.

    With ``migrate``, idle connections (and each one as it becomes idle) are
    handed back to the master for the pool's other workers instead of closed.
    """

    deadline: float
    migrate: bool


class Reload(msgspec.Struct, tag="reload"):
    """Master → worker: re-read the ``web.toml`` files (SIGHUP); the result is the
    master's configuration ``generation`` (one number in master and workers' logs)."""

    generation: int = 0


class Reloaded(msgspec.Struct, tag="reloaded", kw_only=True):
    """Worker → master: the ``Reload`` to ``generation`` is done (``ok``), or the
    worker refused the new configuration and serves on with its previous one."""

    generation: int
    ok: bool


class Draining(msgspec.Struct, tag="draining"):
    """Worker → master: this worker accepts no new connection any more (what it
    accepted before is registered and will be finished or handed back)."""


class Ready(msgspec.Struct, tag="ready"):
    """Worker → master: accepting now."""

    pid: int


class Failed(msgspec.Struct, tag="failed"):
    """Worker → master: could not start (it exits next)."""

    error: str


class Stats(msgspec.Struct, tag="stats", kw_only=True):
    """Worker → master: counters (sent when they change, at most once a second)."""

    requests: int
    active: int
    connections: int
    #: HTTP/2 connections ended for the client's fault, by cause
    #: (``ServerState.http2_errors``).
    http2_errors: dict[str, int] = msgspec.field(default_factory=dict)
    #: Connections ended or refused for a client's behaviour, by cause
    #: (``ServerState.slow_clients``: ``request_body``, ``response``, ``per_client``).
    slow_clients: dict[str, int] = msgspec.field(default_factory=dict)
    #: The counters of the worker's caches, by kind (``colonnade.core.caches``).
    caches: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    #: The worker's farms: farm -> member -> counters (``colonnade.core.farms``).
    farms: dict[str, dict[str, dict[str, int | float | str]]] = msgspec.field(default_factory=dict)
    #: The request counters by site (``colonnade.core.metrics.snapshot``).
    sites: dict[str, list[float]] = msgspec.field(default_factory=dict)
    #: Bytes read from clients (``ServerState.received``).
    received: int = 0
    #: Modules' counters by family and label value (``colonnade.core.counters``),
    #: and each family's (help, label name).
    counters: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    counter_families: dict[str, tuple[str, str]] = msgspec.field(default_factory=dict)


class Collect(msgspec.Struct, tag="collect", kw_only=True):
    """Master → worker: answer with :class:`Collected` now (``GET /metrics``
    wants the counters of this moment, not of the last report)."""

    id: int


class Collected(msgspec.Struct, tag="collected", kw_only=True):
    """Worker → master: the answer to :class:`Collect`."""

    id: int
    stats: Stats


class RequestLimit(msgspec.Struct, tag="request-limit", kw_only=True):
    """Worker → master: the worker has served its pool's ``recycling.requests``.

    Sent the moment the count is reached, so the recycle starts at exactly that
    count (the periodic :class:`Stats` come at most once a second)."""

    requests: int


class Pong(msgspec.Struct, tag="pong", kw_only=True):
    """Worker → master: the answer to :class:`Ping`, with the counters."""

    id: int
    stats: Stats


class Purge(msgspec.Struct, tag="purge", kw_only=True):
    """Master → worker: drop the cached entries of URL path ``path`` (or of every
    path under it with ``prefix``) from the caches of ``kind``; answer :class:`Purged`."""

    id: int
    kind: str
    path: str
    prefix: bool = False


class Purged(msgspec.Struct, tag="purged", kw_only=True):
    """Worker → master: the answer to :class:`Purge`: how many entries went."""

    id: int
    count: int


class FarmAdmin(msgspec.Struct, tag="farm-admin", kw_only=True):
    """Master → worker: the operator's farm member states, whole (farm -> member
    -> ``"draining"`` | ``"disabled"``; a member not named is enabled); answered
    with :class:`Applied` once the worker's farms have them."""

    id: int
    states: dict[str, dict[str, str]]


class Applied(msgspec.Struct, tag="applied", kw_only=True):
    """Worker → master: the message ``id`` asked for is carried out."""

    id: int


class ListRequests(msgspec.Struct, tag="list-requests", kw_only=True):
    """Master → worker: list the requests executing for at least ``elapsed``
    milliseconds; answer :class:`Executing` (the request monitor)."""

    id: int
    elapsed: int = 0


class Executing(msgspec.Struct, tag="executing", kw_only=True):
    """Worker → master: the answer to :class:`ListRequests`."""

    id: int
    requests: list[ExecutingRequest]


class Handoff(msgspec.Struct, tag="handoff", kw_only=True):
    """Worker → master: a connection for ``pool`` (fd attached; payload: bytes read).

    ``head`` says whether the payload holds a complete request head (routed by
    the worker); without it the connection was idle or its head incomplete.
    """

    pool: str
    port: int
    head: bool


Message = (
    Start
    | Ping
    | Adopt
    | Drain
    | Reload
    | Reloaded
    | Draining
    | Ready
    | Failed
    | Stats
    | Pong
    | RequestLimit
    | Handoff
    | Purge
    | Purged
    | FarmAdmin
    | Applied
    | ListRequests
    | Executing
    | Collect
    | Collected
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Message)


def encode(message: Message, payload: bytes = b"") -> bytes:
    """One packet (before the memfd fallback)."""
    header = _encoder.encode(message)
    return b"M" + _LEN.pack(len(header)) + header + payload


def decode(packet: bytes, fds: list[int]) -> tuple[Message, bytes]:
    """The message and payload of one packet; a memfd packet is read (and its fd closed)."""
    if packet[:1] == b"F":
        if not fds:
            raise ValueError("a memfd packet without its descriptor")
        memfd = fds.pop()
        try:
            size = os.fstat(memfd).st_size
            packet = os.pread(memfd, size, 0)
        finally:
            os.close(memfd)
    if packet[:1] != b"M" or len(packet) < 5:
        raise ValueError("not a control packet")
    (size,) = _LEN.unpack_from(packet, 1)
    header = packet[5 : 5 + size]
    return _decoder.decode(header), packet[5 + size :]


def _spill(packet: bytes) -> int:
    memfd = os.memfd_create("colonnade-ipc", os.MFD_CLOEXEC)
    view = memoryview(packet)
    while view:
        view = view[os.write(memfd, view) :]
    return memfd


def _fds_from(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(array.array("i", data[:usable]))
    return fds


def send_blocking(sock: socket.socket, message: Message, payload: bytes = b"") -> None:
    """Send one message on a blocking socket (before or outside an event loop)."""
    packet = encode(message, payload)
    if len(packet) > INLINE_MAX:
        memfd = _spill(packet)
        try:
            socket.send_fds(sock, [b"F"], [memfd])
        finally:
            os.close(memfd)
    else:
        sock.sendall(packet)


def recv_blocking(sock: socket.socket) -> tuple[Message, bytes, list[int]] | None:
    """Receive one message on a blocking socket; None at end of stream."""
    packet, ancdata, _flags, _ = sock.recvmsg(INLINE_MAX + 64, _ANC)
    fds = _fds_from(ancdata)
    if not packet:
        _close_all(fds)
        return None
    message, payload = decode(packet, fds)
    return message, payload, fds


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Channel:
    """One end of a control socket pair on the running event loop.

    ``on_message(message, payload, fds)`` owns the descriptors it is given;
    ``on_close()`` runs once when the other end is gone.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Message, bytes, list[int]], None],
        on_close: Callable[[], None],
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._on_message = on_message
        self._on_close = on_close
        self._out: deque[tuple[bytes, list[int]]] = deque()
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self.closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def pending(self) -> int:
        """Messages not yet handed to the kernel."""
        return len(self._out)

    def send(self, message: Message, payload: bytes = b"", fds: Sequence[int] = ()) -> None:
        """Queue ``message`` (with ``payload`` and ``fds``, which the channel now owns)."""
        owned = list(fds)
        if self.closed:
            _close_all(owned)
            return
        packet = encode(message, payload)
        if len(packet) > INLINE_MAX:
            owned.append(_spill(packet))
            packet = b"F"
        self._out.append((packet, owned))
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        while self._out:
            packet, fds = self._out[0]
            try:
                if fds:
                    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                    self.sock.sendmsg([packet], anc)
                else:
                    self.sock.send(packet)
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self.sock.fileno(), self._flush)
                return
            except OSError as exc:
                log.debug("control channel send failed: %s", exc)
                self.close()
                return
            self._out.popleft()
            _close_all(fds)
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        for _ in range(64):  # bounded: let other callbacks run
            try:
                packet, ancdata, flags, _ = self.sock.recvmsg(INLINE_MAX + 64, _ANC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            fds = _fds_from(ancdata)
            if not packet:
                _close_all(fds)
                self.close()
                return
            if flags & socket.MSG_CTRUNC:
                log.error("control channel: descriptors truncated; dropping a message")
                _close_all(fds)
                continue
            try:
                message, payload = decode(packet, fds)
            except (ValueError, msgspec.DecodeError) as exc:
                log.error("control channel: bad message dropped: %s", exc)
                _close_all(fds)
                continue
            try:
                self._on_message(message, payload, fds)
            except Exception:
                log.exception("control channel: handling %r failed", message)

    def read_pending(self) -> None:
        """Handle the messages already received (the other end has gone: what it
        sent last still counts)."""
        if not self.closed:
            self._readable()

    def close(self) -> None:
        """Close the socket and drop what was not sent; ``on_close`` runs once."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        if self._writing:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self.sock.fileno())
        for _, fds in self._out:
            _close_all(fds)
        self._out.clear()
        self.sock.close()
        self._on_close()
