"""ASGI middleware declared as an application module, in-process (the test kit).

The middleware wraps every handler of the application: static files, default
documents, directory listings, error pages, a hosted ASGI app (directly) and a
WSGI app (through the adapter). Declaration errors name the web.toml, the line
and the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.config.load import from_dict
from colonnade.core.principal import Principal
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, ModuleError
from colonnade.modules.standard import BUILTIN
from colonnade.testing import Client, build_engine
from tests.handlers.asgi import mw_kit

KIT = "tests.handlers.asgi.mw_kit"
BIG = 300_000


@pytest.fixture(autouse=True)
def _clear_log() -> Iterator[None]:
    mw_kit.LOG.clear()
    yield
    mw_kit.LOG.clear()


def declare(*entries: tuple[str, str, dict[str, Any] | None]) -> str:
    """A web.toml declaring ``(id, target, options)`` middleware, in that order."""
    lines = ["[application_modules]"]
    for name, target, options in entries:
        opts = ""
        if options is not None:
            inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
            opts = f", options = {{ {inner} }}"
        lines.append(f'"{name}" = {{ asgi_middleware = "{target}"{opts} }}')
    return "\n".join(lines) + "\n"


def site(
    tmp_path: Path,
    web_toml: str,
    *,
    app: str | None = None,
    allow: bool = True,
    modules: tuple[str, ...] = ("handler.static",),
    sections: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An application at /app (folder ``app``) with files, declaring ``web_toml``."""
    root = tmp_path / "app"
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "docs").mkdir(exist_ok=True)
    (root / "pub").mkdir(exist_ok=True)
    (root / "web.toml").write_text(web_toml)
    (root / "files" / "hello.txt").write_text("Hello, world!")
    (root / "files" / "odd.unknownext").write_text("no type")
    (root / "files" / "big.bin").write_bytes(os.urandom(BIG))
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "pub" / "a.txt").write_text("a")
    (tmp_path / "www").mkdir(exist_ok=True)
    application: dict[str, Any] = {"path": "/app", "root": "app", "allow_modules": allow}
    config: dict[str, Any] = {
        "server": {"modules": list(modules)},
        "sites": [
            {
                "name": "s",
                "bindings": ["http://127.0.0.1:8080"],
                "root": "www",
                "applications": [application],
            }
        ],
        **(sections or {}),
    }
    if app is not None:
        application["app"] = app
        config["handlers"] = [{"path": "/app/files/*", "handler": "handler.static"}]
    return config


def client(tmp_path: Path, web_toml: str, **kw: Any) -> Client:
    return Client(build_engine(site(tmp_path, web_toml, **kw), base_dir=str(tmp_path)))


def big(tmp_path: Path) -> bytes:
    return (tmp_path / "app" / "files" / "big.bin").read_bytes()


# -- server handlers inside the middleware ---------------------------------------------


def test_static_files_default_documents_listings_and_errors_pass_the_middleware(
    tmp_path: Path,
) -> None:
    web = declare(("app.stamp", f"{KIT}:AddHeader", {"name": "x-mw", "value": "seen"}))
    config = site(
        tmp_path,
        web,
        modules=("static.default_document", "static.directory_listing", "handler.static"),
        sections={"directory_browse": {"enabled": True}},
    )
    with Client(build_engine(config, base_dir=str(tmp_path))) as c:
        r = c.get("/app/files/hello.txt")
        assert (r.status, r.body, r.header("x-mw")) == (200, b"Hello, world!", "seen")
        assert r.header("content-length") == "13"
        assert r.context.handler.id == "handler.static"  # the mapped handler, for the log
        r = c.get("/app/docs/")
        assert (r.status, r.body, r.header("x-mw")) == (200, b"<h1>docs</h1>", "seen")
        r = c.get("/app/pub/")
        assert (r.status, r.header("x-mw")) == (200, "seen")
        assert b"a.txt" in r.body
        r = c.get("/app/files/odd.unknownext")
        assert (r.status, r.header("x-mw")) == (404, "seen")
        assert r.context.response.substatus == 3  # 404.3 still reaches the log
        r = c.get("/app/files")
        assert (r.status, r.header("location"), r.header("x-mw")) == (301, "/app/files/", "seen")
        r = c.head("/app/files/hello.txt")
        assert (r.status, r.body, r.header("content-length")) == (200, b"", "13")
        assert r.header("x-mw") == "seen"


