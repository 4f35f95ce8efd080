"""The header rewriting of handler.proxy, as pure functions."""

from __future__ import annotations

import random

import pytest

from colonnade.core.request import EMPTY_BODY, BytesBody, Request
from colonnade.handlers.proxy import forward
from colonnade.handlers.proxy.forward import (
    FORWARDING,
    HostRewrite,
    Outgoing,
    _forwarding,
    outgoing,
    response_headers,
)
from colonnade.handlers.proxy.wire import HOP_BY_HOP

Headers = list[tuple[bytes, bytes]]


def split_head(out: Outgoing) -> tuple[bytes, Headers]:
    """The request line and the fields of a head that ends with its blank line."""
    assert out.head.endswith(b"\r\n\r\n")
    line, *lines = out.head[:-4].split(b"\r\n")
    fields = []
    for text in lines:
        name, sep, value = text.partition(b": ")
        assert sep, text
        fields.append((name, value))
    return line, fields


def test_url_rewrite_names_the_upstream_exactly() -> None:
    rewrite = HostRewrite(b"10.0.0.5:8080", "https", "www.example.com")
    assert rewrite.url(b"http://10.0.0.5:8080/a?b") == b"https://www.example.com/a?b"
    assert rewrite.url(b"HTTP://10.0.0.5:8080") == b"https://www.example.com"
    # Another port, a longer host, a relative URL, another host: untouched.
    for kept in (b"http://10.0.0.5:80801/", b"http://10.0.0.5:8080.evil/", b"/a", b"http://x/"):
        assert rewrite.url(kept) == kept


def test_default_port_is_matched_without_it() -> None:
    rewrite = HostRewrite(b"app:80", "http", "www.example.com:8443")
    assert rewrite.url(b"http://app/x") == b"http://www.example.com:8443/x"


def test_cookie_domain() -> None:
    rewrite = HostRewrite(b"app.internal:8080", "http", "www.example.com:8443")
    assert rewrite.cookie(b"s=1; Domain=.APP.internal; Path=/") == (
        b"s=1; Domain=www.example.com; Path=/"
    )
    assert rewrite.cookie(b"s=1; Domain=other.org") == b"s=1; Domain=other.org"
    assert rewrite.cookie(b"domain=app.internal") == b"domain=app.internal"  # the cookie's name


def test_response_hop_by_hop() -> None:
    headers = [
        (b"connection", b"close, X-A"),
        (b"x-a", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"content-type", b"text/plain"),
    ]
    assert response_headers(headers, None) == [(b"content-type", b"text/plain")]


def test_cookies_joined_and_body_framing() -> None:
    request = Request(
        "POST",
        "/",
        headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"content-length", b"5")],
        host="example.com",
        client=("192.0.2.1", 5000),
        body=BytesBody(b"hello"),
    )
    made = outgoing(request, b"/", b"up:80", forwarded=True, rfc7239=True)
    line, out = split_head(made)
    assert line == b"POST / HTTP/1.1"
    assert not made.chunked and not made.expect_continue and made.upgrade is None
    assert out[0] == (b"host", b"up:80")
    assert (b"cookie", b"a=1; b=2") in out
    assert [v for n, v in out if n == b"content-length"] == [b"5"]
    assert (b"forwarded", b"for=192.0.2.1;proto=http;host=example.com") in out


def test_ipv6_client_in_forwarded() -> None:
    request = Request("GET", "/", host="[::1]:8080", client=("2001:db8::1", 1))
    out = dict(split_head(outgoing(request, b"/", b"up", forwarded=True, rfc7239=True))[1])
    assert out[b"forwarded"] == b'for="[2001:db8::1]";proto=http;host="[::1]:8080"'
    assert out[b"x-forwarded-for"] == b"2001:db8::1"


def test_forwarded_only_when_asked() -> None:
    # RFC 7239 Forwarded repeats X-Forwarded-*: sent only with rfc7239 (the
    # setting forwarded_rfc7239), whether the request came from a client or
    # through a trusted proxy (whose Forwarded is then dropped with the others).
    request = Request("GET", "/", headers=[(b"forwarded", b"for=198.51.100.7")], host="example.com")
    request.client = ("192.0.2.1", 1)
    for peer in (request.client, ("10.0.0.1", 2)):
        request.peer = peer
        plain = dict(split_head(outgoing(request, b"/", b"up:80", forwarded=True))[1])
        assert b"forwarded" not in plain
        assert plain[b"x-forwarded-for"] in (b"192.0.2.1", b"192.0.2.1, 10.0.0.1")
        asked = dict(split_head(outgoing(request, b"/", b"up:80", forwarded=True, rfc7239=True))[1])
        assert asked[b"forwarded"].endswith(b";proto=http;host=example.com")


