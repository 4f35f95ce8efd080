"""Notice changed configuration files while serving (inotify through watchfiles)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable

from colonnade.config.sections import WEB_TOML


def _outermost(paths: Iterable[str]) -> list[str]:
    found: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)}):
        if not any(path == f or path.startswith(f.rstrip("/") + "/") for f in found):
            found.append(path)
    return found


def _targets(
    folders: Iterable[str], config_file: str | None, files: Iterable[str] = ()
) -> tuple[list[str], Callable[[object, str], bool]]:
    config_real = os.path.realpath(config_file) if config_file else None
    # The server file and application module sources: these files exactly.
    exact = {os.path.realpath(f) for f in files}
    if config_real is not None:
        exact.add(config_real)

    def wanted(_change: object, path: str) -> bool:
        return os.path.basename(path) == WEB_TOML or os.path.realpath(path) in exact

    return _outermost([*folders, *(os.path.dirname(f) for f in exact)]), wanted


async def changes(
    folders: Iterable[str],
    config_file: str | None,
    stop: asyncio.Event,
    files: Iterable[str] = (),
) -> AsyncIterator[set[str]]:
    """Yield the set of changed ``web.toml``/server files and of ``files`` (the
    sources of application modules), debounced, until ``stop``."""
    from watchfiles import awatch  # imported only when watching is on

    roots, wanted = _targets(folders, config_file, files)
    if not roots:
        return
    async for batch in awatch(
        *roots, watch_filter=wanted, stop_event=stop, debounce=300, step=50, recursive=True
    ):
        yield {path for _change, path in batch}