def test_the_middleware_short_circuits_static_files_and_the_app(tmp_path: Path) -> None:
    web = declare(("app.deny", f"{KIT}:Deny", {"prefix": "/app"}))
    with client(tmp_path, web, app=f"{KIT}:echo") as c:
        for path in ("/app/files/hello.txt", "/app/api"):
            r = c.get(path)
            assert (r.status, r.body, r.header("www-authenticate")) == (401, b"denied", "Let-Me-In")
        assert ("app", "/app/api") not in mw_kit.LOG  # the app never ran
        allowed = {"Authorization": "let-me-in"}
        r = c.get("/app/files/hello.txt", headers=allowed)
        assert (r.status, r.body) == (200, b"Hello, world!")
        r = c.get("/app/api", headers=allowed)
        assert r.status == 200
        assert ("app", "/app/api") in mw_kit.LOG


def test_scope_values_set_by_the_middleware_reach_the_asgi_app(tmp_path: Path) -> None:
    web = declare(("app.auth", f"{KIT}:Auth", {"user": "ann", "tag": "from-middleware"}))
    with client(tmp_path, web, app=f"{KIT}:echo") as c:
        r = c.get("/app/x/y")
        seen = json.loads(r.body)
        assert seen["user"] == "ann"
        assert seen["tag"] == "from-middleware"
        assert seen["root_path"] == "/app"
        assert seen["path"] == "/app/x/y"
        assert seen["state"] == {"started": "yes"}  # the app's lifespan state
        # The middleware's user is the request's user for the server too (the log).
        assert r.context.user == Principal("ann", "asgi", frozenset({"staff"}))


def test_the_first_declared_middleware_is_the_outermost(tmp_path: Path) -> None:
    web = declare(
        ("app.outer", f"{KIT}:AddHeader", {"name": "x-order", "value": "outer"}),
        ("app.inner", f"{KIT}:AddHeader", {"name": "x-order", "value": "inner"}),
        ("app.factory", f"{KIT}:make_add_header", {"value": "made"}),
    )
    with client(tmp_path, web) as c:
        r = c.get("/app/files/hello.txt")
        order = [v for k, v in r.headers if k == b"x-order"]
        assert order == [b"inner", b"outer"]  # the inner one saw the response first
        assert r.header("x-factory") == "made"


# -- bodies: streamed, never buffered whole ------------------------------------------------


def test_a_whole_file_goes_on_as_pathsend(tmp_path: Path) -> None:
    web = declare(("app.rec", f"{KIT}:Recorder", None))
    with client(tmp_path, web) as c:
        r = c.get("/app/files/big.bin")
        assert (r.status, r.body) == (200, big(tmp_path))
    assert mw_kit.LOG == [("http.response.start", 0, False), ("http.response.pathsend", 0, False)]


def test_without_pathsend_a_large_file_streams_in_chunks(tmp_path: Path) -> None:
    web = declare(("app.rec", f"{KIT}:Recorder", None), ("app.nops", f"{KIT}:NoPathsend", None))
    with client(tmp_path, web) as c:
        r = c.get("/app/files/big.bin")
        assert (r.status, r.body, r.header("content-length")) == (200, big(tmp_path), str(BIG))
    bodies = [entry for entry in mw_kit.LOG if entry[0] == "http.response.body"]
    assert len(bodies) >= BIG // 65536
    assert max(size for _, size, _ in bodies) <= 65536
    assert all(more for _, _, more in bodies[:-1]) and bodies[-1][2] is False


def test_a_range_of_a_large_file_streams_in_chunks(tmp_path: Path) -> None:
    web = declare(("app.rec", f"{KIT}:Recorder", None))
    with client(tmp_path, web) as c:
        r = c.get("/app/files/big.bin", headers={"Range": "bytes=100-200099"})
        assert (r.status, r.body) == (206, big(tmp_path)[100:200100])
    sizes = [size for kind, size, _ in mw_kit.LOG if kind == "http.response.body"]
    assert sum(sizes) == 200_000 and max(sizes) <= 65536


