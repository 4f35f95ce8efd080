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
        list[tuple[bytes, bytes]],
        bytes | None,
        int,
        int,
        int,
    ]
    | None
): ...
def join(parts: list[bytes], /) -> bytes: ...
def take(buffer: bytearray, size: int, /) -> bytes: ...