def test_forwarded_host_only_where_host_differs() -> None:
    # X-Forwarded-Host says the public host when the upstream gets another Host
    # (its own); where the client's Host is passed on (a unix socket upstream,
    # preserve_host) it would repeat it, and the upstream would parse it for nothing.
    request = Request("GET", "/", headers=[(b"host", b"www.example.com")], host="www.example.com")
    request.client = request.peer = ("192.0.2.1", 1)
    own = dict(split_head(outgoing(request, b"/", b"up:80", forwarded=True))[1])
    assert own[b"host"] == b"up:80"
    assert own[b"x-forwarded-host"] == b"www.example.com"
    passed = dict(split_head(outgoing(request, b"/", None, forwarded=True))[1])
    assert passed[b"host"] == b"www.example.com"
    assert b"x-forwarded-host" not in passed
    # The public host a trusted proxy named (trusted_proxies honouring
    # X-Forwarded-Host) is not the Host that proxy sent: it goes on.
    behind = Request("GET", "/", headers=[(b"host", b"edge.internal")], host="www.example.com")
    behind.client, behind.peer = ("192.0.2.1", 1), ("10.0.0.1", 2)
    chained = dict(split_head(outgoing(behind, b"/", None, forwarded=True))[1])
    assert chained[b"host"] == b"edge.internal"
    assert chained[b"x-forwarded-host"] == b"www.example.com"


def reference_fields(
    request: Request, host: bytes | None, forwarded: bool, rfc7239: bool
) -> Headers:
    # The rules read plainly: one look-up per question, in the order the fields go.
    headers = request.headers

    def first(name: bytes) -> bytes | None:
        return next((v for n, v in headers if n == name), None)

    connection = b",".join(v for n, v in headers if n == b"connection")
    listed = {t.strip(b" \t").lower() for t in connection.split(b",")} - {b""}
    trusted = forwarded and request.client != request.peer
    out: Headers = [(b"host", host if host is not None else first(b"host") or b"")]
    cookies: list[bytes] = []
    xff: list[bytes] = []
    fwd: list[bytes] = []
    for name, value in headers:
        if name in listed or name in HOP_BY_HOP or name in (b"host", b"content-length", b"expect"):
            continue
        if name == b"cookie":
            cookies.append(value)
        elif name not in FORWARDING or not forwarded:
            out.append((name, value))
        elif trusted and name == b"x-forwarded-for":
            xff.append(value)
        elif trusted and name == b"forwarded":
            fwd.append(value)
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    if request.body is not EMPTY_BODY:
        length = first(b"content-length")
        out.append(
            (b"content-length", length)
            if length is not None
            else (b"transfer-encoding", b"chunked")
        )
        expect = first(b"expect")
        if expect is not None and expect.lower() == b"100-continue":
            out.append((b"expect", b"100-continue"))
    upgrade = first(b"upgrade")
    if upgrade is not None and request.version == "1.1" and b"upgrade" in connection.lower():
        out += [(b"connection", b"upgrade"), (b"upgrade", upgrade)]
    if forwarded:
        sent = out[0][1] or request.host.encode()
        for name, value in _forwarding(request, xff if trusted else None, fwd if trusted else None):
            if name == b"x-forwarded-host" and value == sent:
                continue  # it would repeat the Host sent
            if name == b"forwarded" and not rfc7239:
                continue
            out.append((name, value))
    return out


FIELDS = [
    (b"accept", b"*/*"),
    (b"host", b"public.example"),
    (b"host", b"second.example"),
    (b"cookie", b"a=1"),
    (b"cookie", b"b=2"),
    (b"connection", b"keep-alive, X-Secret"),
    (b"connection", b"Upgrade"),
    (b"connection", b"cookie"),
    (b"x-secret", b"s"),
    (b"upgrade", b"websocket"),
    (b"keep-alive", b"300"),
    (b"te", b"trailers"),
    (b"transfer-encoding", b"chunked"),
    (b"content-length", b"5"),
    (b"expect", b"100-Continue"),
    (b"x-forwarded-for", b"198.51.100.7"),
    (b"forwarded", b"for=198.51.100.7"),
    (b"x-forwarded-proto", b"https"),
    (b"user-agent", b"t"),
]


