"""Request filtering: one table per rule, defaults and overrides (config and location)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import FINISH, Context, Handler, HttpError, Stage
from colonnade.core.request import EMPTY_BODY, Request
from colonnade.modules.request_filtering.config import RequestFilteringSection
from colonnade.modules.request_filtering.module import LimitedBody, RequestFiltering
from colonnade.testing import Client, TestResponse, build_engine, make_context, run_stage
from colonnade.testing.client import RecordingWriter
from tests.e2e.conftest import LiveServer
from tests.support.wait import PATIENCE

MODULES = ["security.request_filtering", "static.default_document", "handler.static"]

Row = tuple[str, str, dict[str, str] | None, str]  # method, target, headers, "status.substatus"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for name in (
        "index.html",
        "a.css",
        "a b.txt",
        "a+b.txt",
        "a..b.txt",
        "café.txt",
        "tool.exe",
        "TOOL.EXE",
        ".hidden.txt",
        "web.toml",
        "sub/index.html",
        "sub/a.css",
        "open/.x.txt",
        ".well-known/acme.txt",
        "secret/x.txt",
    ):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # web.toml is read as configuration too: make it valid (and empty) TOML.
        path.write_text(f"# {name}\n")
    return root


def engine_config(
    root: Path,
    settings: dict[str, Any] | None = None,
    locations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"modules": MODULES},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
    }
    if settings is not None:
        config["request_filtering"] = settings
    if locations is not None:
        config["locations"] = locations
    return config


@pytest.fixture
def serve(site: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(
        settings: dict[str, Any] | None = None, locations: list[dict[str, Any]] | None = None
    ) -> Client:
        client = Client(build_engine(engine_config(site, settings, locations)))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def code(response: TestResponse) -> str:
    substatus = response.context.response.substatus if response.context is not None else 0
    return f"{response.status}.{substatus}"


def check(client: Client, rows: list[Row]) -> None:
    got = [(m, t, code(client.request(m, t, headers=h))) for m, t, h, _ in rows]
    assert got == [(m, t, want) for m, t, _, want in rows]


# -- defaults ---------------------------------------------------------------------------

DEFAULTS: list[Row] = [
    ("GET", "/index.html", None, "200.0"),
    # hidden segments: web.toml anywhere, any case
    ("GET", "/web.toml", None, "404.8"),
    ("GET", "/WEB.TOML", None, "404.8"),
    ("GET", "/sub/Web.Toml", None, "404.8"),
    ("GET", "/web.toml/x", None, "404.8"),
    ("GET", "/web%2etoml", None, "404.8"),
    ("GET", "/sub%2fweb.toml", None, "404.8"),
    ("GET", "/web.tomlx", None, "404.0"),  # not the segment: passes, and is missing
    # dot segments, except .well-known
    ("GET", "/.hidden.txt", None, "404.8"),
    ("GET", "/.git/config", None, "404.8"),
    ("GET", "/open/.x.txt", None, "404.8"),
    ("GET", "/.well-known/acme.txt", None, "200.0"),
    ("GET", "/.well-knownx", None, "404.8"),
    ("GET", "/.well-known/.x", None, "404.8"),
    ("GET", "/%2egit/config", None, "404.8"),
    # double escaping, and '+' in the path
    ("GET", "/a%20b.txt", None, "200.0"),
    ("GET", "/a+b.txt", None, "404.11"),
    ("GET", "/a%2bb.txt", None, "404.11"),
    ("GET", "/%252e%252e/index.html", None, "404.11"),
    ("GET", "/a%2541.txt", None, "404.11"),
    ("GET", "/a%25zz.txt", None, "404.0"),  # "%zz" is no escape: decoding again changes nothing
    # high-bit characters are allowed by default
    ("GET", "/caf%C3%A9.txt", None, "200.0"),
    # URL and query string length
    ("GET", "/" + "a" * 4095, None, "404.0"),
    ("GET", "/" + "a" * 4096, None, "404.14"),
    ("GET", "/index.html?" + "q" * 2048, None, "200.0"),
    ("GET", "/index.html?" + "q" * 2049, None, "404.15"),
    # NUL in the query string
    ("GET", "/index.html?a=%00", None, "400.0"),
    ("GET", "/index.html?a=%0", None, "200.0"),
    # declared body size
    ("GET", "/index.html", {"content-length": "30000000"}, "200.0"),
    ("GET", "/index.html", {"content-length": "30000001"}, "413.1"),
    # no extension, verb, header or sequence rules by default (as IIS)
    ("GET", "/tool.exe", None, "200.0"),
    ("GET", "/a..b.txt", None, "200.0"),
    ("TRACE", "/index.html", None, "405.0"),
    ("GET", "/index.html", {"user-agent": "x" * 10000}, "200.0"),
]


def test_defaults(serve: Any) -> None:
    check(serve(), DEFAULTS)


def test_verdicts_hold_when_asked_again(serve: Any) -> None:
    # Paths that passed are remembered per section; refusals never are, and a
    # remembered path still meets the query rules of each request.
    check(serve(), DEFAULTS + DEFAULTS)
    passed: Row = ("GET", "/index.html", None, "200.0")
    check(
        serve({"max_query_string": 8}), [passed, ("GET", "/index.html?" + "q" * 9, None, "404.15")]
    )


# -- one table per rule, settings from the config file -----------------------------------

RULES: list[tuple[str, dict[str, Any], list[Row]]] = [
    (
        "hidden_segments",
        {"hidden_segments": ["secret", "bin"]},
        [
            ("GET", "/secret/x.txt", None, "404.8"),
            ("GET", "/SECRET/x.txt", None, "404.8"),
            ("GET", "/sub/bin", None, "404.8"),
            ("GET", "/binary", None, "404.0"),
            # the list replaces the default; the static handler still never serves it
            ("GET", "/web.toml", None, "404.8"),
        ],
    ),
    (
        "deny_dotfiles",
        {"deny_dotfiles": False},
        [
            ("GET", "/.hidden.txt", None, "200.0"),
            ("GET", "/web.toml", None, "404.8"),
        ],
    ),
    (
        "allow_double_escaping",
        {"allow_double_escaping": True},
        [
            ("GET", "/a+b.txt", None, "200.0"),
            ("GET", "/a%2bb.txt", None, "200.0"),
            ("GET", "/a%2541.txt", None, "404.0"),
        ],
    ),
    (
        "allow_high_bit_characters",
        {"allow_high_bit_characters": False},
        [
            ("GET", "/caf%C3%A9.txt", None, "404.12"),
            ("GET", "/index.html?q=caf%C3%A9", None, "200.0"),  # escaped: plain ASCII
            ("GET", "/index.html?q=café", None, "404.12"),
            ("GET", "/index.html", None, "200.0"),
        ],
    ),
    (
        "max_url",
        {"max_url": 11},
        [
            ("GET", "/index.html", None, "200.0"),
            ("GET", "/index.html?long=query", None, "200.0"),  # the path only
            ("GET", "/index.htmlx", None, "404.14"),
            ("GET", "/index%2ehtml", None, "404.14"),  # raw length
        ],
    ),
    (
        "max_query_string",
        {"max_query_string": 5},
        [
            ("GET", "/index.html?abcde", None, "200.0"),
            ("GET", "/index.html?abcdef", None, "404.15"),
        ],
    ),
    (
        "max_allowed_content_length",
        {"max_allowed_content_length": 10},
        [
            ("GET", "/index.html", {"content-length": "10"}, "200.0"),
            ("GET", "/index.html", {"content-length": "11"}, "413.1"),
            ("GET", "/index.html", {"content-length": "x"}, "400.0"),
        ],
    ),
    (
        "header_limits",
        {"header_limits": {"User-Agent": 10, "x-banned": 0}},
        [
            ("GET", "/index.html", {"user-agent": "x" * 10}, "200.0"),
            ("GET", "/index.html", {"user-agent": "x" * 11}, "431.0"),
            ("GET", "/index.html", {"x-banned": ""}, "431.0"),
            ("GET", "/index.html", {"x-banned": "1"}, "431.0"),
            ("GET", "/index.html", {"x-other": "x" * 100}, "200.0"),
        ],
    ),
    (
        "file_extensions denied",
        {"file_extensions": {".exe": False, ".txt": True}},
        [
            ("GET", "/tool.exe", None, "404.7"),
            ("GET", "/TOOL.EXE", None, "404.7"),
            ("GET", "/tool%2eexe", None, "404.7"),
            ("GET", "/index.html", None, "200.0"),
            ("GET", "/a%20b.txt", None, "200.0"),
        ],
    ),
    (
        "allow_unlisted_extensions",
        {"allow_unlisted_extensions": False, "file_extensions": {".html": True}},
        [
            ("GET", "/index.html", None, "200.0"),
            ("GET", "/a.css", None, "404.7"),
            ("GET", "/sub/", None, "404.7"),  # "." (no extension) is not listed
        ],
    ),
    (
        "allow_unlisted_extensions with '.'",
        {"allow_unlisted_extensions": False, "file_extensions": {".html": True, ".": True}},
        [
            ("GET", "/sub/", None, "200.0"),
            ("GET", "/a.css", None, "404.7"),
        ],
    ),
    (
        "deny_url_sequences",
        {"deny_url_sequences": ["..", "\\"]},
        [
            ("GET", "/a..b.txt", None, "404.5"),
            ("GET", "/sub/../index.html", None, "404.5"),  # raw path; canonical has none
            ("GET", "/sub/%2e%2e/index.html", None, "404.5"),  # raw path decoded once
            ("GET", "/a%5cb", None, "404.5"),
            ("GET", "/index.html", None, "200.0"),
        ],
    ),
    (
        "deny_query_string_sequences",
        {"deny_query_string_sequences": ["<script"]},
        [
            ("GET", "/index.html?q=<SCRIPT>", None, "404.18"),
            ("GET", "/index.html?q=%3Cscript%3E", None, "404.18"),
            ("GET", "/index.html?q=script", None, "200.0"),
        ],
    ),
    (
        "unescape_query_string",
        {"deny_query_string_sequences": ["<script"], "unescape_query_string": False},
        [
            ("GET", "/index.html?q=%3Cscript%3E", None, "200.0"),
            ("GET", "/index.html?q=<script>", None, "404.18"),
        ],
    ),
    (
        "verbs denied",
        {"verbs": {"TRACE": False, "options": False, "FROBNICATE": False}},
        [
            ("TRACE", "/index.html", None, "404.6"),
            ("trace", "/index.html", None, "404.6"),  # a rule ignores case
            ("OPTIONS", "/index.html", None, "404.6"),
            ("FROBNICATE", "/index.html", None, "404.6"),
            ("Frobnicate", "/index.html", None, "404.6"),
            ("GET", "/index.html", None, "200.0"),
            ("BREW", "/index.html", None, "405.0"),  # not refused: static content says 405
        ],
    ),
    (
        "allow_unlisted_verbs",
        {"allow_unlisted_verbs": False, "verbs": {"GET": True}},
        [
            ("GET", "/index.html", None, "200.0"),
            ("HEAD", "/index.html", None, "404.6"),
            ("POST", "/index.html", None, "404.6"),
            ("FROBNICATE", "/index.html", None, "404.6"),
        ],
    ),
    (
        "filtering_rules",
        {
            "filtering_rules": [
                {
                    "name": "sql",
                    "scan_url": True,
                    "scan_query_string": True,
                    "scan_headers": ["User-Agent"],
                    "deny_strings": ["drop table", "--"],
                },
                {
                    "name": "css only",
                    "scan_query_string": True,
                    "applies_to": [".css"],
                    "deny_strings": ["evil"],
                },
                # Without deny strings a rule refuses nothing.
                {"name": "empty", "scan_url": True},
            ]
        },
        [
            ("GET", "/index.html", None, "200.0"),
            ("GET", "/index.html?q=Drop%20Table", None, "404.19"),
            ("GET", "/index.html?q=drop+table", None, "404.19"),
            ("GET", "/index.html?q=a-b", None, "200.0"),
            ("GET", "/a--b.txt", None, "404.19"),
            ("GET", "/a%2d-b.txt", None, "404.19"),
            ("GET", "/index.html", {"user-agent": "x -- y"}, "404.19"),
            ("GET", "/index.html", {"referer": "x -- y"}, "200.0"),
            ("GET", "/a.css?x=EVIL", None, "404.19"),
            ("GET", "/index.html?x=evil", None, "200.0"),
            ("GET", "/sub/a.css?x=evil", None, "404.19"),
        ],
    ),
    (
        "filtering_rules without scan flags scan nothing",
        {"filtering_rules": [{"name": "r", "deny_strings": ["a"]}]},
        [("GET", "/a.css?a=a", {"user-agent": "a"}, "200.0")],
    ),
    (
        "allow_unlisted_verbs with none listed",
        {"allow_unlisted_verbs": False},
        [
            ("GET", "/index.html", None, "404.6"),
            ("FROBNICATE", "/index.html", None, "404.6"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("settings", "rows"), [(s, r) for _, s, r in RULES], ids=[name for name, _, _ in RULES]
)
def test_rule(serve: Any, settings: dict[str, Any], rows: list[Row]) -> None:
    check(serve(settings), rows)


# -- overrides through [[locations]] -----------------------------------------------------


def test_location_tightens_and_relaxes(serve: Any) -> None:
    client = serve(
        locations=[
            {"path": "/sub", "request_filtering": {"file_extensions": {".css": False}}},
            {"path": "/open", "request_filtering": {"deny_dotfiles": False}},
        ]
    )
    check(
        client,
        [
            ("GET", "/sub/a.css", None, "404.7"),
            ("GET", "/a.css", None, "200.0"),
            ("GET", "/open/.x.txt", None, "200.0"),
            ("GET", "/.hidden.txt", None, "404.8"),
            ("GET", "/open/web.toml", None, "404.8"),  # hidden segments still apply there
        ],
    )


def test_filtering_rules_add_and_remove_by_name_below(serve: Any) -> None:
    rule = {"name": "r", "scan_query_string": True, "deny_strings": ["bad"]}
    other = {"name": "s", "scan_url": True, "deny_strings": ["index"]}
    client = serve(
        {"filtering_rules": [rule]},
        locations=[
            {"path": "/sub", "request_filtering": {"filtering_rules": {"add": [other]}}},
            {
                "path": "/open",
                "request_filtering": {"filtering_rules": {"remove": [{"name": "r"}]}},
            },
        ],
    )
    check(
        client,
        [
            ("GET", "/index.html?q=bad", None, "404.19"),
            ("GET", "/sub/index.html?q=bad", None, "404.19"),
            ("GET", "/sub/index.html", None, "404.19"),
            ("GET", "/index.html", None, "200.0"),
            ("GET", "/open/x.txt?q=bad", None, "404.0"),
        ],
    )


def test_location_merges_with_server_settings(serve: Any) -> None:
    client = serve(
        {"file_extensions": {".exe": False}},
        [{"path": "/sub", "request_filtering": {"file_extensions": {".css": False}}}],
    )
    check(
        client,
        [
            ("GET", "/tool.exe", None, "404.7"),
            ("GET", "/sub/tool.exe", None, "404.7"),  # tables merge key by key
            ("GET", "/sub/a.css", None, "404.7"),
            ("GET", "/a.css", None, "200.0"),
        ],
    )


# -- the body limit while reading --------------------------------------------------------


class Reader(Handler):
    """Reads the whole request body and answers with its length."""

    id = "test.reader"
    how = "all"

    async def execute(self, ctx: Context) -> None:
        body = ctx.request.body
        if self.how == "all":
            data = await body.read()
        elif self.how == "sized":
            data = b""
            while chunk := await body.read(4):
                data += chunk
        else:
            data = b"".join([chunk async for chunk in body])
        ctx.response.body = str(len(data)).encode()


@pytest.mark.parametrize("how", ["all", "sized", "iterate"])
def test_chunked_body_over_the_limit_is_413_1(tmp_path: Path, how: str) -> None:
    Reader.how = how
    config = {
        "server": {"modules": ["security.request_filtering", "test.reader"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(tmp_path)}],
        "handlers": [{"path": "*", "handler": "test.reader"}],
        "request_filtering": {"max_allowed_content_length": 10},
    }
    chunked = {"transfer-encoding": "chunked"}
    with Client(build_engine(config, modules=[Reader])) as client:
        small = client.request("POST", "/up", headers=chunked, body=b"x" * 10)
        assert (small.status, small.body) == (200, b"10")
        big = client.request("POST", "/up", headers=chunked, body=b"x" * 11)
        assert code(big) == "413.1"
        assert big.context is not None and big.context.request.keep_alive is False


def test_declared_length_is_not_wrapped() -> None:
    ctx = make_context("POST", "/up", headers={"content-length": "3"}, body=b"abc")
    body = ctx.request.body
    assert run_stage(RequestFiltering(), Stage.BEGIN_REQUEST, ctx) is not FINISH
    assert ctx.request.body is body


def test_limited_body_counts_every_read() -> None:
    ctx = make_context(
        "POST",
        "/up",
        headers={"transfer-encoding": "chunked"},
        body=b"x" * 8,
        settings={"request_filtering": {"max_allowed_content_length": 6}},
    )
    assert run_stage(RequestFiltering(), Stage.BEGIN_REQUEST, ctx) is not FINISH
    body = ctx.request.body
    assert isinstance(body, LimitedBody)

    async def read() -> bytes:
        first = await body.read(5)
        assert first == b"xxxxx"
        return await body.read(5)

    with pytest.raises(HttpError) as raised:
        asyncio.run(read())
    assert (raised.value.status, raised.value.substatus) == (413, 1)
    assert ctx.request.keep_alive is False


# -- hook level and configuration ---------------------------------------------------------


def test_refusal_is_an_error_response_with_substatus() -> None:
    ctx = make_context("GET", "/web.toml")
    assert run_stage(RequestFiltering(), Stage.BEGIN_REQUEST, ctx) is FINISH
    assert (ctx.response.status, ctx.response.substatus) == (404, 8)
    assert b"404.8" in ctx.response.body


def test_rules_are_compiled_once_per_section() -> None:
    first = make_context("GET", "/a")
    second = make_context("GET", "/b")
    module = RequestFiltering()
    run_stage(module, Stage.BEGIN_REQUEST, first)
    section = first.section(RequestFilteringSection)
    assert section.rules is section.rules
    # Same path, same application: the same section object, the same compiled rules.
    again = first.app.sections_for("/a").get(RequestFilteringSection)
    assert again is section
    assert second.section(RequestFilteringSection) == section


@pytest.mark.parametrize(
    "raw",
    [
        {"max_url": 0},
        {"max_query_string": -1},
        {"header_limits": {"user agent": 5}},
        {"header_limits": {"content-length": 5}},
        {"file_extensions": {"exe": False}},
        {"hidden_segments": ["a/b"]},
        {"verbs": {"GET POST": True}},
        {"deny_url_sequences": [""]},
        {"filtering_rules": [{"name": "r", "deny_strings": [""]}]},
        {"filtering_rules": [{"name": "r", "applies_to": ["php"]}]},
        {"filtering_rules": [{"name": "r", "scan_headers": ["a b"]}]},
        {"filtering_rules": [{"deny_strings": ["x"]}]},
        {"unknown": True},
    ],
)
def test_invalid_settings_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, RequestFilteringSection, strict=True)


@pytest.mark.e2e
def test_filtering_rules_over_a_real_socket(site: Path) -> None:
    rules = [
        {
            "name": "SQLInjection",
            "scan_query_string": True,
            "scan_headers": ["User-Agent"],
            "applies_to": [".html"],
            "deny_strings": ["select", "--"],
        }
    ]
    config = engine_config(site, {"filtering_rules": rules})
    with LiveServer(config, site).start() as server:

        def status(target: str, agent: str = "test") -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as conn:
                conn.sendall(
                    f"GET {target} HTTP/1.1\r\nHost: t\r\nUser-Agent: {agent}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            # The detailed error page (a local client) names the substatus.
            return head.partition(b"\r\n")[0] + (b" .19" if b"404.19" in body else b"")

        assert status("/index.html?q=SeLeCt%20*") == b"HTTP/1.1 404 Not Found .19"
        assert status("/index.html", agent="x -- y") == b"HTTP/1.1 404 Not Found .19"
        assert status("/index.html?q=plain") == b"HTTP/1.1 200 OK"
        assert status("/a.css?q=select") == b"HTTP/1.1 200 OK"  # not an .html URL


# -- the common case's one test -------------------------------------------------------------


def _again(first: Context, method: str, query: bytes, headers: dict[str, str]) -> Context:
    """A request without a body (as the transport makes one: ``EMPTY_BODY``) for the
    raw path ``first`` had, in the same application: its path is remembered as clean."""
    request = Request(
        method,
        first.request.path,
        raw_path=first.request.raw_path,
        query=query,
        headers=[(k.encode(), v.encode()) for k, v in headers.items()],
        host="localhost",
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 8080),
        body=EMPTY_BODY,
    )
    return Context(request, first.app, RecordingWriter(), None)


@pytest.mark.parametrize(
    ("settings", "method", "query", "headers", "want"),
    [
        ({}, "GET", b"", {}, (200, 0)),  # the one-test pass
        ({}, "get", b"", {}, (200, 0)),  # any method token, with no verb rule
        ({}, "GET", b"a=%00", {}, (400, 0)),  # a query is checked whatever the path
        ({"max_query_string": 3}, "GET", b"abcd", {}, (404, 15)),
        ({"verbs": {"TRACE": False}}, "TRACE", b"", {}, (404, 6)),
        ({"verbs": {"GET": True}, "allow_unlisted_verbs": False}, "PUT", b"", {}, (404, 6)),
        ({"verbs": {"GET": True}, "allow_unlisted_verbs": False}, "GET", b"", {}, (200, 0)),
        ({"header_limits": {"user-agent": 4}}, "GET", b"", {"user-agent": "long"}, (200, 0)),
        ({"header_limits": {"user-agent": 4}}, "GET", b"", {"user-agent": "longer"}, (431, 0)),
        (
            {"filtering_rules": [{"name": "r", "scan_headers": ["x-a"], "deny_strings": ["bad"]}]},
            "GET",
            b"",
            {"x-a": "so bad"},
            (404, 19),
        ),
    ],
)
def test_a_remembered_path_still_meets_every_other_rule(
    settings: dict[str, Any],
    method: str,
    query: bytes,
    headers: dict[str, str],
    want: tuple[int, int],
) -> None:
    module = RequestFiltering()
    first = make_context("GET", "/index.html", settings={"request_filtering": settings})
    assert run_stage(module, Stage.BEGIN_REQUEST, first) is not FINISH
    assert b"/index.html" in first.section(RequestFilteringSection).rules.clean_paths
    ctx = _again(first, method, query, headers)
    finished = run_stage(module, Stage.BEGIN_REQUEST, ctx) is FINISH
    assert (ctx.response.status, ctx.response.substatus) == want
    assert finished is (want != (200, 0))
