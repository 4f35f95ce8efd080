"""The FastCGI record codec (handlers/fastcgi/records.py): an application's bytes
to events, and name-value pairs.

Properties: readers raise only ``FastCgiProtocolError``; bytes fed in two
pieces give the same events as fed at once (up to an error: see below); a reader
holds no more than one record beyond what it returned; name-value pairs decoded
from the input encode back to pairs that decode the same.
"""

from __future__ import annotations

from colonnade.handlers.fastcgi.records import (
    FastCgiProtocolError,
    RecordReader,
    ResponseReader,
    decode_pairs,
    encode_pairs,
    parse_begin_request,
)

_MAX_RECORD = 8 + 65535 + 255


def _events(pieces: list[bytes]) -> list[object]:
    reader = ResponseReader(1)
    out: list[object] = []
    try:
        for piece in pieces:
            out += reader.feed(piece)
            assert reader.pending < _MAX_RECORD
    except FastCgiProtocolError as exc:
        out.append(("error", str(exc)))
    return out


def one_input(data: bytes) -> None:
    """``data[1:]`` as an application's output; ``data[0]`` the split point."""
    if not data:
        return
    body = data[1:]
    cut = data[0] % (len(body) + 1)
    whole, split = _events([body]), _events([body[:cut], body[cut:]])
    if whole and isinstance(whole[-1], tuple) and whole[-1][0] == "error":
        # ``feed`` raises for the first bad record, and the events the same call
        # completed before it go with the exception (the handler fails the request
        # either way): fed in two, the first call's events were returned.
        assert split[-1] == whole[-1] and split[: len(whole) - 1] == whole[:-1]
    else:
        assert whole == split
    records = RecordReader()
    try:
        for record in records.feed(body):
            assert len(record.content) <= 65535
            if record.type == 1:
                parse_begin_request(record.content)
    except FastCgiProtocolError:
        pass
    try:
        pairs = decode_pairs(body)
    except FastCgiProtocolError:
        return
    assert decode_pairs(encode_pairs(pairs)) == pairs
