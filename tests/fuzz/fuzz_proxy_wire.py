"""The reverse proxy's reader of an upstream's responses (handlers/proxy/wire.py):
an upstream's bytes to events, through ``ResponseParser.whole`` (the proxy's path
for a small answer read at once) and ``feed``; and the field-line loop, whose
compiled build runs in C (handlers/proxy/_fields.c).

Properties: the parser raises only ``UpstreamProtocolError``; the same events
(body bytes joined) fed at once, in two pieces, and offered to ``whole`` first (up
to an error: see below); a head's field lines read by ``_header_lines`` (the C loop
where the build has it) and by ``_header_lines_py`` give the same answer.
"""

from __future__ import annotations

from colonnade.core.response import Response
from colonnade.handlers.proxy import wire
from colonnade.handlers.proxy.wire import (
    Data,
    End,
    Head,
    Interim,
    ResponseParser,
    UpstreamProtocolError,
)
from tests.fuzz.harness import expand

#: Small, so that heads at and past the limit are within the fuzzer's reach.
_MAX_HEAD = 1024


def _events(body: bytes, pieces: list[bytes], method: str, try_whole: bool) -> list[object]:
    parser = ResponseParser(_MAX_HEAD)
    parser.start(method)
    out: list[object] = []
    try:
        for piece in pieces:
            if try_whole and piece is pieces[0]:
                parsed = parser.whole(piece)
                if parsed is not None:
                    # Taken: its body is what follows the head, all of it.
                    assert len(piece) - parsed.end == wire._length(parsed.length or b"")
                    parsed.restore()  # (its headers with Content-Length: see restore)
                    out += [
                        ("head", parsed.status, parsed.reason, list(parsed.headers)),
                        piece[parsed.end :],
                        "end",
                    ]
                    assert parser.idle
                    continue
            for event in parser.feed(piece):
                if isinstance(event, Head):
                    out.append(("head", event.status, event.reason, event.headers))
                    assert event.headers == event.fields
                    assert event.bare == [f for f in event.fields if f[0] != b"content-length"]
                elif isinstance(event, Interim):
                    assert 100 <= event.status < 200 and event.status != 101
                    out.append(("interim", event.status, event.headers))
                elif isinstance(event, Data):
                    assert event.data
                    if out and isinstance(out[-1], bytes):
                        out[-1] += event.data
                    else:
                        out.append(event.data)
                else:
                    assert isinstance(event, End)
                    out.append("end")
        out += ["end" for _ in parser.eof()]
        out.append(("left", parser.leftover()))
    except UpstreamProtocolError:
        out.append("error")
    for item in out:
        if isinstance(item, tuple) and item[0] in ("head", "interim"):
            for name, value in item[-1]:
                assert name == name.lower() and b"\r" not in value and b"\n" not in value
    return out


def _field_lines(body: bytes) -> None:
    # The field lines of the first head in ``body``, both ways.
    found = wire._blank_line(body, 0, _MAX_HEAD)
    line_end = body.find(b"\r\n")
    if found < 0 or line_end < 0 or line_end + 2 > found + 4:
        return
    answers = []
    for lines in (wire._header_lines, wire._header_lines_py):
        try:
            answers.append(lines(body, line_end + 2, found + 4))
        except UpstreamProtocolError as exc:
            answers.append(("error", str(exc)))
    assert answers[0] == answers[1], answers
    _usual_head(body)


#: What _parse_usual_head and _parse_head must agree on.
_READ = (
    "end", "status", "reason", "headers", "bare", "canonical", "length", "length_at", "date",
    "server", "plain", "keep_alive", "te", "chunked",
)  # fmt: skip


def _usual_head(body: bytes) -> None:
    # A head the C reader (_fields.c's response_head) takes is read by the Python
    # parse alike; one it leaves is one the Python parse must be asked about.
    usual = wire._parse_usual_head(body, _MAX_HEAD, wire._Parsed())
    if usual is None:
        return
    found = wire._blank_line(body, 0, _MAX_HEAD)
    assert found >= 0 and usual.end == found + 4, (usual.end, found)
    parsed = wire._parse_head(body, found + 4)
    assert isinstance(parsed, wire._Parsed)
    # The head as the writer would write it, cut in C as in Python, and the whole
    # answer taken as it came by both or neither.
    response = Response()
    response.headers = usual.bare
    block = usual.block(body, response, body[usual.end :])
    expected_response = Response()
    expected_response.headers = parsed.bare
    expected = parsed.block(body, expected_response, body[usual.end :])
    assert (block and block.lines) == (expected and expected.lines), body[: usual.end]
    assert (response.answer is body) == (expected_response.answer is body), body[: usual.end]
    usual.restore()
    for name in _READ:
        assert getattr(usual, name) == getattr(parsed, name), (name, body[: usual.end])
    assert usual.size == wire._length(usual.length) if usual.length is not None else usual.size < 0


def one_input(data: bytes) -> None:
    """``data[2:]`` (expanded: harness.expand) as an upstream's bytes; ``data[0]``
    the request's method (odd: HEAD) and ``data[1]`` the split point."""
    if len(data) < 2:
        return
    body = expand(data[2:])
    method = "HEAD" if data[0] & 1 else "GET"
    cut = data[1] % (len(body) + 1)
    whole = _events(body, [body], method, False)
    for split in (
        _events(body, [body[:cut], body[cut:]], method, False),
        _events(body, [body], method, True),
        _events(body, [body[:cut], body[cut:]], method, True),
    ):
        if whole[-1] == "error":
            # feed raises at the first fault, and the events of the same call go
            # with the exception (the proxy answers 502 either way): in two
            # pieces, the first call's events were returned.
            assert split[-1] == "error", (whole, split)
        else:
            assert split == whole, (whole, split)
    _field_lines(body)
