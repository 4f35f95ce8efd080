"""The compiled build's C helper (handlers/proxy/_fields.c); absent from a pure-Python build."""

def header_lines(
    raw: bytes, start: int, size: int, /
) -> tuple[list[tuple[bytes, bytes]], bool] | None: ...
