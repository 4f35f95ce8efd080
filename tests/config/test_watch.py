"""config.watch.changes: a changed web.toml or server file is reported, debounced,
until the stop event, through watchfiles' extension alone (not its package), with
watchfiles' settings from the environment (forced polling) as well."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from colonnade.config.watch import changes

PATIENCE = 20.0


async def first_change(folder: Path, config: Path, edit: Path) -> set[str]:
    stop = asyncio.Event()
    seen: list[set[str]] = []

    async def watch() -> None:
        async for batch in changes([str(folder)], str(config), stop):
            seen.append(batch)
            stop.set()

    task = asyncio.create_task(watch())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    # The watcher starts on its thread: edit until it reports (each edit is a change).
    while not seen and loop.time() < deadline:
        await asyncio.to_thread(edit.write_text, f"# {loop.time()}\n")
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, PATIENCE)  # the stop event ends the iteration
    assert seen, "no change reported"
    return seen[0]


@pytest.mark.parametrize("what", ["web.toml", "colonnade.toml"])
def test_a_changed_file_is_reported(tmp_path: Path, what: str) -> None:
    (tmp_path / "site").mkdir()
    config = tmp_path / "colonnade.toml"
    config.write_text("")
    edit = config if what == "colonnade.toml" else tmp_path / "site" / "web.toml"
    (tmp_path / "site" / "other.txt").write_text("not watched")
    found = asyncio.run(first_change(tmp_path / "site", config, edit))
    assert found == {str(edit)}


WITH_PACKAGE = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.config.test_watch import first_change
folder = Path({folder!r})
print(sorted(asyncio.run(first_change(folder, folder / "colonnade.toml", folder / "web.toml"))))
print("watchfiles" in sys.modules, "watchfiles._rust_notify" in sys.modules)
"""


@pytest.mark.parametrize(
    "env",
    [
        {"WATCHFILES_FORCE_POLLING": "true"},
        {"WATCHFILES_FORCE_POLLING": "true", "WATCHFILES_POLL_DELAY_MS": "50"},
    ],
)
def test_the_extension_alone_also_polling(tmp_path: Path, env: dict[str, str]) -> None:
    """Only watchfiles' extension is loaded (not the package, with anyio and
    multiprocessing), and it reads watchfiles' settings from the environment as
    the package would: forced polling sees the change too."""
    assert _watch_in_child(tmp_path, env) == [repr([str(tmp_path / "web.toml")]), "False True"]


def test_linux_watches_with_inotify_alone(tmp_path: Path) -> None:
    """Without forced polling, Linux needs neither watchfiles nor its extension."""
    assert _watch_in_child(tmp_path, {}) == [repr([str(tmp_path / "web.toml")]), "False False"]


def _watch_in_child(folder: Path, env: dict[str, str]) -> list[str]:
    """What a fresh interpreter watching ``folder`` with ``env`` (and no other
    ``WATCHFILES_`` setting) prints: the first change, and whether it loaded the
    watchfiles package and its extension."""
    import os

    (folder / "colonnade.toml").write_text("")
    code = WITH_PACKAGE.format(tests=str(Path(__file__).parents[2]), folder=str(folder))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATCHFILES_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 2,
        env={**clean, **env},
        check=True,
    )
    return done.stdout.splitlines()
