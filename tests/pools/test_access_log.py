"""One access log file written by several workers: its W3C directives appear once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import MODULES, Master, toml_value, wait_for

pytestmark = pytest.mark.e2e

StartMaster = Callable[..., Master]


def recycle(master: Master) -> None:
    before = set(master.pids("default"))
    assert "recycling 2 worker(s)" in master.command("recycle", "default")
    wait_for(lambda: master.replaced(before, 2), 15, "two new workers")


def read_log(log: Path) -> tuple[list[str], list[str]]:
    """The file's directive lines, and the cs-uri-stem of each line (which must fit the
    #Fields line in force)."""
    directives: list[str] = []
    stems: list[str] = []
    fields: list[str] = []
    for line in log.read_text().splitlines():
        if line.startswith("#"):
            directives.append(line)
            if line.startswith("#Fields: "):
                fields = line.split()[1:]
            continue
        values = line.split(" ")
        assert len(values) == len(fields), line[:200]
        stems.append(values[fields.index("cs-uri-stem")])
    return directives, stems


def wait_logged(log: Path, stems: list[str]) -> None:
    """Lines are written just after their response, by whichever worker answered."""
    wait_for(lambda: all(f" {stem} " in log.read_text() for stem in stems), 10, "the lines written")


def test_workers_and_their_recycles_write_the_directives_once(
    start_master: StartMaster, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    master = start_master(
        {"default": {"start": "always"}},
        workers=2,
        modules=[*MODULES, "log.http"],
        extra=f"[http_logging]\ntarget = {toml_value(str(log))}\nbuffer_size = 0\n",
    )
    # Two workers opened the new file at the same time.
    wait_for(lambda: len(master.pids("default")) == 2, 10, "two workers")
    paths = [f"/{'p' * 4000}/{i}" for i in range(20)]
    for path in paths:
        assert master.get(path).status == 200
    wait_logged(log, paths)
    assert log.stat().st_size > 70_000  # the #Fields line is far back now

    recycle(master)  # two more open it, at the same time again
    assert master.get("/recycled").status == 200
    wait_logged(log, ["/recycled"])
    directives, stems = read_log(log)
    assert len(directives) == 4 and directives[0].startswith("#Software: Colonnade")
    assert sorted(stems) == sorted([*paths, "/recycled"])

    # Rotated away (logrotate's rename): the next workers start a new file, once.
    log.rename(tmp_path / "access.log.1")
    recycle(master)
    assert master.get("/rotated").status == 200
    master.stop()  # the workers flush as they stop
    directives, stems = read_log(log)
    assert len(directives) == 4 and directives[0].startswith("#Software: Colonnade")
    assert stems == ["/rotated"]
    assert sorted(read_log(tmp_path / "access.log.1")[1]) == sorted([*paths, "/recycled"])
