"""The compiled build's C helper (handlers/proxy/_fields.c); absent from a pure-Python build."""

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