def test_outgoing_as_the_rules_read_it() -> None:
    # Random requests of the fields above (repeated, in any order), from a client
    # or through a trusted proxy, with and without a body, HTTP/1.1 and 1.0: the
    # head is the request line and what the plain reading gives, and the handler's
    # notes agree with it.
    rng = random.Random(19)
    for _ in range(3000):
        chosen = [rng.choice(FIELDS) for _ in range(rng.randint(0, 8))]
        trusted = rng.random() < 0.3
        request = Request(
            rng.choice(["GET", "POST"]),
            "/",
            headers=chosen,
            host="public.example",
            version=rng.choice(["1.1", "1.1", "1.0"]),
            client=("192.0.2.1", 1),
            server=("127.0.0.1", 80),
            body=BytesBody(b"hello") if rng.random() < 0.5 else EMPTY_BODY,
        )
        request.peer = ("10.0.0.1", 2) if trusted else request.client
        host = rng.choice([None, b"up:80"])
        forwarded = rng.random() < 0.8
        rfc7239 = rng.random() < 0.5
        made = outgoing(request, b"/t", host, forwarded=forwarded, rfc7239=rfc7239)
        line, fields = split_head(made)
        expected = reference_fields(request, host, forwarded, rfc7239)
        if host is None and not expected[0][1]:
            expected[0] = (b"host", b"public.example")
        assert line == request.method.encode() + b" /t HTTP/1.1"
        assert fields == expected, chosen
        assert made.chunked == ((b"transfer-encoding", b"chunked") in expected)
        assert made.expect_continue == ((b"expect", b"100-continue") in expected)
        assert made.upgrade == (b"websocket" if (b"upgrade", b"websocket") in expected else None)


PLAIN_FIELDS = [
    *FIELDS,
    (b"connection", b"keep-alive"),
    (b"connection", b" Keep-Alive\t"),
    (b"connection", b"close"),
    (b"x-forwarded-host", b"h"),
    (b"cookie", b""),
    (b"accept-encoding", b"gzip"),
]


def plain_cases(count: int) -> list[tuple[bytes, bytes, bytes, Headers, bytes]]:
    rng = random.Random(27)
    return [
        (
            rng.choice([b"GET", b"HEAD"]),
            rng.choice([b"/", b"/a?b=c"]),
            rng.choice([b"up:80", b"public.example"]),
            [rng.choice(PLAIN_FIELDS) for _ in range(rng.randint(0, 6))],
            rng.choice([b"\r\n", b"x-forwarded-for: 192.0.2.1\r\n\r\n"]),
        )
        for _ in range(count)
    ]


def test_plain_head_as_outgoing_makes_it() -> None:
    # A request without a body from no trusted proxy: the head in one piece
    # (_plain_head, C or Python as built) is what the full work makes, or None
    # where a field needs that work (an Upgrade, a Connection naming fields).
    taken = 0
    for method, target, host, headers, _ in plain_cases(3000):
        request = Request(
            method.decode(),
            "/",
            headers=headers,
            host="public.example",
            client=("192.0.2.1", 1),
            server=("127.0.0.1", 80),
        )
        made = outgoing(request, target, host, forwarded=True, rfc7239=True)
        full = outgoing(request, target, host, forwarded=True, rfc7239=True, plain=False)
        assert made.head == full.head, headers
        assert (made.upgrade, made.chunked, made.expect_continue) == (
            full.upgrade,
            full.chunked,
            full.expect_continue,
        )
        needs_full = any(
            name == b"upgrade" or (name == b"connection" and value.strip().lower() != b"keep-alive")
            for name, value in headers
        )
        tail = forward._own_hop(request, host, True)
        plain = forward._plain_head(forward._PLAIN_KINDS, method, target, host, headers, tail)
        assert (plain is None) == needs_full, headers
        taken += plain is not None
    assert taken > 1000


def test_plain_head_in_c_as_in_python() -> None:
    # _fields.c's request_head answers what _plain_head_py answers.
    if forward._c_request_head() is None:
        pytest.skip("a pure-Python build has no C module")
    c_head = forward._c_request_head()
    assert c_head is not None
    for method, target, host, headers, tail in plain_cases(3000):
        args = (forward._PLAIN_KINDS, method, target, host, headers, tail)
        assert c_head(*args) == forward._plain_head_py(*args), headers
    # What is not a list of pairs of bytes: the full work (None), never a crash.
    for odd in ([(b"a",)], [(b"a", "b")], [[b"a", b"b"]], [(b"a", b"b", b"c")]):
        assert c_head(forward._PLAIN_KINDS, b"GET", b"/", b"h", odd, b"\r\n") is None
    with pytest.raises(TypeError):
        c_head(forward._PLAIN_KINDS, b"GET", b"/", None, [], b"\r\n")
