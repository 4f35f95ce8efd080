"""Active health probes: a small HTTP/1.1 ``GET`` to each member, on the worker's loop.

How this works: a farm whose ``[health]`` has a ``url`` starts one task per
member on the running event loop at its first :meth:`Farm.choose` (never while
the configuration is built: the master and ``colonnade check`` probe nothing).
Each task asks its member for the URL (``Connection: close``), judges the answer
(status within ``statuses``, ``body_match`` within the first ``max_body`` bytes,
all within ``timeout``), marks the member down or up, and sleeps ``interval``.
The head is bounded to :data:`MAX_HEAD` bytes and the body to ``max_body``, so a
member answering garbage or without end costs no more than that. The tasks stop
with :meth:`Prober.close` (the handler's shutdown, a changed configuration) or
with their loop; a later ``choose`` starts them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from colonnade.config.schema import FarmHealth
from colonnade.providers.farms.members import Member

log = logging.getLogger("colonnade.farms")

#: The largest response head a probe reads.
MAX_HEAD = 16 * 1024
#: The ``User-Agent`` of probes (members can leave them out of their logs).
USER_AGENT = b"colonnade-health-probe"


class ProbeFailedError(Exception):
    """A probe's answer did not pass (the message says why)."""


def _status(head: bytes) -> int:
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3:
        raise ProbeFailedError(f"not an HTTP/1.x status line: {line[:80]!r}")
    if not parts[1].isdigit():
        raise ProbeFailedError(f"not a status: {parts[1]!r}")
    return int(parts[1])


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, colon, value = line.partition(b":")
        if colon and key.strip().lower() == name:
            return value.strip()
    return None


def _dechunk(data: bytes) -> bytes:
    """The payload of a chunked body read so far (what is complete of it)."""
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end == -1:
            return bytes(out)
        size_text = data[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProbeFailedError("a broken chunked body") from None
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
        if pos > len(data):
            return bytes(out)


async def _body(reader: asyncio.StreamReader, head: bytes, limit: int) -> bytes:
    length = _header(head, b"content-length")
    if length is not None:
        if not length.isdigit():
            raise ProbeFailedError(f"a bad Content-Length: {length[:40]!r}")
        wanted = min(int(length), limit)
        try:
            return await reader.readexactly(wanted)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
    data = bytearray()
    while len(data) < limit:
        chunk = await reader.read(min(65536, limit - len(data)))
        if not chunk:
            break
        data += chunk
    chunked = (_header(head, b"transfer-encoding") or b"").lower().endswith(b"chunked")
    return _dechunk(bytes(data)) if chunked else bytes(data)


def request_bytes(member: Member, health: FarmHealth) -> bytes:
    """The probe request for ``member``."""
    assert health.url is not None
    if health.host is not None:
        host = health.host
    elif member.unix_path is not None:
        host = "localhost"
    else:
        host = f"[{member.host}]" if ":" in member.host else member.host
        if member.port != 80:
            host += f":{member.port}"
    return (
        b"GET " + health.url.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"User-Agent: " + USER_AGENT + b"\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )


async def probe(member: Member, health: FarmHealth, ranges: Sequence[tuple[int, int]]) -> None:
    """Ask ``member`` for the health URL once; ProbeFailedError (or an OSError, a
    TimeoutError) when the answer does not pass."""
    async with asyncio.timeout(health.timeout):
        if member.unix_path is not None:
            reader, writer = await asyncio.open_unix_connection(member.unix_path, limit=MAX_HEAD)
        else:
            reader, writer = await asyncio.open_connection(member.host, member.port, limit=MAX_HEAD)
        try:
            writer.write(request_bytes(member, health))
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise ProbeFailedError(f"a response head over {MAX_HEAD} bytes") from None
            except asyncio.IncompleteReadError:
                raise ProbeFailedError(
                    "the connection closed before a whole response head"
                ) from None
            status = _status(head)
            if not any(low <= status <= high for low, high in ranges):
                raise ProbeFailedError(f"status {status} (not in {health.statuses})")
            if health.body_match is not None:
                body = await _body(reader, head, health.max_body)
                if health.body_match.encode() not in body:
                    raise ProbeFailedError(f"the body does not contain {health.body_match!r}")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _why(exc: BaseException, health: FarmHealth) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {health.timeout:g}s"
    if isinstance(exc, ProbeFailedError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Prober:
    """The probe tasks of one farm's members on one event loop."""

    def __init__(self, members: Sequence[Member], health: FarmHealth) -> None:
        self.health = health
        self.ranges = health.status_ranges()
        self.loop = asyncio.get_running_loop()
        self.tasks = [self.loop.create_task(self._run(member)) for member in members]

    async def _run(self, member: Member) -> None:
        health = self.health
        while True:
            try:
                await probe(member, health, self.ranges)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                member.probes += 1
                member.probe_failures += 1
                member.mark_down(f"health probe failed: {_why(exc, health)}")
            else:
                member.probes += 1
                member.mark_up("health probe passed")
            await asyncio.sleep(health.interval)

    def stop(self) -> None:
        """Cancel the tasks (they end at their next await)."""
        for task in self.tasks:
            task.cancel()

    async def close(self) -> None:
        """Cancel the tasks and wait until they ended (on their own loop)."""
        self.stop()
        if self.loop is asyncio.get_running_loop():
            await asyncio.gather(*self.tasks, return_exceptions=True)
