"""The ASGI handler in-process: scope, bodies, errors, lifespan, loading, denials."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from colonnade import CONTINUE, Context, Module, Outcome, Principal, Stage, hook
from colonnade.errors import ConfigError, ModuleError
from colonnade.testing import Client, build_engine
from tests.hosting.apps import asgi_apps
from tests.hosting.support import EXTRA, client, engine, site_config

APPS = "tests.hosting.apps.asgi_apps"


@pytest.fixture(autouse=True)
def _clear_events() -> Iterator[None]:
    asgi_apps.EVENTS.clear()
    yield
    asgi_apps.EVENTS.clear()


def scope_of(c: Client, target: str, **kw: Any) -> dict[str, Any]:
    response = c.request(kw.pop("method", "GET"), target, **kw)
    assert response.status == 200, response.text
    data: dict[str, Any] = json.loads(response.body)
    return data


# -- the http scope -------------------------------------------------------------------


def test_scope_at_the_site_root() -> None:
    with client(f"{APPS}:scope_app") as c:
        scope = scope_of(c, "/items/a%20b?x=1&y=%20", headers={"X-Thing": "one"})
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["root_path"] == ""
    assert scope["path"] == "/items/a b"
    assert scope["raw_path"] == "/items/a%20b"
    assert scope["query_string"] == "x=1&y=%20"
    assert ["x-thing", "one"] in scope["headers"]
    assert ["host", "localhost"] in scope["headers"]
    assert scope["client"] == ["127.0.0.1", 50000]
    assert scope["server"] == ["127.0.0.1", 8080]
    assert scope["state"] == {}
    assert scope["extensions"] == ["colonnade", "http.response.pathsend"]
    assert scope["user"] is None
    assert scope["has_context"] is True


seen: list[dict[str, Any]] = []


async def keys_then_mutate(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Records each http scope's keys and values, then changes the scope it was given."""
    if scope["type"] != "http":
        return
    seen.append({"keys": list(scope), "path": scope["path"], "method": scope["method"]})
    scope["path"] = "/changed"
    scope["extensions"]["colonnade"]["user"] = "someone"
    scope["added"] = True
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_each_request_gets_a_scope_of_its_own_with_the_keys_in_order() -> None:
    # Scopes are copies of one template: what an application does to its scope
    # must never reach the next request's.
    seen.clear()
    with client("tests.handlers.asgi.test_asgi:keys_then_mutate") as c:
        assert c.get("/one").status == 200
        assert c.request("POST", "/two?x=1", body=b"b").status == 200
    keys = [
        "type",
        "asgi",
        "http_version",
        "method",
        "scheme",
        "path",
        "raw_path",
        "query_string",
        "root_path",
        "headers",
        "client",
        "server",
        "extensions",
        "state",
    ]
    assert seen == [
        {"keys": keys, "path": "/one", "method": "GET"},
        {"keys": keys, "path": "/two", "method": "POST"},
    ]


@pytest.mark.parametrize(
    ("target", "path"),
    [("/api", "/api"), ("/api/", "/api/"), ("/api/users/7", "/api/users/7")],
)
def test_scope_under_a_mount_path(target: str, path: str) -> None:
    # ASGI: path is the full path and starts with root_path.
    with client(f"{APPS}:scope_app", path="/api") as c:
        scope = scope_of(c, target)
    assert scope["root_path"] == "/api"
    assert scope["path"] == path
    assert scope["path"].startswith(scope["root_path"])


def test_paths_outside_the_mount_are_not_the_apps() -> None:
    with client(f"{APPS}:scope_app", path="/api") as c:
        assert c.get("/apiary").status == 404
        assert c.get("/other").status == 404


def test_dot_segments_are_resolved_before_the_app_sees_the_path() -> None:
    with client(f"{APPS}:scope_app", path="/api") as c:
        scope = scope_of(c, "/api/a/../b/./c")
    assert scope["path"] == "/api/b/c"


class Authenticate(Module):
    """Plays an authentication module: sets the user and an item."""

    id = "test.authenticate"

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate(self, ctx: Context) -> Outcome:
        ctx.user = Principal("alice", "Basic")
        ctx.items["session.id"] = "s-42"
        return CONTINUE


