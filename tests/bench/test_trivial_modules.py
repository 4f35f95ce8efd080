"""The bench's trivial modules (bench/apps): the stages they join, and a clean install."""

from __future__ import annotations

import sys
from importlib.metadata import distributions
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from apps.make_modules import COUNT, HELLO, VARIANTS, generate  # noqa: E402
from apps.trivial_modules import CLASSES, HOOKS, POST_CLASSES  # noqa: E402

from colonnade.core.stages import STAGES, Stage  # noqa: E402
from colonnade.testing import Client, build_engine  # noqa: E402


def test_the_modules_join_the_stages_and_with_post_the_post_stages() -> None:
    walk = [info.stage for info in STAGES if info.stage is not Stage.SEND_RESPONSE]
    main = [s for s in walk if not s.name.startswith("POST_")]
    assert main[0] is Stage.BEGIN_REQUEST and main[-1] is Stage.END_REQUEST
    assert (len(main), len(walk)) == (HOOKS[False], HOOKS[True]) == (12, 23)
    for family, stages in ((CLASSES, main), (POST_CLASSES, walk)):
        assert len(family) == COUNT == 50
        assert len({cls.id for cls in family}) == COUNT
        for cls in family:
            assert [s.stage for s in cls.subscriptions] == stages


def test_generated_folders_enable_and_install(tmp_path: Path) -> None:
    out = generate(tmp_path)
    eps = [
        ep
        for dist in distributions(path=[str(out / "site")])
        for ep in dist.entry_points
        if ep.group == "colonnade.modules"
    ]
    everything = CLASSES + POST_CLASSES
    assert {ep.name: ep.load() for ep in eps} == {cls.id: cls for cls in everything}
    for folder, (enabled, installed, post) in VARIANTS.items():
        config = {
            "server": {"modules": ["handler.static"]},
            "sites": [{"name": "b", "bindings": ["http://127.0.0.1:8080"], "root": "."}],
        }
        root = out / folder
        modules = CLASSES[:installed] + POST_CLASSES[:installed]
        engine = build_engine(config, base_dir=str(root), modules=modules)
        with Client(engine) as client:
            response = client.get("/hello.txt")
            assert (response.status, response.body) == (200, HELLO)
            plan = client.engine.runtimes[0].plan.describe()
        trivial = [n for _, names in plan for n in names if n.startswith("bench.trivial.")]
        assert len(trivial) == enabled * HOOKS[post]
        assert all(n.startswith("bench.trivial.p" if post else "bench.trivial.m") for n in trivial)
