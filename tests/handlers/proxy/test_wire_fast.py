"""The proxy's fast paths give what the general code gives.

The response head is parsed by indexing bytes (``wire._status_line``,
``wire._header_lines``: the head's bytes and their translation); here each is
held against a plain reading of the rules (status line: RFC 9112 4; fields:
``wire._fields``, the line-by-line check) over a corpus of valid and invalid
input, including every single-byte change of a typical head. A head with no
field to change (``Head.plain``) is passed on as it came:
``forward.response_headers`` would have returned the same fields. The request's
forwarding fields are built once per client, Host, scheme and TLS: the cached
ones equal a fresh build.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from colonnade.core.httputil import has_token
from colonnade.core.request import Request
from colonnade.core.response import FieldBlock, Response
from colonnade.handlers.proxy import forward, wire
from colonnade.handlers.proxy.wire import Head, ResponseParser, UpstreamProtocolError

HEAD = (
    b"HTTP/1.1 200 OK\r\ndate: Sat, 05 Dec 2026 18:00:00 GMT\r\nserver: uvicorn\r\n"
    b"Content-Type: text/plain\r\ncontent-length: 13\r\n\r\n"
)


def reference_status(line: bytes) -> tuple[int, bytes, bool]:
    # HTTP-version SP 3DIGIT SP [reason], read with partition (the general code).
    version, _, rest = line.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise UpstreamProtocolError("version")
    code, _, reason = rest.partition(b" ")
    if len(code) != 3 or not code.isdigit() or code[0] == 0x30:
        raise UpstreamProtocolError("code")
    if 0 in reason or 13 in reason or 10 in reason:
        raise UpstreamProtocolError("reason")
    return int(code), reason, version == b"HTTP/1.0"


def outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except UpstreamProtocolError:
        return "error"


STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 404 Not Found",
    b"HTTP/1.1 200",
    b"HTTP/1.1 200 ",
    b"HTTP/1.1 599 x y z",
    b"HTTP/1.1 099 Low",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1  200 OK",
    b"HTTP/1.1 2x0 OK",
    b"HTTP/1.2 200 OK",
    b"http/1.1 200 OK",
    b"HTTP/1.1",
    b"HTTP/1.1 ",
    b"",
    b"HTTP/1.1 200 O\x00K",
    b"HTTP/1.1 200 O\rK",
    b"HTTP/1.1 200 \xff\xfe obs-text",
    b"HTTP/1.1\t200 OK",
]


@pytest.mark.parametrize("line", STATUS_LINES)
def test_status_line_as_the_rules_read_it(line: bytes) -> None:
    assert outcome(wire._status_line, line) == outcome(reference_status, line)


def test_status_line_every_byte_changed() -> None:
    base = b"HTTP/1.1 204 No Content"
    for i, byte in itertools.product(range(len(base)), (0, 9, 10, 13, 32, 48, 57, 65, 255)):
        line = base[:i] + bytes([byte]) + base[i + 1 :]
        assert outcome(wire._status_line, line) == outcome(reference_status, line), line


def test_status_line_within_its_head() -> None:
    # _parse_head passes the whole head and where the status line ends in it: the
    # same answers as for the line alone, whatever follows it.
    for line in STATUS_LINES:
        for after in (b"\r\n", b"\r\nx: 1\r\n\r\n", b"\r\n" + b"y" * 100):
            raw = line + after
            got = outcome(wire._status_line, raw, True, len(line))
            assert got == outcome(reference_status, line), line


def listed(fn: object, *args: object) -> object:
    # The fields of what a _header_lines function answers (their pair's first).
    found = outcome(fn, *args)
    return found if found == "error" else found[0]  # type: ignore[index]


#: A field line as the HTTP/1 writer writes one: a token in lower case, one SP, a
#: value that neither begins nor ends with SP or HTAB.
WRITTEN = re.compile(rb"[a-z0-9!#$%&'*+.^_`|~-]+: [^ \t](?:[^\r\n\x00]*[^ \t])?")


def written(lines: list[bytes]) -> bool:
    return all(WRITTEN.fullmatch(line) for line in lines)


def header_lines_cases() -> list[list[bytes]]:
    cases = [
        [b"a: 1", b"B: 2"],
        [b"Content-Type:text/plain", b"x-y:  \t padded \t "],
        [b"empty:", b"blank:   "],
        [b"x: a:b:c", b"X-Mixed-CASE: V"],
        [b"bad name: 1"],
        [b": no name"],
        [b"no colon"],
        [b" folded: 1"],
        [b"x: a\x00b"],
        [b"x: a\rb"],
        [b"x: a\nb"],
        [b"x: \x01\x7f\xff ctl and obs-text"],
        [b"t\xe9: 1"],
        [b"a(b): 1"],
        [b"!#$%&'*+-.^_`|~09azAZ: tchars"],
        [b"date: Mon", b"server: up", b"content-length: 5"],
        [b"x: a b", b"y: c"],
        [b"x:  a"],
        [b"x:\ta"],
        [b"x: a "],
        [b"x: "],
    ]
    rng = random.Random(19)
    alphabet = b"aZ-_:; \t\r\n\x00\x01\x7f\xff09"
    for _ in range(400):
        lines = []
        for _ in range(rng.randint(1, 4)):
            lines.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
        cases.append(lines)
    return cases


def test_header_lines_as_fields_reads_them() -> None:
    # For every case, the fast reading and the line-by-line one agree: the same
    # fields, or both refuse the block. (A case's line with CRLF in it is two
    # lines of the head, as the parser reads it.)
    status = b"HTTP/1.1 200 OK"
    for lines in header_lines_cases():
        raw = status + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
        fast = outcome(wire._header_lines, raw, len(status) + 2)
        block = raw[len(status) + 2 : -4]
        general = outcome(wire._fields, block.split(b"\r\n"))
        assert listed(wire._header_lines, raw, len(status) + 2) == general, lines
        if fast != "error":
            # And it says whether every line is as the writer writes it.
            assert fast[1] is written(block.split(b"\r\n")), lines  # type: ignore[index]


def test_header_lines_in_c_as_in_python() -> None:
    # The compiled build's C loop (_fields.c) answers what the Python loop
    # answers, case by case and for every single-byte change of a typical head:
    # the same fields, or the same refusal (where it gives up, None, _fields
    # decides, as where the Python loop gives up).
    lines_in_c = wire._C_HEADER_LINES
    if lines_in_c is None:
        pytest.skip("a pure-Python build has no C loop")
    status = b"HTTP/1.1 200 OK"
    heads = [status + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" for lines in header_lines_cases()]
    for i in range(len(HEAD) - 4):
        for byte in (0, 9, 10, 13, 32, 58, 65, 0x7F, 0xFF):
            heads.append(HEAD[:i] + bytes((byte,)) + HEAD[i + 1 :])
    for raw in heads:
        end = raw.find(b"\r\n\r\n", 15)
        if end < 0 or raw.find(b"\r\n") < 15:
            continue
        size = end + 4
        start = raw.find(b"\r\n") + 2
        in_python = outcome(wire._header_lines_py, raw + b"body", start, size)
        fields = lines_in_c(raw + b"body", start, size)
        if fields is None:  # given up: the line-by-line check decides, as in Python
            general = outcome(wire._fields, raw[start:end].split(b"\r\n"))
            assert general == listed(wire._header_lines_py, raw + b"body", start, size), raw
        else:
            assert fields == in_python, raw  # the fields, and whether all are as written


def fields_of(block: bytes) -> object:
    # The fields of a head whose field lines are ``block`` (each ending CRLF).
    raw = b"HTTP/1.1 200 OK\r\n" + block + b"\r\n"
    return listed(wire._header_lines, raw, 17)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"", []),
        (b"a:\r\n", [(b"a", b"")]),
        (b"a: \t \r\n", [(b"a", b"")]),
        (b"a:\t v \t\r\n", [(b"a", b"v")]),
        (b"a: v\t w\r\n", [(b"a", b"v\t w")]),
        (b"Content-TYPE: Text/Plain\r\nx: Y\r\n", [(b"content-type", b"Text/Plain"), (b"x", b"Y")]),
        (b"x: 1\r\nSERVER: A\r\n", [(b"x", b"1"), (b"server", b"A")]),
        (b"x: a:B\r\n", [(b"x", b"a:B")]),
        (b"x: a\rb\r\n", "error"),  # a lone CR in a value
        (b"x: a\r\r\n", "error"),
        (b"x: a\nb\r\n", "error"),  # a lone LF
        (b"x: a\x00\r\n", "error"),
        (b"x: 1\r\n y\r\n", "error"),  # obs-fold
        (b"x : 1\r\n", "error"),
        (b"x: 1\r\n\r\ny: 2\r\n", "error"),  # an empty line among the fields
        (b"x: 1\r\nbad line y: 2\r\n", "error"),  # a field at the end of a bad line
        (b"x: 1\r\ny: 2\n\r\n", "error"),
    ],
)
def test_header_lines_edges(block: bytes, expected: object) -> None:
    assert fields_of(block) == expected
    if block:
        assert outcome(wire._fields, block[:-2].split(b"\r\n")) == expected


def test_header_lines_cost_stays_linear() -> None:
    # Long whitespace runs around a value, with a NUL after them or not: refused
    # or read in one pass over the line (a reading that went back over the run
    # for each of its bytes would take minutes here).
    spaces = b" \t" * 50_000
    assert fields_of(b"x:" + spaces + b"\x00\r\n") == "error"
    assert fields_of(b"x:" + spaces + b"a" + spaces + b"\x00\r\n") == "error"
    assert fields_of(b"x:" + b"a " * 50_000 + b"\r\n") == [(b"x", b"a " * 49_999 + b"a")]


@pytest.mark.parametrize("reason", [b"O\rK", b"O\nK", b"O\x00K", b"OK\r"])
def test_reason_with_nul_cr_or_lf_is_refused(reason: bytes) -> None:
    with pytest.raises(UpstreamProtocolError, match="reason phrase"):
        wire._parse_head(b"HTTP/1.1 200 " + reason + b"\r\ncontent-length: 0\r\n\r\n")


def test_mixed_case_head_reads_as_the_general_code() -> None:
    lines = [
        b"HTTP/1.1 200 OK",
        b"Server: nginx/1.24.0",
        b"Date: Sun, 06 Dec 2026 14:21:36 GMT",
        b"Content-Type: text/html; charset=utf-8",
        b"Content-Length: 1234",
        b"Connection: keep-alive",
        b"Vary: Accept-Encoding, Cookie",
        b"X-Frame-Options: DENY",
        b"Set-Cookie: a=B; Path=/",
        b'ETag:\t"Ab" ',
    ]
    parsed = wire._parse_head(b"\r\n".join(lines) + b"\r\n\r\n")
    assert isinstance(parsed, wire._Parsed)
    assert parsed.headers == wire._fields(lines[1:])
    assert parsed.length == b"1234" and parsed.keep_alive and not parsed.plain
    assert parsed.bare == [f for f in parsed.headers if f[0] != b"content-length"]


def test_interim_head_with_fields() -> None:
    parser = ResponseParser()
    parser.start("GET")
    raw = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    events = parser.feed(raw + b"HTTP/1.1 204 No Content\r\nX-A:  b\t\r\n\r\n")
    interim, head = events[0], events[1]
    assert isinstance(interim, wire.Interim) and interim.status == 103
    assert interim.headers == [(b"link", b"</s.css>; rel=preload")]
    assert isinstance(head, Head) and head.status == 204 and head.headers == [(b"x-a", b"b")]


def test_head_every_byte_changed_parses_as_the_general_code() -> None:
    # Every one-byte change of a typical head: the parser's verdict and fields
    # equal those of the general reading (status line and _fields).
    for i, byte in itertools.product(range(len(HEAD) - 4), (0, 10, 13, 32, 58, 65, 97, 255)):
        raw = HEAD[:i] + bytes([byte]) + HEAD[i + 1 :]
        parser = ResponseParser(max_head=4096)
        parser.start("GET")
        try:
            events = parser.feed(raw)
        except UpstreamProtocolError:
            events = None
        block = raw[: raw.find(b"\r\n\r\n")] if b"\r\n\r\n" in raw else None
        if block is None:
            assert events == [] or events is None
            continue
        lines = block.split(b"\r\n")
        expected: object = outcome(reference_status, lines[0])
        if expected != "error":
            expected = outcome(wire._fields, lines[1:])
        if expected == "error":
            assert events is None, raw
            continue
        if events is None:
            # The fields are fine: a framing field (Content-Length) was changed.
            assert b"content-length" in raw.lower()
            continue
        head = events[0]
        assert isinstance(head, Head)
        assert head.headers == expected, raw


def test_plain_head_passes_on_what_response_headers_would() -> None:
    rewrite = forward.HostRewrite(b"up:8080", "https", "www.example.com")
    names = [
        b"content-type",
        b"date",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"location",
        b"content-location",
        b"set-cookie",
        b"x-a",
        b"upgrade",
        b"trailer",
    ]
    values = {
        b"connection": b"x-a",
        b"transfer-encoding": b"chunked",
        b"location": b"http://up:8080/x",
        b"content-location": b"http://up:8080/y",
        b"set-cookie": b"s=1; Domain=up",
    }
    plain_seen = 0
    for size in range(4):
        for chosen in itertools.permutations(names, size):
            fields = b"".join(b"%s: %s\r\n" % (n, values.get(n, b"v")) for n in chosen)
            raw = b"HTTP/1.1 200 OK\r\n" + fields + b"content-length: 0\r\n\r\n"
            parser = ResponseParser()
            parser.start("GET")
            head = parser.feed(raw)[0]
            assert isinstance(head, Head)
            for rw in (None, rewrite):
                general = forward.response_headers(head.headers, rw)
                if head.plain:
                    plain_seen += 1
                    assert general == head.headers, chosen
            if head.plain:
                assert not has_token(b",".join(chosen), b"connection")
    assert plain_seen > 0


def request(client: str, host: str, tls: bool = False) -> Request:
    return Request(
        "GET",
        "/",
        headers=[(b"host", host.encode())],
        host=host,
        client=(client, 1000),
        scheme="https" if tls else "http",
    )


def fields(req: Request) -> forward.Headers:
    head = forward.outgoing(req, b"/", b"up", forwarded=True).head
    assert head.endswith(b"\r\n\r\n")
    return [
        (name, value)
        for name, _, value in (line.partition(b": ") for line in head[:-4].split(b"\r\n")[1:])
    ]


def test_forwarding_fields_cached_equal_a_fresh_build() -> None:
    for client, host in (("192.0.2.1", "a.example"), ("2001:db8::1", "[::1]:8080")):
        req = request(client, host)
        first = fields(req)
        again = fields(request(client, host))
        assert first == again
        tail = [f for f in first if f[0] in forward.FORWARDING]
        # (The Host sent is the upstream's: X-Forwarded-Host goes; no Forwarded.)
        assert tail == forward._forwarding(req, None, None, b"up", False)
        assert first[-len(tail) :] == tail  # they end the head
    # Another client, another Host, another scheme: their own fields.
    a = dict(fields(request("192.0.2.1", "a.example")))
    b = dict(fields(request("192.0.2.2", "a.example")))
    c = dict(fields(request("192.0.2.1", "b.example")))
    d = dict(fields(request("192.0.2.1", "a.example", tls=True)))
    assert a[b"x-forwarded-for"] == b"192.0.2.1" and b[b"x-forwarded-for"] == b"192.0.2.2"
    assert c[b"x-forwarded-host"] == b"b.example"
    assert d[b"x-forwarded-proto"] == b"https" and a[b"x-forwarded-proto"] == b"http"


def test_forwarding_fields_of_a_connections_requests() -> None:
    # A connection's requests share their client, host and scheme objects: the
    # fields built for the first are the next one's at once. Any of them another
    # object, of the same value or another: each request gets its own fields, as
    # fresh ones.
    first = request("192.0.2.1", "a.example")
    fields(first)
    same = request("192.0.2.1", "a.example")
    same.client, same.host, same.scheme = first.client, first.host, first.scheme
    same.peer = same.client
    assert fields(same) == fields(first)
    for attr, value in (
        ("client", ("192.0.2.7", 1000)),
        ("host", "c.example"),
        ("scheme", "https"),
        ("client", ("192.0.2.1", 1000)),
        ("host", "a.example"),
    ):
        other = request("192.0.2.1", "a.example")
        other.client, other.host, other.scheme = first.client, first.host, first.scheme
        other.peer = other.client
        setattr(other, attr, value)
        if attr == "client":
            other.peer = other.client  # (from no trusted proxy)
        fields(first)  # the last request's: first's objects
        got = dict(fields(other))
        fresh = dict(forward._forwarding(other, None, None, b"up", False))
        assert {k: v for k, v in got.items() if k in forward.FORWARDING} == fresh, attr


def test_forwarding_cache_is_bounded() -> None:
    for i in range(forward._OWN_HOP_MAX * 3):
        fields(request(f"10.0.{i // 256}.{i % 256}", "a.example"))
        assert len(forward._OWN_HOP) <= forward._OWN_HOP_MAX
    long_host = "h" * (forward._OWN_HOP_HOST + 1)
    out = dict(fields(request("192.0.2.9", long_host)))
    assert out[b"x-forwarded-host"] == long_host.encode()
    assert not any(key[1] == long_host for key in forward._OWN_HOP)


def events_of(parser: ResponseParser, raw: bytes, method: str = "GET") -> list[object]:
    # The events of one response, comparable; each Head's headers then changed as
    # the pipeline may change a response's (a field appended).
    parser.start(method)
    out: list[object] = []
    for event in parser.feed(raw):
        if isinstance(event, Head):
            out.append(
                (event.status, event.reason, list(event.headers), event.keep_alive, event.plain)
            )
            event.headers.append((b"x-added", b"downstream"))
        elif isinstance(event, wire.Data):
            out.append(bytes(event.data))
        else:
            out.append(type(event).__name__)
    return out


def test_a_reused_parser_reads_each_head_as_a_fresh_one() -> None:
    # One connection's parser, fed a run of responses whose heads repeat, change
    # by a byte, or differ in framing: each reads as a new parser reads it, and a
    # head's headers changed downstream do not reach the next response.
    body = b"Hello, world!"
    heads = [
        HEAD,
        HEAD,
        HEAD.replace(b"18:00:00", b"18:00:01"),
        HEAD.replace(b"18:00:00", b"18:00:01"),
        HEAD.replace(b"content-length: 13", b"content-length: 12"),
        HEAD.replace(b"content-length: 13", b"content-length: 0"),
        HEAD.replace(b"HTTP/1.1 200 OK", b"HTTP/1.1 201 Created"),
        HEAD.replace(b"HTTP/1.1 200 OK", b"HTTP/1.1 204 No Content"),
        HEAD.replace(b"server: uvicorn", b"connection: close"),
        HEAD,
        HEAD,
    ]
    shared = ResponseParser()
    for raw in heads:
        length = int(raw.split(b"content-length: ")[1].split(b"\r\n")[0])
        message = raw if b" 204 " in raw else raw + body[:length]
        assert events_of(shared, message) == events_of(ResponseParser(), message), raw
        # A HEAD request's answer to the same head has no body.
        assert events_of(shared, raw, "HEAD") == events_of(ResponseParser(), raw, "HEAD"), raw


def test_an_invalid_head_after_a_valid_one_is_refused() -> None:
    for bad in (HEAD.replace(b"server:", b"ser ver:"), HEAD.replace(b"13", b"1x")):
        parser = ResponseParser()
        events_of(parser, HEAD + b"Hello, world!")
        with pytest.raises(UpstreamProtocolError):
            events_of(parser, bad + b"Hello, world!")


def _find_within(data: bytes, start: int, limit: int) -> int:
    # What _blank_line answers, by bytes.find.
    found = data.find(b"\r\n\r\n", start)
    return found if found >= 0 and found - start <= limit else -1


def test_blank_line_finds_what_find_finds() -> None:
    rng = random.Random(7)
    alphabet = b"\r\n\r\n\r\nab: "
    cases = [b"", b"\r\n\r\n", b"\r\n\r", b"\n\r\n\r\n", b"\r\r\n\r\n", b"a\r\n\r\n", HEAD]
    cases += [HEAD + b"Hello, world!", HEAD[:-1], HEAD.replace(b"\r\n\r\n", b"\r\n\n\r\n")]
    for _ in range(3000):
        cases.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 24))))
    for data in cases:
        for start in range(min(len(data), 6) + 1):
            for limit in (0, 1, 3, 4, 5, 10, 1000):
                expected = _find_within(data, start, limit)
                assert wire._blank_line(data, start, limit) == expected, (data, start, limit)
    # Past the bytes a native loop scans, find takes over: every match near the
    # seam is found, and none past the limit.
    for at in range(wire._SCANNED - 8, wire._SCANNED + 8):
        for filler in (b"a", b"\r", b"\n", b"\r\n"):
            data = (filler * at)[:at] + b"\r\n\r\n" + b"x" * 10
            for start in (0, 1, 5):
                for limit in (at - start - 1, at - start, 65536):
                    expected = _find_within(data, start, limit)
                    got = wire._blank_line(data, start, limit)
                    assert got == expected, (at, filler, start, limit)


def test_known_field_names_are_one_object_each_in_c() -> None:
    # The C loop hands out one bytes object per common field name (made and
    # hashed once), in whatever case the upstream wrote it; other names are new.
    lines_in_c = wire._C_HEADER_LINES
    if lines_in_c is None:
        pytest.skip("a pure-Python build has no C loop")
    raw = b"HTTP/1.1 200 OK\r\nDate: x\r\ncontent-length: 0\r\nX-Mine: y\r\n\r\n"
    got = lines_in_c(raw, 17, len(raw))
    again = lines_in_c(raw.replace(b"Date", b"DATE"), 17, len(raw))
    assert got is not None and again is not None
    first, second = got[0], again[0]
    assert first == second == [(b"date", b"x"), (b"content-length", b"0"), (b"x-mine", b"y")]
    assert first[0][0] is second[0][0]
    assert first[1][0] is second[1][0]
    assert first[2][0] is not second[2][0]


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [b""],
        [b"GET", b" ", b"/", b" HTTP/1.1\r\nhost: ", b"a", b"\r\n", b"\r\n"],
        [b"x" * 70000, b"\x00\xff"],
    ],
)
def test_join_is_bytes_join(parts: list[bytes]) -> None:
    # forward.outgoing's join (_fields.c's where built) answers b"".join's bytes.
    got = wire.join(parts)
    assert type(got) is bytes
    assert got == b"".join(parts)


def test_join_in_c_refuses_what_is_no_list_of_bytes() -> None:
    if wire._C_HEADER_LINES is None:
        pytest.skip("a pure-Python build has no C join")
    c_join = wire.join
    with pytest.raises(TypeError):
        c_join([b"a", bytearray(b"b")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        c_join((b"a", b"b"))  # type: ignore[arg-type]


#: What the C head reader (_fields.c's response_head) and _parse_head must agree on.
_READ = ("end", "status", "reason", "headers", "bare", "canonical", "length", "length_at")
_READ_TOO = ("date", "server", "plain", "keep_alive", "te", "chunked")


def _blocked(parsed: wire._Parsed, data: bytes) -> tuple[Response, FieldBlock | None]:
    # The response of ``data`` taken whole by ``parsed`` (the head's fields without
    # Content-Length, the rest its body), and the block it was handed.
    response = Response()
    response.headers = parsed.bare
    response.body = data[parsed.end :]
    return response, parsed.block(data, response, response.body)


def test_usual_head_in_c_as_in_python() -> None:
    # The compiled build reads the usual response head in C in one pass
    # (wire._parse_usual_head): for each head it takes, the same record as the
    # Python parse; the heads it leaves to Python (None) include every one that
    # is invalid, not whole, an interim or HTTP/1.0 answer, or names Connection or
    # Transfer-Encoding; and so for every single-byte change of a typical head.
    if wire._C_RESPONSE_HEAD is None:
        pytest.skip("a pure-Python build has no C head reader")
    status = b"HTTP/1.1 200 OK"
    heads = [status + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" for lines in header_lines_cases()]
    special = [
        b"HTTP/1.1 200 OK\r\nServer: u\r\nContent-Length: 5\r\nDate: d\r\n\r\nhello",
        b"HTTP/1.1 404\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 \r\nx: y\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nlocation: http://up/x\r\nset-cookie: a=b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTE: x\r\nUpgrade: y\r\nkeep-alive: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1234567890123456789\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching\r\nupgrade: x\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r",
    ]
    heads += special
    for i in range(len(HEAD)):
        for byte in (0, 9, 10, 13, 32, 58, 65, 0x7F, 0xFF):
            heads.append(HEAD[:i] + bytes((byte,)) + HEAD[i + 1 :])
    taken = 0
    for raw in heads:
        for data in (raw, raw + b"body", raw[:-1]):
            usual = wire._parse_usual_head(data, 65536, wire._Parsed())
            found = wire._blank_line(data, 0, 65536)
            try:
                parsed = wire._parse_head(data, found + 4) if found >= 0 else None
            except wire.UpstreamProtocolError:
                parsed = None
            if usual is None:
                continue
            taken += 1
            assert isinstance(parsed, wire._Parsed), data
            # The head as the writer would write it, cut in C as in Python, and
            # the whole answer taken as it came by both or neither.
            response, block = _blocked(usual, data)
            expected, expected_block = _blocked(parsed, data)
            assert (block is None) == (expected_block is None), data
            if block is not None and expected_block is not None:
                assert block.lines == expected_block.lines, data
            assert response.block is block and expected.block is expected_block
            assert (response.answer is data) == (expected.answer is data), data
            # The fields without Content-Length until restore() (a response not
            # taken whole) puts it back where it was.
            assert usual.headers == usual.bare, data
            usual.restore()
            for name in (*_READ, *_READ_TOO):
                assert getattr(usual, name) == getattr(parsed, name), (name, data)
            assert usual.status >= 200 and parsed.keep_alive and not parsed.te
            assert usual.size == (wire._length(usual.length) if usual.length else -1), data
        for limit in (0, len(raw) // 2, len(raw) - 5, len(raw) - 4):
            # Within the limit as _blank_line counts it, or left to Python.
            if wire._blank_line(raw, 0, limit) < 0:
                assert wire._parse_usual_head(raw, limit, wire._Parsed()) is None, (raw, limit)
    assert taken > 20
    for raw in special:
        lowered = raw.lower()
        if b"connection" in lowered or b"transfer-encoding" in lowered or b"HTTP/1.0" in raw:
            assert wire._parse_usual_head(raw, 65536, wire._Parsed()) is None, raw


def test_usual_head_in_c_marks_every_changed_field_as_python_does() -> None:
    # The C reader keeps its own list of the fields a proxy changes on the way back
    # (wire._CHANGED: hop-by-hop, or naming the upstream); a field of that set must
    # make its answer not "plain" (or leave the head to Python), in any case.
    if wire._C_RESPONSE_HEAD is None:
        pytest.skip("a pure-Python build has no C head reader")
    for name in sorted(wire._CHANGED):
        for spelled in (name, name.title(), name.upper()):
            raw = b"HTTP/1.1 200 OK\r\n" + spelled + b": v\r\ncontent-length: 0\r\n\r\n"
            usual = wire._parse_usual_head(raw, 65536, wire._Parsed())
            if usual is None:
                continue
            parsed = wire._parse_head(raw, wire._blank_line(raw, 0, 65536) + 4)
            assert not usual.plain and usual.plain == parsed.plain, raw


def test_usual_head_in_c_gives_a_repeated_field_its_last_pair() -> None:
    # An upstream answers alike: the C reader gives a field line that repeats the
    # last head's line at the same place that head's pair object again (no name,
    # value nor tuple made anew), and a new pair to any other line; each head's
    # record the same as the Python parse's, whatever it was given.
    if wire._C_RESPONSE_HEAD is None:
        pytest.skip("a pure-Python build has no C head reader")
    date = b"date: Sat, 05 Dec 2026 18:00:0%d GMT\r\n"
    heads = [
        b"HTTP/1.1 200 OK\r\n" + date % 0 + b"server: up\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + date % 0 + b"server: up\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + date % 1 + b"server: up\r\nx-a: 2\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nserver: up\r\n" + date % 1 + b"x-a: 2\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nserver: up\r\n" + date % 1 + b"X-A: 2\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nserver: up\r\n" + date % 1 + b"X-A: 2\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nserver: up\r\n"
        + date % 1
        + b"location: /\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nserver: up\r\n"
        + date % 1
        + b"location: /\r\ncontent-length: 0\r\n\r\n",
    ]
    before: list[tuple[bytes, bytes]] = []
    for i, raw in enumerate(heads):
        usual = wire._parse_usual_head(raw, 65536, wire._Parsed())
        assert usual is not None
        parsed = wire._parse_head(raw, len(raw), wire._Parsed())
        assert isinstance(parsed, wire._Parsed)
        assert usual.bare == parsed.bare and usual.plain == parsed.plain, raw
        assert (usual.date, usual.server) == (parsed.date, parsed.server), raw
        now = usual.bare
        if i:
            for at, pair in enumerate(now):
                # (A line whose name came with an upper-case letter gets its own.)
                again = at < len(before) and before[at] == pair and pair[0] + b": " in raw
                assert (at < len(before) and pair is before[at]) == again, (raw, pair)
        before = now
