"""handler.proxy over real sockets: a Colonnade front end forwarding to a
Colonnade node that serves a Starlette application."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.handlers.proxy.kit import front, front_config, upstream_node
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with upstream_node(tmp_path_factory.mktemp("node")) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(node: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with front(tmp_path_factory.mktemp("front"), f"http://127.0.0.1:{node.port}") as server:
        yield server


def url(server: LiveServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def seen(response: httpx.Response) -> dict[str, Any]:
    """What the upstream app received (its /headers answer)."""
    found: dict[str, Any] = response.json()
    found["h"] = {}
    for name, value in found["headers"]:
        found["h"].setdefault(name, []).append(value)
    return found


def test_hello(proxy: LiveServer) -> None:
    got = httpx.get(url(proxy, "/hello"))
    assert (got.status_code, got.text) == (200, "Hello, world!")
    assert got.headers["content-length"] == "13"


def test_request_headers_sent_upstream(proxy: LiveServer, node: LiveServer) -> None:
    got = seen(
        httpx.get(
            url(proxy, "/headers?a=1&b=%20"),
            headers={
                "Host": "www.example.com",
                "X-Forwarded-For": "6.6.6.6",
                "Forwarded": "for=6.6.6.6",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "hop",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "X-App": "kept",
            },
        )
    )
    h = got["h"]
    assert got["query"] == "a=1&b=%20"
    # Host rewritten to the upstream's (preserve_host = false, as ARR).
    assert h["host"] == [f"127.0.0.1:{node.port}"]
    # The client's own forwarding headers are not believed: it is no trusted proxy.
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["www.example.com"]
    # RFC 7239 Forwarded only with forwarded_rfc7239 (it repeats X-Forwarded-*).
    assert "forwarded" not in h
    # Hop-by-hop fields, and those Connection names, stay here.
    for name in ("x-secret", "keep-alive", "te"):
        assert name not in h
    assert "connection" not in h
    assert h["x-app"] == ["kept"]


def test_preserve_host(node: LiveServer, tmp_path: Path) -> None:
    upstream = f"http://127.0.0.1:{node.port}"
    with front(tmp_path, upstream, preserve_host=True, forwarded_headers=False) as server:
        got = seen(
            httpx.get(
                url(server, "/headers"),
                headers={"Host": "www.example.com:8443", "X-Forwarded-For": "6.6.6.6"},
            )
        )
    assert got["h"]["host"] == ["www.example.com:8443"]
    # forwarded_headers = false: nothing added, what the client sent passes.
    assert got["h"]["x-forwarded-for"] == ["6.6.6.6"]
    assert "forwarded" not in got["h"]


def test_preserve_host_sends_no_forwarded_host_repeating_it(
    node: LiveServer, tmp_path: Path
) -> None:
    # The client's Host passed on: X-Forwarded-Host would repeat it (the upstream
    # would parse it for nothing); the other forwarding fields go as ever.
    upstream = f"http://127.0.0.1:{node.port}"
    with front(tmp_path, upstream, preserve_host=True) as server:
        got = seen(httpx.get(url(server, "/headers"), headers={"Host": "www.example.com:8443"}))
    h = got["h"]
    assert h["host"] == ["www.example.com:8443"]
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert "x-forwarded-host" not in h
    assert "forwarded" not in h


def test_each_url_goes_its_own_way_in_turns(node: LiveServer, tmp_path: Path) -> None:
    # The handler remembers the way of the last request's settings: a request to
    # another URL, with settings of its own, does not take it.
    config = front_config(f"http://127.0.0.1:{node.port}")
    config["locations"] = [{"path": "/hello", "proxy": {"upstream": "http://127.0.0.1:1"}}]
    with LiveServer(config, tmp_path).start() as server, httpx.Client() as client:
        paths = ["/headers", "/headers", "/hello", "/hello", "/headers", "/hello"]
        statuses = [client.get(url(server, path)).status_code for path in paths]
    assert statuses == [200, 200, 502, 502, 200, 502]


def test_trusted_proxy_chain_is_extended(node: LiveServer, tmp_path: Path) -> None:
    config_extra = {"proxies": ["127.0.0.1"], "headers": ["x-forwarded-for", "forwarded"]}
    upstream = f"http://127.0.0.1:{node.port}"
    config = front_config(upstream, forwarded_rfc7239=True)
    config["server"]["modules"].insert(0, "security.trusted_proxies")
    config["trusted_proxies"] = config_extra
    with LiveServer(config, tmp_path).start() as server:
        got = seen(
            httpx.get(
                url(server, "/headers"),
                headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
            )
        )
    h = got["h"]
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert h["forwarded"][0].startswith("for=203.0.113.9, for=127.0.0.1;proto=http")


def test_response_hosts_rewritten_back(proxy: LiveServer) -> None:
    got = httpx.get(url(proxy, "/redirect"), headers={"Host": "www.example.com"})
    assert got.status_code == 302
    assert got.headers["location"] == "http://www.example.com/target?x=1"
    assert got.headers["content-location"] == "http://www.example.com/here"
    assert got.headers["set-cookie"] == "s=1; Domain=www.example.com; Path=/"


def test_hop_by_hop_response_headers_removed(proxy: LiveServer) -> None:
    got = httpx.get(url(proxy, "/hop"))
    assert got.text == "hop"
    assert "x-private" not in got.headers
    assert "keep-alive" not in got.headers


def test_upstream_connections_are_kept_alive(proxy: LiveServer) -> None:
    ports = {tuple(seen(httpx.get(url(proxy, "/headers")))["client"]) for _ in range(10)}
    assert len(ports) == 1


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_streams_to_the_upstream(proxy: LiveServer, chunked: bool) -> None:
    body = os.urandom(5 * 1024 * 1024 + 17)
    content: Any = iter([body[i : i + 300_000] for i in range(0, len(body), 300_000)])
    got = httpx.post(url(proxy, "/digest"), content=content if chunked else body, timeout=60)
    assert got.text == f"{len(body)} {hashlib.sha256(body).hexdigest()}"


def test_echo_streams_both_ways(proxy: LiveServer) -> None:
    # httpx sends the whole body before it reads: 1 MiB fits the sockets' buffers
    # along the way (a larger echo waits on a client that does not read yet).
    body = os.urandom(1024 * 1024)
    got = httpx.put(url(proxy, "/echo"), content=body, timeout=60)
    assert got.content == body


def test_large_download_keeps_its_length(proxy: LiveServer) -> None:
    size = 20 * 1024 * 1024 + 3
    with httpx.stream("GET", url(proxy, f"/big?n={size}"), timeout=60) as got:
        assert got.headers["content-length"] == str(size)
        total = sum(len(piece) for piece in got.iter_bytes())
    assert total == size


def test_head(proxy: LiveServer) -> None:
    with Conn(proxy.port) as conn:
        conn.send(b"HEAD /big?n=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = conn.response(head_only=True)
        assert head.status == 200 and head.headers["content-length"] == "5000"
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.response().body == b"Hello, world!"


def test_answers_are_relayed_byte_for_byte(proxy: LiveServer, node: LiveServer) -> None:
    # A small answer that comes whole in one read is taken whole
    # (ResponseParser.whole): on the wire as the upstream sent it, Date aside (and
    # Content-Length, written by the engine, in another place), the first on a
    # connection and those after it alike, a HEAD between them too.
    def answer(conn: Conn, method: str) -> tuple[list[bytes], bytes]:
        conn.send(f"{method} /hello HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = conn.response(head_only=method == "HEAD")
        lines = [line for line in got.raw_head.split(b"\r\n") if line[:5].lower() != b"date:"]
        return sorted(lines), got.body

    with Conn(node.port) as direct:
        expected = {method: answer(direct, method) for method in ("GET", "HEAD")}
    assert expected["GET"][1] == b"Hello, world!"
    with Conn(proxy.port) as conn:
        for method in ("GET", "GET", "HEAD", "GET", "GET"):
            assert answer(conn, method) == expected[method], method


def test_expect_continue_passed_on(proxy: LiveServer) -> None:
    with Conn(proxy.port) as conn:
        conn.send(
            b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert conn._line() == b"HTTP/1.1 100 Continue"
        assert conn._line() == b""
        conn.send(b"hello")
        got = conn.response()
        assert got.body.decode() == f"5 {hashlib.sha256(b'hello').hexdigest()}"


def test_expect_continue_answered_early_spares_the_upload(proxy: LiveServer) -> None:
    with Conn(proxy.port) as conn:
        conn.send(
            b"POST /denied HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        got = conn.response()
        assert got.status == 401  # no 100 Continue before it
        assert got.headers["www-authenticate"] == "Basic"


def test_connect_failure_is_502_3(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    log = tmp_path / "access.log"
    with front(tmp_path, f"http://127.0.0.1:{port}", log=log) as server:
        got = httpx.get(url(server, "/x"))
    assert got.status_code == 502
    assert "502.3" in got.text or "Bad Gateway" in got.text
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["x_upstream"] == f"127.0.0.1:{port}"
    assert line["x_correlation_id"] in got.text


def test_the_access_log_names_the_upstream(node: LiveServer, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with front(tmp_path, f"http://127.0.0.1:{node.port}", log=log) as server:
        assert httpx.get(url(server, "/hello")).status_code == 200
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["x_upstream"] == f"127.0.0.1:{node.port}"
    assert line["sc_status"] == 200


# -- upgrade ---------------------------------------------------------------------------


def test_websocket_through_the_proxy(proxy: LiveServer) -> None:
    with connect(f"ws://127.0.0.1:{proxy.port}/ws", proxy=None, open_timeout=30) as ws:
        ws.send("hello")
        assert ws.recv(30) == "echo: hello"
        big = os.urandom(512 * 1024)
        ws.send(big)
        assert ws.recv(30) == big
        for i in range(50):
            ws.send(f"m{i}")
        assert [ws.recv(30) for _ in range(50)] == [f"echo: m{i}" for i in range(50)]


def test_websocket_refused_by_the_upstream_is_relayed(proxy: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{proxy.port}/hello", proxy=None, open_timeout=30)
    assert refused.value.response.status_code in (400, 403, 404, 405)


# -- the client's side failing -----------------------------------------------------------


def test_a_chunked_body_over_the_limit_is_413(node: LiveServer, tmp_path: Path) -> None:
    config = front_config(f"http://127.0.0.1:{node.port}")
    config["server"]["modules"].insert(0, "security.request_filtering")
    config["request_filtering"] = {"max_allowed_content_length": 100_000}
    with LiveServer(config, tmp_path).start() as server, httpx.Client(timeout=30) as client:
        body = iter([b"x" * 60_000] * 4)
        got = client.post(url(server, "/digest"), content=body)
        assert got.status_code == 413
        # The upstream connection the body was going to is not lent again.
        assert client.get(url(server, "/hello")).text == "Hello, world!"


def test_a_client_gone_mid_upload(proxy: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    with Conn(proxy.port) as conn:
        conn.send(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        conn.send(b"x" * 300_000)
    # The proxy goes on serving; nothing was logged as a server failure.
    with httpx.Client(timeout=30) as client:
        assert client.get(url(proxy, "/hello")).text == "Hello, world!"
    assert "unhandled" not in caplog.text


def test_a_trusted_proxy_with_one_header_names_the_client_in_both(
    node: LiveServer, tmp_path: Path
) -> None:
    config = front_config(f"http://127.0.0.1:{node.port}", forwarded_rfc7239=True)
    config["server"]["modules"].insert(0, "security.trusted_proxies")
    config["trusted_proxies"] = {"proxies": ["127.0.0.1"], "headers": ["x-forwarded-for"]}
    with LiveServer(config, tmp_path).start() as server:
        got = seen(httpx.get(url(server, "/headers"), headers={"X-Forwarded-For": "203.0.113.9"}))
    h = got["h"]
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert h["forwarded"][0].startswith("for=203.0.113.9, for=127.0.0.1;proto=http")


def test_an_http2_client(proxy: LiveServer) -> None:
    # HTTP/2 by prior knowledge in front, HTTP/1.1 behind: the body (no length)
    # goes chunked, the cookies (one field each in HTTP/2) as one header.
    body = os.urandom(300_000)
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        got = client.post(url(proxy, "/digest"), content=iter([body[:1000], body[1000:]]))
        assert got.http_version == "HTTP/2"
        assert got.text == f"{len(body)} {hashlib.sha256(body).hexdigest()}"
        echoed = seen(client.get(url(proxy, "/headers"), headers={"cookie": "a=1; b=2"}))
        assert echoed["h"]["cookie"] == ["a=1; b=2"]
        assert client.get(url(proxy, "/big?n=200000")).content.startswith(b"0123456789abcdef")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_slow_clients_do_not_fill_memory(proxy: LiveServer) -> None:
    # 100 clients that ask for 20 MB each and do not read: were the proxy to hold
    # responses whole, the process (proxy and upstream both) would grow by 2 GB
    # (it does with buffer_size = 64 MiB); streamed, by some 70 MB here (each
    # exchange's buffers on both servers), so the bound leaves room for noise.
    clients = [Conn(proxy.port, rcvbuf=4096) for _ in range(100)]
    try:
        for conn in clients:
            conn.send(b"GET /big?n=20000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        for conn in clients:
            conn.await_head()
        before = rss()
        # Time for the bytes to flow, were anything to take them: a hundred
        # requests through the same proxy.
        with httpx.Client(timeout=30) as client:
            for _ in range(100):
                assert client.get(url(proxy, "/hello")).status_code == 200
        grown = rss() - before
        assert grown < 400 * 1024 * 1024, grown
    finally:
        for conn in clients:
            conn.close()


def test_a_web_toml_cannot_redirect_the_proxy(node: LiveServer, tmp_path: Path) -> None:
    # A content folder's web.toml naming another upstream is refused (500.19 below
    # it) unless the server file's [lock] opens the section.
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "web.toml").write_text('[proxy]\nupstream = "http://169.254.169.254"\n')
    config = front_config(f"http://127.0.0.1:{node.port}")
    config["sites"][0]["root"] = str(root)
    with LiveServer(config, tmp_path).start() as server, httpx.Client(timeout=30) as client:
        assert client.get(url(server, "/sub/hello")).status_code == 500
        assert client.get(url(server, "/hello")).text == "Hello, world!"
