"""Custom headers: set, add, default and remove; per location and per folder; validation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import Context, Handler, Stage
from colonnade.errors import ConfigError
from colonnade.management.docgen import field_notes
from colonnade.modules.custom_headers.config import CustomHeadersSection
from colonnade.modules.custom_headers.module import CustomHeaders
from colonnade.testing import Client, TestResponse, build_engine, make_context, run_stage

SHARED: list[tuple[bytes, bytes]] = [(b"x-shared", b"1")]


class App(Handler):
    """Answers like an application that sets headers of its own."""

    id = "test.app"

    def execute(self, ctx: Context) -> None:
        path = ctx.request.path
        response = ctx.response
        if path.endswith("/shared"):
            response.headers = SHARED  # a list the handler keeps (a cache's)
        else:
            response.headers += [
                (b"x-powered-by", b"PHP/5.6"),
                (b"x-frame-options", b"SAMEORIGIN"),
                (b"cache-control", b"private"),
                (b"vary", b"Accept"),
            ]
        if path.endswith("/missing"):
            response.status = 404
        response.body = b"app"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "api").mkdir(parents=True)
    (site / "static").mkdir()
    return site


def config(root: Path, settings: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": ["http.custom_headers", "test.app"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [{"path": "*", "handler": "test.app"}],
        **extra,
    }
    if settings is not None:
        out["custom_headers"] = settings
    return out


@pytest.fixture
def serve(root: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(settings: dict[str, Any] | None = None, **extra: Any) -> Client:
        client = Client(build_engine(config(root, settings, **extra), modules=[App]))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def values(response: TestResponse, name: str) -> list[str]:
    key = name.lower().encode()
    return [v.decode() for k, v in response.headers if k == key]


# -- the four operations -------------------------------------------------------------------


def test_set_replaces_the_application_value(serve: Any) -> None:
    response = serve({"set": {"X-Frame-Options": "DENY"}}).get("/")
    assert values(response, "X-Frame-Options") == ["DENY"]


def test_add_appends_beside_the_application_value(serve: Any) -> None:
    response = serve({"add": {"X-Frame-Options": "DENY", "X-New": "1"}}).get("/")
    assert values(response, "X-Frame-Options") == ["SAMEORIGIN", "DENY"]
    assert values(response, "X-New") == ["1"]


def test_add_vary_joins_the_one_vary_field(serve: Any) -> None:
    # Vary is a list: the names join the application's field, each once.
    response = serve({"add": {"Vary": "Accept-Encoding, accept, Origin"}}).get("/")
    assert values(response, "Vary") == ["Accept, Accept-Encoding, Origin"]
    assert serve({"add": {"Vary": "Origin"}}).get("/shared").header("vary") == "Origin"
    # set still replaces the application's value; add then joins it.
    response = serve({"set": {"Vary": "Cookie"}, "add": {"Vary": "Origin"}}).get("/")
    assert values(response, "Vary") == ["Cookie, Origin"]
    response = serve({"add": {"Vary": "Origin"}, "remove": ["Vary"]}).get("/")
    assert values(response, "Vary") == []


def test_default_only_when_absent(serve: Any) -> None:
    response = serve({"default": {"Cache-Control": "no-cache", "X-Robots-Tag": "none"}}).get("/")
    assert values(response, "Cache-Control") == ["private"]  # the application's wins
    assert values(response, "X-Robots-Tag") == ["none"]


def test_remove_drops_the_application_header(serve: Any) -> None:
    response = serve({"remove": ["X-Powered-By", "VARY"]}).get("/")
    assert values(response, "X-Powered-By") == []
    assert values(response, "Vary") == []
    assert values(response, "Cache-Control") == ["private"]


def test_remove_wins_over_set_add_and_default(serve: Any) -> None:
    settings = {
        "set": {"X-A": "1"},
        "add": {"X-B": "2"},
        "default": {"X-C": "3"},
        "remove": ["x-a", "x-b", "x-c"],
    }
    response = serve(settings).get("/")
    assert values(response, "X-A") == values(response, "X-B") == values(response, "X-C") == []


def test_names_are_sent_lower_case_values_as_written(serve: Any) -> None:
    response = serve({"set": {"Strict-Transport-Security": "max-age=63072000; preload"}}).get("/")
    assert (b"strict-transport-security", b"max-age=63072000; preload") in response.headers


def test_server_header_can_be_replaced(serve: Any) -> None:
    response = serve({"set": {"Server": "web"}}).get("/")
    assert values(response, "Server") == ["web"]


def test_server_header_can_be_removed(serve: Any) -> None:
    # An empty Server value tells the protocol layer to send none (see tests/http).
    response = serve({"remove": ["Server"]}).get("/")
    assert values(response, "Server") == [""]


def test_error_responses_get_the_headers_too(serve: Any) -> None:
    response = serve({"set": {"X-Frame-Options": "DENY"}}).get("/missing")
    assert response.status == 404
    assert values(response, "X-Frame-Options") == ["DENY"]


def test_a_list_the_handler_keeps_is_not_edited(serve: Any) -> None:
    response = serve({"add": {"X-Added": "1"}}).get("/shared")
    assert values(response, "X-Added") == ["1"]
    assert SHARED == [(b"x-shared", b"1")]


# -- levels: locations and web.toml --------------------------------------------------------


def test_per_location(serve: Any) -> None:
    locations = [
        {"path": "/api", "custom_headers": {"set": {"Cache-Control": "no-store"}}},
        {"path": "/static", "custom_headers": {"set": {"X-Frame-Options": "SAMEORIGIN"}}},
    ]
    client = serve({"set": {"X-Frame-Options": "DENY"}}, locations=locations)
    api = client.get("/api/v1")
    assert values(api, "X-Frame-Options") == ["DENY"]  # inherited: tables merge by header
    assert values(api, "Cache-Control") == ["no-store"]
    assert values(client.get("/static/a.css"), "X-Frame-Options") == ["SAMEORIGIN"]
    assert values(client.get("/"), "Cache-Control") == ["private"]


def test_web_toml_overrides_and_drops_inherited_entries(serve: Any, root: Path) -> None:
    (root / "api" / "web.toml").write_text(
        "[custom_headers]\n"
        'set = { add = { "Content-Security-Policy" = "default-src \'none\'" },'
        ' remove = ["X-Frame-Options"] }\n'
        'remove = { add = ["Cache-Control"] }\n'
    )
    (root / "static" / "web.toml").write_text(
        '[custom_headers.set]\n"X-Frame-Options" = "SAMEORIGIN"\n'
    )
    client = serve({"set": {"X-Frame-Options": "DENY"}, "remove": ["X-Powered-By"]})
    api = client.get("/api/x")
    assert values(api, "Content-Security-Policy") == ["default-src 'none'"]
    # The inherited set entry is gone, so the application's own value is sent.
    assert values(api, "X-Frame-Options") == ["SAMEORIGIN"]
    assert values(api, "X-Powered-By") == values(api, "Cache-Control") == []
    static = client.get("/static/x")
    assert values(static, "X-Frame-Options") == ["SAMEORIGIN"]
    assert values(static, "X-Powered-By") == []
    root_response = client.get("/x")
    assert values(root_response, "X-Frame-Options") == ["DENY"]
    assert values(root_response, "Content-Security-Policy") == []


def test_remove_in_a_folder_stops_a_parent_set(serve: Any, root: Path) -> None:
    (root / "api" / "web.toml").write_text('[custom_headers]\nremove = ["X-Frame-Options"]\n')
    client = serve({"set": {"X-Frame-Options": "DENY"}})
    assert values(client.get("/api/x"), "X-Frame-Options") == []
    assert values(client.get("/x"), "X-Frame-Options") == ["DENY"]


# -- validation at load --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"set": {"X Bad": "1"}}, "set: 'X Bad' is not a valid header name"),
        ({"add": {"X-Split": "a\r\nSet-Cookie: x=1"}}, "add.X-Split: the value"),
        ({"set": {"X-Nul": "a\x00b"}}, "set.X-Nul: the value"),
        ({"default": {"X-Lf": "a\nb"}}, "default.X-Lf: the value"),
        ({"set": {"X-Pad": " padded"}}, "set.X-Pad: the value"),
        ({"set": {"X-Utf8": "café"}}, "set.X-Utf8: the value"),
        ({"set": {"X-A": "1", "x-a": "2"}}, "name the same header"),
        ({"set": {"Content-Length": "1"}}, "managed by the protocol layer"),
        ({"add": {"Transfer-Encoding": "chunked"}}, "managed by the protocol layer"),
        ({"remove": ["Connection"]}, "managed by the protocol layer"),
        ({"remove": ["Date"]}, "managed by the protocol layer"),
        ({"remove": ["bad:name"]}, "not a valid header name"),
        ({"set": {"X-A": 1}}, "Expected `str`"),
        ({"replace": {}}, "unknown key"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    root: Path, settings: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_engine(config(root, settings), modules=[App])
    assert raised.value.key.startswith("custom_headers")
    assert expected in str(raised.value)


def test_bad_value_in_web_toml_names_the_file(root: Path) -> None:
    (root / "api" / "web.toml").write_text('[custom_headers.set]\n"X-A" = "a\\r\\nb"\n')
    (broken,) = build_engine(config(root), modules=[App]).broken  # its folder answers 500.19
    assert broken.file.endswith("web.toml") and broken.error.file == broken.file
    assert "set.X-A" in str(broken.error)


def test_empty_value_is_allowed() -> None:
    section = msgspec.convert({"set": {"X-Empty": ""}}, CustomHeadersSection, strict=True)
    assert section.edits is not None and section.edits.append == ((b"x-empty", b""),)


# -- compiled once, cheap when idle --------------------------------------------------------


def test_nothing_to_do_compiles_to_none() -> None:
    assert CustomHeadersSection().edits is None
    section = msgspec.convert({"set": {"X-A": "1"}}, CustomHeadersSection, strict=True)
    assert section.edits is section.edits


def test_stage_harness() -> None:
    ctx = make_context(settings={"custom_headers": {"set": {"X-A": "1"}, "remove": ["X-B"]}})
    ctx.response.headers = [(b"x-b", b"gone"), (b"x-a", b"old")]
    run_stage(CustomHeaders(), Stage.SEND_RESPONSE, ctx)
    assert ctx.response.headers == [(b"x-a", b"1")]


def test_runs_before_custom_errors_in_send_response() -> None:
    (sub,) = CustomHeaders.subscriptions
    assert sub.stage is Stage.SEND_RESPONSE and sub.priority.name == "MEDIUM"


def test_every_setting_is_explained() -> None:
    notes = field_notes(CustomHeadersSection)
    assert all(notes.get(name) for name in CustomHeadersSection.__struct_fields__)
