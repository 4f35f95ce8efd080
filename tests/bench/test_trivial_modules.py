"""The bench's trivial modules (bench/apps): they join every stage and install cleanly."""

from __future__ import annotations

import sys
from importlib.metadata import distributions
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from apps.make_modules import COUNT, HELLO, VARIANTS, generate  # noqa: E402
from apps.trivial_modules import CLASSES, HOOKS_PER_MODULE  # noqa: E402

from colonnade.core.stages import STAGES, Stage  # noqa: E402
from colonnade.testing import Client, build_engine  # noqa: E402


def test_every_module_joins_every_stage_of_the_walk() -> None:
    assert len(CLASSES) == COUNT == 50
    assert len({cls.id for cls in CLASSES}) == COUNT
    # The 12 stages and their 11 post stages; not the SEND_RESPONSE notification.
    walk = [info.stage for info in STAGES if info.stage is not Stage.SEND_RESPONSE]
    assert len(walk) == HOOKS_PER_MODULE == 23
    for cls in CLASSES:
        assert [s.stage for s in cls.subscriptions] == walk


def test_generated_folders_enable_and_install(tmp_path: Path) -> None:
    out = generate(tmp_path)
    eps = [
        ep
        for dist in distributions(path=[str(out / "site")])
        for ep in dist.entry_points
        if ep.group == "colonnade.modules"
    ]
    assert {ep.name: ep.load() for ep in eps} == {cls.id: cls for cls in CLASSES}
    for folder, (enabled, installed) in VARIANTS.items():
        config = {
            "server": {"modules": ["handler.static"]},
            "sites": [{"name": "b", "bindings": ["http://127.0.0.1:8080"], "root": "."}],
        }
        root = out / folder
        engine = build_engine(config, base_dir=str(root), modules=CLASSES[:installed])
        with Client(engine) as client:
            response = client.get("/hello.txt")
            assert (response.status, response.body) == (200, HELLO)
            plan = client.engine.runtimes[0].plan.describe()
        trivial = [n for _, names in plan for n in names if n.startswith("bench.trivial.")]
        assert len(trivial) == enabled * HOOKS_PER_MODULE
