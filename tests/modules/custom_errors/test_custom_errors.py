"""Custom errors: the local/remote by error_mode matrix, custom pages by status and
substatus (inline, file, redirect), existing_response, correlation ids, escaping,
and never a traceback for a remote client."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import Context, Handler, HttpError, Module, Stage, hook
from colonnade.core.errorpage import render
from colonnade.core.request import Request
from colonnade.errors import ConfigError
from colonnade.management.docgen import field_notes
from colonnade.modules.custom_errors import module as errmod
from colonnade.modules.custom_errors.config import CustomErrorsSection, ErrorPage
from colonnade.modules.custom_errors.module import (
    CustomErrors,
    builtin_message,
    is_local,
    with_correlation_id,
)
from colonnade.testing import Client, TestResponse, build_engine, make_context, run_stage

LOCAL = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.9", 50000)
SECRET = "secret <token>"


class Errors(Handler):
    """Answers by path: /boom raises, /http/STATUS/SUB raises HttpError, others set bodies."""

    id = "test.errors"

    def execute(self, ctx: Context) -> None:
        path = ctx.request.path
        response = ctx.response
        if path.endswith("/boom"):
            raise RuntimeError(SECRET)
        if "/http/" in path:
            _, status, sub = path.rsplit("/", 2)
            raise HttpError(int(status), int(sub), "denied <b>here</b>")
        if path.endswith("/script"):
            raise HttpError(403, 0, "<script>alert(1)</script>")
        if path.endswith("/setting"):
            raise HttpError(404, 3, "no type", detail="add <it> to static_content.mime_map")
        if path.endswith(("/own", "/own-skip")):
            response.status = 404
            response.headers.append((b"content-type", b"application/json"))
            response.body = b'{"error": "no such item"}'
            response.skip_custom_errors = path.endswith("-skip")
        elif path.endswith(("/empty", "/empty-skip")):
            response.status = 404
            response.skip_custom_errors = path.endswith("-skip")
        elif path.endswith("/busy"):
            response.status = 503
            response.headers.append((b"retry-after", b"120"))
            response.body = b"busy"
        elif path.endswith("/auth"):
            response.status = 401
            response.headers.append((b"www-authenticate", b'Basic realm="x"'))
        elif path.endswith("/encoded"):
            response.status = 404
            response.headers += [
                (b"content-type", b"text/plain"),
                (b"content-encoding", b"gzip"),
                (b"etag", b'"abc"'),
                (b"x-app", b"kept"),
            ]
            response.body = b"\x1f\x8b compressed"
        else:
            response.body = b"ok"


class Fail(Module):
    """Raises in BEGIN_REQUEST for /module-boom."""

    id = "test.fail"

    @hook(Stage.BEGIN_REQUEST)
    def begin_request(self, ctx: Context) -> None:
        if ctx.request.path == "/module-boom":
            raise ValueError("module failure")


MODULES = ["http.custom_headers", "http.custom_errors", "test.fail", "test.errors"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "errors").mkdir(parents=True)
    (site / "errors" / "404.html").write_text("<html><body><h1>Lost?</h1></body></html>")
    (site / "errors" / "500.html").write_text(
        "<html><body><h1>Sorry</h1><p>Quote {{correlation_id}}</p></body></html>"
    )
    (site / "api").mkdir()
    return site


def config(root: Path, settings: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": MODULES},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [{"path": "*", "handler": "test.errors"}],
        **extra,
    }
    if settings is not None:
        out["custom_errors"] = settings
    return out


@pytest.fixture
def serve(root: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(
        settings: dict[str, Any] | None = None,
        *,
        client_addr: tuple[str, int] = REMOTE,
        **extra: Any,
    ) -> Client:
        engine = build_engine(config(root, settings, **extra), modules=[Errors, Fail])
        client = Client(engine, client_addr=client_addr)
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def cid(response: TestResponse) -> str:
    assert response.context is not None
    return response.context.correlation_id


def is_detailed(response: TestResponse) -> bool:
    return "Detailed error information" in response.text


def assert_nothing_leaks(response: TestResponse, root: Path) -> None:
    text = response.text
    for leak in ("Traceback", "RuntimeError", "secret", "Detailed error", str(root), "File "):
        assert leak not in text, leak


# -- which page: the matrix ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["detailed_local_only", "custom", "detailed"])
@pytest.mark.parametrize(
    ("addr", "local"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),
        (("203.0.113.9", 1), False),
        (("10.0.0.1", 1), False),
        (("::ffff:10.0.0.1", 1), False),
        (("2001:db8::1", 1), False),
    ],
)
def test_matrix(serve: Any, root: Path, mode: str, addr: tuple[str, int], local: bool) -> None:
    client = serve({"error_mode": mode}, client_addr=addr)
    response = client.get("/boom?q=1")
    assert response.status == 500
    detailed = mode == "detailed" or (mode == "detailed_local_only" and local)
    assert is_detailed(response) is detailed
    assert cid(response) in response.text  # always, on every 5xx page
    if detailed:
        text = response.text
        # The exception's type and where it was raised; never its message (it may
        # carry secrets) or a traceback: both are in the error log.
        assert "Traceback" not in text and "secret" not in text
        assert "<code>RuntimeError</code>" in text
        source = Path(__file__).read_text().splitlines()
        line = next(i for i, code in enumerate(source, 1) if "raise RuntimeError(SECRET)" in code)
        assert f"test_custom_errors.py:{line} in execute" in text
        assert "<th>Module</th><td>test.errors</td>" in text
        assert "<th>Stage</th><td>EXECUTE_REQUEST_HANDLER</td>" in text
        assert "http://localhost/boom?q=1" in text
        assert os.path.join(str(root), "boom") in text
        assert response.header("cache-control") == "no-store"
    else:
        assert_nothing_leaks(response, root)


@pytest.mark.parametrize("mode", ["detailed_local_only", "custom", "detailed"])
@pytest.mark.parametrize("addr", [LOCAL, REMOTE])
def test_what_to_change_reaches_the_detailed_page_and_local_clients_only(
    serve: Any, mode: str, addr: tuple[str, int]
) -> None:
    # An error's detail for the administrator (the setting that refused the request)
    # is on the detailed page; where this module gives a local client the terse page,
    # the built-in page's detail goes too.
    response = serve({"error_mode": mode}, client_addr=addr).get("/setting")
    assert response.status == 404
    detailed = mode == "detailed" or (mode == "detailed_local_only" and addr == LOCAL)
    assert is_detailed(response) is detailed
    shown = "add &lt;it&gt; to static_content.mime_map" in response.text
    assert shown is detailed
    assert ("What to change" in response.text) is detailed
    assert "no type" in response.text


def test_without_this_module_the_built_in_page_shows_local_clients_what_to_change(
    root: Path,
) -> None:
    cfg = config(root)
    cfg["server"]["modules"] = ["test.errors"]
    for addr, shown in ((LOCAL, True), (REMOTE, False)):
        with Client(build_engine(cfg, modules=[Errors]), client_addr=addr) as client:
            response = client.get("/setting")
        assert response.status == 404 and "Error code: 404.3" in response.text
        assert ("add &lt;it&gt; to static_content.mime_map" in response.text) is shown


def test_loopback_behind_a_proxy_is_remote(serve: Any, root: Path) -> None:
    client = serve(client_addr=LOCAL)
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = client.get("/boom", headers={header: "198.51.100.7"})
        assert not is_detailed(response)
        assert_nothing_leaks(response, root)
    assert is_detailed(client.get("/boom"))


@pytest.mark.parametrize(
    ("client", "headers", "expected"),
    [
        (("127.0.0.1", 1), [], True),
        (("127.255.255.254", 1), [], True),
        (("::1", 1), [], True),
        (("::1%lo", 1), [], True),
        (("::ffff:127.0.0.1", 1), [], True),
        (("127.0.0.1", 1), [(b"x-forwarded-for", b"1.2.3.4")], False),
        (("128.0.0.1", 1), [], False),
        (("0.0.0.0", 1), [], False),
        (("::", 1), [], False),
        (("localhost", 1), [], False),  # not an address: not known to be local
        (("/run/colonnade.sock", 0), [], False),
        (None, [], False),
    ],
)
def test_is_local(
    client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]], expected: bool
) -> None:
    request = Request("GET", "/", client=client, headers=headers)
    assert is_local(request) is expected


@pytest.mark.parametrize(
    "target",
    ["/boom", "/module-boom", "/http/500/19", "/http/404/0", "/busy", "/own", "/empty", "/x/boom"],
)
@pytest.mark.parametrize("existing", ["auto", "replace", "pass_through"])
@pytest.mark.parametrize("mode", ["detailed_local_only", "custom"])
def test_never_a_traceback_for_a_remote_client(
    serve: Any, root: Path, target: str, existing: str, mode: str
) -> None:
    settings = {
        "error_mode": mode,
        "existing_response": existing,
        "errors": [{"status": 500, "file": "errors/500.html"}],
    }
    response = serve(settings).get(target)
    assert response.status >= 400
    assert_nothing_leaks(response, root)
    assert "module failure" not in response.text


def test_module_failure_names_the_module_and_stage(serve: Any) -> None:
    response = serve(client_addr=LOCAL).get("/module-boom")
    assert "<th>Module</th><td>test.fail</td>" in response.text
    assert "<th>Stage</th><td>BEGIN_REQUEST</td>" in response.text
    assert "<code>ValueError</code>" in response.text
    assert "module failure" not in response.text
    assert "(none chosen)" in response.text  # failed before the handler mapping


def test_detailed_page_for_a_4xx_shows_the_message(serve: Any) -> None:
    response = serve(client_addr=LOCAL).get("/http/404/3")
    text = response.text
    assert is_detailed(response)
    assert "HTTP Error 404.3 - Not Found" in text
    assert "denied &lt;b&gt;here&lt;/b&gt;" in text
    assert "Traceback" not in text and "Correlation id" not in text


def test_everything_in_a_detailed_page_is_escaped(serve: Any) -> None:
    client = serve(client_addr=LOCAL)
    text = client.get("/script?<script>x</script>").text
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "/script?&lt;script&gt;x&lt;/script&gt;" in text
    boom = client.get("/boom").text
    assert SECRET not in boom and "secret &lt;token&gt;" not in boom


# -- custom pages by status and substatus --------------------------------------------------


PAGES = [
    {"status": 404, "substatus": 3, "page": "<p>page 404.3</p>"},
    {"status": 404, "page": "<p>page 404</p>"},
    {"status": 403, "substatus": 4, "page": "<p>page 403.4</p>"},
    {"status": 401, "page": "<p>page 401</p>"},
]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/http/404/3", "<p>page 404.3</p>"),
        ("/http/404/7", "<p>page 404</p>"),
        ("/http/404/0", "<p>page 404</p>"),
        ("/empty", "<p>page 404</p>"),
        ("/http/403/4", "<p>page 403.4</p>"),
        ("/auth", "<p>page 401</p>"),
    ],
)
def test_substatus_specific_pages(serve: Any, target: str, expected: str) -> None:
    response = serve({"errors": PAGES}).get(target)
    assert response.text == expected
    assert response.header("content-type") == "text/html; charset=utf-8"


def test_status_without_an_entry_gets_the_terse_page(serve: Any) -> None:
    response = serve({"errors": PAGES}).get("/http/403/1")
    assert response.status == 403
    assert "403 Forbidden" in response.text and "Error code: 403.1" in response.text
    assert "denied &lt;b&gt;here&lt;/b&gt;" in response.text  # the pipeline's own page


def test_later_entry_wins_and_an_empty_entry_means_built_in(serve: Any) -> None:
    client = serve(
        {
            "errors": [
                {"status": 404, "page": "first"},
                {"status": 404, "page": "second"},
                {"status": 403, "page": "x"},
                {"status": 403},
            ]
        }
    )
    assert client.get("/empty").text == "second"
    assert "403 Forbidden" in client.get("/http/403/0").text


def test_headers_other_than_the_body_s_are_kept(serve: Any) -> None:
    client = serve(
        {"errors": PAGES, "existing_response": "replace"},
        custom_headers={"set": {"X-Frame-Options": "DENY"}},
    )
    auth = client.get("/auth")
    assert auth.header("www-authenticate") == 'Basic realm="x"'
    assert auth.header("x-frame-options") == "DENY"  # custom headers run before
    encoded = client.get("/encoded")
    assert encoded.text == "<p>page 404</p>"
    assert encoded.header("content-encoding") is None and encoded.header("etag") is None
    assert encoded.header("x-app") == "kept"
    assert [v for k, v in encoded.headers if k == b"content-type"] == [b"text/html; charset=utf-8"]
    busy = client.get("/busy")
    assert busy.header("retry-after") == "120" and cid(busy) in busy.text


def test_below_400_is_untouched(serve: Any) -> None:
    response = serve({"errors": PAGES, "existing_response": "replace"}).get("/fine")
    assert (response.status, response.body) == (200, b"ok")


# -- file pages ----------------------------------------------------------------------------


def test_file_page(serve: Any) -> None:
    response = serve({"errors": [{"status": 404, "file": "errors/404.html"}]}).get("/empty")
    assert response.text == "<html><body><h1>Lost?</h1></body></html>"


def test_file_is_read_once_and_reread_when_it_changes(
    serve: Any, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real_open = open

    def counting_open(path: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(errmod, "open", counting_open, raising=False)
    monkeypatch.setattr(errmod, "_RECHECK", 0.0)  # check on every use for the test
    client = serve({"errors": [{"status": 404, "file": "errors/404.html"}]})
    reads.clear()  # provisioning read it once already
    for _ in range(3):
        assert "Lost?" in client.get("/empty").text
    assert reads == []
    page = root / "errors" / "404.html"
    page.write_text("<html><body>Moved on</body></html>")
    os.utime(page, ns=(1, 2_000_000_000))
    assert client.get("/empty").text == "<html><body>Moved on</body></html>"
    assert len(reads) == 1


def test_file_is_checked_at_most_once_a_second(serve: Any, root: Path) -> None:
    client = serve({"errors": [{"status": 404, "file": "errors/404.html"}]})
    assert "Lost?" in client.get("/empty").text
    (root / "errors" / "404.html").write_text("changed")
    assert "Lost?" in client.get("/empty").text  # still the cached copy


def test_missing_file_falls_back_and_warns_once(
    serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(errmod, "_RECHECK", 0.0)
    with caplog.at_level(logging.WARNING, logger="colonnade.custom_errors"):
        client = serve({"errors": [{"status": 404, "file": "errors/nope.html"}]})
        first, second = client.get("/empty"), client.get("/empty")
    assert "404 Not Found" in first.text and second.text == first.text
    warnings = [r for r in caplog.records if r.name == "colonnade.custom_errors"]
    assert len(warnings) == 1 and "nope.html" in warnings[0].getMessage()


def test_file_outside_the_application_is_refused(
    serve: Any, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "secret.html"
    outside.write_text("private")
    (root / "errors" / "link.html").symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="colonnade.custom_errors"):
        response = serve({"errors": [{"status": 404, "file": "errors/link.html"}]}).get("/empty")
    assert "private" not in response.text and "404 Not Found" in response.text
    assert "outside the application" in caplog.text


def test_file_pages_of_a_5xx_get_the_correlation_id(serve: Any) -> None:
    response = serve({"errors": [{"status": 500, "file": "errors/500.html"}]}).get("/boom")
    assert response.text == (
        f"<html><body><h1>Sorry</h1><p>Quote {cid(response)}</p></body></html>"
    )


# -- redirects -----------------------------------------------------------------------------


def test_redirect_entry(serve: Any) -> None:
    client = serve({"errors": [{"status": 404, "redirect": "/sorry.html?from=404&x=%20"}]})
    response = client.get("/empty")
    assert (response.status, response.header("location")) == (302, "/sorry.html?from=404&x=%20")
    assert response.context is not None and response.context.response.substatus == 0
    assert 'href="/sorry.html?from=404&amp;x=%20"' in response.text


def test_redirect_of_a_5xx_carries_the_correlation_id(serve: Any) -> None:
    client = serve(
        {"errors": [{"status": 500, "redirect": "https://status.example/?id={{correlation_id}}"}]}
    )
    response = client.get("/boom")
    assert response.status == 302
    assert response.header("location") == f"https://status.example/?id={cid(response)}"
    assert cid(response) in response.text


# -- existing_response ---------------------------------------------------------------------


CUSTOM_404 = {"error_mode": "custom", "errors": [{"status": 404, "page": "custom 404"}]}
JSON = '{"error": "no such item"}'


@pytest.mark.parametrize(
    ("existing", "target", "expected"),
    [
        # auto (IIS): a module's body is kept only if it asked to skip custom errors.
        ("auto", "/own", "custom 404"),
        ("auto", "/own-skip", JSON),
        ("auto", "/empty", "custom 404"),
        ("auto", "/empty-skip", ""),
        ("auto", "/http/404/0", "custom 404"),
        # replace: always.
        ("replace", "/own", "custom 404"),
        ("replace", "/own-skip", "custom 404"),
        ("replace", "/empty-skip", "custom 404"),
        # pass_through: any body a module wrote is kept; the built-in page is not one.
        ("pass_through", "/own", JSON),
        ("pass_through", "/own-skip", JSON),
        ("pass_through", "/empty", "custom 404"),
        ("pass_through", "/http/404/0", "custom 404"),
    ],
)
def test_existing_response(serve: Any, existing: str, target: str, expected: str) -> None:
    response = serve({**CUSTOM_404, "existing_response": existing}).get(target)
    assert (response.status, response.text) == (404, expected)
    if expected == JSON:
        assert response.header("content-type") == "application/json"


def test_auto_never_draws_a_detailed_page_over_a_module_s_body(serve: Any) -> None:
    client = serve(client_addr=LOCAL)
    assert client.get("/own").text == JSON
    assert is_detailed(client.get("/empty"))
    assert is_detailed(serve({"existing_response": "replace"}, client_addr=LOCAL).get("/own"))


def test_per_folder_settings(serve: Any, root: Path) -> None:
    (root / "api" / "web.toml").write_text(
        '[custom_errors]\nexisting_response = "pass_through"\n'
        '[custom_errors.errors]\nadd = [{ status = 404, page = "api 404" }]\n'
    )
    client = serve(CUSTOM_404)
    assert client.get("/own").text == "custom 404"
    assert client.get("/api/own").text == JSON
    assert client.get("/api/empty").text == "api 404"


def test_per_location_error_mode(serve: Any, root: Path) -> None:
    locations = [{"path": "/dev", "custom_errors": {"error_mode": "detailed"}}]
    client = serve(locations=locations)
    assert is_detailed(client.get("/dev/boom"))
    assert_nothing_leaks(client.get("/boom"), root)


# -- correlation ids -----------------------------------------------------------------------


def test_correlation_id_in_page_and_error_log(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = serve({"errors": [{"status": 500, "page": "<html><body><h1>Oops</h1></body></html>"}]})
    with caplog.at_level(logging.ERROR, logger="colonnade.error"):
        response = client.get("/boom")
    cid_ = cid(response)
    assert response.text == (
        f"<html><body><h1>Oops</h1><p>Correlation id: <code>{cid_}</code></p></body></html>"
    )
    (record,) = [r for r in caplog.records if r.name == "colonnade.error"]
    assert f"correlation_id={cid_}" in record.getMessage()
    assert record.exc_info is not None  # the traceback goes to the log, not the page


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"error_mode": "custom"},
        {"errors": [{"status": 503, "page": "down"}]},
        {"errors": [{"status": 500, "page": "<P>no body tag"}]},
        {"errors": [{"status": 500, "page": "<BODY>x</BODY>"}]},
    ],
)
@pytest.mark.parametrize("target", ["/boom", "/busy", "/http/502/3", "/module-boom"])
def test_every_5xx_page_shows_the_correlation_id(
    serve: Any, settings: dict[str, Any], target: str
) -> None:
    for addr in (REMOTE, LOCAL):
        response = serve(settings, client_addr=addr).get(target)
        assert response.status >= 500
        if target == "/busy" and addr == LOCAL and "error_mode" not in settings:
            # auto: no detailed page over a body the handler wrote; it is kept as is.
            assert response.text == "busy"
            continue
        assert cid(response) in response.text


def test_4xx_pages_have_no_correlation_id(serve: Any) -> None:
    response = serve({"errors": [{"status": 404, "page": "<p>id={{correlation_id}}</p>"}]}).get(
        "/empty"
    )
    assert response.text == "<p>id=</p>"


def test_with_correlation_id() -> None:
    assert with_correlation_id(b"<body>x</body>", "abc") == (
        b"<body>x<p>Correlation id: <code>abc</code></p></body>"
    )
    assert with_correlation_id(b"x</BODY>y</body>", "abc").endswith(b"abc</code></p></body>")
    assert with_correlation_id(b"plain", "abc") == b"plain<p>Correlation id: <code>abc</code></p>"
    assert with_correlation_id(b"a{{correlation_id}}b", "abc") == b"aabcb"
    assert with_correlation_id(b"<body>x</body>", None) == b"<body>x</body>"


# -- the built-in page is recognised (guards against drift in core.errorpage) --------------


@pytest.mark.parametrize(
    ("status", "substatus", "message", "correlation_id"),
    [
        (404, 0, "", None),
        (404, 3, "no MIME type", None),
        (500, 0, "", "0123456789ab"),
        (403, 14, 'a <tricky> & "quoted" message</p>', None),
        (999, 1, "", "x"),
    ],
)
def test_builtin_page_is_recognised(
    status: int, substatus: int, message: str, correlation_id: str | None
) -> None:
    ctx = make_context()
    ctx.response.body = render(status, substatus, message, correlation_id)
    assert builtin_message(ctx.response) == message


@pytest.mark.parametrize(
    "body", [b"", b"<html>mine</html>", b'{"error": 1}', b"<!DOCTYPE html><html><head>"]
)
def test_other_bodies_are_not_builtin(body: bytes) -> None:
    ctx = make_context()
    ctx.response.body = body
    assert builtin_message(ctx.response) is None


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"errors": [{"status": 399, "page": "x"}]}, "Expected `int` >= 400"),
        ({"errors": [{"status": 404, "substatus": -2, "page": "x"}]}, ">= -1"),
        ({"errors": [{"status": 404, "page": "x", "file": "y"}]}, "sets page and file"),
        ({"errors": [{"status": 404, "file": "/etc/passwd"}]}, "must be relative"),
        ({"errors": [{"status": 404, "file": "../outside.html"}]}, "without '..'"),
        ({"errors": [{"status": 404, "file": "a/../../b.html"}]}, "without '..'"),
        ({"errors": [{"status": 404, "redirect": "//evil.example/"}]}, "must be a path"),
        ({"errors": [{"status": 404, "redirect": "/\\evil.example/"}]}, "must be a path"),
        ({"errors": [{"status": 404, "redirect": "javascript:alert(1)"}]}, "must be a path"),
        ({"errors": [{"status": 404, "redirect": "/a\r\nX: y"}]}, "must be a path"),
        ({"errors": [{"status": 404, "redirect": "/a b"}]}, "must be a path"),
        ({"errors": [{"status": 404, "redirect": "/100%"}]}, "must be a path"),
        (
            {"error_mode": "DetailedLocalOnly"},
            "'DetailedLocalOnly' is not one of: 'detailed_local_only', 'custom', 'detailed' "
            "(did you mean 'detailed_local_only'?)",
        ),
        ({"existing_response": "PassThrough"}, "(did you mean 'pass_through'?)"),
        ({"errors": [{"status": 404, "path": "x"}]}, "unknown key"),
    ],
)
def test_bad_settings_are_refused(root: Path, settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_engine(config(root, settings), modules=[Errors, Fail])
    assert raised.value.key.startswith("custom_errors")
    assert expected in str(raised.value)


def test_missing_file_is_reported_at_start_up(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = build_engine(
        config(root, {"errors": [{"status": 404, "file": "errors/gone.html"}]}),
        modules=[Errors, Fail],
    )
    with caplog.at_level(logging.WARNING, logger="colonnade.custom_errors"):
        engine.start()
    engine.close()
    assert "gone.html" in caplog.text


def test_pages_table_is_built_once() -> None:
    section = msgspec.convert(
        {"errors": [{"status": 404, "page": "a"}, {"status": 404, "substatus": 2, "page": "b"}]},
        CustomErrorsSection,
        strict=True,
    )
    assert section.pages is section.pages
    assert set(section.pages) == {(404, -1), (404, 2)}


def test_runs_last_in_send_response(root: Path) -> None:
    order = ["http.custom_errors", "http.custom_headers", "test.fail", "test.errors"]
    engine = build_engine({**config(root), "server": {"modules": order}}, modules=[Errors, Fail])
    (runtime,) = engine.runtimes
    owners = [hook.owner for hook in runtime.plan.send_response]
    assert owners == ["http.custom_headers", "http.custom_errors"]


def test_stage_harness() -> None:
    ctx = make_context(settings={"custom_errors": {"error_mode": "custom"}})
    ctx.response.status = 404
    run_stage(CustomErrors(), Stage.SEND_RESPONSE, ctx)
    assert b"404 Not Found" in ctx.response.body
    assert ctx.response.header(b"content-type") == b"text/html; charset=utf-8"


def test_every_setting_is_explained() -> None:
    for cls in (CustomErrorsSection, ErrorPage):
        notes = field_notes(cls)
        assert all(notes.get(name) for name in cls.__struct_fields__), cls


# -- streamed responses --------------------------------------------------------------------


class Streamer(Handler):
    """Streams a JSON 404 in two chunks (the head goes out with the first)."""

    id = "test.streamer"

    async def execute(self, ctx: Context) -> None:
        ctx.response.status = 404
        ctx.response.headers.append((b"content-type", b"application/json"))
        await ctx.write(b'{"error":')
        await ctx.write(b' "gone"}')


def test_a_streamed_body_is_left_alone() -> None:
    ctx = make_context(settings={"custom_errors": CUSTOM_404})
    ctx.response.streaming = True  # what Context.start_response is to set (see the module)
    ctx.response.status = 404
    ctx.response.headers.append((b"content-type", b"application/json"))
    run_stage(CustomErrors(), Stage.SEND_RESPONSE, ctx)
    assert ctx.response.headers == [(b"content-type", b"application/json")]
    assert ctx.response.body == b""


def test_streamed_error_response_end_to_end(root: Path) -> None:
    cfg = {
        **config(root, CUSTOM_404),
        "server": {"modules": ["http.custom_errors", "test.streamer"]},
        "handlers": [{"path": "*", "handler": "test.streamer"}],
    }
    with Client(build_engine(cfg, modules=[Streamer]), client_addr=REMOTE) as client:
        response = client.get("/x")
    assert response.status == 404
    assert response.header("content-type") == "application/json"
    assert response.text == '{"error": "gone"}'
