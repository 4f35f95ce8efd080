"""The CI pass of the fuzz targets: each target under atheris for a short, seeded,
bounded run (its seed corpus first, then mutations), in a subprocess of its own.

A subprocess because atheris instruments modules as they are imported (this
process imported colonnade long ago, uninstrumented) and libFuzzer ends the
process when it is done. In the compiled build the mypyc modules run there too,
uninstrumented (see README.md). ``make fuzz`` is the long run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.harness import TARGETS, run_one, seeds

#: Inputs per target: the seeds and a few thousand mutations (some targets stop
#: at the time bound first on a loaded machine; the seed is fixed either way).
RUNS = 2500
SECONDS = 2


@pytest.mark.parametrize("target", TARGETS)
def test_target_survives_a_short_run(target: str, tmp_path: Path) -> None:
    outcome = run_one(target, seconds=SECONDS, runs=RUNS, seed=1, work=tmp_path)
    assert outcome.returncode == 0 and not outcome.crashes, (
        f"fuzz target {target} failed: reproduce with "
        f"python -m tests.fuzz.harness replay {target} {' '.join(outcome.crashes)}"
    )
    # The seeds ran (libFuzzer runs the corpus first), and some mutations after them.
    assert outcome.executions > len(seeds(target))


def test_every_target_has_seeds_and_a_module() -> None:
    here = Path(__file__).parent
    for target in TARGETS:
        assert (here / f"fuzz_{target}.py").is_file(), target
        assert seeds(target), f"no seed corpus for {target}"
    assert sorted(p.stem.removeprefix("fuzz_") for p in here.glob("fuzz_*.py")) == sorted(TARGETS)
