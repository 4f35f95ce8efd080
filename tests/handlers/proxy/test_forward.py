"""The header rewriting of handler.proxy, as pure functions."""

from __future__ import annotations

from colonnade.core.request import Request
from colonnade.handlers.proxy.forward import HostRewrite, request_headers, response_headers


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
    )
    out = request_headers(
        request,
        b"up:80",
        forwarded=True,
        framing=(b"content-length", b"5"),
        expect_continue=False,
        upgrade=None,
    )
    assert out[0] == (b"host", b"up:80")
    assert (b"cookie", b"a=1; b=2") in out
    assert [v for n, v in out if n == b"content-length"] == [b"5"]
    assert (b"forwarded", b"for=192.0.2.1;proto=http;host=example.com") in out


def test_ipv6_client_in_forwarded() -> None:
    request = Request("GET", "/", host="[::1]:8080", client=("2001:db8::1", 1))
    out = dict(
        request_headers(
            request, b"up", forwarded=True, framing=None, expect_continue=False, upgrade=None
        )
    )
    assert out[b"forwarded"] == b'for="[2001:db8::1]";proto=http;host="[::1]:8080"'
    assert out[b"x-forwarded-for"] == b"2001:db8::1"