def test_what_the_server_modules_decided_reaches_the_app() -> None:
    config = site_config(f"{APPS}:scope_app", modules=["test.authenticate"])
    with Client(build_engine(config, modules=[*EXTRA, Authenticate])) as c:
        scope = scope_of(c, "/")
    assert scope["user"] == "alice"
    assert scope["items"] == ["session.id"]


def test_the_context_is_in_the_scope() -> None:
    seen: list[Context] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ctx = scope["extensions"]["colonnade"]["context"]
        seen.append(ctx)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": ctx.correlation_id.encode()})

    asgi_apps.inline = app  # type: ignore[attr-defined]
    try:
        with client(f"{APPS}:inline") as c:
            response = c.get("/")
    finally:
        del asgi_apps.inline  # type: ignore[attr-defined]
    assert response.text == seen[0].correlation_id


# -- bodies ------------------------------------------------------------------------------


def test_a_small_response_is_buffered_with_content_length() -> None:
    with client(f"{APPS}:hello") as c:
        response = c.get("/")
    assert response.status == 200
    assert response.body == b"Hello, world!"
    assert response.header("content-type") == "text/plain"
    writer_length = response.context.writer.content_length
    assert writer_length == len(b"Hello, world!")


def test_head_gets_the_length_but_no_body() -> None:
    with client(f"{APPS}:hello") as c:
        response = c.head("/")
    assert response.status == 200
    assert response.body == b""
    assert response.context.writer.content_length == 13


def test_a_streamed_response_is_chunked() -> None:
    with client(f"{APPS}:stream") as c:
        response = c.get("/")
    assert response.body == b"".join(b"chunk %d\n" % i for i in range(5))
    assert response.context.writer.content_length is None
    assert response.complete


