"""Compiling plans: ordering rules, empty stages, disabled modules never imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from colonnade import Context, Handler, Module, Priority, Stage, hook
from colonnade.core.registry import Registry
from colonnade.errors import ConfigError, ModuleError
from colonnade.testing import Client, build_engine


def order_module(module_id: str, priority: Priority = Priority.MEDIUM) -> type[Module]:
    class Ordered(Module):
        id = module_id

        @hook(Stage.BEGIN_REQUEST, priority=priority)
        def begin(self, ctx: Context) -> None:
            ctx.items.setdefault("begin", []).append(self.id)

        @hook(Stage.SEND_RESPONSE, priority=priority)
        def send(self, ctx: Context) -> None:
            ctx.items.setdefault("send", []).append(self.id)

    return Ordered


class Ok(Handler):
    id = "test.ok"

    def execute(self, ctx: Context) -> None:
        ctx.response.body = b"ok"


def config(*ids: str) -> dict[str, object]:
    return {
        "server": {"modules": [*ids, "test.ok"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "test.ok"}],
    }


def test_priority_then_configuration_order_and_reverse_send_response() -> None:
    a = order_module("t.a")
    b = order_module("t.b", Priority.FIRST)
    c = order_module("t.c")
    d = order_module("t.d", Priority.LAST)
    engine = build_engine(config("t.a", "t.b", "t.c", "t.d"), modules=[a, b, c, d, Ok])
    with Client(engine) as client:
        r = client.get("/")
    assert r.context.items["begin"] == ["t.b", "t.a", "t.c", "t.d"]
    assert r.context.items["send"] == ["t.d", "t.c", "t.a", "t.b"]


def test_a_leading_module_goes_first_within_its_priority() -> None:
    a = order_module("t.a", Priority.FIRST)
    lead = type("Lead", (order_module("t.lead", Priority.FIRST),), {"leads": True})
    lead2 = type("Lead2", (order_module("t.lead2", Priority.HIGH),), {"leads": True})
    b = order_module("t.b", Priority.HIGH)
    engine = build_engine(
        config("t.a", "t.b", "t.lead2", "t.lead"), modules=[a, b, lead, lead2, Ok]
    )
    with Client(engine) as client:
        r = client.get("/")
    # Ahead of its priority's others wherever listed; priorities still come first.
    assert r.context.items["begin"] == ["t.lead", "t.a", "t.lead2", "t.b"]
    assert r.context.items["send"] == ["t.b", "t.lead2", "t.a", "t.lead"]


def test_stages_nobody_joined_are_not_in_the_plan() -> None:
    engine = build_engine(config("t.a"), modules=[order_module("t.a"), Ok])
    stages = [step.stage for step in engine.runtimes[0].plan.steps]
    assert stages == [
        Stage.BEGIN_REQUEST,
        Stage.MAP_REQUEST_HANDLER,  # the built-in handler mapping
        Stage.EXECUTE_REQUEST_HANDLER,  # the built-in handler call
        Stage.SEND_RESPONSE,  # the flush
    ]
    assert [h.owner for h in engine.runtimes[0].plan.send_response] == ["t.a"]


def test_a_module_that_is_not_enabled_is_never_imported(tmp_path: Path) -> None:
    (tmp_path / "never_imported_mod.py").write_text(
        "raise RuntimeError('imported although not enabled')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        engine = build_engine(config(), modules=[Ok])
        engine.registry.add("t.never", "never_imported_mod:Never", origin="test")
        engine2 = type(engine)(engine.config, engine.registry)
        assert "never_imported_mod" not in sys.modules
        assert "t.never" not in engine2.registry.loaded()
        # Enabling it does import it, and the failure names the module.
        engine.config.server.modules.insert(0, "t.never")
        with pytest.raises(ModuleError, match=r"t\.never"):
            type(engine)(engine.config, engine.registry)
    finally:
        sys.path.remove(str(tmp_path))


def test_builtin_modules_not_enabled_are_not_imported() -> None:
    engine = build_engine(config(), modules=[Ok])
    assert engine.registry.loaded() == ["test.ok"]


@pytest.mark.parametrize("bad", ["", "  ", " x"])
def test_registry_refuses_empty_ids(bad: str) -> None:
    with pytest.raises(ModuleError):
        Registry().add(bad, Ok, origin="test")


def test_registry_refuses_duplicate_ids() -> None:
    registry = Registry()
    registry.add("test.ok", Ok, origin="first")
    with pytest.raises(ModuleError, match="registered twice: by first and by second"):
        registry.add("test.ok", Ok, origin="second")


def test_class_id_must_match_registration() -> None:
    registry = Registry()
    registry.add("other.id", Ok, origin="test")
    with pytest.raises(ModuleError, match=r"declares id 'test\.ok'"):
        registry.load("other.id")


def test_unknown_module_in_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"server.modules\[0\]: no module named 'nope'"):
        build_engine(config("nope"), modules=[Ok])


def test_unknown_section_names_the_key() -> None:
    cfg = config()
    cfg["nobody_owns_this"] = {"x": 1}
    with pytest.raises(ConfigError, match="nobody_owns_this: no enabled module"):
        build_engine(cfg, modules=[Ok])


def test_handler_mapping_must_name_an_enabled_handler() -> None:
    cfg = config()
    cfg["handlers"] = [{"path": "*", "handler": "t.a"}]
    with pytest.raises(ConfigError, match=r"handlers\[0\].handler"):
        build_engine(
            cfg | {"server": {"modules": ["t.a", "test.ok"]}}, modules=[order_module("t.a"), Ok]
        )


def test_unmapped_verb_is_405_with_allow_and_unmapped_path_is_404_4() -> None:
    cfg = config()
    cfg["handlers"] = [{"path": "*.txt", "handler": "test.ok", "verbs": ["GET", "HEAD"]}]
    with Client(build_engine(cfg, modules=[Ok])) as client:
        r = client.post("/a.txt", b"x")
        assert r.status == 405 and r.header("allow") == "GET, HEAD"
        r = client.get("/a.png")
        assert r.status == 404 and "404.4" in r.text
        assert client.get("/dir/a.txt").status == 200


def test_every_answer_but_finish_walks_on() -> None:
    # The walk tests an answer with a fused "is not None" first: CONTINUE itself, or
    # any other value a hook returns by mistake, must walk on like None does.
    from colonnade.core.module import CONTINUE

    class Answers(Module):
        id = "test.answers"

        @hook(Stage.BEGIN_REQUEST)
        def begin(self, ctx: Context) -> object:
            return CONTINUE

        @hook(Stage.AUTHORIZE_REQUEST)
        async def authorize(self, ctx: Context) -> object:
            return "yes"

        @hook(Stage.LOG_REQUEST)
        def log(self, ctx: Context) -> object:
            ctx.items["logged"] = True
            return 0

    engine = build_engine(config("test.answers"), modules=[Answers, Ok])
    with Client(engine) as client:
        response = client.get("/")
    assert (response.status, response.body) == (200, b"ok")
    assert response.context.items["logged"] is True
    # The hooks are read as globals of the generated walk: no closure to copy per call.
    walk = engine.runtimes[0].walk
    assert getattr(walk, "__self__", None) is not None or walk.__closure__ is None


# -- hooks decided when the plan is built -----------------------------------------------

_ASGI = """
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})
"""


def _post_map(tmp_path: Path, handlers: list[dict[str, object]] | None) -> list[str]:
    """The POST_MAP_REQUEST_HANDLER hooks of an ASGI application's plan, then the
    body of ``GET /dir/`` (a folder with an index.html)."""
    tmp_path.mkdir()
    (tmp_path / "plan_app.py").write_text(_ASGI)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "index.html").write_text("index")
    site: dict[str, object] = {
        "name": "t",
        "bindings": ["http://127.0.0.1:8080"],
        "root": str(tmp_path),
        "applications": [{"path": "/", "app": "plan_app:app", "app_dir": str(tmp_path)}],
    }
    cfg: dict[str, object] = {"sites": [site]}
    if handlers is not None:
        cfg["handlers"] = handlers
    with Client(build_engine(cfg)) as client:
        plan = client.engine.runtimes[0].plan
        joined = dict(plan.describe()).get(Stage.POST_MAP_REQUEST_HANDLER, [])
        # Whatever the plan holds, the folder URL is answered as before.
        body = client.get("/dir/").body
    return [*joined, body.decode()]


def test_the_default_document_joins_only_where_a_file_handler_can_be_mapped(
    tmp_path: Path,
) -> None:
    # A Python application that answers every path: the default document and
    # the listing can never act there, so its plan leaves them out.
    assert _post_map(tmp_path / "a", None) == ["app"]
    # A mapping to the static file handler brings them back, for its paths.
    mapped = [{"path": "/dir/*", "handler": "handler.static"}]
    assert _post_map(tmp_path / "b", mapped) == [
        "static.default_document (medium)",
        "static.directory_listing (low)",
        "index",
    ]


def test_a_site_of_files_keeps_the_default_document(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "index.html").write_text("index")
    cfg = {"sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(tmp_path)}]}
    with Client(build_engine(cfg)) as client:
        rows = dict(client.engine.runtimes[0].plan.describe())
        assert rows[Stage.POST_MAP_REQUEST_HANDLER] == [
            "static.default_document (medium)",
            "static.directory_listing (low)",
        ]
        assert client.get("/dir/").body == b"index"
