"""The compiled build's C helper (handlers/proxy/_fields.c); absent from a pure-Python build."""

from asyncio import AbstractEventLoop, Future, Task
from collections.abc import Callable, Generator
from contextvars import Context
from typing import Any

def header_lines(
    raw: bytes, start: int, size: int, /
) -> tuple[list[tuple[bytes, bytes]], bool] | None: ...
def response_head(
    raw: bytes, limit: int, /
) -> (
    tuple[
        int,
        int,
        bytes,
        list[tuple[bytes, bytes]],
        bytes | None,
        int,
        int,
        int,
        int,
        bytes | None,
    ]
    | None
): ...
def join(parts: list[bytes], /) -> bytes: ...
def request_head(
    kinds: dict[bytes, int],
    method: bytes,
    target: bytes,
    host: bytes,
    headers: list[tuple[bytes, bytes]],
    tail: bytes,
    /,
) -> bytes | None: ...
def take(buffer: bytearray, size: int, /) -> bytes: ...

class Wait:
    """An upstream connection's reusable wait for bytes (client.PyWait in C)."""

    _asyncio_future_blocking: bool
    def __init__(
        self,
        loop: AbstractEventLoop,
        finished: Future[None],
        current_task: Callable[[AbstractEventLoop], Task[Any] | None],
        /,
    ) -> None: ...
    def arm(self) -> None: ...
    def wake(self, now: bool, /) -> None: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> None: ...
    def exception(self) -> None: ...
    def add_done_callback(
        self, fn: Callable[[Any], object], /, *, context: Context | None = None
    ) -> None: ...
    def remove_done_callback(self, fn: Callable[[Any], object], /) -> int: ...
    def cancel(self, msg: object = None) -> bool: ...
    def __await__(self) -> Generator[Any]: ...