# -- the request the middleware passes on -----------------------------------------------------


def test_request_headers_changed_by_the_middleware_reach_the_static_handler(
    tmp_path: Path,
) -> None:
    web = declare(("app.norange", f"{KIT}:DropHeader", {"name": "range"}))
    with client(tmp_path, web) as c:
        r = c.get("/app/files/hello.txt", headers={"Range": "bytes=0-1"})
        assert (r.status, r.body) == (200, b"Hello, world!")  # no range was seen


def test_a_wsgi_app_gets_the_body_user_and_scope_the_middleware_passed(tmp_path: Path) -> None:
    web = declare(
        ("app.auth", f"{KIT}:Auth", {"user": "bob", "tag": "t1"}),
        ("app.upper", f"{KIT}:Upper", None),
    )
    with client(tmp_path, web, app=f"{KIT}:wsgi_echo") as c:
        r = c.post("/app/echo", body=b"hello")
        assert r.status == 200, r.text
        assert json.loads(r.body) == {
            "remote_user": "bob",
            "auth_type": "asgi",
            "body": "HELLO",
            "tag": "t1",
        }
        r = c.get("/app/files/hello.txt")  # static beside the WSGI app: wrapped too
        assert (r.status, r.body) == (200, b"Hello, world!")


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("Boom", "the middleware broke"),
        ("Silent", "returned without sending a response"),
    ],
)
def test_a_failing_middleware_is_a_500_with_a_correlation_id(
    tmp_path: Path, target: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    web = declare(("app.bad", f"{KIT}:{target}", None))
    with client(tmp_path, web) as c:
        r = c.get("/app/files/hello.txt")
    assert r.status == 500
    cid = r.context.correlation_id
    assert cid.encode() in r.body
    assert message not in r.text  # the cause only in the log
    assert any(cid in rec.getMessage() and rec.exc_info for rec in caplog.records)
    assert any(message in str(rec.exc_info[1]) for rec in caplog.records if rec.exc_info)


# -- declaration errors: file, line, key --------------------------------------------------------


def config_error(tmp_path: Path, web_toml: str, **kw: Any) -> ConfigError:
    """The error of the app's web.toml: refusing the configuration where the code it
    names fails, else confining the web.toml to its folder (500.19)."""
    try:
        engine = build_engine(site(tmp_path, web_toml, **kw), base_dir=str(tmp_path))
    except ConfigError as exc:
        error = exc
    else:
        (broken,) = engine.broken
        error = broken.error
    assert error.file == str(tmp_path / "app" / "web.toml")
    return error


PICKY = f'asgi_middleware = "{KIT}:Picky"'


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ('{ asgi_middleware = "no_such_pkg.mw:Thing" }', "x.asgi_middleware", "cannot import"),
        (f'{{ asgi_middleware = "{KIT}:Missing" }}', "x.asgi_middleware", "no attribute"),
        (f'{{ asgi_middleware = "{KIT}:NOT_CALLABLE" }}', "x.asgi_middleware", "not callable"),
        ('{ asgi_middleware = "no-colon" }', "x.asgi_middleware", "module:attribute"),
        (f"{{ {PICKY}, options = {{ level = 12 }} }}", "x.options", "level must be 0-9"),
        (f"{{ {PICKY}, options = {{ lvl = 1 }} }}", "x.options", "unexpected keyword"),
        (f"{{ {PICKY} }}", "x", "missing 1 required keyword-only argument"),
        (f"{{ {PICKY}, option = {{ level = 1 }} }}", "x.option", "unknown key"),
        ("{ options = { level = 1 } }", "x", "asgi_middleware"),
        ("3", "x", "ASGI middleware"),
    ],
)
def test_a_misdeclared_middleware_names_file_line_and_key(
    tmp_path: Path, entry: str, key: str, message: str
) -> None:
    error = config_error(tmp_path, f'# shop\n[application_modules]\n"x" = {entry}\n')
    assert error.key == f"application_modules.{key}"
    assert error.line == 3
    assert message in error.message


