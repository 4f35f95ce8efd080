"""Notice changed configuration files while serving (inotify through watchfiles)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable

from colonnade.config.tree import WEB_TOML


def _outermost(paths: Iterable[str]) -> list[str]:
    found: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)}):
        if not any(path == f or path.startswith(f.rstrip("/") + "/") for f in found):
            found.append(path)
    return found


def _targets(
    folders: Iterable[str], config_file: str | None
) -> tuple[list[str], Callable[[object, str], bool]]:
    config_real = os.path.realpath(config_file) if config_file else None

    def wanted(_change: object, path: str) -> bool:
        return os.path.basename(path) == WEB_TOML or (
            config_real is not None and os.path.realpath(path) == config_real
        )

    extra = [os.path.dirname(config_real)] if config_real else []
    return _outermost([*folders, *extra]), wanted


async def changes(
    folders: Iterable[str], config_file: str | None, stop: asyncio.Event
) -> AsyncIterator[set[str]]:
    """Yield the set of changed ``web.toml``/server files, debounced, until ``stop``."""
    from watchfiles import awatch  # imported only when watching is on

    roots, wanted = _targets(folders, config_file)
    if not roots:
        return
    async for batch in awatch(
        *roots, watch_filter=wanted, stop_event=stop, debounce=300, step=50, recursive=True
    ):
        yield {path for _change, path in batch}
