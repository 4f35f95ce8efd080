"""``Context.remap``: where it is allowed, what follows the new path, the loop bound."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from colonnade import FINISH, Context, Handler, Module, Section, Stage, hook
from colonnade.core.context import MAX_REMAPS
from colonnade.core.stages import STAGES
from colonnade.testing import Client, TestResponse, build_engine, make_context

WALK = [info.stage for info in STAGES]
#: Where a remap is allowed: up to the end of POST_MAP_REQUEST_HANDLER.
ALLOWED = WALK[: WALK.index(Stage.POST_MAP_REQUEST_HANDLER) + 1]
REFUSED = WALK[len(ALLOWED) :]


class TagSection(Section, frozen=True):
    """A setting that differs by path, to see the effective sections follow."""

    key = "tag"
    value: str = "root"


class Where(Handler):
    """Answers with what it was given."""

    id = "test.where"
    section = TagSection

    def execute(self, ctx: Context) -> None:
        request = ctx.request
        ctx.response.body = json.dumps(
            {
                "handler": self.id,
                "path": request.path,
                "original": request.original_path,
                "raw": request.raw_path.decode(),
                "physical": ctx.physical_path,
                "tag": ctx.section(TagSection).value,
            }
        ).encode()


class Other(Where):
    id = "test.other"


class GetOnly(Where):
    id = "test.get_only"
    verbs = frozenset({"GET", "HEAD"})


def _remap_hook(stage: Stage) -> Any:
    def on_stage(self: Module, ctx: Context) -> object:
        header = ctx.request.header
        finish_at = header(b"x-finish-at")
        if finish_at is not None and finish_at.decode() == stage.name:
            ctx.error_response(403)
            return FINISH
        at = header(b"x-remap-at")
        if at is None or at.decode() != stage.name:
            return None
        target = (header(b"x-remap-to") or b"").decode()
        try:
            for _ in range(int(header(b"x-remap-times") or b"1")):
                ctx.remap(target)
        except (RuntimeError, ValueError) as exc:
            if header(b"x-catch") is None:
                raise
            ctx.items["refused"] = str(exc)
        return None

    on_stage.__name__ = f"on_{stage.name.lower()}"
    return hook(stage)(on_stage)


def _remapper(module_id: str, stages: list[Stage]) -> type[Module]:
    # type(): the class statement's hook collection sees every generated method.
    return type(
        "Remapper",
        (Module,),
        {"id": module_id} | {f"on_{s.name.lower()}": _remap_hook(s) for s in stages},
    )


#: Joins every stage, so also the ones between the mapping and the handler.
Everywhere = _remapper("test.remap_everywhere", WALK)
#: Joins no stage between the mapping and the handler: the handler call closes it.
Sparse = _remapper(
    "test.remap_sparse",
    [
        Stage.BEGIN_REQUEST,
        Stage.MAP_REQUEST_HANDLER,
        Stage.POST_MAP_REQUEST_HANDLER,
        Stage.POST_EXECUTE_REQUEST_HANDLER,
        Stage.UPDATE_REQUEST_CACHE,
        Stage.LOG_REQUEST,
        Stage.END_REQUEST,
    ],
)
CLASSES: list[type[Module]] = [Everywhere, Sparse, Where, Other, GetOnly]


def joined(cls: type[Module]) -> set[Stage]:
    return {sub.stage for sub in cls.subscriptions}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a/page.txt", "b/page.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    return tmp_path


def serve(root: Path, remapper: type[Module], **extra: Any) -> Client:
    config = {
        "server": {"modules": [remapper.id, "test.where", "test.other", "test.get_only"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [
            {"path": "/b/*", "handler": "test.other"},
            {"path": "*", "handler": "test.where"},
        ],
        "locations": [{"path": "/b", "tag": {"value": "b"}}],
        **extra,
    }
    return Client(build_engine(config, modules=CLASSES))


def answer(response: TestResponse) -> dict[str, str]:
    assert response.status == 200, response.text
    data: dict[str, str] = json.loads(response.body)
    return data


def remap(
    client: Client, stage: Stage, to: str, method: str = "GET", **headers: str
) -> TestResponse:
    return client.request(
        method,
        "/a/page.txt",
        headers={"x-remap-at": stage.name, "x-remap-to": to, **headers},
    )


@pytest.mark.parametrize("remapper", [Everywhere, Sparse], ids=["everywhere", "sparse"])
def test_plans_close_the_mapping_where_needed(root: Path, remapper: type[Module]) -> None:
    with serve(root, remapper) as client:
        steps = client.engine.runtimes[0].plan.steps
        owners = [
            h.owner for s in steps if s.stage is Stage.POST_MAP_REQUEST_HANDLER for h in s.hooks
        ]
    # A closing step only where modules run between the mapping and the handler.
    expected = [remapper.id, "(engine)"] if remapper is Everywhere else [remapper.id]
    assert owners == expected


@pytest.mark.parametrize("stage", ALLOWED, ids=lambda s: s.name)
def test_a_remap_up_to_post_map_is_served_as_the_new_path(root: Path, stage: Stage) -> None:
    remapper = Sparse if stage in joined(Sparse) else Everywhere
    with serve(root, remapper) as client:
        got = answer(remap(client, stage, "/b/page.txt"))
    assert got == {
        "handler": "test.other",  # the mapping ran (again) for the new path
        "path": "/b/page.txt",
        "original": "/a/page.txt",
        "raw": "/a/page.txt",  # REQUEST_URI / ASGI raw_path: the client's
        "physical": str(root / "b" / "page.txt"),
        "tag": "b",  # the effective settings of the new path
    }


@pytest.mark.parametrize("remapper", [Everywhere, Sparse], ids=["everywhere", "sparse"])
def test_a_remap_after_post_map_is_refused(root: Path, remapper: type[Module]) -> None:
    stages = [s for s in REFUSED if s in joined(remapper)]
    assert stages
    with serve(root, remapper) as client:
        for stage in stages:
            r = remap(client, stage, "/b/page.txt", **{"x-catch": "1"})
            assert r.context is not None
            refused = r.context.items.get("refused", "")
            assert "the handler mapping is final" in refused, stage.name
            assert r.context.request.path == "/a/page.txt", stage.name
            assert answer(r)["handler"] == "test.where", stage.name


def test_a_refused_remap_is_a_500_with_the_reason_logged(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(root, Everywhere) as client, caplog.at_level(logging.ERROR):
        r = remap(client, Stage.PRE_EXECUTE_REQUEST_HANDLER, "/b/page.txt")
    assert r.status == 500
    assert "the handler mapping is final" in caplog.text


@pytest.mark.parametrize("remapper", [Everywhere, Sparse], ids=["everywhere", "sparse"])
def test_a_finished_request_cannot_be_remapped(root: Path, remapper: type[Module]) -> None:
    with serve(root, remapper) as client:
        r = remap(
            client,
            Stage.LOG_REQUEST,
            "/b/page.txt",
            **{"x-finish-at": "BEGIN_REQUEST", "x-catch": "1"},
        )
    assert r.status == 403
    assert r.context is not None
    assert "the handler mapping is final" in r.context.items["refused"]


def test_remaps_are_bounded(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with serve(root, Sparse) as client:
        assert (
            answer(
                remap(
                    client, Stage.BEGIN_REQUEST, "/b/page.txt", **{"x-remap-times": str(MAX_REMAPS)}
                )
            )["path"]
            == "/b/page.txt"
        )
        with caplog.at_level(logging.ERROR):
            r = remap(
                client,
                Stage.POST_MAP_REQUEST_HANDLER,
                "/b/page.txt",
                **{"x-remap-times": str(MAX_REMAPS + 1)},
            )
    assert r.status == 500
    assert f"request for '/a/page.txt' remapped more than {MAX_REMAPS} times" in caplog.text


def test_a_remap_onto_a_mapping_without_the_verb_is_405_with_allow(root: Path) -> None:
    handlers = [
        {"path": "/post-only/*", "handler": "test.where", "verbs": ["POST"]},
        {"path": "/get-only/*", "handler": "test.get_only"},
        {"path": "/a/*", "handler": "test.where"},
    ]
    with serve(root, Sparse, handlers=handlers) as client:
        # The mapping of the new path refuses POST: 405 with that mapping's verbs.
        r = remap(client, Stage.POST_MAP_REQUEST_HANDLER, "/post-only/x", method="PUT")
        assert (r.status, r.header("allow")) == (405, "POST")
        # The mapping takes any verb, the handler it chose serves GET and HEAD.
        r = remap(client, Stage.POST_MAP_REQUEST_HANDLER, "/get-only/x", method="POST")
        assert (r.status, r.header("allow")) == (405, "GET, HEAD")
        # Before the mapping, the same: the verbs of the new path's mapping count.
        r = remap(client, Stage.BEGIN_REQUEST, "/post-only/x", method="GET")
        assert (r.status, r.header("allow")) == (405, "POST")
        r = remap(client, Stage.BEGIN_REQUEST, "/post-only/x", method="POST")
        assert answer(r)["path"] == "/post-only/x"


def test_a_remap_to_an_unmapped_path_is_404_4(root: Path) -> None:
    config_handlers = [{"path": "/a/*", "handler": "test.where"}]
    with serve(root, Sparse, handlers=config_handlers) as client:
        r = remap(client, Stage.POST_MAP_REQUEST_HANDLER, "/b/page.txt")
    assert r.status == 404
    assert r.context is not None and r.context.response.substatus == 4


@pytest.mark.parametrize(
    "path",
    ["b/page.txt", "/a/../b", "/a/./b", "/a//b", "/a/b/..", "//b", "/a\x00b", "", "*"],
)
def test_only_normalized_paths(root: Path, path: str) -> None:
    ctx = make_context("GET", "/a/page.txt", root=str(root))
    with pytest.raises(ValueError, match="not a normalized URL path"):
        ctx.remap(path)
    assert ctx.request.path == "/a/page.txt"


def test_only_paths_inside_the_application(root: Path) -> None:
    ctx = make_context("GET", "/app/x", root=str(root), app_path="/app")
    for outside in ("/", "/other", "/application", "/ap"):
        with pytest.raises(ValueError, match="outside the application at '/app'"):
            ctx.remap(outside)
    for inside in ("/app", "/app/", "/app/.well-known/x", "/app/y"):
        ctx.remap(inside)
        assert ctx.request.path == inside
    assert ctx.physical_path == str(root / "y")


def test_a_remap_before_the_mapping_keeps_a_chosen_handler(root: Path) -> None:
    ctx = make_context("GET", "/a/page.txt", root=str(root))
    chosen = Where()
    ctx.handler = chosen
    ctx.remap("/b/page.txt")  # no mapping ran yet (a stage harness context)
    assert ctx.handler is chosen
    assert ctx.physical_path == str(root / "b" / "page.txt")
    assert ctx.request.original_path == "/a/page.txt"


class HandTo(Module):
    """``ctx.hand_to(X-Hand-To)`` at the stage ``X-Hand-At`` names."""

    id = "test.hand_to"

    def _hand(self, ctx: Context, stage: Stage) -> None:
        at = ctx.request.header(b"x-hand-at")
        if at is None or at.decode() != stage.name:
            return
        try:
            ctx.hand_to((ctx.request.header(b"x-hand-to") or b"").decode())
        except (LookupError, RuntimeError) as exc:
            ctx.items["refused"] = f"{type(exc).__name__}: {exc}"

    @hook(Stage.BEGIN_REQUEST)
    def begin(self, ctx: Context) -> None:
        self._hand(ctx, Stage.BEGIN_REQUEST)

    @hook(Stage.POST_MAP_REQUEST_HANDLER)
    def post_map(self, ctx: Context) -> None:
        self._hand(ctx, Stage.POST_MAP_REQUEST_HANDLER)

    @hook(Stage.PRE_EXECUTE_REQUEST_HANDLER)
    def pre_execute(self, ctx: Context) -> None:
        self._hand(ctx, Stage.PRE_EXECUTE_REQUEST_HANDLER)


def _hand(client: Client, stage: Stage, to: str) -> TestResponse:
    return client.get("/a/page.txt", headers={"x-hand-at": stage.name, "x-hand-to": to})


@pytest.mark.parametrize("stage", [Stage.BEGIN_REQUEST, Stage.POST_MAP_REQUEST_HANDLER])
def test_hand_to_serves_the_request_with_that_handler_at_its_own_path(
    root: Path, stage: Stage
) -> None:
    # test.get_only is enabled but mapped to no path: still the application's.
    config = {
        "server": {"modules": ["test.hand_to", "test.where", "test.other", "test.get_only"]},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
        "handlers": [{"path": "*", "handler": "test.where"}],
    }
    with Client(build_engine(config, modules=[*CLASSES, HandTo])) as client:
        got = answer(_hand(client, stage, "test.get_only"))
        unknown = _hand(client, stage, "handler.nowhere")
        late = _hand(client, Stage.PRE_EXECUTE_REQUEST_HANDLER, "test.get_only")
    assert got["handler"] == "test.get_only" and got["path"] == "/a/page.txt"
    assert unknown.context is not None and answer(unknown)["handler"] == "test.where"
    assert unknown.context.items["refused"].startswith("LookupError")
    assert late.context is not None and answer(late)["handler"] == "test.where"
    assert "the handler mapping is final" in late.context.items["refused"]


def test_the_walks_inline_mapping_and_execute_decide_as_their_functions(root: Path) -> None:
    # One catch-all rule: the pure install's walk runs HandlerMap.map and execute
    # inline (pipeline.plan.Inline, review13). A handler chosen earlier (hand_to
    # before the mapping), a remap at POST_MAP (the map is the remapper), a remap
    # after the handler (the mapping closed) and a handler with verbs (405) must
    # come out as the functions decide them.
    # (A remapper that joins neither the mapping's stage nor the handler's: each of
    # the two steps is then the built-in one alone, which the walk inlines.)
    thin = _remapper(
        "test.remap_thin",
        [Stage.BEGIN_REQUEST, Stage.POST_MAP_REQUEST_HANDLER, Stage.POST_EXECUTE_REQUEST_HANDLER],
    )
    for handler in ("test.where", "test.get_only"):
        config = {
            "server": {"modules": ["test.hand_to", thin.id, *(c.id for c in CLASSES[2:])]},
            "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
            "handlers": [{"path": "*", "handler": handler}],
        }
        with Client(build_engine(config, modules=[*CLASSES, HandTo, thin])) as client:
            runtime = client.engine.runtimes[0]
            inlined = {
                s.stage
                for s in runtime.plan.steps
                if len(s.calls) == 1 and s.calls[0][0] in runtime.plan.inline
            }
            assert inlined == {Stage.MAP_REQUEST_HANDLER, Stage.EXECUTE_REQUEST_HANDLER}
            r = _hand(client, Stage.BEGIN_REQUEST, "test.other")
            assert answer(r)["handler"] == "test.other"
            r = remap(client, Stage.POST_MAP_REQUEST_HANDLER, "/b/page.txt")
            assert (answer(r)["handler"], answer(r)["path"]) == (handler, "/b/page.txt")
            r = remap(client, Stage.POST_EXECUTE_REQUEST_HANDLER, "/b/page.txt")
            assert r.status == 500
            r = client.request("POST", "/a/page.txt")
            if handler == "test.get_only":
                assert (r.status, r.header("allow")) == (405, "GET, HEAD")
            else:
                assert answer(r)["handler"] == handler