def test_the_table_form_points_at_the_line_of_the_bad_key(tmp_path: Path) -> None:
    web = f'[application_modules."x"]\nasgi_middleware = "{KIT}:Picky"\noptions = {{ level = 9 }}\n'
    web = web.replace("level = 9", "level = 99")
    error = config_error(tmp_path, web)
    assert (error.line, error.key) == (3, "application_modules.x.options")


def test_middleware_needs_the_server_to_allow_application_modules(tmp_path: Path) -> None:
    web = declare(("app.stamp", f"{KIT}:AddHeader", {"name": "x", "value": "y"}))
    error = config_error(tmp_path, web, allow=False)
    assert error.key == "application_modules"
    assert "allow_modules = true" in error.message


def test_middleware_ids_must_be_free(tmp_path: Path) -> None:
    web = declare(("handler.static", f"{KIT}:Recorder", None))
    error = config_error(tmp_path, web)
    assert (error.key, error.line) == ("application_modules.handler.static", 2)
    assert "taken" in error.message


def test_middleware_is_declared_at_the_application_root_only(tmp_path: Path) -> None:
    config = site(tmp_path, "")
    (tmp_path / "app" / "docs" / "web.toml").write_text(
        declare(("app.rec", f"{KIT}:Recorder", None))
    )
    with pytest.raises(ConfigError) as info:
        build_engine(config, base_dir=str(tmp_path))
    assert info.value.file == str(tmp_path / "app" / "docs" / "web.toml")
    assert "application's root" in info.value.message


def test_the_module_is_not_for_the_server_module_list(tmp_path: Path) -> None:
    config = site(tmp_path, "", modules=("asgi.middleware", "handler.static"))
    with pytest.raises(ModuleError, match="declare ASGI middleware"):
        build_engine(config, base_dir=str(tmp_path)).start()


# -- the plan and reloads ------------------------------------------------------------------------


def test_the_plan_shows_where_the_middleware_joins(tmp_path: Path) -> None:
    web = declare(("app.rec", f"{KIT}:Recorder", None))
    engine = build_engine(site(tmp_path, web), base_dir=str(tmp_path))
    (app,) = [a for a in engine.describe() if a["path"] == "/app"]
    plan = {stage.name: hooks for stage, hooks in app["plan"]}
    assert plan["PRE_EXECUTE_REQUEST_HANDLER"] == ["asgi.middleware (last)"]
    other = [a for a in engine.describe() if a["path"] == "/"]
    assert all("asgi.middleware (last)" not in hooks for _, hooks in other[0]["plan"])


def test_changed_options_rebuild_the_application_on_reload(tmp_path: Path) -> None:
    def generation(value: str, previous: Engine | None = None) -> Engine:
        web = declare(("app.stamp", f"{KIT}:AddHeader", {"name": "x-mw", "value": value}))
        config = from_dict(site(tmp_path, web), source="<test>", base_dir=str(tmp_path))
        registry = Registry.standard(BUILTIN, with_entry_points=False)
        return Engine(config, registry, previous=previous)

    first = generation("one")
    same = generation("one", first)
    assert [rt.app.path for rt in same.fresh] == []
    changed = generation("two", first)
    assert [rt.app.path for rt in changed.fresh] == ["/app"]
    with Client(changed) as c:
        assert c.get("/app/files/hello.txt").header("x-mw") == "two"


def test_starlette_base_http_middleware_wraps_static_files_and_the_app(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    web = declare(("app.stamp", f"{KIT}:dispatch_stamp", None))
    with client(tmp_path, web, app=f"{KIT}:echo") as c:
        r = c.get("/app/files/hello.txt")
        assert (r.status, r.body) == (200, b"Hello, world!")
        assert r.header("x-dispatch") == "/app/files/hello.txt"
        r = c.get("/app/files/big.bin", headers={"Range": "bytes=0-199999"})
        assert (r.status, r.body) == (206, big(tmp_path)[:200_000])
        assert r.header("x-dispatch") == "/app/files/big.bin"
        r = c.get("/app/files/big.bin")
        assert (r.status, r.body) == (200, big(tmp_path))
        r = c.get("/app/api")
        assert (r.status, r.header("x-dispatch")) == (200, "/app/api")
        assert json.loads(r.body)["path"] == "/app/api"