async def send_through_asyncio(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Hands what ``send`` returns to asyncio's task helpers, awaited many times over."""
    if scope["type"] != "http":
        return
    import asyncio

    start = send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.gather(start, asyncio.ensure_future(start))
    assert await start is None
    await asyncio.create_task(start)
    await asyncio.create_task(
        send({"type": "http.response.body", "body": b"one ", "more_body": True})
    )
    await asyncio.wait_for(send({"type": "http.response.body", "body": b"two"}), 5)
    asgi_apps.EVENTS.append("sent")


def test_what_send_returns_is_an_awaitable_asyncio_takes() -> None:
    # send is a plain function: a message taken whole returns one shared awaitable
    # that ends at once (a generator-based coroutine run to its end), which every
    # asyncio helper takes, as often as awaited.
    with client("tests.handlers.asgi.test_asgi:send_through_asyncio") as c:
        first = c.get("/")
        second = c.get("/")
    assert (first.status, first.body) == (200, b"one two")
    assert (second.status, second.body) == (200, b"one two")
    assert asgi_apps.EVENTS == ["sent", "sent"]  # the app ran to its end, twice


def test_request_body_is_handed_over() -> None:
    with client(f"{APPS}:echo") as c:
        response = c.post("/", body=b"x" * 1000)
    assert response.body == b"x" * 1000
    assert asgi_apps.EVENTS == [[[1000, False]]]


def test_a_request_without_body_gets_one_empty_message() -> None:
    with client(f"{APPS}:count_body") as c:
        assert c.get("/").text == "0 1"
        assert c.post("/", body=b"abc").text == "3 1"


def test_disconnect_comes_once_the_response_is_complete() -> None:
    with client(f"{APPS}:disconnect_after") as c:
        assert c.get("/").text == "done"
    assert asgi_apps.EVENTS == ["http.disconnect"]


def test_header_names_are_lower_cased_and_bytes_like_bodies_accepted() -> None:
    with client(f"{APPS}:mixed_case_headers") as c:
        response = c.get("/")
    assert response.status == 201
    assert response.context.response.headers[:2] == [
        (b"content-type", b"text/plain"),
        (b"x-custom", b"yes"),
    ]
    assert response.body == b"made"


def test_pathsend_sends_the_file() -> None:
    path = asgi_apps.tmp_file(100_000)
    try:
        with client(f"{APPS}:pathsend") as c:
            response = c.get("/?" + path)
        with open(path, "rb") as f:
            assert response.body == f.read()
        assert response.context.writer.content_length == 100_000
    finally:
        os.unlink(path)


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["raise_before", "raise_after_start", "no_response"])
def test_failures_before_the_response_are_a_500_without_traceback(
    app: str, caplog: pytest.LogCaptureFixture
) -> None:
    with client(f"{APPS}:{app}") as c:
        response = c.get("/")
    assert response.status == 500
    cid = response.context.correlation_id
    assert cid in response.text
    assert "SECRET-TRACEBACK-DETAIL" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    logged = [r for r in caplog.records if cid in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_failure_mid_stream_drops_the_connection() -> None:
    with client(f"{APPS}:raise_mid_stream") as c:
        response = c.get("/")
    assert response.status == 200
    assert response.body == b"partial"
    assert response.aborted


def test_failure_after_the_response_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    with client(f"{APPS}:raise_after_complete") as c:
        response = c.get("/")
    assert response.status == 200
    assert response.text == "complete"
    assert not response.aborted
    assert any("raised after its response" in r.getMessage() for r in caplog.records)


# -- loading -----------------------------------------------------------------------------


def test_an_app_that_cannot_be_imported_names_the_module() -> None:
    with pytest.raises(ConfigError, match="no_such_module"):
        engine(site_config("tests.hosting.apps.no_such_module:app"))


def test_an_import_failure_with_a_named_interface_refuses_the_start() -> None:
    config = site_config("tests.hosting.apps.no_such_module:app", interface="asgi")
    with pytest.raises(ConfigError, match="no_such_module"), Client(engine(config)):
        pass


def test_a_missing_attribute_is_named() -> None:
    config = site_config(f"{APPS}:nothing_here", interface="asgi")
    with pytest.raises(ConfigError, match="nothing_here"), Client(engine(config)):
        pass


def test_factory() -> None:
    with client(f"{APPS}:factory", factory=True, interface="asgi") as c:
        assert c.get("/").text == "made by the factory"
    assert "factory called" in asgi_apps.EVENTS


# -- lifespan ----------------------------------------------------------------------------


def test_lifespan_startup_state_and_shutdown() -> None:
    with client(f"{APPS}:lifespan_state") as c:
        assert asgi_apps.EVENTS == ["startup"]
        assert c.get("/").text == "hello from startup"
        # Each request got a shallow copy: the first request's change is gone.
        assert c.get("/").text == "hello from startup"
    assert asgi_apps.EVENTS == ["startup", "shutdown"]


def test_lifespan_failure_refuses_the_start_with_the_apps_message() -> None:
    with (
        pytest.raises(ModuleError, match="database unreachable"),
        client(f"{APPS}:lifespan_failed"),
    ):
        pass


def test_lifespan_exception_refuses_the_start() -> None:
    with (
        pytest.raises(ModuleError, match="cannot open the cache directory"),
        client(f"{APPS}:lifespan_raises"),
    ):
        pass


def test_an_app_without_lifespan_support_is_served(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "colonnade.asgi")
    with client(f"{APPS}:lifespan_unsupported") as c:
        assert c.get("/").text == "served anyway"
    assert any("does not support the ASGI lifespan" in r.getMessage() for r in caplog.records)


def test_lifespan_on_makes_an_unsupported_lifespan_fatal() -> None:
    config = site_config(f"{APPS}:lifespan_unsupported", sections={"asgi": {"lifespan": "on"}})
    with pytest.raises(ModuleError, match="only http"), Client(engine(config)):
        pass


def test_lifespan_off_never_sends_the_scope() -> None:
    config = site_config(f"{APPS}:lifespan_state", sections={"asgi": {"lifespan": "off"}})
    with Client(engine(config)) as c:
        response = c.get("/")
    assert asgi_apps.EVENTS == []
    assert response.status == 500  # the app reads the state its startup never set


# -- websocket requests in-process (no upgrade possible) ----------------------------------

WS_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def test_websocket_close_before_accept_is_403() -> None:
    with client(f"{APPS}:ws_deny") as c:
        response = c.get("/", headers=WS_HEADERS)
    assert response.status == 403


def test_websocket_denial_response_extension() -> None:
    with client(f"{APPS}:ws_deny_custom") as c:
        response = c.get("/", headers=WS_HEADERS)
    assert response.status == 401
    assert response.header("www-authenticate") == "Bearer"
    assert response.text == "token required"


def test_websocket_version_other_than_13_is_426() -> None:
    with client(f"{APPS}:ws_echo") as c:
        response = c.get("/", headers={**WS_HEADERS, "Sec-WebSocket-Version": "8"})
    assert response.status == 426
    assert response.header("sec-websocket-version") == "13"


def test_websocket_without_a_valid_key_is_400() -> None:
    with client(f"{APPS}:ws_echo") as c:
        response = c.get("/", headers={**WS_HEADERS, "Sec-WebSocket-Key": "short"})
    assert response.status == 400


def test_websocket_accept_where_the_transport_cannot_upgrade_is_501() -> None:
    with client(f"{APPS}:ws_echo") as c:
        response = c.get("/", headers=WS_HEADERS)
    assert response.status == 501


def test_upgrade_to_something_else_is_plain_http() -> None:
    with client(f"{APPS}:ws_echo") as c:
        response = c.get("/", headers={"Connection": "Upgrade", "Upgrade": "h2c"})
    assert response.text == "plain http"


class NoUpgrade(Module):
    """Says what the HTTP/1 parse says of a head with no Upgrade field (nor any other
    of ``http.h1.PARTICULAR_FIELDS``): the request cannot ask for another protocol."""

    id = "test.no_upgrade"

    @hook(Stage.BEGIN_REQUEST)
    def begin(self, ctx: Context) -> Outcome:
        ctx.request.may_upgrade = False
        return CONTINUE


def test_a_request_that_cannot_upgrade_is_not_scanned_for_upgrade() -> None:
    # The handler trusts the request's maker: with ``may_upgrade`` False, WebSocket
    # fields (which no real such request has) are not looked at.
    config = site_config(f"{APPS}:ws_echo", modules=["test.no_upgrade"])
    with Client(build_engine(config, modules=[*EXTRA, NoUpgrade])) as c:
        response = c.get("/", headers=WS_HEADERS)
    assert response.text == "plain http"


def test_response_headers_are_a_list_of_the_servers_own() -> None:
    # The app's header list is shared between its responses (a module-level
    # constant, as in the bench app): the response gets its own list, with pairs
    # whose names are lower case already kept, and others lowered, whatever the
    # container the app used.
    from colonnade.handlers.asgi.handler import _lowered

    shared = [(b"content-type", b"text/plain"), [b"X-Up", b"1"], (b"X-Up", b"2")]
    for _ in range(2):
        out = _lowered(shared)
        assert out == [(b"content-type", b"text/plain"), (b"x-up", b"1"), (b"x-up", b"2")]
        assert out is not shared
        out.append((b"vary", b"accept-encoding"))
    assert len(shared) == 3
    assert _lowered(((b"A", b"1"),)) == [(b"a", b"1")]


class FailingSend(Module):
    """A SEND_RESPONSE hook that raises for every response, counting its runs."""

    id = "test.failing_send"
    runs: list[int] = []

    @hook(Stage.SEND_RESPONSE)
    def send(self, ctx: Context) -> None:
        FailingSend.runs.append(ctx.response.status)
        raise RuntimeError("boom in a SEND_RESPONSE hook")


class FailingSendAsync(Module):
    """The same as a coroutine hook (the flush hands the app an awaitable)."""

    id = "test.failing_send_async"
    runs: list[int] = []

    @hook(Stage.SEND_RESPONSE)
    async def send(self, ctx: Context) -> None:
        FailingSendAsync.runs.append(ctx.response.status)
        raise RuntimeError("boom in a SEND_RESPONSE hook")


@pytest.mark.parametrize("module", [FailingSend, FailingSendAsync], ids=["plain", "coroutine"])
def test_a_send_response_hook_that_raises_in_the_apps_send_gives_the_500_page_once(
    module: type[FailingSend], caplog: pytest.LogCaptureFixture
) -> None:
    # The hook raises inside the application's last send: its response was never
    # sent. The client gets the 500 page, the hooks do not run a second time (as
    # for any handler's response: tests/pipeline/test_send_response.py), and the
    # log does not call it a failure "after its response".
    module.runs.clear()
    config = site_config(f"{APPS}:hello", modules=[module.id])
    eng = build_engine(config, modules=[*EXTRA, module])
    with caplog.at_level(logging.ERROR), Client(eng) as c:
        response = c.get("/")
    assert response.status == 500
    assert response.context.correlation_id in response.text
    assert "boom" not in response.text
    assert module.runs == [200]
    assert not any("raised after its response" in r.getMessage() for r in caplog.records)
    logged = [r for r in caplog.records if response.context.correlation_id in r.getMessage()]
    assert len(logged) == 1 and "stage=SEND_RESPONSE" in logged[0].getMessage()
