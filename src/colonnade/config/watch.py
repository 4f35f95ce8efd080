"""Notice changed configuration files while serving (inotify through watchfiles)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import PurePath

from colonnade.config.sections import WEB_TOML


def _outermost(paths: Iterable[str]) -> list[str]:
    found: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)}):
        if not any(path == f or path.startswith(f.rstrip("/") + "/") for f in found):
            found.append(path)
    return found


@dataclass(frozen=True)
class CodeWatch:
    """The application code ``colonnade serve --reload`` watches: files under
    ``folders`` whose path matches an ``include`` glob and none of whose parts (below
    the folder) matches an ``exclude`` glob (uvicorn's defaults: ``*.py``; hidden
    files and folders, compiled files, editor swap and backup files)."""

    folders: tuple[str, ...]
    include: tuple[str, ...] = ("*.py",)
    exclude: tuple[str, ...] = (".*", "*.py[cod]", "*.sw.*", "~*", "__pycache__")

    def __post_init__(self) -> None:
        object.__setattr__(self, "folders", tuple(os.path.realpath(f) for f in self.folders))

    def matches(self, path: str) -> bool:
        """Whether a change of ``path`` is a change of the application's code."""
        real = os.path.realpath(path)
        for folder in self.folders:
            if not real.startswith(folder.rstrip("/") + "/"):
                continue
            parts = PurePath(os.path.relpath(real, folder)).parts
            if any(fnmatch(part, glob) for part in parts for glob in self.exclude):
                return False
            return any(PurePath(real).match(glob) for glob in self.include)
        return False


def _targets(
    folders: Iterable[str],
    config_file: str | None,
    files: Iterable[str] = (),
    code: CodeWatch | None = None,
) -> tuple[list[str], Callable[[object, str], bool]]:
    config_real = os.path.realpath(config_file) if config_file else None
    # The server file and application module sources: these files exactly.
    exact = {os.path.realpath(f) for f in files}
    if config_real is not None:
        exact.add(config_real)

    def wanted(_change: object, path: str) -> bool:
        return (
            os.path.basename(path) == WEB_TOML
            or os.path.realpath(path) in exact
            or (code is not None and code.matches(path))
        )

    code_folders = code.folders if code is not None else ()
    return _outermost([*folders, *code_folders, *(os.path.dirname(f) for f in exact)]), wanted


async def changes(
    folders: Iterable[str],
    config_file: str | None,
    stop: asyncio.Event,
    files: Iterable[str] = (),
    code: CodeWatch | None = None,
) -> AsyncIterator[set[str]]:
    """Yield the set of changed ``web.toml``/server files, of ``files`` (the sources
    of application modules) and of the files ``code`` matches, debounced, until
    ``stop``.

    The watcher (``watchfiles.watch``) waits on a thread of its own, as its
    ``awatch`` does; not ``awatch`` itself, whose anyio event loop backend imports
    ``ssl`` (about 6 MiB of the master's RSS, see pools/lean.py).
    """
    from watchfiles import watch  # imported only when watching is on

    roots, wanted = _targets(folders, config_file, files, code)
    if not roots:
        return
    loop = asyncio.get_running_loop()
    halt = threading.Event()
    found: asyncio.Queue[set[str] | BaseException | None] = asyncio.Queue()

    def post(item: set[str] | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(found.put_nowait, item)

    def run() -> None:
        try:
            for batch in watch(
                *roots,
                watch_filter=wanted,
                stop_event=halt,
                debounce=300,
                step=50,
                recursive=True,
                raise_interrupt=False,
            ):
                post({path for _change, path in batch})
        except Exception as exc:  # raised where the changes are awaited
            post(exc)
        else:
            post(None)

    threading.Thread(target=run, name="colonnade-watch", daemon=True).start()
    stopping = loop.create_task(stop.wait())
    stopping.add_done_callback(lambda _: halt.set())
    try:
        while (item := await found.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        stopping.cancel()
